//! One student's result file for `grader grade`: the format, reading an earlier one back to decide
//! whether a submission is graded already, and the course hash the decision is keyed by.
//!
//! The file is the JSON report of `check --format json` (what `grader gradebook` reads) with the
//! student, the source, the commit or content graded, when, against which course, and the
//! submission's standing added; new fields within the report's version, as the README allows.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::course::Course;
use crate::grade::UnitResult;
use crate::report::{self, Summary};

/// Where a submission's result file says it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Every kata has a verdict.
    Graded,
    /// The source could not be fetched: `error` says why.
    Unreachable,
    /// The grader failed on it (`error`, or a kata's `error`); graded again by the next run.
    Error,
}

/// A result file as written: the JSON report of `check`, extended.
#[derive(Debug, Serialize)]
pub struct ResultFile<'a> {
    /// The JSON report's version (`report::JSON_VERSION`).
    pub version: u32,
    /// Always `exercises`.
    pub tree: &'static str,
    /// The student id, also the file's name.
    pub student: &'a str,
    /// The roster's source: a directory, a repository path or a URL.
    pub source: String,
    /// The commit graded, for a git source.
    pub commit: Option<&'a str>,
    /// That commit's committer date (RFC 3339), which the student sets: the gradebook's late
    /// flag reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<&'a str>,
    /// SHA-256 of the sources taken (`submission::Taken`), when the source could be fetched.
    pub content_hash: Option<&'a str>,
    /// [`course_hash`] of the course that graded it.
    pub course_hash: &'a str,
    /// When, in RFC 3339 (UTC).
    pub graded_at: String,
    pub status: Standing,
    /// Why it is `unreachable` or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// One verdict per kata in course order; none when unreachable.
    pub katas: &'a [UnitResult],
    pub summary: Summary,
}

impl ResultFile<'_> {
    /// Writes the file at `<out>/<student>.json` by a rename.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)? + "\n";
        crate::state::write_atomic(&path(out, self.student), json.as_bytes())
    }
}

/// A student's result file in `out`.
pub fn path(out: &Path, student: &str) -> PathBuf {
    out.join(format!("{student}.json"))
}

/// What a rerun needs from an earlier result file.
#[derive(Debug, Deserialize)]
pub struct Previous {
    pub status: Standing,
    #[serde(default)]
    pub course_hash: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub graded_at: Option<String>,
    pub summary: PreviousSummary,
}

/// The points of an earlier result, shown when it is kept.
#[derive(Debug, Deserialize)]
pub struct PreviousSummary {
    pub points: u32,
    pub max_points: u32,
}

impl Previous {
    /// Whether this result stands for `commit` (git) or `content_hash` (a directory) graded by
    /// the course whose inputs hash to `course_hash`.
    pub fn is_current(
        &self,
        course_hash: &str,
        commit: Option<&str>,
        content_hash: Option<&str>,
    ) -> bool {
        self.status == Standing::Graded
            && self.course_hash.as_deref() == Some(course_hash)
            && match commit {
                Some(commit) => self.commit.as_deref() == Some(commit),
                None => content_hash.is_some() && self.content_hash.as_deref() == content_hash,
            }
    }
}

/// An earlier result file, if there is a readable one (anything else is graded again).
pub fn read_previous(path: &Path) -> Option<Previous> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// SHA-256 of what a verdict depends on besides the learner's sources: the grader and report
/// versions, the toolchain, the katas' points and timeouts, and every trusted file
/// (`workspace::trusted_inputs`).
pub fn course_hash(course: &Course) -> anyhow::Result<String> {
    let mut text = format!(
        "grader {}\nreport {}\n{}\n",
        env!("CARGO_PKG_VERSION"),
        report::JSON_VERSION,
        toolchain()
    );
    for kata in &course.katas {
        text.push_str(&format!("kata {} {} {:?}\n", kata.name, kata.points, kata.timeout_secs));
    }
    for file in crate::workspace::trusted_inputs(course)? {
        let hash = crate::stage::hash_file(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let rel: PathBuf = file.strip_prefix(&course.root).unwrap_or(&file).to_path_buf();
        text.push_str(&format!("{} {hash}\n", rel.display()));
    }
    Ok(crate::stage::hash_bytes(text.as_bytes()))
}

/// `rustc -vV` as the build's cargo would find it (from `/`, as `compile` runs cargo).
fn toolchain() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    std::process::Command::new(rustc)
        .arg("-vV")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "rustc: unknown".into(),
            |out| String::from_utf8_lossy(&out.stdout).into_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the fixture course: its hash follows the trusted inputs, not the exercises.
    #[test]
    fn the_course_hash_follows_trusted_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/course");
        let status = std::process::Command::new("cp")
            .arg("-R")
            .arg(fixture.join("."))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let hash = || course_hash(&Course::load(dir.path()).unwrap()).unwrap();
        let first = hash();
        assert_eq!(hash(), first);
        std::fs::write(dir.path().join("exercises/01_passing/src/lib.rs"), "// edited").unwrap();
        assert_eq!(hash(), first, "a learner's sources are not a course input");
        let hidden = dir.path().join("grader/hidden/02_failing.rs");
        let text = std::fs::read_to_string(&hidden).unwrap();
        std::fs::write(&hidden, text + "\n// one more line\n").unwrap();
        let second = hash();
        assert_ne!(second, first, "a hidden test is");
        let manifest = dir.path().join("course.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, text.replace("points = 10", "points = 11")).unwrap();
        assert_ne!(hash(), second, "points are");
    }

    #[test]
    fn a_result_is_current_for_the_same_commit_or_content_and_course() {
        let previous = |status: &str, commit: &str| -> Previous {
            serde_json::from_value(serde_json::json!({
                "status": status, "course_hash": "c", "commit": commit, "content_hash": "h",
                "summary": { "points": 5, "max_points": 35 }
            }))
            .unwrap()
        };
        let git = previous("graded", "abc");
        assert!(git.is_current("c", Some("abc"), Some("other")));
        assert!(!git.is_current("c", Some("abd"), Some("h")), "another commit");
        assert!(!git.is_current("d", Some("abc"), Some("h")), "another course");
        let dir = previous("graded", "");
        assert!(dir.is_current("c", None, Some("h")));
        assert!(!dir.is_current("c", None, Some("i")), "other content");
        assert!(!previous("unreachable", "abc").is_current("c", Some("abc"), Some("h")));
        assert!(!previous("error", "abc").is_current("c", Some("abc"), Some("h")));
    }
}
