//! Reading result files: the JSON report of `grader check --format json` (version 1), with the
//! optional fields `grader grade` adds (`student`, `source`, `commit`, `committed_at`,
//! `graded_at`, `course_hash`, `error`) and each kata's `source_sha256`. Every optional field is
//! optional: an old report reads as well as a new one. A file that does not parse is skipped with
//! the reason, never the whole gradebook lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde::Deserialize;

use super::{Cell, Column, Reference, Row, Skipped, Status};
use crate::course::{Course, Tree};

#[derive(Debug, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    katas: Vec<Kata>,
    student: Option<String>,
    source: Option<serde_json::Value>,
    commit: Option<serde_json::Value>,
    committed_at: Option<String>,
    graded_at: Option<String>,
    course_hash: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Kata {
    name: String,
    number: u32,
    title: String,
    status: String,
    points: u32,
    max_points: u32,
    source_sha256: Option<String>,
}

/// What `read` found: students, the files left out, and every kata mentioned.
pub struct Loaded {
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
    pub columns: Vec<Column>,
}

/// The result files among `paths`: a file as given, a directory's `*.json` files (sorted).
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Reads every file; a file that cannot be read, is not a version-1 report, or names a student
/// already read is skipped, with the reason.
pub fn read(files: &[PathBuf]) -> Loaded {
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped = Vec::new();
    let mut columns: BTreeMap<(u32, String), Column> = BTreeMap::new();
    for file in files {
        let (row, katas) = match read_one(file) {
            Ok(read) => read,
            Err(why) => {
                skipped.push(Skipped { file: file.clone(), why });
                continue;
            }
        };
        if let Some(first) = rows.iter().find(|r| r.name == row.name) {
            let why =
                format!("student `{}` was already read from {}", row.name, first.file.display());
            skipped.push(Skipped { file: file.clone(), why });
            continue;
        }
        rows.push(row);
        for column in katas {
            columns.entry((column.number, column.name.clone())).or_insert(column);
        }
    }
    Loaded { rows, skipped, columns: columns.into_values().collect() }
}

fn read_one(path: &Path) -> Result<(Row, Vec<Column>), String> {
    let json = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let file: File = serde_json::from_str(&json)
        .map_err(|e| format!("is not a grader JSON report (`grader check --format json`): {e}"))?;
    if file.version != crate::report::JSON_VERSION {
        return Err(format!(
            "is report version {}; this grader reads version {}",
            file.version,
            crate::report::JSON_VERSION
        ));
    }
    let name = match file.student {
        Some(name) if !name.trim().is_empty() => name,
        _ => student_name(path),
    };
    let (commit, commit_date) = commit(file.commit.as_ref());
    let committed_at = match file.committed_at.or(commit_date) {
        None => None,
        Some(date) => Some(
            DateTime::parse_from_rfc3339(&date)
                .map_err(|e| format!("has a `committed_at` that is not RFC 3339 ({date}): {e}"))?,
        ),
    };
    let mut cells = BTreeMap::new();
    let mut columns = Vec::new();
    for kata in file.katas {
        let status = Status::parse(&kata.status).unwrap_or(Status::Error);
        let cell = Cell {
            status,
            // A forged file cannot claim more than the kata is worth, nor points for a failure.
            points: if status == Status::Passed { kata.points.min(kata.max_points) } else { 0 },
            source_sha256: kata.source_sha256,
            same_as: Vec::new(),
        };
        columns.push(Column {
            number: kata.number,
            name: kata.name.clone(),
            title: kata.title,
            max_points: kata.max_points,
        });
        cells.insert(kata.name, cell);
    }
    let row = Row {
        name,
        file: path.to_path_buf(),
        source: file.source.as_ref().map(text),
        commit,
        committed_at,
        graded_at: file.graded_at,
        course_hash: file.course_hash,
        error: file.error,
        cells,
    };
    Ok((row, columns))
}

/// The commit as a string, or an object with an id and a date.
fn commit(value: Option<&serde_json::Value>) -> (Option<String>, Option<String>) {
    let Some(value) = value else { return (None, None) };
    let Some(object) = value.as_object() else { return (Some(text(value)), None) };
    let field = |names: &[&str]| {
        names.iter().find_map(|n| object.get(*n)).map(text).filter(|s| !s.is_empty())
    };
    (field(&["id", "sha", "hash", "commit"]), field(&["committed_at", "date", "time"]))
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A student named by the file's stem (`alice.json`), or by its directory when the file has a
/// generic name (`alice/report.json`).
fn student_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let generic = ["report", "results", "result", "grade", "check"];
    if generic.contains(&stem.as_str())
        && let Some(dir) = path.parent().and_then(Path::file_name)
    {
        return dir.to_string_lossy().into_owned();
    }
    stem
}

/// The hashes of the course's exercises as shipped and of its reference solutions, computed the
/// way a check hashes staged sources; a kata whose sources cannot be read is left out.
pub fn reference(course: &Course) -> Reference {
    let mut reference = Reference::default();
    for kata in &course.katas {
        for (tree, map) in [
            (Tree::Exercises, &mut reference.exercises),
            (Tree::Solutions, &mut reference.solutions),
        ] {
            let lib_rs = course.lib_rs(tree, kata);
            let shown = lib_rs.strip_prefix(&course.root).unwrap_or(&lib_rs);
            if let Ok(sources) = crate::stage::read(&lib_rs, shown) {
                map.insert(kata.name.clone(), sources.hash);
            }
        }
    }
    reference
}
