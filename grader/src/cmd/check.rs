//! `grader check [KATA...]`: build and run the hidden tests, one verdict per kata, rendered in
//! as many formats as were asked for.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{CheckArgs, Format};
use crate::course::{Course, Kata, Tree};
use crate::exit;
use crate::grade::{self, Options, Status, UnitResult};
use crate::progress::Progress;
use crate::report::human::Detail;
use crate::report::{self, Report, Summary};
use crate::state::State;
use crate::workspace::Unit;

pub fn run(course: &Course, args: &CheckArgs) -> anyhow::Result<u8> {
    let tree = if args.solutions { Tree::Solutions } else { Tree::Exercises };
    if args.solutions && !course.root.join(tree.dir()).is_dir() {
        return Err(crate::UsageError(
            "this copy of the course has no reference solutions (a student handout); \
             `grader check` checks your exercises"
                .into(),
        )
        .into());
    }
    let here = if args.katas.is_empty() { kata_here(course) } else { None };
    let named = match here {
        Some(kata) => {
            eprintln!(
                "checking kata {:02}, whose folder you are in\n(name katas, or run from the \
                 course root, to check others)",
                kata.number()
            );
            vec![kata.name.clone()]
        }
        None => args.katas.clone(),
    };
    let katas = course.select(&named)?;
    let only_current = args.format == Format::Human
        && named.is_empty()
        && tree == Tree::Exercises
        && args.reports.is_empty();
    let units: Vec<Unit> = katas
        .iter()
        .map(|kata| Unit {
            kata: course.katas.iter().position(|k| k.name == kata.name).expect("selected kata"),
            label: kata.name.clone(),
            lib_rs: course.lib_rs(tree, kata),
            root: course.root.clone(),
            tests: None,
            focus: None,
        })
        .collect();
    let options = Options {
        // Compiler colours follow the report's: `--color`, NO_COLOR and a terminal on stdout.
        color: args.format == Format::Human && crate::style::enabled(),
        parallel: args.jobs.unwrap_or_else(Options::parallel_default),
        timeout: args.timeout.map(Duration::from_secs),
        trusted: args.trusted
            || args.format == Format::Classroom
            || std::env::var_os(crate::build_sandbox::REQUIRE_ENV).is_some(),
        build_timeout: args.build_timeout.map(Duration::from_secs),
        cache: !args.no_cache,
        gate: None,
        // A plain first check shows one kata's failures: only that one is explained, below.
        explain: !args.no_explain && !only_current,
    };
    let bar = Progress::new(
        matches!(args.format, Format::Human | Format::Github),
        std::io::stderr().is_terminal(),
    );
    let (mut results, took) = grade::grade_katas(course, tree, &units, &options, &bar)?;

    let progress = (tree == Tree::Exercises).then(|| {
        State::update(course, |state| {
            for (kata, result) in katas.iter().zip(&results) {
                let hash = result
                    .source_hash
                    .clone()
                    .unwrap_or_else(|| crate::state::source_hash(course, kata));
                state.record(course, kata, hash, result.status);
            }
        })
    });
    let state = progress.transpose()?;
    // Named katas get details; else only the current one, so a first check on a fresh clone is a
    // line per kata (and `--solutions`, a maintainer's check, gets them all).
    let current = state.as_ref().and_then(|s| s.current(course)).map(|k| k.name.as_str());
    let detail = if named.is_empty() && tree == Tree::Exercises {
        Detail::Only(current)
    } else {
        Detail::All
    };
    if only_current
        && !args.no_explain
        && let Some(i) = current.and_then(|name| results.iter().position(|r| r.name == name))
    {
        let explaining = Options { explain: true, ..options.clone() };
        let (unit, result) = (&units[i..=i], &mut results[i..=i]);
        grade::explain_cuts(course, unit, result, &explaining, &bar);
    }
    let progress = state.map(|state| report::progress_line(course, &state));

    let summary = Summary::of(&results, took);
    let rendered = Rendered { course, tree, results: &results, summary: &summary, took, detail };
    let mut stdout = rendered.render(args.format)?;
    if let (Format::Human | Format::Github, Some(progress)) = (args.format, &progress) {
        stdout.push_str(&format!("course: {progress}\n"));
    }
    out!("{stdout}");
    for (format, path) in &args.reports {
        // A new file renamed into place: a symlink or FIFO planted at `path` is replaced, never
        // written through, and the file a later CI step reads is the one the grader wrote.
        crate::state::write_atomic(path, rendered.render(*format)?.as_bytes()).with_context(
            || format!("failed to write the {format:?} report to {}", path.display()),
        )?;
    }
    let summary_file = args.summary.clone().or_else(|| {
        (args.format == Format::Github)
            .then(|| std::env::var_os("GITHUB_STEP_SUMMARY"))
            .flatten()
            .map(Into::into)
    });
    if let Some(path) = summary_file {
        append(&path, &report::github::summary(&results, &summary))?;
    }

    let all_passed = summary.passed == summary.katas;
    let infrastructure = results.iter().any(|r| r.status == Status::Error);
    Ok(if all_passed {
        exit::SUCCESS
    } else if infrastructure {
        exit::INFRASTRUCTURE
    } else {
        exit::FAILED
    })
}

struct Rendered<'a> {
    course: &'a Course,
    tree: Tree,
    results: &'a [UnitResult],
    summary: &'a Summary,
    took: Duration,
    detail: Detail<'a>,
}

impl Rendered<'_> {
    fn render(&self, format: Format) -> anyhow::Result<String> {
        Ok(match format {
            Format::Human => report::human::render(self.results, self.summary, self.detail),
            Format::Json => {
                let report = Report {
                    version: report::JSON_VERSION,
                    tree: self.tree.dir(),
                    katas: self.results,
                    summary: self.summary.clone(),
                };
                serde_json::to_string_pretty(&report)? + "\n"
            }
            Format::Junit => report::junit::render(self.results, self.took)?,
            Format::Github => {
                report::github::annotations(self.results, &self.course.root)
                    + &report::github::log(&report::human::render(
                        self.results,
                        self.summary,
                        Detail::All,
                    ))
            }
            Format::Classroom => report::classroom::render(self.results)? + "\n",
        })
    }
}

/// The kata whose folder (under `exercises/` or `solutions/`) holds the current directory.
fn kata_here(course: &Course) -> Option<&Kata> {
    let cwd = std::env::current_dir().ok()?.canonicalize().ok()?;
    let mut parts = cwd.strip_prefix(&course.root).ok()?.components();
    let tree = parts.next()?.as_os_str();
    if tree != Tree::Exercises.dir() && tree != Tree::Solutions.dir() {
        return None;
    }
    let folder = parts.next()?.as_os_str().to_str()?;
    course.katas.iter().find(|k| k.name == folder)
}

/// Appends to a file, as GitHub expects for `$GITHUB_STEP_SUMMARY`.
fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("failed to write the job summary to {}", path.display()))
}
