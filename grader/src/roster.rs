//! Who `grader grade` grades: roster files (CSV) and plain submission directories, read into one
//! list of submissions before anything is graded, so a mistake in the roster stops the run before
//! it starts rather than halfway through a class.
//!
//! A roster has a header row naming at least the columns `student` and `source`, and optionally
//! `commit`; other columns (a name, an email from an LMS export) are ignored. A source is a
//! directory, a local git repository or a git URL; a relative path is relative to the roster's
//! own directory. A pinned commit makes the source a git one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::UsageError;

/// Where a submission's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory graded as it is (its content is hashed to tell a new version from an old one).
    Dir(PathBuf),
    /// A git repository (a local path or a URL), cloned and graded at one commit.
    Git {
        /// What `git clone` is given.
        url: String,
        /// The commit (or any revision) to grade; `None` grades the default branch's head.
        commit: Option<String>,
    },
}

impl Source {
    /// The source as the result file records it.
    pub fn describe(&self) -> String {
        match self {
            Source::Dir(dir) => dir.display().to_string(),
            Source::Git { url, .. } => url.clone(),
        }
    }
}

/// One student's submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The student id: the result file's name, so restricted to a safe alphabet (see [`check_id`]).
    pub student: String,
    /// Where its files come from.
    pub source: Source,
    /// Where the submission was named, for messages: `roster.csv line 3` or the argument.
    pub origin: String,
}

/// One roster row as serde reads it.
#[derive(Debug, Deserialize)]
struct Row {
    student: String,
    source: String,
    #[serde(default)]
    commit: Option<String>,
}

/// Reads every argument (a roster file or a submission directory) into one list, in order.
///
/// A roster error (a malformed line, a duplicate student) is a [`UsageError`] naming the file
/// and line.
pub fn read(args: &[PathBuf]) -> anyhow::Result<Vec<Submission>> {
    let mut submissions: Vec<Submission> = Vec::new();
    for arg in args {
        let found = if arg.is_dir() {
            vec![directory(arg)?]
        } else if arg.is_file() {
            let text = std::fs::read(arg).map_err(|e| {
                UsageError(format!("failed to read the roster {}: {e}", arg.display()))
            })?;
            let base = arg.parent().unwrap_or(Path::new("."));
            parse(&text, &arg.display().to_string(), base)?
        } else {
            return Err(UsageError(format!(
                "{} is neither a roster file nor a submission directory",
                arg.display()
            ))
            .into());
        };
        submissions.extend(found);
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for submission in &submissions {
        if let Some(first) = seen.insert(&submission.student, &submission.origin) {
            return Err(UsageError(format!(
                "{}: student `{}` is already on {first}; give each student one submission",
                submission.origin, submission.student
            ))
            .into());
        }
    }
    if submissions.is_empty() {
        return Err(UsageError("no submissions: the roster lists no students".into()).into());
    }
    Ok(submissions)
}

/// A plain directory argument: the student is the directory's name.
fn directory(dir: &Path) -> anyhow::Result<Submission> {
    let absolute = std::path::absolute(dir)
        .map_err(|e| UsageError(format!("failed to resolve {}: {e}", dir.display())))?;
    let name = absolute
        .components()
        .next_back()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    let origin = dir.display().to_string();
    check_id(&name).map_err(|why| {
        UsageError(format!(
            "{origin}: the directory's name `{name}` is not a usable student id: {why}; \
             list it in a roster with an id"
        ))
    })?;
    Ok(Submission { student: name, source: Source::Dir(absolute), origin })
}

/// Parses a roster's bytes; `name` is how the file is named in messages, `base` what relative
/// paths are relative to.
pub fn parse(text: &[u8], name: &str, base: &Path) -> Result<Vec<Submission>, UsageError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        // A row may leave out its trailing optional fields (`alice,alice/` without a commit).
        .flexible(true)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| UsageError(format!("{name}: failed to read the header row: {e}")))?
        .clone();
    for column in ["student", "source"] {
        if !headers.iter().any(|h| h == column) {
            return Err(UsageError(format!(
                "{name} line 1: the header row has no `{column}` column; a roster starts with \
                 `student,source,commit` (commit optional)"
            )));
        }
    }
    let mut submissions = Vec::new();
    for record in reader.records() {
        // Lines counted from the byte offset: csv's own count leaves out blank lines.
        let line = |position: Option<&csv::Position>| {
            let mut byte = position.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
            byte = byte.min(text.len());
            // A record's position is where the reader resumed, before the blank lines it skipped.
            while text.get(byte).is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                byte += 1;
            }
            1 + text[..byte].iter().filter(|b| **b == b'\n').count()
        };
        let record = record.map_err(|e| {
            UsageError(format!("{name} line {}: {}", line(e.position()), reason(&e)))
        })?;
        // Comments by hand: csv's own would leave them out of its line numbers.
        if record.get(0).is_some_and(|first| first.starts_with('#')) {
            continue;
        }
        let origin = format!("{name} line {}", line(record.position()));
        if record.len() > headers.len() {
            return Err(UsageError(format!(
                "{origin}: {} fields where the header row has {}; quote a field with a comma",
                record.len(),
                headers.len()
            )));
        }
        for column in ["student", "source"] {
            let index = headers.iter().position(|h| h == column).expect("checked above");
            if record.get(index).is_none() {
                return Err(UsageError(format!(
                    "{origin}: no `{column}` field; the header row is `{}`",
                    headers.iter().collect::<Vec<_>>().join(",")
                )));
            }
        }
        // Left-out trailing fields are empty ones: serde reads an empty `commit` as none.
        let mut record = record;
        while record.len() < headers.len() {
            record.push_field("");
        }
        let row: Row = record
            .deserialize(Some(&headers))
            .map_err(|e| UsageError(format!("{origin}: {}", reason(&e))))?;
        check_id(&row.student).map_err(|why| UsageError(format!("{origin}: {why}")))?;
        let source = source(&row, base).map_err(|why| UsageError(format!("{origin}: {why}")))?;
        submissions.push(Submission { student: row.student, source, origin });
    }
    Ok(submissions)
}

