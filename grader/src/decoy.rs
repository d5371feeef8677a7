//! Variants of a kata's exercise, each stored as a unified diff against it, so that the file reads
//! as the fix itself: decoys (`grader/decoys/NN_slug/NAME.patch`), plausible wrong fixes the hidden
//! tests must reject, and accepted alternatives (`grader/alternatives/NN_slug/NAME.patch`), right
//! fixes other than the solution that the hidden tests must pass.
//!
//! The text before the first `---` line, which diff tools ignore, explains what the fix does and
//! why it is wrong (or right). `verify` applies each patch with `diffy` to a file under the grader's
//! own target area and builds that file as the variant's `src/lib.rs`.

use std::path::{Path, PathBuf};

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
}

impl Kind {
    /// The folder under `grader/`, and the name of the set the grader builds it in.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Decoy => "decoys",
            Kind::Alternative => "alternatives",
        }
    }

    /// What a report calls one.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Decoy => "decoy",
            Kind::Alternative => "alternative",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Kind::Decoy => "wrong",
            Kind::Alternative => "right",
        }
    }
}

/// Why a decoy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DecoyError {
    #[error("failed to read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{patch} is not a unified diff ({source}); {REGENERATE} `{diff}`")]
    Parse { patch: String, source: diffy::ParsePatchError, diff: String },
    #[error("{patch} no longer applies to {exercise} ({source}); {REGENERATE} `{diff}`")]
    Apply { patch: String, exercise: String, source: diffy::ApplyError, diff: String },
    #[error("{patch} changes nothing in {exercise}; {REGENERATE} `{diff}`")]
    Empty { patch: String, exercise: String, diff: String },
    #[error(
        "{patch} has no explanation before its `---` line; say there what the {fix} fix does and \
         why it is {fix}"
    )]
    Unexplained { patch: String, fix: &'static str },
    #[error(
        "{file} is a whole-file {noun}; convert it to a .{EXTENSION} file (the explanation, a \
         blank line, then `{diff}`; `scripts/new-decoy` does this) and delete it"
    )]
    WholeFile { file: String, noun: &'static str, diff: String },
    #[error(
        "{0} is not a variant; a decoy or alternative folder holds only NAME.{EXTENSION} files"
    )]
    Stray(String),
}

/// One decoy or alternative of a kata.
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
                let diff = diff_command(course, kata, &rel(course, &path));
                let (file, noun) = (rel(course, &path), kind.noun());
                stray.push(DecoyError::WholeFile { file, noun, diff });
            }
            _ => stray.push(DecoyError::Stray(rel(course, &path))),
        }
    }
    Ok((decoys, stray))
}

/// The source a decoy's patch makes of its kata's exercise.
pub fn apply(course: &Course, kata: &Kata, decoy: &Decoy) -> Result<String, DecoyError> {
    apply_to(course, kata, decoy, &course.lib_rs(Tree::Exercises, kata))
}

/// The source a variant's patch makes of `base` (the exercise, or a write-the-test kata's shipped
/// function, `crate::wtt`).
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
    let diff = || diff_command(course, kata, "wrong.rs");
    let patch = diffy::Patch::from_str(&text).map_err(|source| DecoyError::Parse {
        patch: patch_name.clone(),
        source,
        diff: diff(),
    })?;
    if patch.hunks().is_empty() {
        return Err(DecoyError::Empty { patch: patch_name, exercise, diff: diff() });
    }
    let preamble =
        text.lines().take_while(|l| !["--- ", "+++ ", "@@ "].iter().any(|p| l.starts_with(p)));
    if preamble.clone().all(|l| l.trim().is_empty()) {
        return Err(DecoyError::Unexplained { patch: patch_name, fix: decoy.kind.fix() });
    }
    diffy::apply(&base, &patch).map_err(|source| DecoyError::Apply {
        patch: patch_name,
        exercise,
        source,
        diff: diff(),
    })
}

/// Where the applied source of a variant is built from: under the grader's target area.
pub fn applied_path(course: &Course, kata: &Kata, decoy: &Decoy) -> PathBuf {
    workspace::grader_dir(course)
        .join(decoy.kind.folder())
        .join("applied")
        .join(&kata.name)
        .join(format!("{}.rs", decoy.name))
}

/// What a problem with a patch asks for.
const REGENERATE: &str = "regenerate it: make the fix in a copy of the exercise (wrong.rs), keep \
                          the explanation and replace the diff with";

/// The command whose output is the diff part of a decoy, with stable header lines.
fn diff_command(course: &Course, kata: &Kata, wrong: &str) -> String {
    let exercise = rel(course, &course.lib_rs(Tree::Exercises, kata));
    format!("diff -u --label a/{exercise} --label b/{exercise} {exercise} {wrong}")
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
}
