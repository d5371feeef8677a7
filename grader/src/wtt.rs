//! Write-the-test katas (`kind = "write-the-test"`): the learner is given a function and writes
//! its cancellation test, `exercises/NN_slug/tests/cancel.rs`; the grader runs that test against
//! every version of the function it keeps, and the kata passes when the test fails against every
//! wrong version and passes against every right one.
//!
//! The versions ("variants") live in `grader/variants/NN_slug/`: `function.rs`, the function as
//! shipped (the exercise's `src/lib.rs`, a wrong version named `shipped` whose bug is the
//! manifest's `bug` line), and `wrong/NAME.patch` and `right/NAME.patch`, unified diffs against it
//! in the decoys' format (`crate::decoy`); the first line of a patch's preamble is the one line a
//! learner is shown, never the source. `right/solution.patch` is the solution's function.
//! `src/lib.rs` is not the learner's to edit: the grader builds `function.rs` and its patches,
//! never the learner's copy, and says so when the copy differs.
//!
//! Each version is a unit of its own (`workspace::Unit::tests` names the learner's test), built
//! and run by `grade::grade_repeated` in the same sandboxes as hidden tests: the test is hostile
//! code. A test must not tell the versions apart by anything but behaviour:
//! - `scan` refuses, before anything is built, what reads files, the environment, the executable,
//!   the clock, sizes, addresses or source locations, and a `main` of its own;
//! - the test crate is built with `unsafe` forbidden, and runs with no `/proc`, no course, no target
//!   directory and an empty environment (`crate::sandbox`);
//! - the versions' packages are numbered in an order the test cannot know, so whatever the build
//!   lets slip about which package it is names a slot, not a version (`slots`): an order drawn
//!   from a random salt kept in the target directory, so that a second check on one machine finds
//!   every version where its build already is; in CI (`CI` set, as GitHub Actions and most CI
//!   services set it), where a class is graded and a learner sees each run's report, a fresh
//!   order on every run;
//! - what is built is the copy that was scanned (a save in between cannot slip past the scan);
//! - compiler messages are shown only when the test builds against no version at all, and then
//!   those of the shipped function, which the learner has: a message can quote the source;
//! - a report names each version, so it says of a wrong version only caught or missed, never what
//!   the test printed against it, which of its tests failed or how long they ran: otherwise a test
//!   that measures something and fails would tell every version's measure in one run. What a test
//!   said against a right version it failed is shown: the learner needs it to fix the test.

pub mod scan;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::course::{Course, Kata, Tree};
use crate::decoy::{self, Decoy, Kind};
use crate::grade::{self, Options, Status, TestResult, UnitResult};
use crate::progress::Progress;
use crate::run::Outcome;
use crate::workspace::{self, Unit};

/// The learner's test file, under the kata's `tests/`.
pub const TEST_FILE: &str = "cancel.rs";
/// The shipped function's name as a variant.
pub const SHIPPED: &str = "shipped";
/// The shipped function, in the kata's variant folder.
const FUNCTION: &str = "function.rs";

/// Whether a version of the function is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantKind {
    Wrong,
    Right,
}

impl VariantKind {
    fn folder(self) -> &'static str {
        match self {
            VariantKind::Wrong => "wrong",
            VariantKind::Right => "right",
        }
    }
}

/// What the learner's test did against one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A wrong version, and the test failed: good.
    Caught,
    /// A wrong version, and the test passed.
    Missed,
    /// A right version, and the test passed: good.
    Passed,
    /// A right version, and the test failed.
    FalselyFailed,
}

impl Verdict {
    /// Whether the test did what a good test does.
    pub fn good(self) -> bool {
        matches!(self, Verdict::Caught | Verdict::Passed)
    }

    /// The verdict in a word or two.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Caught => "caught",
            Verdict::Missed => "missed",
            Verdict::Passed => "passed",
            Verdict::FalselyFailed => "falsely failed",
        }
    }
}

