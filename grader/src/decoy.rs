//! Variants of a kata's file, each stored as a unified diff against it, so that the file reads as
//! the change itself: decoys (`grader/decoys/NN_slug/NAME.patch`), plausible wrong fixes the hidden
//! tests must reject, and accepted alternatives (`grader/alternatives/NN_slug/NAME.patch`), right
//! fixes other than the solution that the hidden tests must pass, both against the exercise's
//! `src/lib.rs`; and a write-the-test kata's decoy tests (`grader/decoy-tests/NN_slug/NAME.patch`),
//! plausible weak tests that `verify` must see rejected, against the reference test
//! (`solutions/NN_slug/tests/cancel.rs`).
//!
//! The text before the first `---` line, which diff tools ignore, explains what the change does and
//! why it is wrong, right or weak. `verify` applies each patch with `diffy` to a file under the
//! grader's own target area and builds that file as the variant's `src/lib.rs` (or judges it as a
//! learner's test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::course::{Course, Kata, Tree};
use crate::workspace;

/// The one file extension a variant may have.
pub const EXTENSION: &str = "patch";

/// What a variant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plausible wrong fix: the hidden tests must reject it.
    Decoy,
    /// A right fix other than the solution: the hidden tests must pass it.
    Alternative,
    /// A write-the-test kata's plausible weak test: its versions must reject it.
    DecoyTest,
}

impl Kind {
    /// The folder under `grader/`, and the name of the set the grader builds it in.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Decoy => "decoys",
            Kind::Alternative => "alternatives",
            Kind::DecoyTest => "decoy-tests",
        }
    }

    /// What a report calls one.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Decoy => "decoy",
            Kind::Alternative => "alternative",
            Kind::DecoyTest => "decoy test",
        }
    }

    /// What a patch of this kind makes, and what that is.
    fn change(self) -> (&'static str, &'static str) {
        match self {
            Kind::Decoy => ("fix", "wrong"),
            Kind::Alternative => ("fix", "right"),
            Kind::DecoyTest => ("test", "weak"),
        }
    }

    /// The file a patch of this kind is a diff against (`apply_to` takes another, for a
    /// write-the-test kata's versions).
    pub fn base(self, course: &Course, kata: &Kata) -> PathBuf {
        match self {
            Kind::Decoy | Kind::Alternative => course.lib_rs(Tree::Exercises, kata),
            Kind::DecoyTest => course.test_rs(Tree::Solutions, kata),
        }
    }

    /// How to regenerate a patch of this kind, before the `diff` command that does it.
    fn regenerate(self) -> &'static str {
        match self {
            Kind::Decoy | Kind::Alternative => {
                "regenerate it: make the fix in a copy of the exercise (wrong.rs), keep the \
                 explanation and replace the diff with"
            }
            Kind::DecoyTest => {
                "regenerate it: make the weak test in a copy of the reference test (wrong.rs), \
                 keep the explanation and replace the diff with"
            }
        }
    }
}

/// Why a decoy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DecoyError {
    #[error("failed to read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{patch} is not a unified diff ({source}); {regenerate} `{diff}`")]
    Parse { patch: String, source: diffy::ParsePatchError, regenerate: &'static str, diff: String },
    #[error("{patch} no longer applies to {exercise} ({source}); {regenerate} `{diff}`")]
    Apply {
        patch: String,
        exercise: String,
        source: diffy::ApplyError,
        regenerate: &'static str,
        diff: String,
    },
    #[error("{patch} changes nothing in {exercise}; {regenerate} `{diff}`")]
    Empty { patch: String, exercise: String, regenerate: &'static str, diff: String },
    #[error(
        "{patch} has no explanation before its `---` line; say there what the {what} {change} \
         does and why it is {what}"
    )]
    Unexplained { patch: String, what: &'static str, change: &'static str },
    #[error(
        "{file} is a whole-file {noun}; convert it to a .{EXTENSION} file (the explanation, a \
         blank line, then `{diff}`; `{script}` does this) and delete it"
    )]
    WholeFile { file: String, noun: &'static str, diff: String, script: String },
    #[error(
        "{0} is not a variant; a folder of decoys, alternatives or decoy tests holds only \
         NAME.{EXTENSION} files"
    )]
    Stray(String),
}

/// One decoy, alternative or decoy test of a kata.
#[derive(Debug, Clone)]
pub struct Decoy {
    pub kind: Kind,
    /// The file name without `.patch`.
    pub name: String,
    pub patch: PathBuf,
}

