//! The verdict cache: a kata's verdict depends only on its staged sources and the trusted course
//! inputs, so a verdict once reached is kept under a key made of exactly those, and the same
//! sources are built and run once (per class for `grader grade`, per edit for `grader check`).
//!
//! The key is the SHA-256 of: the grader's version and the SHA-256 of its own executable (a
//! rebuilt grader invalidates everything), `results::course_hash` (hidden tests, support crate,
//! manifests, lock file, toolchain, each kata's points and timeout), the kata, the unit's label
//! and shown path (compiler messages name it), the effective test timeout, and the hash of the
//! staged sources (`stage::read`). An entry is `<target>/grader/cache/<key>.json` (`dir`),
//! written by a rename, and only for a verdict that a complete, walled run reached and that
//! cannot depend on the machine's load: passed, failed, or a compile error other than a build
//! timeout; never a timeout, an error, a run whose hidden tests were tampered with, or a run
//! without Landlock.
//! Kata code cannot write here: the tests' Landlock rules allow writes to their scratch
//! directory alone, and a build runs no kata code. An entry that cannot be read or does not match
//! its key is ignored with a warning and graded again. `verify` and `--repeat` never use it.
//!
//! Submissions graded side by side (`grader grade -j N`) share the keys in flight: a grade takes
//! the keys nobody is grading ([`claim`]), grades them, and then waits for the verdicts of the
//! others' keys instead of building the same sources again.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::course::Course;
use crate::grade::{Status, UnitResult};
use crate::stage;
use crate::workspace::{self, Unit};

/// The entry format's version, part of every key.
const FORMAT: u32 = 1;

/// The test a run adds when kata code changed the grader's files (see `grade`).
const TAMPERED: &str = "hidden_tests_untouched";

/// The cache of one course as this grader sees it.
pub struct Cache {
    dir: PathBuf,
    /// Everything every key shares: grader, executable, course.
    base: String,
}

/// A unit's key, and the hash of the sources it was computed from.
#[derive(Debug, Clone)]
pub struct Key {
    key: String,
    sources: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    key: String,
    result: UnitResult,
}

impl Cache {
    /// The cache for `course`; `None` (with a warning) when the course's inputs cannot be read.
    pub fn open(course: &Course) -> Option<Cache> {
        static EXE: OnceLock<Option<String>> = OnceLock::new();
        let exe =
            EXE.get_or_init(|| std::env::current_exe().ok().and_then(|e| stage::hash_file(&e)));
        let Some(exe) = exe else {
            eprintln!(
                "warning: the verdict cache is off: the grader cannot read its own executable"
            );
            return None;
        };
        let course_hash = match crate::results::course_hash(course) {
            Ok(hash) => hash,
            Err(err) => {
                eprintln!("warning: the verdict cache is off: {err:#}");
                return None;
            }
        };
        let base = format!(
            "grader {}\nexecutable {exe}\ncourse {course_hash}\n",
            env!("CARGO_PKG_VERSION")
        );
        Some(Cache { dir: dir(course), base })
    }

    /// The key of `unit` graded with a per-test `timeout`, with or without the explanation of a
    /// failing cut (`explain`); `None` when its sources cannot be staged (the grade says why).
    pub fn key(
        &self,
        course: &Course,
        unit: &Unit,
        timeout: Duration,
        explain: bool,
    ) -> Option<Key> {
        let sources = stage::read(&unit.lib_rs, unit.shown()).ok()?.hash;
        let text = format!(
            "verdict cache {FORMAT}\n{}kata {}\nlabel {}\nfile {}\ntimeout_ms {}\nsources \
             {sources}\nexplain {explain}\n",
            self.base,
            course.katas[unit.kata].name,
            unit.label,
            unit.shown().display(),
            timeout.as_millis(),
        );
        Some(Key { key: stage::hash_bytes(text.as_bytes()), sources })
    }

