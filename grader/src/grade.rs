//! Grading a set of units: generate the workspace, build it once, run every hidden test in its own
//! process, and turn the outcomes into one verdict per unit.
//!
//! `check` grades a tree of katas; `verify` grades exercises, solutions and decoys with the same
//! machinery, running the tests of solutions and decoys several times to catch a verdict that
//! changes from run to run.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compile;
use crate::course::{Course, Level};
use crate::progress::Progress;
use crate::run::{self, Job, Outcome};
use crate::workspace::{self, Unit};

/// The default wall-clock limit for one hidden test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a hidden-test executable may take to list its tests.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// A kata's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub status: Outcome,
    pub message: String,
    pub duration_ms: u64,
}

/// One unit's (kata's or decoy's) result.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub tests: Vec<TestResult>,
    /// Why the unit could not be graded, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    let (results, _) = grade_repeated(course, set, units, options, 1, progress)?;
    Ok((results, started.elapsed()))
}

/// Grades `units` as [`grade`] does, but runs every hidden test `repeat` times from one build. The
/// results are the first run's; the tests whose outcome changed between runs come back apart.
pub fn grade_repeated(
    course: &Course,
    set: &str,
    units: &[Unit],
    options: &Options,
    repeat: usize,
    progress: &Progress,
) -> anyhow::Result<(Vec<UnitResult>, Vec<Nondeterministic>)> {
    crate::sandbox::require(options.trusted)?;
    let _lock = workspace::lock(course, set)?;
    // A unit whose files are missing is reported on its own and left out of the build.
    let missing: Vec<Option<String>> = units
        .iter()
        .map(|unit| {
            let hidden = course.hidden_tests(&course.katas[unit.kata]);
            [&unit.lib_rs, &hidden].into_iter().find(|p| !p.is_file()).map(|p| {
                format!("{} is missing; restore it (git checkout -- {0}) or run `grader check` in a complete course", p.display())
            })
        })
        .collect();
    let present: Vec<Unit> =
        units.iter().zip(&missing).filter(|(_, m)| m.is_none()).map(|(u, _)| u.clone()).collect();
    let dir = workspace::generate(course, set, &present)?;
    // Cargo refuses a workspace without members.
    let mut present_built = if present.is_empty() {
        Vec::new()
    } else {
        compile::build(
            &dir,
            &workspace::target_dir(course),
            &course.root,
            &present,
            options.color,
            progress,
        )?
    }
    .into_iter();
    let built: Vec<compile::Built> = missing
        .iter()
        .map(|m| {
            if m.is_none() {
                present_built.next().unwrap_or_default()
            } else {
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
        let kata = &course.katas[unit.kata];
        let timeout = options
            .timeout
            .or(kata.timeout_secs.map(Duration::from_secs))
            .unwrap_or(DEFAULT_TIMEOUT);
        match run::list_tests(exe, LIST_TIMEOUT) {
            Ok(tests) if tests.is_empty() => {
                errors[i] = Some("the hidden test file declares no tests".into());
            }
            Ok(mut tests) => {
                // Declaration order: kata authors put the most telling test first.
                let source = std::fs::read_to_string(course.hidden_tests(kata)).unwrap_or_default();
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
    let hidden_hash = |unit: &Unit| {
        std::fs::read(course.hidden_tests(&course.katas[unit.kata]))
            .map(|b| crate::state::fnv1a(&b))
            .ok()
    };
    let before: Vec<_> = units.iter().map(hidden_hash).collect();
    let count = jobs.len();
    let jobs: Vec<Job> = jobs.iter().cycle().take(count * repeat.max(1)).cloned().collect();
    progress.phase("testing", jobs.len());
    let all = run::run_all(jobs, options.parallel, &|| progress.step());
    progress.finish();
    let runs = &all[..count];
    let nondeterministic: Vec<Nondeterministic> = runs
        .iter()
        .enumerate()
        .filter_map(|(j, first)| {
            let outcomes: Vec<Outcome> =
                all[j..].iter().step_by(count).map(|r| r.outcome).collect();
            (outcomes.iter().any(|o| *o != first.outcome)).then(|| Nondeterministic {
                unit: first.unit,
                test: first.test.clone(),
                outcomes,
            })
        })
        .collect();
    // Kata code runs with the learner's permissions and can reach the grader's files; a hidden
    // test file that changed while tests ran means the verdict cannot be trusted.
    let tampered: Vec<bool> =
        units.iter().zip(&before).map(|(u, b)| hidden_hash(u) != *b).collect();

    let mut results = Vec::new();
    for (i, (unit, built)) in units.iter().zip(built).enumerate() {
        let kata = &course.katas[unit.kata];
        let mut tests: Vec<TestResult> = runs
            .iter()
            .filter(|r| r.unit == i)
            .map(|r| TestResult {
                name: r.test.clone(),
                status: r.outcome,
                message: r.message.clone(),
                duration_ms: r.duration.as_millis().try_into().unwrap_or(u64::MAX),
            })
            .collect();
        if tampered[i] {
            let hidden = course.hidden_tests(kata);
            let shown = hidden.strip_prefix(&course.root).unwrap_or(&hidden).display();
            tests.push(TestResult {
                name: "hidden_tests_untouched".into(),
                status: Outcome::Failed,
                message: format!(
                    "{} changed on disk while the tests ran: kata code must not write to the \
                     grader's files; restore it with `git checkout -- grader/hidden`",
                    shown
                ),
                duration_ms: 0,
            });
        }
        let status = if !built.errors.is_empty() {
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
        let file = unit.lib_rs.strip_prefix(&course.root).unwrap_or(&unit.lib_rs);
        results.push(UnitResult {
            name: unit.label.clone(),
            number: kata.number(),
            title: kata.title.clone(),
            level: kata.level,
            status,
            points: if status == Status::Passed { kata.points } else { 0 },
            max_points: kata.points,
            file: file.to_string_lossy().into_owned(),
            compile_errors: built.errors,
            warnings: built.warnings,
            tests,
            error: errors[i].take(),
        });
    }
    Ok((results, nondeterministic))
}
