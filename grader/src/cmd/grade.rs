//! `grader grade ROSTER_OR_DIRS... --out DIR`: grades a class's submissions from the teacher's
//! copy of the course, one JSON result file per student.
//!
//! Each submission is fetched and its `exercises/*/src` taken into a private copy (`submission`),
//! then graded by the machinery `check` uses in a generated workspace of its own
//! (`grade-<student>`), so no checkout, staged source or test executable is shared between
//! students; only the compiled dependencies in the target directory are. Submissions are graded
//! by up to `--jobs` workers at once, which share one gate (`grade::Options::gate`): one build at
//! a time, using every core, or test phases side by side, one test per worker, so the run as a
//! whole keeps to the cores.
//!
//! A result file is the `check --format json` report plus who, what, when and against which
//! course: the student, the source, the commit graded (git) or the content's hash (a directory),
//! the time, and a hash of the trusted course inputs (`course_hash`). A rerun skips a submission
//! whose file says it was graded at the same commit or content by the same course, which makes an
//! interrupted run resumable. Files are written by a rename, so a kill leaves the old file or the
//! new one, never half of one.

use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GradeArgs;
use crate::course::Course;
use crate::exit;
use crate::grade::{self, Options, Status, UnitResult};
use crate::progress::Progress;
use crate::report::{self, Summary};
use crate::results::{self, Previous, ResultFile, Standing, course_hash, read_previous};
use crate::roster::{self, Source, Submission};
use crate::submission::{self, Taken, Unreachable};
use crate::workspace::Unit;

/// How one submission went in this run.
#[derive(Debug)]
enum Outcome {
    Graded { points: u32, max_points: u32 },
    AlreadyGraded { points: u32, max_points: u32 },
    Unreachable(String),
    Failed(String),
}

/// What every worker shares.
struct Run<'a> {
    course: &'a Course,
    course_hash: String,
    out: &'a Path,
    regrade: bool,
    options: Options,
}

/// Grades every submission named by `args`; returns the exit code (see `grader grade --help`).
pub fn run(course: &Course, args: &GradeArgs) -> anyhow::Result<u8> {
    let mut submissions = roster::read(&args.sources)?;
    // The whole roster is read (and checked) first: every shard refuses the same mistakes.
    if let Some(shard) = args.shard {
        let class = submissions.len();
        submissions.retain(|s| shard.contains(&s.student));
        outln!("shard {shard}: {} of the {class} students", submissions.len());
    }
    let trusted = !args.allow_unsandboxed;
    if !submissions.is_empty() {
        crate::sandbox::require(trusted)?;
    }
    std::fs::create_dir_all(&args.out).with_context(|| {
        format!("failed to create the results directory {}", args.out.display())
    })?;
    if submissions.is_empty() {
        // A small class split many ways: an empty shard is not a failed matrix job, and its empty
        // --out is still there for the workflow to upload.
        outln!("nothing to grade in this shard");
        return Ok(exit::SUCCESS);
    }
    let jobs = args.jobs.unwrap_or_else(Options::parallel_default).max(1);
    let workers = jobs.min(submissions.len()).max(1);
    let run = Run {
        course,
        course_hash: course_hash(course)?,
        out: &args.out,
        regrade: args.regrade,
        options: Options {
            color: false,
            parallel: (jobs / workers).max(1),
            timeout: args.timeout.map(Duration::from_secs),
            trusted,
            build_timeout: args.build_timeout.map(Duration::from_secs),
            cache: !args.no_cache,
            gate: Some(Arc::new(RwLock::new(()))),
            explain: false,
        },
    };

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(submissions.len() as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("  grading [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let queue = Mutex::new(submissions.iter().enumerate());
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new(submissions.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("submission queue").next();
                    let Some((i, submission)) = next else { break };
                    // A bug of the grader's on one submission must not cost the class its grades.
                    let outcome =
                        std::panic::catch_unwind(AssertUnwindSafe(|| grade_one(&run, submission)))
                            .unwrap_or_else(|_| {
                                Outcome::Failed("the grader panicked on it".into())
                            });
                    if let Some(bar) = &bar {
                        bar.set_message(submission.student.clone());
                        bar.inc(1);
                    }
                    outcomes.lock().expect("outcomes")[i] = Some(outcome);
                }
            });
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let outcomes = outcomes.into_inner().expect("outcomes");
    let width = submissions.iter().map(|s| s.student.len()).max().unwrap_or(0);
    let mut counts = [0usize; 4];
    for (submission, outcome) in submissions.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| Outcome::Failed("not graded".into()));
        let (slot, what) = match outcome {
            Outcome::Graded { points, max_points } => {
                (0, format!("graded          {points}/{max_points}"))
            }
            Outcome::AlreadyGraded { points, max_points } => {
                (1, format!("already graded  {points}/{max_points}"))
            }
            Outcome::Unreachable(why) => (2, format!("unreachable     {why}")),
            Outcome::Failed(why) => (3, format!("not graded      {why}")),
        };
        counts[slot] += 1;
        // Git's and the compiler's words, which a hostile source can choose: one visible line.
        let what = report::text::visible(&what.replace(['\n', '\r'], " "));
        outln!("{:width$}  {what}", submission.student);
    }
    outln!(
        "{} graded, {} already graded, {} unreachable, {} not graded; results in {}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        args.out.display()
    );
    // Failing on every submission is the grader's trouble (no cargo, a broken course), not the
    // class's.
    Ok(if counts[2] + counts[3] == 0 {
        exit::SUCCESS
    } else if counts[0] + counts[1] + counts[2] == 0 {
        exit::INFRASTRUCTURE
    } else {
        exit::FAILED
    })
}