/// The patches of one kind for a kata, sorted by name, and a problem for every other file in
/// their folder.
pub fn find(
    course: &Course,
    kata: &Kata,
    kind: Kind,
) -> anyhow::Result<(Vec<Decoy>, Vec<DecoyError>)> {
    let (mut decoys, mut stray) = (Vec::new(), Vec::new());
    for path in course.variants(kind.folder(), kata)? {
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        match path.extension() {
            Some(ext) if ext == EXTENSION => decoys.push(Decoy { kind, name, patch: path }),
            Some(ext) if ext == "rs" => {
                let diff = diff_command(course, &kind.base(course, kata), &rel(course, &path));
                let (file, noun) = (rel(course, &path), kind.noun());
                let script = match kind {
                    Kind::DecoyTest => format!("scripts/new-decoy --test {} {file}", kata.name),
                    Kind::Decoy | Kind::Alternative => "scripts/new-decoy".to_owned(),
                };
                stray.push(DecoyError::WholeFile { file, noun, diff, script });
            }
            _ => stray.push(DecoyError::Stray(rel(course, &path))),
        }
    }
    Ok((decoys, stray))
}

/// Where [`Record`] lives, relative to the course root.
pub const RECORD: &str = "grader/decoys/rejected-by.toml";

/// The hidden test that rejected each decoy when `grader verify --record` last ran: a table per
/// kata (`[NN_slug]`), each entry `decoy name = "test name"`, in [`RECORD`].
///
/// `verify` builds a recorded decoy with that test alone (`workspace::Unit::focus`): the hidden
/// file is type-checked whole, but only that test is compiled to code, about a third of a whole
/// build. It is a saving, never a verdict: a decoy its recorded test does not reject on every run
/// (the hidden tests changed, or the test is gone) is built again with every test.
#[derive(Debug, Default)]
pub struct Record {
    tests: BTreeMap<String, BTreeMap<String, String>>,
}

impl Record {
    /// Reads [`RECORD`]; a missing file is an empty record.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a table of tables of strings.
    pub fn read(course: &Course) -> anyhow::Result<Record> {
        let path = course.root.join(RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(e) => anyhow::bail!("failed to read {RECORD}: {e}"),
        };
        let tests = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{RECORD} is not a table per kata of `decoy = \"test\"` entries ({e}); delete \
                 it and run `grader verify --record` to write it again"
            )
        })?;
        Ok(Record { tests })
    }

    /// The recorded test of a decoy, when there is one and it names a Rust function.
    pub fn test(&self, kata: &Kata, decoy: &str) -> Option<&str> {
        let test = self.tests.get(&kata.name)?.get(decoy)?;
        let name = test.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && test.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        name.then_some(test.as_str())
    }

    /// Replaces what is recorded for `kata` by `tests` (decoy name, test name).
    pub fn set(&mut self, kata: &Kata, tests: impl IntoIterator<Item = (String, String)>) {
        let tests: BTreeMap<_, _> = tests.into_iter().collect();
        if tests.is_empty() {
            self.tests.remove(&kata.name);
        } else {
            self.tests.insert(kata.name.clone(), tests);
        }
    }

    /// Writes [`RECORD`] when its text would change; says whether it did.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write(&self, course: &Course) -> anyhow::Result<bool> {
        let body = toml::to_string(&self.tests)?;
        let text = format!(
            "# Written by `grader verify --record`: for each kata's decoys, the hidden test that\n\
             # rejected each one. `grader verify` builds a decoy with that test alone, and with every\n\
             # test when that one does not reject it.\n\n{body}"
        );
        let path = course.root.join(RECORD);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        std::fs::write(&path, text).with_context(|| format!("failed to write {RECORD}"))?;
        Ok(true)
    }
}

/// The source a patch makes of the file its kind patches (`Kind::base`).
pub fn apply(course: &Course, kata: &Kata, decoy: &Decoy) -> Result<String, DecoyError> {
    apply_to(course, kata, decoy, &decoy.kind.base(course, kata))
}

