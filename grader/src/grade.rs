//! Grading a set of units: generate the workspace, build it once, run every hidden test in its own
//! process, and turn the outcomes into one verdict per unit.
//!
//! `check` grades a tree of katas; `verify` grades exercises, solutions and decoys with the same
//! machinery, running the tests of solutions and decoys several times to catch a verdict that
//! changes from run to run.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache};
use crate::compile;
use crate::course::{Course, KataKind, Level, Tree};
use crate::progress::Progress;
use crate::run::{self, Job, Outcome};
use crate::workspace::{self, Unit};

/// The default wall-clock limit for one hidden test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a hidden-test executable may take to list its tests.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// A kata's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    CompileError,
    TimedOut,
    Error,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::CompileError => "does not compile",
            Status::TimedOut => "timed out",
            Status::Error => "error",
        }
    }
}

/// One hidden test's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    pub status: Outcome,
    pub message: String,
    pub duration_ms: u64,
    /// Where the future was parked when the failing cut dropped it, outermost first (see
    /// `explain`); empty unless the explanation build placed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<crate::explain::Cut>,
    /// When the future was parked there: the failing cut's, a stall's, or the test's last cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_when: Option<crate::explain::Parked>,
}

/// One unit's (kata's or decoy's) result (serialized in reports and in the verdict cache).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitResult {
    pub name: String,
    pub number: u32,
    pub title: String,
    pub level: Level,
    pub status: Status,
    pub points: u32,
    pub max_points: u32,
    /// Where the learner works, relative to the course root.
    pub file: String,
    pub compile_errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub tests: Vec<TestResult>,
    /// SHA-256 of the sources that were built (`stage::read`), when they could be staged; in
    /// the JSON report as `source_sha256`, so a gradebook can spot identical submissions.
    #[serde(rename = "source_sha256", skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// Why the unit could not be graded, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A write-the-test kata's verdict per version of the function (`crate::wtt`); empty for a
    /// fix kata, whose `tests` are its hidden tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<crate::wtt::VariantResult>,
    /// `fix`, or `write-the-test` (then `tests` are the versions of the function, and `file` is
    /// the learner's test); in the JSON report only for a write-the-test kata.
    #[serde(default, skip_serializing_if = "crate::course::KataKind::is_fix")]
    pub kind: KataKind,
    /// What to do next, when the verdict has a reason beyond its tests (a test that catches
    /// nothing, a `src/lib.rs` edited in a write-the-test kata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// How to grade.
#[derive(Debug, Clone)]
pub struct Options {
    pub color: bool,
    pub parallel: usize,
    /// Overrides every kata's timeout.
    pub timeout: Option<Duration>,
    /// Refuse to run kata code where the sandbox cannot be raised.
    pub trusted: bool,
    /// How long a build may make no progress (default `compile::DEFAULT_IDLE_LIMIT`).
    pub build_timeout: Option<Duration>,
    /// Reuse verdicts from the verdict cache (`cache`) and keep new ones there; never for a
    /// repeated run (`grade_repeated`), which exists to run the tests again.
    pub cache: bool,
    /// Shared by grades that run at once (`grader grade`): a build holds it alone, since cargo
    /// uses every core and builds in one target directory wait on each other's lock (which the
    /// build's idle limit would take for a runaway); test phases hold it together.
    pub gate: Option<Arc<RwLock<()>>>,
    /// After a test fails at a cut, build the learner's source once more to show where the future
    /// was parked (`explain`); costs a build of each such unit, and nothing when all pass.
    pub explain: bool,
}