/// A csv error without the position csv would repeat.
fn reason(err: &csv::Error) -> String {
    match err.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!(
                "{len} fields where the header row has {expected_len}; quote a field with a comma"
            )
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => err.to_string(),
    }
}

fn source(row: &Row, base: &Path) -> Result<Source, String> {
    let text = row.source.as_str();
    if text.is_empty() {
        return Err("the source is empty; give a directory, a git repository or a git URL".into());
    }
    // `git clone -- SOURCE` and `git checkout REV` must never take either for an option.
    if text.starts_with('-') {
        return Err(format!("the source `{text}` starts with `-`"));
    }
    let commit = row.commit.clone().filter(|c| !c.is_empty());
    if let Some(commit) = &commit
        && (commit.starts_with('-') || commit.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!("`{commit}` is not a commit; give a commit hash, a tag or a branch"));
    }
    if is_url(text) {
        return Ok(Source::Git { url: text.to_owned(), commit });
    }
    let path = base.join(text);
    let path = std::path::absolute(&path).unwrap_or(path);
    if commit.is_some() || is_repository(&path) {
        Ok(Source::Git { url: path.display().to_string(), commit })
    } else {
        // A missing directory is recorded as unreachable when graded, not refused here: one
        // student's typo must not stop the class.
        Ok(Source::Dir(path))
    }
}

/// `https://`, `ssh://`, `file://`..., or scp-like `user@host:path`.
fn is_url(text: &str) -> bool {
    if text.contains("://") {
        return true;
    }
    match text.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

/// A work tree with `.git`, or a bare repository.
fn is_repository(path: &Path) -> bool {
    path.join(".git").exists()
        || (path.join("HEAD").is_file()
            && path.join("objects").is_dir()
            && path.join("refs").is_dir())
}

/// A student id names a result file: letters, digits, `.`, `_`, `-`, `@` and `+`, not starting
/// with `.`, at most 100 characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the student id is empty".into());
    }
    if id.len() > 100 {
        return Err(format!("the student id `{}...` is longer than 100 characters", &id[..20]));
    }
    if id.starts_with('.') {
        return Err(format!("the student id `{id}` starts with `.`"));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@+".contains(*c))) {
        return Err(format!(
            "the student id `{id}` holds `{}`; use letters, digits, `.`, `_`, `-`, `@` and `+`",
            bad.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Submission>, String> {
        parse(text.as_bytes(), "class.csv", Path::new("/roster")).map_err(|e| e.0)
    }

    #[test]
    fn reads_directories_repositories_and_urls() {
        let subs = parse_str(
            "student,source,commit,email\n\
             # a comment, with a comma\n\
             \n\
             alice, alice ,,a@example.org\n\
             bob,https://example.org/bob.git,abc123,\n\
             carol,git@example.org:carol.git,,\n\
             dan,/srv/dan,main,\n",
        )
        .unwrap();
        let sources: Vec<_> = subs.iter().map(|s| (s.student.as_str(), &s.source)).collect();
        assert_eq!(
            sources,
            [
                ("alice", &Source::Dir(PathBuf::from("/roster/alice"))),
                (
                    "bob",
                    &Source::Git {
                        url: "https://example.org/bob.git".into(),
                        commit: Some("abc123".into())
                    }
                ),
                ("carol", &Source::Git { url: "git@example.org:carol.git".into(), commit: None }),
                ("dan", &Source::Git { url: "/srv/dan".into(), commit: Some("main".into()) }),
            ]
        );
        assert_eq!(subs[0].origin, "class.csv line 4");
    }

    #[test]
    fn the_commit_column_is_optional() {
        let subs = parse_str("student,source,email\nalice,alice\n").unwrap();
        assert_eq!(subs[0].source, Source::Dir(PathBuf::from("/roster/alice")));
    }

    #[test]
    fn says_which_line_is_wrong_and_why() {
        let cases = [
            ("source,commit\nx,y\n", "class.csv line 1: the header row has no `student` column"),
            (
                "student,source\nalice,a\nbob\n",
                "class.csv line 3: no `source` field; the header row is `student,source`",
            ),
            (
                "student,source\nalice,a,b\n",
                "class.csv line 2: 3 fields where the header row has 2",
            ),
            ("student,source\n\n\nalice\n", "class.csv line 4: no `source` field"),
            ("student,source\n,a\n", "class.csv line 2: the student id is empty"),
            ("student,source\nal/ice,a\n", "class.csv line 2: the student id `al/ice` holds `/`"),
            (
                "student,source\n.alice,a\n",
                "class.csv line 2: the student id `.alice` starts with `.`",
            ),
            ("student,source\nalice,\n", "class.csv line 2: the source is empty"),
            (
                "student,source\nalice,--upload-pack=x\n",
                "class.csv line 2: the source `--upload-pack=x`",
            ),
            (
                "student,source,commit\nalice,a,--force\n",
                "class.csv line 2: `--force` is not a commit",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_str(text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_student_listed_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let roster = dir.path().join("class.csv");
        std::fs::write(&roster, "student,source\nalice,a\nbob,b\nalice,c\n").unwrap();
        let err = read(&[roster]).unwrap_err().to_string();
        assert!(err.contains("class.csv line 4: student `alice` is already on "), "{err}");
        assert!(err.contains("class.csv line 2;"), "{err}");
    }
}