/// Fetches, takes and grades one submission and writes its result file.
fn grade_one(run: &Run, submission: &Submission) -> Outcome {
    let path = results::path(run.out, &submission.student);
    let previous = if run.regrade { None } else { read_previous(&path) };
    // A pinned full hash is known without a clone.
    if let (Some(previous), Source::Git { commit: Some(commit), .. }) =
        (&previous, &submission.source)
        && commit.len() == 40
        && commit.chars().all(|c| c.is_ascii_hexdigit())
        && previous.is_current(&run.course_hash, Some(&commit.to_ascii_lowercase()), None)
    {
        return already(previous);
    }
    let taken = match submission::fetch(run.course, &submission.source) {
        Ok(taken) => taken,
        Err(Unreachable(why)) => {
            // A grade already given is not thrown away because the source went away since.
            if let Some(previous) = &previous
                && previous.status == Standing::Graded
            {
                let when = previous.graded_at.as_deref().unwrap_or("earlier");
                return Outcome::Unreachable(format!("{why}; kept the result graded {when}"));
            }
            let written = write(run, submission, None, Standing::Unreachable, Some(&why), &[]);
            return match written {
                Ok(()) => Outcome::Unreachable(why),
                Err(err) => Outcome::Failed(format!("{why}; and {err:#}")),
            };
        }
    };
    if let Some(previous) = &previous
        && previous.is_current(&run.course_hash, taken.commit.as_deref(), Some(&taken.content_hash))
    {
        return already(previous);
    }
    let (results, standing, error) = match grade_taken(run, submission, &taken) {
        Ok(results) => {
            let failed = results.iter().find_map(|r| {
                r.error.as_ref().filter(|_| r.status == Status::Error).map(|e| (r.name.clone(), e))
            });
            let error = failed.map(|(kata, why)| format!("{kata} could not be graded: {why}"));
            let standing = if error.is_some() { Standing::Error } else { Standing::Graded };
            (results, standing, error)
        }
        Err(err) => (Vec::new(), Standing::Error, Some(format!("{err:#}"))),
    };
    if let Err(err) = write(run, submission, Some(&taken), standing, error.as_deref(), &results) {
        return Outcome::Failed(format!("{err:#}"));
    }
    match error {
        Some(why) => Outcome::Failed(why),
        None => Outcome::Graded {
            points: results.iter().map(|r| r.points).sum(),
            max_points: results.iter().map(|r| r.max_points).sum(),
        },
    }
}