/// One version's line in a write-the-test kata's report (`variants` in the JSON report).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    pub name: String,
    pub kind: VariantKind,
    pub verdict: Verdict,
    /// The one line a learner is shown instead of the version's source.
    pub description: String,
    /// The learner's tests that failed against this version, with what they said: only for a
    /// right version (what the learner must fix). Against a wrong version the verdict alone is
    /// reported: what a test printed there, by version, would tell the versions apart outside
    /// the test (SECURITY.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<TestResult>,
}

impl VariantResult {
    /// The version as a maintainer names it, as [`Variant::id`] does.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.folder(), self.name)
    }
}

/// One version of a kata's function, ready to build.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub kind: VariantKind,
    pub description: String,
    /// The source to build as the kata's `src/lib.rs`.
    pub source: PathBuf,
}

impl Variant {
    /// The version as a maintainer names it: `wrong/NAME` or `right/NAME` after its patch
    /// (`wrong/shipped` for the shipped function).
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.folder(), self.name)
    }
}

/// `grader/variants/NN_slug`.
pub fn dir(course: &Course, kata: &Kata) -> PathBuf {
    course.root.join("grader").join("variants").join(&kata.name)
}

/// The shipped function every variant is a patch against.
pub fn function_rs(course: &Course, kata: &Kata) -> PathBuf {
    dir(course, kata).join(FUNCTION)
}