/// The source a variant's patch makes of `base` (the exercise, the reference test, or a
/// write-the-test kata's shipped function, `crate::wtt`).
pub fn apply_to(
    course: &Course,
    kata: &Kata,
    decoy: &Decoy,
    exercise_path: &Path,
) -> Result<String, DecoyError> {
    let patch_name = rel(course, &decoy.patch);
    let exercise = rel(course, exercise_path);
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|source| DecoyError::Read { path: rel(course, path), source })
    };
    // Line endings are not the patch's business: a CRLF checkout applies as an LF one.
    let text = read(&decoy.patch)?.replace("\r\n", "\n");
    let base = read(exercise_path)?.replace("\r\n", "\n");
    let diff = || diff_command(course, &decoy.kind.base(course, kata), "wrong.rs");
    let regenerate = decoy.kind.regenerate();
    let patch = diffy::Patch::from_str(&text).map_err(|source| DecoyError::Parse {
        patch: patch_name.clone(),
        source,
        regenerate,
        diff: diff(),
    })?;
    if patch.hunks().is_empty() {
        return Err(DecoyError::Empty { patch: patch_name, exercise, regenerate, diff: diff() });
    }
    if explanation(&text).is_empty() {
        let (change, what) = decoy.kind.change();
        return Err(DecoyError::Unexplained { patch: patch_name, what, change });
    }
    diffy::apply(&base, &patch).map_err(|source| DecoyError::Apply {
        patch: patch_name,
        exercise,
        source,
        regenerate,
        diff: diff(),
    })
}