fn already(previous: &Previous) -> Outcome {
    Outcome::AlreadyGraded {
        points: previous.summary.points,
        max_points: previous.summary.max_points,
    }
}

/// Grades the katas that were taken in the submission's own workspace; a kata that was not taken
/// is a compile error saying why. Results in course order.
fn grade_taken(
    run: &Run,
    submission: &Submission,
    taken: &Taken,
) -> anyhow::Result<Vec<UnitResult>> {
    let course = run.course;
    let file = |name: &str| Path::new("exercises").join(name).join("src").join("lib.rs");
    let fixing = |kata: &crate::course::Kata| kata.kind == crate::course::KataKind::Fix;
    let units: Vec<Unit> = course
        .katas
        .iter()
        .enumerate()
        .zip(&taken.katas)
        .filter(|((_, kata), taken)| taken.is_ok() && fixing(kata))
        .map(|((i, kata), _)| Unit {
            kata: i,
            label: kata.name.clone(),
            lib_rs: taken.root.join(file(&kata.name)),
            root: taken.root.clone(),
            tests: None,
            focus: None,
        })
        .collect();
    let set = format!("grade-{}", submission.student);
    let (graded, _) = grade::grade(course, &set, &units, &run.options, &Progress::Quiet)?;
    let mut graded = graded.into_iter();
    // Write-the-test katas: the student's test against every version of the function.
    let tests: Vec<crate::wtt::Submission> = course
        .katas
        .iter()
        .enumerate()
        .zip(&taken.katas)
        .filter(|((_, kata), taken)| taken.is_ok() && !fixing(kata))
        .map(|((i, kata), _)| crate::wtt::Submission {
            kata: i,
            test: taken
                .root
                .join("exercises")
                .join(&kata.name)
                .join("tests")
                .join(crate::wtt::TEST_FILE),
            label: kata.name.clone(),
            root: taken.root.clone(),
            only: None,
        })
        .collect();
    let tested = if tests.is_empty() {
        Vec::new()
    } else {
        let set = format!("{set}-wtt");
        crate::wtt::grade_submissions(course, &set, &tests, &run.options, &Progress::Quiet)?
    };
    let mut tested = tested.into_iter();
    let mut results = Vec::new();
    for (kata, taken) in course.katas.iter().zip(&taken.katas) {
        let result = match taken {
            Ok(()) if !fixing(kata) => tested.next().context("the grade lost a kata")?,
            Ok(()) => graded.next().context("the grade lost a kata")?,
            Err(why) => UnitResult {
                name: kata.name.clone(),
                number: kata.number(),
                title: kata.title.clone(),
                level: kata.level,
                status: Status::CompileError,
                points: 0,
                max_points: kata.points,
                file: file(&kata.name).display().to_string(),
                compile_errors: vec![why.clone()],
                warnings: Vec::new(),
                tests: Vec::new(),
                source_hash: None,
                variants: Vec::new(),
                advice: None,
                kind: Default::default(),
                error: None,
            },
        };
        results.push(result);
    }
    Ok(results)
}

/// Writes a submission's result file by a rename.
fn write(
    run: &Run,
    submission: &Submission,
    taken: Option<&Taken>,
    status: Standing,
    error: Option<&str>,
    katas: &[UnitResult],
) -> anyhow::Result<()> {
    let summary = Summary::of(katas, Duration::ZERO);
    let file = ResultFile {
        version: report::JSON_VERSION,
        tree: "exercises",
        student: &submission.student,
        source: submission.source.describe(),
        commit: taken.and_then(|t| t.commit.as_deref()),
        committed_at: taken.and_then(|t| t.committed_at.as_deref()),
        content_hash: taken.map(|t| t.content_hash.as_str()),
        course_hash: &run.course_hash,
        graded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        status,
        error,
        katas,
        summary,
    };
    file.write(run.out)
}