    /// The key of a write-the-test kata's verdict (`crate::wtt`): `sources` is the hash of the
    /// learner's test, which the verdict's `source_sha256` must match; `variants` names every
    /// version of the function the test runs against, by content.
    pub fn key_of_test(
        &self,
        kata: &str,
        label: &str,
        timeout: Duration,
        sources: String,
        variants: &str,
    ) -> Key {
        let text = format!(
            "verdict cache {FORMAT}\n{}kata {kata}\nlabel {label}\nwrite-the-test\ntimeout_ms \
             {}\nsources {sources}\nvariants {variants}\n",
            self.base,
            timeout.as_millis(),
        );
        Key { key: stage::hash_bytes(text.as_bytes()), sources }
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.key))
    }

    /// The verdict kept under `key`, if any; a damaged entry is ignored with a warning.
    pub fn get(&self, key: &Key, unit: &Unit) -> Option<UnitResult> {
        self.get_labelled(key, &unit.label)
    }

    /// The verdict kept under `key` for the unit or kata called `label`, as [`Cache::get`].
    pub fn get_labelled(&self, key: &Key, label: &str) -> Option<UnitResult> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        let entry =
            serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string()).and_then(|entry| {
                let result = &entry.result;
                if entry.format != FORMAT || entry.key != key.key {
                    Err("it is filed under another key".into())
                } else if result.name != label
                    || result.source_hash.as_deref() != Some(key.sources.as_str())
                {
                    Err("it is the verdict of other sources".into())
                } else {
                    Ok(entry.result)
                }
            });
        match entry {
            Ok(result) => Some(result),
            Err(why) => {
                eprintln!(
                    "warning: ignoring the damaged verdict cache entry {} ({why}); grading again",
                    path.display()
                );
                None
            }
        }
    }

    /// Keeps `result` under `key` if it may be reused (see the module docs). Best effort: a
    /// cache that cannot be written costs a rebuild next time, never a verdict.
    pub fn put(&self, key: &Key, result: &UnitResult) {
        if !reusable(result) || result.source_hash.as_deref() != Some(key.sources.as_str()) {
            // Sources changed while they were graded: the verdict is not the key's.
            return;
        }
        let entry = Entry { format: FORMAT, key: key.key.clone(), result: result.clone() };
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&self.dir))
            .and_then(|mut file| {
                serde_json::to_writer(&mut file, &entry)?;
                file.persist(self.path(key)).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(err) = written {
            eprintln!("warning: failed to keep a verdict in {}: {err}", self.dir.display());
        }
    }
}

/// `<target>/grader/cache` (in a target directory shared between courses, the course's own
/// directory there): shared by every set of the course, which the keys keep apart.
pub fn dir(course: &Course) -> PathBuf {
    workspace::grader_dir(course).join("cache")
}

/// A verdict that only the sources and the course decide.
fn reusable(result: &UnitResult) -> bool {
    let decided = match result.status {
        Status::Passed | Status::Failed => true,
        Status::CompileError => {
            !result.compile_errors.is_empty()
                && !result.compile_errors.iter().any(|e| e.starts_with("compile timed out"))
        }
        Status::TimedOut | Status::Error => false,
    };
    decided
        && result.error.is_none()
        && !result.tests.iter().any(|t| t.name == TAMPERED)
        && crate::sandbox::landlocked()
}

/// Keys being graded in this process right now.
fn in_flight() -> &'static (Mutex<HashSet<String>>, Condvar) {
    static IN_FLIGHT: OnceLock<(Mutex<HashSet<String>>, Condvar)> = OnceLock::new();
    IN_FLIGHT.get_or_init(|| (Mutex::new(HashSet::new()), Condvar::new()))
}

fn lock_in_flight() -> MutexGuard<'static, HashSet<String>> {
    // A grade that panicked left the set as it was: still good.
    in_flight().0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keys a grade took; given back, and waiters woken, when dropped (a failed grade included).
pub struct Claim {
    keys: Vec<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut keys = lock_in_flight();
        for key in &self.keys {
            keys.remove(key);
        }
        in_flight().1.notify_all();
    }
}

/// Splits `wanted` (a unit's index and key) into the units this grade takes, under the returned
/// [`Claim`], and those another grade of this process is on (wait for them with [`wait`]).
pub fn claim(wanted: &[(usize, &Key)]) -> (Claim, Vec<usize>, Vec<usize>) {
    let mut keys = lock_in_flight();
    let (mut mine, mut theirs, mut claimed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, key) in wanted {
        if keys.insert(key.key.clone()) {
            claimed.push(key.key.clone());
            mine.push(*i);
        } else {
            // Another grade's, or this grade's own twice (a unit listed twice): wait either way
            // after this grade's own units are done and given back.
            theirs.push(*i);
        }
    }
    (Claim { keys: claimed }, mine, theirs)
}

/// Returns once no grade of this process is on `key`.
pub fn wait(key: &Key) {
    let mut keys = lock_in_flight();
    while keys.contains(&key.key) {
        keys = in_flight().1.wait(keys).unwrap_or_else(|p| p.into_inner());
    }
}
