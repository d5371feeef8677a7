//! What the grader remembers between runs: each kata's last verdict (keyed by a SHA-256 of its
//! staged sources, so any change of content makes it stale, whatever the files' mtimes) and how many hints the learner has seen.
//!
//! The file is rewritten atomically (write a temporary file, then rename), so a kill mid-write
//! leaves the old state; a corrupt or unreadable file is treated as empty and rebuilt.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::course::{Course, Kata};
use crate::grade::Status;

const VERSION: u32 = 1;

/// The remembered verdict of one kata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verdict {
    pub source_hash: String,
    /// The course's side of the verdict ([`inputs_hash`]): a verdict against other hidden tests
    /// is stale too (issue 13). Absent from an older state, which then reads as unchecked.
    #[serde(default)]
    pub inputs_hash: String,
    pub passed: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    version: u32,
    #[serde(default)]
    pub verdicts: BTreeMap<String, Verdict>,
    #[serde(default)]
    pub hints_seen: BTreeMap<String, usize>,
}

/// Where a kata stands for the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Done,
    Failing,
    /// Never checked, or edited since the last check.
    Unchecked,
}

impl State {
    pub fn path(course: &Course) -> PathBuf {
        crate::workspace::grader_dir(course).join("state.json")
    }

    /// Loads the state, starting afresh if it is missing or unreadable.
    pub fn load(course: &Course) -> State {
        State::parse(std::fs::read(Self::path(course)).ok())
    }

    /// A state from a file's bytes; anything unreadable (a kill mid-write by an older grader, a
    /// hand edit) gives a fresh state, since everything in it can be recomputed or re-asked.
    fn parse(bytes: Option<Vec<u8>>) -> State {
        bytes
            .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
            .filter(|state| state.version == VERSION)
            .unwrap_or(State { version: VERSION, ..State::default() })
    }

    /// Loads, changes and saves the state under an exclusive lock, so that two grader runs at
    /// once (a `watch` and a `check`, say) never lose each other's updates.
    pub fn update(course: &Course, change: impl FnOnce(&mut State)) -> anyhow::Result<State> {
        let path = Self::path(course);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let lock_path = dir.join("state.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("failed to open {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("failed to lock {}", lock_path.display()))?;
        let mut state = State::load(course);
        change(&mut state);
        write_atomic(&path, &serde_json::to_vec_pretty(&state)?)?;
        Ok(state)
    }

    /// Remembers a verdict for the sources that were built (`source_hash` from the staged copy,
    /// not a re-read: the file may have changed since).
    pub fn record(&mut self, course: &Course, kata: &Kata, source_hash: String, status: Status) {
        let verdict = Verdict {
            source_hash,
            inputs_hash: inputs_hash(course, kata),
            passed: status == Status::Passed,
        };
        self.verdicts.insert(kata.name.clone(), verdict);
    }

    /// The kata to work on: the first one not done.
    pub fn current<'a>(&self, course: &'a Course) -> Option<&'a Kata> {
        course.katas.iter().find(|k| self.progress(course, k) != Standing::Done)
    }

    /// Katas done.
    pub fn done(&self, course: &Course) -> usize {
        course.katas.iter().filter(|k| self.progress(course, k) == Standing::Done).count()
    }

    pub fn progress(&self, course: &Course, kata: &Kata) -> Standing {
        match self.verdicts.get(&kata.name) {
            Some(v)
                if v.source_hash == source_hash(course, kata)
                    && v.inputs_hash == inputs_hash(course, kata) =>
            {
                if v.passed {
                    Standing::Done
                } else {
                    Standing::Failing
                }
            }
            _ => Standing::Unchecked,
        }
    }
}

/// SHA-256 of the learner's `src/` tree as the build would stage it (`stage::read`); a tree that
/// cannot be staged hashes to why, so it is never taken for a checked one.
pub fn source_hash(course: &Course, kata: &Kata) -> String {
    // A write-the-test kata's is its test file alone (`stage::read` of a file not `src/lib.rs`).
    let file = course.learner_file(kata);
    let shown = file.strip_prefix(&course.root).unwrap_or(&file);
    match crate::stage::read(&file, shown) {
        Ok(sources) => sources.hash,
        Err(rejected) => format!("not staged: {rejected}"),
    }
}

/// SHA-256 of what the course brings to a kata's verdict: its hidden tests and the support crates
/// they use (each file's path and content, in path order).
pub fn inputs_hash(course: &Course, kata: &Kata) -> String {
    let mut files = vec![course.hidden_tests(kata)];
    files.extend(crate::wtt::variant_files(course, kata));
    files.extend(crate::workspace::support_files(course).unwrap_or_default());
    let mut bytes = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&course.root).unwrap_or(&file);
        bytes.extend_from_slice(rel.as_os_str().as_encoded_bytes());
        bytes.push(0);
        bytes.extend_from_slice(crate::stage::hash_file(&file).unwrap_or_default().as_bytes());
        bytes.push(0);
    }
    crate::stage::hash_bytes(&bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("failed to write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("failed to replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_state_starts_afresh() {
        for bytes in
            [None, Some(b"{\"version\": 1, \"verdicts\": {".to_vec()), Some(b"\0\0".to_vec())]
        {
            let state = State::parse(bytes);
            assert_eq!(state.version, VERSION);
            assert!(state.verdicts.is_empty() && state.hints_seen.is_empty());
        }
        let old = State::parse(Some(br#"{"version": 0, "hints_seen": {"01_x": 2}}"#.to_vec()));
        assert!(old.hints_seen.is_empty(), "a state of another version is not trusted");
        let good = State::parse(Some(br#"{"version": 1, "hints_seen": {"01_x": 2}}"#.to_vec()));
        assert_eq!(good.hints_seen["01_x"], 2);
    }
}