/// Every file under the kata's variant folder, in path order: inputs of its verdicts.
pub fn variant_files(course: &Course, kata: &Kata) -> Vec<PathBuf> {
    let mut files = vec![function_rs(course, kata)];
    for kind in [VariantKind::Wrong, VariantKind::Right] {
        files.extend(sorted_entries(&dir(course, kata).join(kind.folder())));
    }
    files.retain(|f| f.is_file());
    files
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// The kata's versions (the shipped function first, then the wrong and the right patches by
/// name), and a problem for every file that cannot be one.
pub fn variants(course: &Course, kata: &Kata) -> anyhow::Result<(Vec<Variant>, Vec<String>)> {
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    let function = function_rs(course, kata);
    if !function.is_file() {
        problems.push(format!(
            "{} is missing: it is the shipped function, which every variant patches",
            rel(course, &function)
        ));
        return Ok((found, problems));
    }
    found.push(Variant {
        name: SHIPPED.into(),
        kind: VariantKind::Wrong,
        description: kata.bug.clone().unwrap_or_default(),
        source: function.clone(),
    });
    for kind in [VariantKind::Wrong, VariantKind::Right] {
        for path in sorted_entries(&dir(course, kata).join(kind.folder())) {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            if path.extension().is_none_or(|e| e != decoy::EXTENSION) || name == SHIPPED {
                problems.push(format!(
                    "{} is not a variant; {}/ holds only NAME.{} files (not `{SHIPPED}`)",
                    rel(course, &path),
                    kind.folder(),
                    decoy::EXTENSION
                ));
                continue;
            }
            let fix = if kind == VariantKind::Wrong { Kind::Decoy } else { Kind::Alternative };
            let patch = Decoy { kind: fix, name: name.clone(), patch: path.clone() };
            let source = match decoy::apply_to(course, kata, &patch, &function) {
                Ok(source) => source,
                Err(problem) => {
                    problems.push(problem.to_string());
                    continue;
                }
            };
            let applied = workspace::grader_dir(course)
                .join("wtt-applied")
                .join(&kata.name)
                .join(format!("{}-{name}.rs", kind.folder()));
            workspace::write_if_changed(&applied, &source)?;
            found.push(Variant { name, kind, description: description(&path), source: applied });
        }
    }
    if !found.iter().any(|v| v.kind == VariantKind::Right) {
        problems.push(format!(
            "{} has no right variant; add right/solution.patch, the solution's function",
            rel(course, &dir(course, kata))
        ));
    }
    Ok((found, problems))
}

/// The first line of a patch's explanation: what a learner is told about the version.
fn description(patch: &Path) -> String {
    let text = std::fs::read_to_string(patch).unwrap_or_default();
    text.lines()
        .take_while(|l| !l.starts_with("--- "))
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// One test file to judge against a kata's versions.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Index of the kata in the course.
    pub kata: usize,
    pub test: PathBuf,
    /// What the verdict is called: the kata's name, or `kata/decoy-test` in `verify`.
    pub label: String,
    /// What the test's path is shown relative to: the course root, or the private copy of a
    /// student's sources that `grader grade` builds from.
    pub root: PathBuf,
    /// Judge against these versions only, each as [`Variant::id`] gives it; `None` for every
    /// version. `verify` judges a decoy test only against the versions it is said to misjudge.
    pub only: Option<Vec<String>>,
}

impl Submission {
    /// The test in `tree` of the course, for kata `kata`.
    pub fn of_tree(course: &Course, tree: Tree, kata: usize) -> Submission {
        Submission {
            kata,
            test: course.test_rs(tree, &course.katas[kata]),
            label: course.katas[kata].name.clone(),
            root: course.root.clone(),
            only: None,
        }
    }

    fn shown(&self) -> String {
        self.test.strip_prefix(&self.root).unwrap_or(&self.test).display().to_string()
    }
}

/// A judged test file: its verdict, and (for a repeated run) what changed between runs.
#[derive(Debug, Clone)]
pub struct Judged {
    pub result: UnitResult,
    /// Whether a test timed out against some version: the verdict depends on the machine's load.
    pub timed_out: bool,
    /// `version: test (outcome, outcome, ..)` for every learner test whose outcome changed.
    pub nondeterministic: Vec<String>,
}

/// Judges each submission against every version of its kata's function, all built together in
/// the generated workspace `set`, each test run `repeat` times from one build.
pub fn judge(
    course: &Course,
    set: &str,
    submissions: &[Submission],
    options: &Options,
    repeat: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<Judged>> {
    let mut judged: Vec<Option<Judged>> = vec![None; submissions.len()];
    let mut versions: Vec<Vec<Variant>> = vec![Vec::new(); submissions.len()];
    let (mut units, mut owners) = (Vec::new(), Vec::new());
    let mut snapshots: Vec<Option<PathBuf>> = vec![None; submissions.len()];
    let scanned = workspace::grader_dir(course).join("wtt-scanned").join(set);
    for (j, submission) in submissions.iter().enumerate() {
        let kata = &course.katas[submission.kata];
        let mut base = base_result(kata, submission);
        let done = |result| Some(Judged { result, timed_out: false, nondeterministic: Vec::new() });
        let Ok(source) = std::fs::read(&submission.test) else {
            base.status = Status::CompileError;
            base.compile_errors = vec![format!(
                "{} is missing; write your test there (`{}` restores the skeleton)",
                base.file,
                crate::invoked::command(&format!("reset {}", kata.number()))
            )];
            judged[j] = done(base);
            continue;
        };
        let source = String::from_utf8_lossy(&source).into_owned();
        let refused = scan::scan(&source);
        if !refused.is_empty() {
            base.status = Status::CompileError;
            base.compile_errors = refused
                .iter()
                .map(|r| {
                    let anywhere = if r.anywhere {
                        format!(
                            "\n  = note: the name `{}` is refused wherever it appears, so that no \
                             import or path can hide it; if it names something of your own, \
                             rename that",
                            r.what
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "error: `{}` is not allowed in a write-the-test kata: it {}\n  --> {}:{}:{}\n  \
                         = help: {}{anywhere}\n  \
                         = note: a test must tell the versions of the function apart by what they \
                         do, through their public API",
                        r.what, r.why, base.file, r.line, r.column, r.help
                    )
                })
                .collect();
            judged[j] = done(base);
            continue;
        }
        let (found, problems) = variants(course, kata)?;
        if !problems.is_empty() {
            base.status = Status::Error;
            base.error = Some(format!(
                "the course's versions of this function are broken ({}); restore the course \
                 (git checkout -- grader/variants)",
                problems.join("; ")
            ));
            judged[j] = done(base);
            continue;
        }
        // What was scanned is what is built: a copy, at the learner's relative path below a root
        // of its own, so that compiler messages name the learner's file.
        // Named by this process too: a `watch` and a `check` at once must not swap their tests.
        let root = scanned.join(format!("{}-{j}", std::process::id()));
        let snapshot = root.join(submission.shown());
        workspace::write_if_changed(&snapshot, &source)?;
        snapshots[j] = Some(snapshot.clone());
        for (slot, &v) in slots(course, &found)?.iter().enumerate() {
            if submission.only.as_ref().is_some_and(|only| !only.contains(&found[v].id())) {
                continue;
            }
            units.push(Unit {
                kata: submission.kata,
                label: format!("{}/t{j}v{slot}", kata.name),
                lib_rs: found[v].source.clone(),
                root: root.clone(),
                tests: Some(snapshot.clone()),
                focus: None,
            });
            owners.push((j, v));
        }
        versions[j] = found;
    }
    let options = Options { explain: false, cache: false, ..options.clone() };
    let (results, flaky) = if units.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        grade::grade_repeated(course, set, &units, &options, grade::Runs::Every(repeat), progress)?
    };
    for (j, submission) in submissions.iter().enumerate() {
        if judged[j].is_some() {
            continue;
        }
        let mut mine: Vec<(usize, &UnitResult)> = owners
            .iter()
            .zip(&results)
            .filter(|((owner, _), _)| *owner == j)
            .map(|((_, v), result)| (*v, result))
            .collect();
        mine.sort_by_key(|(v, _)| *v);
        let mine: Vec<(&Variant, &UnitResult)> =
            mine.into_iter().map(|(v, result)| (&versions[j][v], result)).collect();
        let kata = &course.katas[submission.kata];
        let mut base = base_result(kata, submission);
        // The hash of what was built, not of what the file holds now.
        let built =
            snapshots[j].as_ref().and_then(|s| crate::stage::read(s, Path::new(&base.file)).ok());
        base.source_hash = built.map(|sources| sources.hash);
        let nondeterministic = flaky
            .iter()
            .filter(|f| owners[f.unit].0 == j)
            .map(|f| {
                let seen: Vec<&str> = f.outcomes.iter().map(|o| outcome_label(*o)).collect();
                let version = &versions[j][owners[f.unit].1];
                format!(
                    "{} {}: `{}` ({})",
                    version.kind.folder(),
                    version.name,
                    f.test,
                    seen.join(", ")
                )
            })
            .collect();
        let timed_out = mine
            .iter()
            .flat_map(|(_, result)| &result.tests)
            .any(|t| t.status == Outcome::TimedOut);
        let result = verdict(course, kata, base, &mine);
        judged[j] = Some(Judged { result, timed_out, nondeterministic });
    }
    for snapshot in snapshots.iter().flatten() {
        // `<scanned>/<pid>-<j>/<the learner's path>`: the copy's own root goes.
        if let Some(root) = snapshot.ancestors().find(|a| a.parent() == Some(scanned.as_path())) {
            let _ = std::fs::remove_dir_all(root);
        }
    }
    Ok(judged.into_iter().map(|j| j.expect("every submission judged")).collect())
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timed out",
    }
}

/// A kata's result before its verdict: named, pointing at the test file.
fn base_result(kata: &Kata, submission: &Submission) -> UnitResult {
    let file = submission.shown();
    let source_hash = crate::stage::read(&submission.test, Path::new(&file)).ok().map(|s| s.hash);
    UnitResult {
        name: submission.label.clone(),
        number: kata.number(),
        title: kata.title.clone(),
        level: kata.level,
        status: Status::Failed,
        points: 0,
        max_points: kata.points,
        file,
        compile_errors: Vec::new(),
        warnings: Vec::new(),
        tests: Vec::new(),
        source_hash,
        error: None,
        variants: Vec::new(),
        advice: None,
        kind: crate::course::KataKind::WriteTheTest,
    }
}

/// The kata's verdict from the results of its versions, in variant order.
fn verdict(
    course: &Course,
    kata: &Kata,
    mut base: UnitResult,
    versions: &[(&Variant, &UnitResult)],
) -> UnitResult {
    let unbuilt = versions.iter().filter(|(_, r)| r.status == Status::CompileError).count();
    if unbuilt == versions.len() {
        base.status = Status::CompileError;
        // The shipped function's: the learner has its source, and a message may quote it.
        let shipped = versions.iter().find(|(v, _)| v.name == SHIPPED).unwrap_or(&versions[0]);
        base.compile_errors = shipped.1.compile_errors.clone();
        return base;
    }
    if unbuilt > 0 {
        base.status = Status::CompileError;
        base.compile_errors = vec![format!(
            "error: your test builds against {} of the {} versions of the function, not all of \
             them: use only the public API of {}, which every version shares (the compiler's \
             messages are not shown: they would quote a version's source)",
            versions.len() - unbuilt,
            versions.len(),
            rel(course, &course.lib_rs(Tree::Exercises, kata))
        )];
        return base;
    }
    const NO_TESTS: &str = "the hidden test file declares no tests";
    if versions.iter().all(|(_, r)| r.error.as_deref() == Some(NO_TESTS)) {
        // The learner's doing, not the grader's: worth 0 points, not an infrastructure error.
        base.status = Status::CompileError;
        base.compile_errors = vec![format!(
            "error: {} declares no tests; declare them inside `kata_support::hidden_test! {{ .. }}`",
            base.file
        )];
        return base;
    }
    if let Some((_, broken)) = versions.iter().find(|(_, r)| r.status == Status::Error) {
        base.status = Status::Error;
        base.error = broken.error.clone();
        return base;
    }
    for (variant, result) in versions {
        let failed: Vec<TestResult> =
            result.tests.iter().filter(|t| t.status != Outcome::Passed).cloned().collect();
        let verdict = match (variant.kind, failed.is_empty()) {
            (VariantKind::Wrong, false) => Verdict::Caught,
            (VariantKind::Wrong, true) => Verdict::Missed,
            (VariantKind::Right, true) => Verdict::Passed,
            (VariantKind::Right, false) => Verdict::FalselyFailed,
        };
        let described = variant.description.trim_end_matches('.');
        let message = match verdict {
            Verdict::Missed => format!(
                "missed: {described}: your test passes against this wrong version of the function"
            ),
            Verdict::FalselyFailed => format!(
                "falsely failed: {described}: this version is right, but your test `{}` fails \
                 against it: {}",
                failed[0].name, failed[0].message
            ),
            Verdict::Caught | Verdict::Passed => String::new(),
        };
        base.tests.push(TestResult {
            name: format!("{}/{}", variant.kind.folder(), variant.name),
            status: if verdict.good() { Outcome::Passed } else { Outcome::Failed },
            message,
            // Not how long it ran: a test could spin for as long as says what it measured.
            duration_ms: 0,
            parked: Vec::new(),
            parked_when: None,
        });
        // Against a wrong version, only caught or missed: which tests failed, what they said or
        // whether they timed out, reported by version, is a channel out of the test that names
        // the version (a test that prints what it measured and fails would tell them apart in
        // one run). A right version's failures are what the learner must fix: shown.
        let failed_tests = if variant.kind == VariantKind::Right { failed } else { Vec::new() };
        base.variants.push(VariantResult {
            name: variant.name.clone(),
            kind: variant.kind,
            verdict,
            description: variant.description.clone(),
            failed_tests,
        });
    }
    let count = |kind: VariantKind, good: bool| {
        base.variants.iter().filter(|v| v.kind == kind && v.verdict.good() == good).count()
    };
    let (caught, missed) = (count(VariantKind::Wrong, true), count(VariantKind::Wrong, false));
    let (passed, falsely) = (count(VariantKind::Right, true), count(VariantKind::Right, false));
    base.advice = if caught == 0 && falsely == 0 {
        Some(format!(
            "your test passes against every version of the function, the shipped one included: \
             it catches nothing yet. Read the README's \"What a good test shows\": which \
             situation makes the call wait, so that a cut can reach the bug, and what must hold \
             after each cut; `{}` shows the next hint.",
            crate::invoked::command(&format!("hint {}", kata.number()))
        ))
    } else if passed == 0 && missed == 0 {
        Some(
            "your test fails against every version, the right ones too: a test that always fails \
             tells nothing. Below is what it said against a right version: it asks for something \
             the README does not promise, or the test itself is broken."
                .into(),
        )
    } else if falsely > 0 {
        Some(format!(
            "your test fails against {falsely} right version(s): it asks for more than the \
             README promises (what it said is below)"
        ))
    } else if missed > 0 {
        Some(format!(
            "your test misses {missed} of the {} bugs: for each one marked x above, which cut, or which \
             check after the cut, would show it?",
            caught + missed
        ))
    } else {
        None
    };
    base.status = if missed + falsely == 0 { Status::Passed } else { Status::Failed };
    base.points = if base.status == Status::Passed { kata.points } else { 0 };
    base
}

/// Grades write-the-test katas (indices into the course) of `tree`: the test in the tree against
/// every version, through the verdict cache when `options.cache`.
pub fn grade(
    course: &Course,
    tree: Tree,
    katas: &[usize],
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<Vec<UnitResult>> {
    let submissions: Vec<Submission> =
        katas.iter().map(|&k| Submission::of_tree(course, tree, k)).collect();
    let set = format!("wtt-{}", tree.dir());
    let mut results = grade_submissions(course, &set, &submissions, options, progress)?;
    if tree == Tree::Exercises {
        for (result, &k) in results.iter_mut().zip(katas) {
            edited_note(course, &course.katas[k], result);
        }
    }
    Ok(results)
}

/// Grades `submissions` in the generated workspace `set`, through the verdict cache when
/// `options.cache` (a test graded once is not run again, whoever wrote it).
pub fn grade_submissions(
    course: &Course,
    set: &str,
    submissions: &[Submission],
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<Vec<UnitResult>> {
    let cache = options.cache.then(|| Cache::open(course)).flatten();
    let keys: Vec<Option<crate::cache::Key>> = submissions
        .iter()
        .map(|s| cache.as_ref().and_then(|c| key(c, course, s, options)))
        .collect();
    let mut results: Vec<Option<UnitResult>> = submissions
        .iter()
        .zip(&keys)
        .map(|(s, key)| {
            Some((cache.as_ref()?, key.as_ref()?)).and_then(|(c, k)| c.get_labelled(k, &s.label))
        })
        .collect();
    let pending: Vec<usize> = (0..submissions.len()).filter(|&i| results[i].is_none()).collect();
    if !pending.is_empty() {
        let these: Vec<Submission> = pending.iter().map(|&i| submissions[i].clone()).collect();
        let judged = judge(course, set, &these, options, 1, progress)?;
        for (&i, judged) in pending.iter().zip(judged) {
            // A verdict that a timeout decided depends on the machine's load: not kept.
            if let (Some(cache), Some(key), false) = (&cache, &keys[i], judged.timed_out) {
                cache.put(key, &judged.result);
            }
            results[i] = Some(judged.result);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every kata graded or cached")).collect())
}

/// The cache key of a submission: its test, every version, the timeout.
fn key(
    cache: &Cache,
    course: &Course,
    submission: &Submission,
    options: &Options,
) -> Option<crate::cache::Key> {
    let shown = submission.shown();
    let sources = crate::stage::read(&submission.test, Path::new(&shown)).ok()?.hash;
    let kata = &course.katas[submission.kata];
    let (found, problems) = variants(course, kata).ok()?;
    if !problems.is_empty() {
        return None;
    }
    let mut text = String::new();
    for variant in &found {
        let hash = crate::stage::hash_file(&variant.source)?;
        text.push_str(&format!(
            "{:?} {} {hash} {}\n",
            variant.kind, variant.name, variant.description
        ));
    }
    let timeout = options
        .timeout
        .or(kata.timeout_secs.map(std::time::Duration::from_secs))
        .unwrap_or(grade::DEFAULT_TIMEOUT);
    Some(cache.key_of_test(
        &kata.name,
        &submission.label,
        timeout,
        sources,
        &crate::stage::hash_bytes(text.as_bytes()),
    ))
}

/// Says so when the learner edited the function under test: it was not what was graded.
fn edited_note(course: &Course, kata: &Kata, result: &mut UnitResult) {
    let lib = course.lib_rs(Tree::Exercises, kata);
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|t| t.replace("\r\n", "\n"));
    let (Some(edited), Some(shipped)) = (read(&lib), read(&function_rs(course, kata))) else {
        return;
    };
    if edited == shipped {
        return;
    }
    let note = format!(
        "note: {} differs from the function as shipped. In a write-the-test kata it is the \
         function under test, not yours to change: your test ran against the shipped function and \
         its other versions, never against your edit (`git checkout -- {0}` restores it)",
        rel(course, &lib),
    );
    result.advice = Some(match result.advice.take() {
        Some(advice) => format!("{advice}\n{note}"),
        None => note,
    });
}

/// The salt file under the grader's directory: 16 random bytes, written once per target directory.
const SALT: &str = "wtt-salt";

/// The versions of one kata in the order they are built, as indices into `versions`: slot `i`
/// builds `versions[slots[i]]`. Outside CI the order is a function of the version names and the
/// target directory's salt (the same on every run, so builds stay warm); in CI (the `CI`
/// variable set and not empty) it is fresh on every run.
///
/// Errors: the salt file cannot be created or read.
fn slots(course: &Course, versions: &[Variant]) -> anyhow::Result<Vec<usize>> {
    let fresh = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let salt = if fresh { random_bytes() } else { salt(&workspace::grader_dir(course))? };
    Ok(salted_order(&salt, versions.iter().map(|v| format!("{}/{}", v.kind.folder(), v.name))))
}

/// The order that sorts `names` by a keyed hash of each name: a permutation of `0..names.len()`
/// that tells nothing of the names to whoever does not know the salt.
fn salted_order(salt: &[u8], names: impl Iterator<Item = String>) -> Vec<usize> {
    use std::hash::{Hash, Hasher};
    let mut keyed: Vec<(u64, usize)> = names
        .enumerate()
        .map(|(i, name)| {
            // SipHash over salt then name: not a cryptographic promise, but the order is not a
            // secret worth more than the salt's 128 bits and the scan's refusals.
            let mut hasher = std::hash::DefaultHasher::new();
            salt.hash(&mut hasher);
            name.hash(&mut hasher);
            (hasher.finish(), i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The salt kept in `dir`, created on first use (written to a temporary file and renamed, so
/// that two graders starting at once agree on one salt).
fn salt(dir: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let path = dir.join(SALT);
    if let Ok(salt) = std::fs::read(&path)
        && salt.len() == 16
    {
        return Ok(salt);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let temporary = dir.join(format!("{SALT}.{}", std::process::id()));
    std::fs::write(&temporary, random_bytes())
        .with_context(|| format!("failed to write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))
}

/// 16 bytes from `/dev/urandom`; without it, a clock's nanoseconds, which still vary from run
/// to run.
fn random_bytes() -> Vec<u8> {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos());
        bytes = now.to_le_bytes();
    }
    bytes.to_vec()
}

fn rel(course: &Course, path: &Path) -> String {
    path.strip_prefix(&course.root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("wrong/v{i}"))
    }

    #[test]
    fn a_salted_order_is_a_permutation_that_the_salt_decides() {
        for n in [0, 1, 2, 9] {
            let mut order = salted_order(b"salt", names(n));
            assert_eq!(order, salted_order(b"salt", names(n)), "one salt, one order");
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        }
        let orders: std::collections::HashSet<Vec<usize>> =
            (0u8..16).map(|s| salted_order(&[s], names(9))).collect();
        assert!(orders.len() > 8, "sixteen salts gave only {} orders of nine", orders.len());
    }

    #[test]
    fn the_salt_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("wtt-salt-{}", std::process::id()));
        let first = salt(&dir).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(salt(&dir).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
