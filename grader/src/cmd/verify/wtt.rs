//! The contract of a write-the-test kata (`crate::wtt`, CONTRIBUTING.md): its files, its versions
//! of the function, and its tests. The shipped skeleton must not pass (it catches nothing), the
//! reference test must pass (every wrong version caught, every right one passed), and every decoy
//! test (`grader/decoy-tests/NN_slug/NAME.rs`, a plausible weak test) must build and be rejected;
//! each of them runs `--repeat` times from one build and must give the same outcome every run.

use std::path::Path;

use crate::course::{Course, Kata, Level, Tree};
use crate::grade::{Options, Status, UnitResult};
use crate::progress::Progress;
use crate::wtt::{self, Submission, VariantKind};

/// Sections of a write-the-test exercise's README.
const EXERCISE_SECTIONS: &[&str] = &[
    "## The story",
    "## What the function promises",
    "## What a good test shows",
    "## Using the explorer",
    "## Your task",
    "## Further reading",
];
/// Sections of its solution's README.
const SOLUTION_SECTIONS: &[&str] =
    &["## The reference test", "## What each part catches", "## Weak tests"];

/// The files every write-the-test kata must have, and what they must hold.
pub fn check_files(course: &Course, kata: &Kata) -> anyhow::Result<Vec<String>> {
    let mut problems = super::missing_files_and_sections(
        course,
        kata,
        &["Cargo.toml", "README.md", "src/lib.rs", "tests/cancel.rs"],
        EXERCISE_SECTIONS,
        SOLUTION_SECTIONS,
    );
    if kata.level != Level::WriteTheTest {
        problems.push("a write-the-test kata has `level = \"write-the-test\"`".into());
    }
    let exercise = course.lib_rs(Tree::Exercises, kata);
    let function = wtt::function_rs(course, kata);
    if read(&exercise) != read(&function) {
        problems.push(format!(
            "{} differs from {}: the function under test ships as the exercise, byte for byte \
             (copy it over, then regenerate the patches if they no longer apply)",
            rel(course, &exercise),
            rel(course, &function)
        ));
    }
    if !read(&course.test_rs(Tree::Exercises, kata)).contains("// TODO") {
        problems
            .push("the exercise's tests/cancel.rs has no `// TODO` where the learner works".into());
    }
    let (found, variant_problems) = wtt::variants(course, kata)?;
    problems.extend(variant_problems);
    let wrong = found.iter().filter(|v| v.kind == VariantKind::Wrong).count();
    if wrong < 2 {
        problems.push(
            "has no wrong patch; at least one wrong version besides the shipped function is \
             required (more, and subtler, make a better kata)"
                .into(),
        );
    }
    match found.iter().find(|v| v.kind == VariantKind::Right && v.name == "solution") {
        None => problems.push("has no right/solution.patch (the solution's function)".into()),
        Some(solution) => {
            let solution_lib = course.lib_rs(Tree::Solutions, kata);
            if code(&read(&solution.source)) != code(&read(&solution_lib)) {
                problems.push(format!(
                    "right/solution.patch does not make {} (below its `//!` header); regenerate \
                     it from the solution",
                    rel(course, &solution_lib)
                ));
            }
        }
    }
    for description in found.iter().map(|v| &v.description) {
        if description.is_empty() || description.len() > 160 {
            problems.push(format!(
                "a version's description must be one line of at most 160 characters: `{description}`"
            ));
        }
    }
    let decoys = decoy_tests(course, kata);
    if decoys.len() < 2 {
        problems.push(format!(
            "has {} decoy test(s) in {}; at least 2 plausible weak tests are required",
            decoys.len(),
            rel(course, &wtt::decoy_tests_dir(course, kata))
        ));
    }
    for decoy in &decoys {
        if decoy.extension().is_none_or(|e| e != "rs") {
            problems.push(format!("{} is not a decoy test (NAME.rs)", rel(course, decoy)));
        } else if !read(decoy).starts_with("//!") {
            problems.push(format!(
                "{} does not open with a `//!` block saying why the test is weak",
                rel(course, decoy)
            ));
        }
    }
    Ok(problems)
}

/// The source below its leading `//!` block.
fn code(source: &str) -> String {
    source.lines().skip_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n")
}

fn decoy_tests(course: &Course, kata: &Kata) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(wtt::decoy_tests_dir(course, kata))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs the skeleton, the reference test and the decoy tests of `katas` against their versions,
/// and notes every broken promise; returns the count of decoy tests rejected per kata.
pub fn check_behaviour(
    course: &Course,
    katas: &[&Kata],
    options: &Options,
    repeat: usize,
    progress: &Progress,
    note: &mut impl FnMut(&Kata, String),
) -> anyhow::Result<Vec<usize>> {
    let index = |kata: &Kata| course.katas.iter().position(|k| k.name == kata.name).unwrap_or(0);
    let mut submissions = Vec::new();
    let mut roles = Vec::new();
    for kata in katas {
        for (role, tree) in [(Role::Skeleton, Tree::Exercises), (Role::Reference, Tree::Solutions)]
        {
            submissions.push(Submission::of_tree(course, tree, index(kata)));
            roles.push(role);
        }
        for decoy in decoy_tests(course, kata)
            .into_iter()
            .filter(|d| d.extension().is_some_and(|e| e == "rs"))
        {
            let name = decoy.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            submissions.push(Submission {
                kata: index(kata),
                test: decoy,
                label: format!("{}/{name}", kata.name),
                root: course.root.clone(),
            });
            roles.push(Role::Decoy);
        }
    }
    let judged = wtt::judge(course, "wtt-verify", &submissions, options, repeat, progress)?;
    let mut rejected = vec![0; katas.len()];
    for ((submission, role), judged) in submissions.iter().zip(roles).zip(judged) {
        let kata = &course.katas[submission.kata];
        let result = &judged.result;
        let what = match role {
            Role::Skeleton => "the exercise's tests/cancel.rs (the skeleton)".to_owned(),
            Role::Reference => "the reference test (solutions/.../tests/cancel.rs)".to_owned(),
            Role::Decoy => format!("decoy test {}", result.name),
        };
        for flaky in &judged.nondeterministic {
            note(
                kata,
                format!(
                    "{what} is nondeterministic over {repeat} runs of one build against {flaky}; \
                     a test must give the same verdict every run"
                ),
            );
        }
        match (role, result.status) {
            (Role::Skeleton | Role::Decoy, Status::Failed) => {
                if role == Role::Decoy
                    && let Some(i) = katas.iter().position(|k| k.name == kata.name)
                {
                    rejected[i] += 1;
                }
            }
            (Role::Skeleton, Status::Passed) => {
                note(kata, format!("{what} passes the kata as shipped; it must catch nothing"));
            }
            (Role::Decoy, Status::Passed) => note(
                kata,
                format!(
                    "{what} passes the kata; a weak test must miss a bug or fail a right version"
                ),
            ),
            (Role::Reference, Status::Passed) => {}
            (_, status) => note(kata, format!("{what}: {}: {}", status.label(), why(result))),
        }
    }
    Ok(rejected)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Skeleton,
    Reference,
    Decoy,
}

/// Why a judged test did not pass, with every version it got wrong.
fn why(result: &UnitResult) -> String {
    let bad: Vec<String> = result
        .variants
        .iter()
        .filter(|v| !v.verdict.good())
        .map(|v| format!("{} {}", v.verdict.label(), v.name))
        .collect();
    if bad.is_empty() { crate::report::reason(result) } else { bad.join(", ") }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn rel(course: &Course, path: &Path) -> String {
    path.strip_prefix(&course.root).unwrap_or(path).display().to_string()
}