impl Options {
    pub fn parallel_default() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// A hidden test whose outcome differed between runs of one build.
#[derive(Debug, Clone)]
pub struct Nondeterministic {
    /// Index of the unit in the graded set.
    pub unit: usize,
    pub test: String,
    /// Every run's outcome, in order.
    pub outcomes: Vec<Outcome>,
    /// Whether the unit's verdict held even so: for [`Runs::UntilRejected`], another test rejected
    /// the unit on each run where this one passed. Always false for [`Runs::Every`].
    pub verdict_held: bool,
}

/// Grades `units`, built together in the generated workspace `set`.
pub fn grade(
    course: &Course,
    set: &str,
    units: &[Unit],
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<(Vec<UnitResult>, Duration)> {
    let started = Instant::now();
    let cache = options.cache.then(|| Cache::open(course)).flatten();
    let Some(cache) = cache else {
        let (mut results, _) =
            grade_repeated(course, set, units, options, Runs::Every(1), progress)?;
        explain_cuts(course, units, &mut results, options, progress);
        return Ok((results, started.elapsed()));
    };
    let keys: Vec<Option<cache::Key>> = units
        .iter()
        .map(|unit| cache.key(course, unit, timeout(course, unit, options), options.explain))
        .collect();
    let mut results: Vec<Option<UnitResult>> = units
        .iter()
        .zip(&keys)
        .map(|(unit, key)| key.as_ref().and_then(|key| cache.get(key, unit)))
        .collect();
    let grade_these = |indices: &[usize], results: &mut [Option<UnitResult>]| {
        if indices.is_empty() {
            return anyhow::Ok(());
        }
        let pending: Vec<Unit> = indices.iter().map(|&i| units[i].clone()).collect();
        let (mut graded, _) =
            grade_repeated(course, set, &pending, options, Runs::Every(1), progress)?;
        explain_cuts(course, &pending, &mut graded, options, progress);
        for (&i, result) in indices.iter().zip(graded) {
            if let Some(key) = &keys[i] {
                cache.put(key, &result);
            }
            results[i] = Some(result);
        }
        Ok(())
    };
    // Sources another submission is being graded with right now are waited for, not built twice.
    let missing: Vec<usize> = (0..units.len()).filter(|&i| results[i].is_none()).collect();
    let wanted: Vec<(usize, &cache::Key)> =
        missing.iter().filter_map(|&i| keys[i].as_ref().map(|key| (i, key))).collect();
    let (claim, mut mine, theirs) = cache::claim(&wanted);
    mine.extend(missing.iter().filter(|&&i| keys[i].is_none()));
    mine.sort_unstable();
    grade_these(&mine, &mut results)?;
    drop(claim);
    let mut late = Vec::new();
    for i in theirs {
        let key = keys[i].as_ref().expect("claimed units have keys");
        cache::wait(key);
        match cache.get(key, &units[i]) {
            Some(result) => results[i] = Some(result),
            // The other grade's verdict was not one to keep (a timeout, say): grade it here.
            None => late.push(i),
        }
    }
    grade_these(&late, &mut results)?;
    let results = results.into_iter().map(|r| r.expect("every unit graded or cached")).collect();
    Ok((results, started.elapsed()))
}

/// Grades katas of `tree`, each as its kind asks: a fix kata by its hidden tests ([`grade`]), a
/// write-the-test kata by running the test in the tree against every version of its function
/// (`crate::wtt::grade`). Results come back in `units` order.
pub fn grade_katas(
    course: &Course,
    tree: Tree,
    units: &[Unit],
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<(Vec<UnitResult>, Duration)> {
    let started = Instant::now();
    let (fix, tests): (Vec<usize>, Vec<usize>) =
        (0..units.len()).partition(|&i| course.katas[units[i].kata].kind == KataKind::Fix);
    let fix_units: Vec<Unit> = fix.iter().map(|&i| units[i].clone()).collect();
    let fixed = if fix_units.is_empty() {
        Vec::new()
    } else {
        grade(course, tree.dir(), &fix_units, options, progress)?.0
    };
    let katas: Vec<usize> = tests.iter().map(|&i| units[i].kata).collect();
    let tested = if katas.is_empty() {
        Vec::new()
    } else {
        crate::wtt::grade(course, tree, &katas, options, progress)?
    };
    let mut results: Vec<Option<UnitResult>> = vec![None; units.len()];
    for (i, result) in fix.into_iter().zip(fixed).chain(tests.into_iter().zip(tested)) {
        results[i] = Some(result);
    }
    let results = results.into_iter().map(|r| r.expect("every kata graded")).collect();
    Ok((results, started.elapsed()))
}

/// Gives each failed test the `.await`s the future was parked at when it was cut (by the explorer,
/// or last by the test itself), from a second build of the unit's source in the explanation set
/// (see `explain`). Best effort: a unit whose
/// explanation build fails, or whose test fails differently there, is left as it was.
pub fn explain_cuts(
    course: &Course,
    units: &[Unit],
    results: &mut [UnitResult],
    options: &Options,
    progress: &Progress,
) {
    if !options.explain {
        return;
    }
    let wanted: Vec<usize> = (0..units.len())
        .filter(|&i| units[i].lib_rs.ends_with("src/lib.rs"))
        .filter(|&i| course.katas[units[i].kata].kind == KataKind::Fix)
        .filter(|&i| results[i].tests.iter().any(|t| t.status == Outcome::Failed))
        .collect();
    if wanted.is_empty() {
        return;
    }
    // What the learner's `src/lib.rs` holds now, by the hash `stage::read` gives the graded sources.
    let sources: Vec<Option<(String, String)>> = (0..units.len())
        .map(|i| {
            let staged = crate::stage::read(&units[i].lib_rs, units[i].shown()).ok()?;
            let (_, lib) = staged.files.iter().find(|(p, _)| p.as_os_str() == "lib.rs")?;
            Some((staged.hash.clone(), String::from_utf8_lossy(lib).into_owned()))
        })
        .collect();
    let pending: Vec<Unit> = wanted.iter().map(|&i| units[i].clone()).collect();
    // One phase for the whole second build and run: it is not a second check.
    progress.phase("explaining", pending.len());
    let explained = grade_repeated(
        course,
        crate::explain::SET,
        &pending,
        options,
        Runs::Every(1),
        &Progress::Quiet,
    );
    progress.finish();
    let Ok((explained, _)) = explained else {
        return;
    };
    for (&i, again) in wanted.iter().zip(explained) {
        // The sources of both builds must be those graded: a save in between would put the note
        // on another program's line (and the verdict cache would keep it).
        let graded = results[i].source_hash.clone();
        let explained_same = again.source_hash.as_deref().and_then(|h| h.split('-').next());
        let Some(source) = sources[i].as_ref().filter(|(hash, _)| {
            graded.as_deref() == Some(hash.as_str()) && explained_same == Some(hash.as_str())
        }) else {
            continue;
        };
        let source = &source.1;
        let file = results[i].file.clone();
        for test in results[i].tests.iter_mut().filter(|t| t.status == Outcome::Failed) {
            let Some(second) = again.tests.iter().find(|t| t.name == test.name) else {
                continue;
            };
            let (message, points, when) = crate::explain::take_trailer(&second.message);
            let same =
                crate::explain::cut_phrase(&message) == crate::explain::cut_phrase(&test.message);
            if second.status == Outcome::Failed && same {
                test.parked = crate::explain::cuts(&file, source, &points);
                test.parked_when = when.filter(|_| !test.parked.is_empty());
            }
        }
    }
}

/// A unit's per-test timeout: the override, else the kata's own, else the default.
pub fn timeout(course: &Course, unit: &Unit, options: &Options) -> Duration {
    options
        .timeout
        .or(course.katas[unit.kata].timeout_secs.map(Duration::from_secs))
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// How often [`grade_repeated`] runs the hidden tests of each unit, all from one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Every test `n` times; a test that timed out in the first run is not run again.
    Every(usize),
    /// For units whose verdict must be a rejection (decoys): the tests until one fails, then each
    /// test that failed `n - 1` times more; on a repeat where they all pass, the unit's other tests
    /// until one fails. Only the unit's verdict has to be the same on every run. Tests not run are
    /// missing from the unit's result.
    UntilRejected(usize),
}

/// Grades `units` as [`grade`] does, but runs their hidden tests as `runs` says, from one build.
/// The results are the first run's; the tests whose outcome changed between runs come back apart.
pub fn grade_repeated(
    course: &Course,
    set: &str,
    units: &[Unit],
    options: &Options,
    runs: Runs,
    progress: &Progress,
) -> anyhow::Result<(Vec<UnitResult>, Vec<Nondeterministic>)> {
    crate::sandbox::require(options.trusted)?;
    // Held to the end: another grader on this set must not rebuild what this one runs.
    let _lock = workspace::lock(course, set)?;
    let generated = workspace::generate(course, set, units)?;
    let dir = generated.dir.clone();
    let shown = |path: &std::path::Path| {
        path.strip_prefix(&course.root).unwrap_or(path).to_string_lossy().into_owned()
    };
    let shown_in = |unit: &Unit, path: &std::path::Path| {
        path.strip_prefix(&unit.root).unwrap_or(path).to_string_lossy().into_owned()
    };
    let inputs: Vec<compile::Input> = units
        .iter()
        .zip(&generated.units)
        .filter_map(|(unit, staged)| {
            let staged = staged.as_ref().ok()?;
            // A learner's test is shown as the learner knows it; hidden tests from the course.
            let test = match &unit.tests {
                Some(test) => shown_in(unit, test),
                None => shown(&unit.test_source(course)),
            };
            let mut paths = vec![(staged.hidden.display().to_string(), test)];
            if unit.lib_rs.ends_with("src/lib.rs") {
                let src = unit.lib_rs.parent().expect("src/lib.rs has a parent");
                paths.push((
                    format!("{}/", staged.src.display()),
                    format!("{}/", shown_in(unit, src)),
                ));
            } else {
                paths.push((staged.lib_rs.display().to_string(), shown_in(unit, &unit.lib_rs)));
            }
            Some(compile::Input {
                package: unit.package(),
                label: unit.label.clone(),
                staged: staged.clone(),
                shown: paths,
            })
        })
        .collect();
    // Cargo refuses a workspace without members.
    let mut present_built = if inputs.is_empty() {
        Vec::new()
    } else {
        // A lock poisoned by another grade's panic still serialises: its guard is as good.
        let _alone = options.gate.as_ref().map(|g| g.write().unwrap_or_else(|p| p.into_inner()));
        compile::build(
            &dir,
            &workspace::target_dir(course),
            &course.root,
            &inputs,
            &crate::build_sandbox::walls(course, set, &generated),
            options.color,
            options.build_timeout.unwrap_or(compile::DEFAULT_IDLE_LIMIT),
            progress,
        )?
    }
    .into_iter();
    // A unit left out of the build: the learner's sources are a compile error, a course without
    // the kata's hidden tests is the grader's error.
    let mut missing: Vec<Option<String>> = Vec::new();
    let built: Vec<compile::Built> = generated
        .units
        .iter()
        .map(|staged| match staged {
            Ok(_) => {
                missing.push(None);
                present_built.next().unwrap_or_default()
            }
            Err(workspace::Excluded::Sources(why)) => {
                missing.push(None);
                compile::Built { errors: vec![why.clone()], ..compile::Built::default() }
            }
            Err(workspace::Excluded::Course(why)) => {
                missing.push(Some(why.clone()));
                compile::Built::default()
            }
        })
        .collect();

    // Why a unit could not be graded: missing files, or a test binary that cannot list its tests.
    let mut errors: Vec<Option<String>> = missing;
    let mut jobs = Vec::new();
    for (i, (unit, built)) in units.iter().zip(&built).enumerate() {
        let Some(exe) = &built.executable else {
            continue;
        };
        let timeout = timeout(course, unit, options);
        match run::list_tests(exe, LIST_TIMEOUT) {
            Ok(tests) if tests.is_empty() => {
                errors[i] = Some("the hidden test file declares no tests".into());
            }
            Ok(mut tests) => {
                // Declaration order: kata authors put the most telling test first.
                let source = std::fs::read_to_string(unit.test_source(course)).unwrap_or_default();
                tests.sort_by_key(|t| source.find(&format!("fn {t}(")).unwrap_or(usize::MAX));
                jobs.extend(tests.into_iter().map(|test| Job {
                    unit: i,
                    executable: exe.clone(),
                    test,
                    timeout,
                }));
            }
            Err(err) => errors[i] = Some(format!("{err:#}")),
        }
    }
    // Kata code runs with the learner's permissions and may reach the grader's files: the trusted
    // inputs (hidden tests and their copies, the test executables, the support crate, manifests)
    // are hashed after the build and again after the tests, and a change voids the verdict.
    let unit_files: Vec<Vec<PathBuf>> = units
        .iter()
        .zip(&generated.units)
        .zip(&built)
        .map(|((unit, staged), built)| {
            let mut files = vec![unit.test_source(course)];
            files.extend(staged.as_ref().ok().map(|s| s.hidden.clone()));
            files.extend(built.executable.clone());
            files
        })
        .collect();
    let hash_all = |files: &[PathBuf]| -> Vec<Option<String>> {
        files.iter().map(|f| crate::stage::hash_file(f)).collect()
    };
    let before: Vec<_> = unit_files.iter().map(|f| hash_all(f)).collect();
    let trusted_before = hash_all(&generated.trusted);
    let count = jobs.len();
    progress.phase("testing", count);
    let shared = options.gate.as_ref().map(|g| g.read().unwrap_or_else(|p| p.into_inner()));
    let (repeat, until_rejected) = match runs {
        Runs::Every(n) => (n, false),
        Runs::UntilRejected(n) => (n, true),
    };
    let first =
        run::run_until_failed(jobs.clone(), options.parallel, until_rejected, &|| progress.step());
    // The repeats. A test that timed out has spent the whole timeout, and would again on every
    // repeat, for an outcome that is a failure whatever the repeats say: only the tests that
    // ended are run again (`verify` names the decoys that nothing but a timeout rejects).
    let again: Vec<usize> = (0..count)
        .filter(|&j| match &first[j] {
            Some(run) if until_rejected => run.outcome == Outcome::Failed,
            Some(run) => run.outcome != Outcome::TimedOut,
            None => false,
        })
        .collect();
    let repeats: Vec<Job> =
        (1..repeat.max(1)).flat_map(|_| again.iter().map(|&j| jobs[j].clone())).collect();
    if !repeats.is_empty() {
        progress.phase("testing again", repeats.len());
    }
    let repeated = run::run_all(repeats, options.parallel, &|| progress.step());
    // A unit that must be rejected, whose rejecting tests all passed on some repeat, may still be
    // rejected by another test on that run: the others are run for that run, until one fails.
    // Only where none does has its verdict changed (a decoy racing a real thread, say, is caught
    // by one test on one run and by another on the next).
    let mut verdict_changed = std::collections::HashSet::new();
    if until_rejected && !again.is_empty() {
        let mut units: Vec<usize> = again.iter().map(|&j| jobs[j].unit).collect();
        units.dedup();
        let mut open: Vec<usize> = Vec::new();
        for round in repeated.chunks(again.len()) {
            let rejected = |unit: usize| {
                again
                    .iter()
                    .zip(round)
                    .any(|(&j, r)| jobs[j].unit == unit && r.outcome != Outcome::Passed)
            };
            open.extend(units.iter().copied().filter(|&unit| !rejected(unit)));
        }
        let (jobs, again) = (&jobs, &again);
        let confirm: Vec<Job> = open
            .iter()
            .enumerate()
            .flat_map(|(group, &unit)| {
                let others =
                    (0..count).filter(move |j| jobs[*j].unit == unit && !again.contains(j));
                others.map(move |j| Job { unit: group, ..jobs[j].clone() })
            })
            .collect();
        if !confirm.is_empty() {
            progress.phase("confirming verdicts", confirm.len());
        }
        let confirmed = run::run_until_failed(confirm, options.parallel, true, &|| progress.step());
        for (group, &unit) in open.iter().enumerate() {
            if !confirmed.iter().flatten().any(|r| r.unit == group && r.outcome != Outcome::Passed)
            {
                verdict_changed.insert(unit);
            }
        }
    }
    drop(shared);
    progress.finish();
    let ran: Vec<&run::TestRun> = first.iter().flatten().collect();
    let nondeterministic: Vec<Nondeterministic> = again
        .iter()
        .enumerate()
        .filter_map(|(k, &j)| {
            let first = first[j].as_ref().expect("a test run again ran the first time");
            let outcomes: Vec<Outcome> = std::iter::once(first.outcome)
                .chain(repeated.iter().skip(k).step_by(again.len()).map(|r| r.outcome))
                .collect();
            (outcomes.iter().any(|o| *o != first.outcome)).then(|| Nondeterministic {
                unit: first.unit,
                test: first.test.clone(),
                outcomes,
                verdict_held: until_rejected && !verdict_changed.contains(&first.unit),
            })
        })
        .collect();
    let tampered: Vec<Option<&PathBuf>> = unit_files
        .iter()
        .zip(&before)
        .map(|(files, before)| {
            let after = hash_all(files);
            files.iter().zip(after).zip(before).find(|((_, a), b)| a != *b).map(|((f, _), _)| f)
        })
        .collect();
    for file in tampered.iter().flatten() {
        // A changed executable must not be taken as fresh by the next build.
        if built.iter().any(|b| b.executable.as_ref() == Some(*file)) {
            let _ = std::fs::remove_file(file);
        }
    }
    let trusted_changed = generated
        .trusted
        .iter()
        .zip(hash_all(&generated.trusted))
        .zip(&trusted_before)
        .find(|((_, a), b)| a != *b)
        .map(|((f, _), _)| f);
    if let Some(file) = trusted_changed {
        for error in &mut errors {
            *error = Some(format!(
                "{} changed on disk while the tests ran: no verdict of this run can be trusted; \
                 restore the course (git checkout) and check again",
                shown(file)
            ));
        }
    }

    let mut results = Vec::new();
    for (i, ((unit, built), staged)) in units.iter().zip(built).zip(&generated.units).enumerate() {
        let kata = &course.katas[unit.kata];
        let mut tests: Vec<TestResult> = ran
            .iter()
            .filter(|r| r.unit == i)
            .map(|r| TestResult {
                name: r.test.clone(),
                status: r.outcome,
                message: r.message.clone(),
                duration_ms: r.duration.as_millis().try_into().unwrap_or(u64::MAX),
                parked: Vec::new(),
                parked_when: None,
            })
            .collect();
        if let Some(file) = tampered[i] {
            tests.push(TestResult {
                name: "hidden_tests_untouched".into(),
                status: Outcome::Failed,
                message: format!(
                    "{} changed on disk while the tests ran: kata code must not write to the \
                     grader's files; restore it with `git checkout -- grader/hidden`",
                    shown(file)
                ),
                duration_ms: 0,
                parked: Vec::new(),
                parked_when: None,
            });
        }
        let status = if errors[i].is_some() && trusted_changed.is_some() {
            Status::Error
        } else if !built.errors.is_empty() {
            Status::CompileError
        } else if errors[i].is_some() {
            Status::Error
        } else if tests.iter().any(|t| t.status == Outcome::TimedOut) {
            Status::TimedOut
        } else if tests.iter().any(|t| t.status == Outcome::Failed) {
            Status::Failed
        } else {
            Status::Passed
        };
        let file = unit.shown();
        let mut compile_errors = built.errors;
        if !compile_errors.is_empty()
            && let Some(note) = added_dependencies(course, &unit.lib_rs)
        {
            compile_errors.insert(0, note);
        }
        results.push(UnitResult {
            name: unit.label.clone(),
            number: kata.number(),
            title: kata.title.clone(),
            level: kata.level,
            status,
            points: if status == Status::Passed { kata.points } else { 0 },
            max_points: kata.points,
            file: file.to_string_lossy().into_owned(),
            compile_errors,
            warnings: built.warnings,
            tests,
            source_hash: staged.as_ref().ok().map(|s| s.hash.clone()),
            variants: Vec::new(),
            advice: None,
            kind: Default::default(),
            error: errors[i].take(),
        });
    }
    Ok((results, nondeterministic))
}

/// Why a crate the learner added to the kata's `Cargo.toml` cannot be found: only `src/` is
/// built, against the course's dependencies (issue 13: cargo builds it, the grader did not say).
fn added_dependencies(course: &Course, lib_rs: &std::path::Path) -> Option<String> {
    let kata_dir = lib_rs.parent()?.parent()?;
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(kata_dir.join("Cargo.toml")).ok()?).ok()?;
    let available = &course.build.kata_dependencies;
    let added: Vec<String> = manifest
        .get("dependencies")?
        .as_table()?
        .keys()
        .filter(|name| !available.contains(name))
        .map(|name| format!("`{name}`"))
        .collect();
    if added.is_empty() {
        return None;
    }
    let shown = kata_dir.strip_prefix(&course.root).unwrap_or(kata_dir);
    Some(format!(
        "note: {}/Cargo.toml adds {}, but only src/ is graded: the hidden tests build it with \
         the course's crates ({}) and the standard library",
        shown.display(),
        added.join(", "),
        available.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    ))
}
