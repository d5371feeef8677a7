//! The contract of a write-the-test kata (`crate::wtt`, CONTRIBUTING.md): its files, its versions
//! of the function, and its tests. The shipped skeleton must not pass (it catches nothing), the
//! reference test must pass (every wrong version caught, every right one passed), and every decoy
//! test must build and be rejected; each of them runs `--repeat` times from one build and must give
//! the same outcome every run.
//!
//! A decoy test, a plausible weak test, is `grader/decoy-tests/NN_slug/NAME.patch`: what the test
//! does and what it misses, then a diff against the reference test (`crate::decoy`, as a fix kata's
//! decoys are diffs against its exercise). It is applied to a file under the grader's target area,
//! with its explanation as the `//!` block in place of the reference test's, and judged as a
//! learner's test; a patch that no longer applies, and any other file in the folder (an old
//! whole-file `NAME.rs`), are contract problems.
//!
//! The explanation ends with the versions the weak test gets wrong, as a line
//! `Misjudges: wrong/NAME, right/NAME` ([`MISJUDGES`]): the decoy test is built against those
//! versions only, and each must be misjudged (a wrong one passed, a right one failed). A weak test
//! is rejected by one version it gets wrong; building it against every version, as a learner's
//! test is, would cost a build per version and prove no more.

use std::path::Path;

use crate::course::{Course, Kata, Level, Tree};
use crate::decoy::{self, Kind};
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
    // The patches themselves are applied, and their problems noted, in `check_behaviour`.
    let decoys = decoy::find(course, kata, Kind::DecoyTest)?.0.len();
    if decoys < 2 {
        problems.push(format!(
            "has {decoys} decoy test(s) in {}; at least 2 plausible weak tests are required",
            rel(course, &course.variant_dir(Kind::DecoyTest.folder(), kata))
        ));
    }
    Ok(problems)
}

/// How a decoy test's explanation names the versions it gets wrong.
const MISJUDGES: &str = "Misjudges:";

/// The versions a decoy test's explanation says it gets wrong (`wrong/NAME` or `right/NAME`), in
/// the order written; empty when it names none.
fn misjudged(patch: &str) -> Vec<String> {
    decoy::explanation(patch)
        .iter()
        .filter_map(|line| line.strip_prefix(MISJUDGES))
        .flat_map(|names| names.split(','))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// A decoy test as its author wrote it: the patch's explanation as its leading `//!` block, in
/// place of the reference test's (which says the test catches every wrong version), so that the
/// file judged, and every message about it, reads as the weak test.
fn as_written(patch: &str, applied: &str) -> String {
    let mut test = String::new();
    for line in decoy::explanation(patch).into_iter().filter(|l| !l.starts_with(MISJUDGES)) {
        test.push_str(if line.is_empty() { "//!" } else { "//! " });
        test.push_str(line);
        test.push('\n');
    }
    test.extend(applied.split_inclusive('\n').skip_while(|l| l.starts_with("//!")));
    test
}

/// The source below its leading `//!` block.
fn code(source: &str) -> String {
    source.lines().skip_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n")
}

/// Applies the decoy tests of `katas`, runs them, the skeleton and the reference test against the
/// katas' versions, and notes every broken promise (a decoy test that cannot be applied included);
/// returns the count of decoy tests rejected per kata.
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
        let ids: Vec<String> = wtt::variants(course, kata)?.0.iter().map(|v| v.id()).collect();
        for (role, tree) in [(Role::Skeleton, Tree::Exercises), (Role::Reference, Tree::Solutions)]
        {
            submissions.push(Submission::of_tree(course, tree, index(kata)));
            roles.push(role);
        }
        let (found, stray) = decoy::find(course, kata, Kind::DecoyTest)?;
        for problem in stray {
            note(kata, problem.to_string());
        }
        for decoy in found {
            let source = match decoy::apply(course, kata, &decoy) {
                Ok(source) => source,
                Err(problem) => {
                    note(kata, problem.to_string());
                    continue;
                }
            };
            let patch = read(&decoy.patch).replace("\r\n", "\n");
            let test = decoy::applied_path(course, kata, &decoy);
            crate::workspace::write_if_changed(&test, &as_written(&patch, &source))?;
            let named = misjudged(&patch);
            let unknown: Vec<&str> =
                named.iter().filter(|n| !ids.contains(n)).map(|n| n.as_str()).collect();
            if !unknown.is_empty() {
                note(
                    kata,
                    format!(
                        "decoy test {}/{} says it misjudges {}, which {} no version of the \
                         function; the versions are {}",
                        kata.name,
                        decoy.name,
                        unknown.join(", "),
                        if unknown.len() == 1 { "is" } else { "are" },
                        ids.join(", ")
                    ),
                );
                continue;
            }
            submissions.push(Submission {
                kata: index(kata),
                test,
                label: format!("{}/{}", kata.name, decoy.name),
                root: course.root.clone(),
                // Named none: judged against every version, so the note can say which it misses.
                only: (!named.is_empty()).then_some(named),
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
        let judged_all = matches!(result.status, Status::Failed | Status::Passed);
        if role == Role::Decoy && judged_all {
            let named = |good: bool| -> Vec<String> {
                result
                    .variants
                    .iter()
                    .filter(|v| v.verdict.good() == good)
                    .map(|v| v.id())
                    .collect()
            };
            match &submission.only {
                None if result.status == Status::Failed => {
                    note(
                        kata,
                        format!(
                            "{what} names no version it gets wrong: end its explanation with the \
                             line `{MISJUDGES} {}`, so that verify builds it against those only",
                            named(false).join(", ")
                        ),
                    );
                    continue;
                }
                Some(only) if !named(true).is_empty() => {
                    note(
                        kata,
                        format!(
                            "{what} is said to misjudge {}, but it judges {} right; name only the \
                             versions it gets wrong",
                            only.join(", "),
                            named(true).join(", ")
                        ),
                    );
                    continue;
                }
                _ => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoy_test_is_judged_with_its_explanation_in_place_of_the_references() {
        let patch =
            "Cuts once, early:\n\nmisses a leak at the second cut.\n\n--- a/t.rs\n+++ b/t.rs\n";
        let applied =
            "//! The reference test.\n//!\n//! It catches everything.\n\nuse a;\n//! no\n";
        assert_eq!(
            as_written(patch, applied),
            "//! Cuts once, early:\n//!\n//! misses a leak at the second cut.\n\nuse a;\n//! no\n"
        );
    }

    #[test]
    fn a_decoy_test_names_the_versions_it_misjudges_and_the_test_does_not_show_them() {
        let patch = "Cuts once:\n\nmisses two.\nMisjudges: wrong/late_requeue,  right/undo\n\n\
                     --- a/t.rs\n+++ b/t.rs\n";
        assert_eq!(misjudged(patch), ["wrong/late_requeue", "right/undo"]);
        assert_eq!(
            as_written(patch, "//! Ref.\nuse a;\n"),
            "//! Cuts once:\n//!\n//! misses two.\nuse a;\n"
        );
        assert!(misjudged("Cuts once.\n--- a/t.rs\n").is_empty());
    }
}