/// The explanation before a patch's diff (before its first `---`, `+++` or `@@` line), without
/// the blank lines around it.
pub fn explanation(patch: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = patch
        .lines()
        .take_while(|l| !["--- ", "+++ ", "@@ "].iter().any(|p| l.starts_with(p)))
        .skip_while(|l| l.trim().is_empty())
        .collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// Where the applied source of a variant is built from: under the grader's target area.
pub fn applied_path(course: &Course, kata: &Kata, decoy: &Decoy) -> PathBuf {
    workspace::grader_dir(course)
        .join(decoy.kind.folder())
        .join("applied")
        .join(&kata.name)
        .join(format!("{}.rs", decoy.name))
}

/// The command whose output is the diff part of a patch against `base`, with stable header lines.
fn diff_command(course: &Course, base: &Path, wrong: &str) -> String {
    let base = rel(course, base);
    format!("diff -u --label a/{base} --label b/{base} {base} {wrong}")
}

fn rel(course: &Course, path: &Path) -> String {
    path.strip_prefix(&course.root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::{BuildSection, Level};

    const EXERCISE: &str = "fn a() {}\n\nfn b() {\n    // TODO\n}\n";
    const PATCH: &str = "Empties b, which is wrong.\n\n\
        --- a/exercises/01_k/src/lib.rs\n+++ b/exercises/01_k/src/lib.rs\n\
        @@ -2,4 +2,3 @@\n \n fn b() {\n-    // TODO\n }\n";

    fn fixture(patch: &str) -> (tempfile::TempDir, Course, Decoy) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("exercises/01_k/src")).unwrap();
        std::fs::write(root.join("exercises/01_k/src/lib.rs"), EXERCISE).unwrap();
        std::fs::create_dir_all(root.join("grader/decoys/01_k")).unwrap();
        let path = root.join("grader/decoys/01_k/empty_b.patch");
        std::fs::write(&path, patch).unwrap();
        let kata = Kata {
            name: "01_k".into(),
            title: String::new(),
            level: Level::Beginner,
            points: 1,
            hints: vec![],
            timeout_secs: None,
            kind: crate::course::KataKind::Fix,
            bug: None,
        };
        let course = Course {
            root,
            draft: None,
            build: BuildSection { kata_dependencies: vec![], test_dependencies: vec![] },
            katas: vec![kata],
        };
        (dir, course, Decoy { kind: Kind::Decoy, name: "empty_b".into(), patch: path })
    }

    #[test]
    fn applies_a_patch_for_a_file_under_the_target_area() {
        let (_dir, course, decoy) = fixture(PATCH);
        let source = apply(&course, &course.katas[0], &decoy).unwrap();
        assert_eq!(source, "fn a() {}\n\nfn b() {\n}\n");
        let out = applied_path(&course, &course.katas[0], &decoy);
        assert!(out.starts_with(workspace::target_dir(&course)), "{}", out.display());
    }

    #[test]
    fn line_endings_do_not_matter() {
        // A checkout with CRLF endings (issue 13): the exercise, the patch, or both.
        for (exercise, patch) in [(true, false), (false, true), (true, true)] {
            let crlf =
                |text: &str, on: bool| if on { text.replace('\n', "\r\n") } else { text.into() };
            let (_dir, course, decoy) = fixture(&crlf(PATCH, patch));
            let lib = course.lib_rs(Tree::Exercises, &course.katas[0]);
            std::fs::write(lib, crlf(EXERCISE, exercise)).unwrap();
            let source = apply(&course, &course.katas[0], &decoy).unwrap();
            assert_eq!(source, "fn a() {}\n\nfn b() {\n}\n", "{exercise} {patch}");
        }
    }

    #[test]
    fn a_patch_that_no_longer_applies_says_to_regenerate_it() {
        let (_dir, course, decoy) = fixture(PATCH);
        std::fs::write(course.lib_rs(Tree::Exercises, &course.katas[0]), "fn c() {}\n").unwrap();
        let err = apply(&course, &course.katas[0], &decoy).unwrap_err().to_string();
        assert!(err.starts_with("grader/decoys/01_k/empty_b.patch no longer applies"), "{err}");
        assert!(err.contains("regenerate it") && err.contains("lib.rs wrong.rs`"), "{err}");
    }

    #[test]
    fn a_patch_needs_an_explanation_and_a_change() {
        let (_dir, course, decoy) = fixture(&PATCH[PATCH.find("---").unwrap()..]);
        let err = apply(&course, &course.katas[0], &decoy).unwrap_err();
        assert!(matches!(err, DecoyError::Unexplained { .. }), "{err}");
        let (_dir, course, decoy) = fixture("Says why, changes nothing.\n");
        let err = apply(&course, &course.katas[0], &decoy).unwrap_err();
        assert!(matches!(err, DecoyError::Empty { .. }), "{err}");
    }

    #[test]
    fn a_whole_file_decoy_is_a_problem_that_says_to_convert_it() {
        let (_dir, course, _) = fixture(PATCH);
        let dir = course.variant_dir("decoys", &course.katas[0]);
        std::fs::write(dir.join("old.rs"), EXERCISE).unwrap();
        let (decoys, stray) = find(&course, &course.katas[0], Kind::Decoy).unwrap();
        assert_eq!(decoys.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["empty_b"]);
        let [DecoyError::WholeFile { file, diff, .. }] = &stray[..] else { panic!("{stray:?}") };
        assert_eq!(file, "grader/decoys/01_k/old.rs");
        assert_eq!(
            diff,
            "diff -u --label a/exercises/01_k/src/lib.rs --label b/exercises/01_k/src/lib.rs \
             exercises/01_k/src/lib.rs grader/decoys/01_k/old.rs"
        );
    }

    #[test]
    fn a_decoy_test_is_a_patch_against_the_reference_test() {
        let (_dir, course, _) = fixture(PATCH);
        let kata = &course.katas[0];
        let reference = course.test_rs(Tree::Solutions, kata);
        std::fs::create_dir_all(reference.parent().unwrap()).unwrap();
        std::fs::write(&reference, EXERCISE).unwrap();
        let dir = course.variant_dir(Kind::DecoyTest.folder(), kata);
        std::fs::create_dir_all(&dir).unwrap();
        let weak = PATCH
            .replace("Empties b, which is wrong.", "Tests nothing in b, which is weak.")
            .replace("exercises/01_k/src/lib.rs", "solutions/01_k/tests/cancel.rs");
        std::fs::write(dir.join("weak.patch"), &weak).unwrap();
        std::fs::write(dir.join("old.rs"), EXERCISE).unwrap();

        let (found, stray) = find(&course, kata, Kind::DecoyTest).unwrap();
        let [test] = &found[..] else { panic!("{found:?}") };
        assert_eq!(apply(&course, kata, test).unwrap(), "fn a() {}\n\nfn b() {\n}\n");
        assert!(applied_path(&course, kata, test).starts_with(workspace::target_dir(&course)));
        // A whole weak test left in the folder says how to make it a patch.
        let [stray @ DecoyError::WholeFile { .. }] = &stray[..] else { panic!("{stray:?}") };
        let stray = stray.to_string();
        assert!(stray.starts_with("grader/decoy-tests/01_k/old.rs is a whole-file decoy test"));
        assert!(stray.contains("diff -u --label a/solutions/01_k/tests/cancel.rs"), "{stray}");
        assert!(
            stray.contains("`scripts/new-decoy --test 01_k grader/decoy-tests/01_k/old.rs`"),
            "{stray}"
        );

        // The reference test changed under the patch: which patch, against what, and how to redo it.
        std::fs::write(&reference, "fn c() {}\n").unwrap();
        let err = apply(&course, kata, test).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "grader/decoy-tests/01_k/weak.patch no longer applies to \
                 solutions/01_k/tests/cancel.rs"
            ),
            "{err}"
        );
        assert!(err.contains("a copy of the reference test (wrong.rs)"), "{err}");
        assert!(err.contains("solutions/01_k/tests/cancel.rs wrong.rs`"), "{err}");

        std::fs::write(dir.join("weak.patch"), &weak[weak.find("---").unwrap()..]).unwrap();
        let err = apply(&course, kata, test).unwrap_err().to_string();
        assert!(err.contains("say there what the weak test does and why it is weak"), "{err}");
    }
}
