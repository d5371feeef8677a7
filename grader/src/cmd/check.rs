//! `grader check [KATA...]`: build and run the hidden tests, one verdict per kata.

use std::io::IsTerminal;
use std::time::Duration;

use crate::cli::{CheckArgs, Format};
use crate::course::{Course, Tree};
use crate::exit;
use crate::grade::{self, Options, Status};
use crate::report::{self, Report, Summary};
use crate::state::State;
use crate::workspace::Unit;

pub fn run(course: &Course, args: &CheckArgs) -> anyhow::Result<u8> {
    let katas = course.select(&args.katas)?;
    let tree = if args.solutions { Tree::Solutions } else { Tree::Exercises };
    let units: Vec<Unit> = katas
        .iter()
        .map(|kata| Unit {
            kata: course.katas.iter().position(|k| k.name == kata.name).expect("selected kata"),
            label: kata.name.clone(),
            lib_rs: course.lib_rs(tree, kata),
        })
        .collect();
    let options = Options {
        color: args.format == Format::Human && std::io::stderr().is_terminal(),
        parallel: args.jobs.unwrap_or_else(Options::parallel_default),
        timeout: args.timeout.map(Duration::from_secs),
    };
    if args.format == Format::Human {
        eprintln!(
            "building and running the hidden tests of {} kata(s) ({})...",
            units.len(),
            tree.dir()
        );
    }
    let (results, took) = grade::grade(course, tree.dir(), &units, &options)?;

    if tree == Tree::Exercises {
        State::update(course, |state| {
            for (kata, result) in katas.iter().zip(&results) {
                state.record(course, kata, result.status);
            }
        })?;
    }

    let summary = Summary::of(&results, took);
    let all_passed = summary.passed == summary.katas;
    match args.format {
        Format::Human => {
            print!("{}", report::human(&results, &summary, true));
            if tree == Tree::Exercises {
                let state = State::load(course);
                let done = course
                    .katas
                    .iter()
                    .filter(|k| state.progress(course, k) == crate::state::Progress::Done)
                    .count();
                println!("course progress: {}", report::progress_line(course, &state, done));
            }
        }
        Format::Json => {
            let report = Report {
                version: report::JSON_VERSION,
                tree: tree.dir(),
                katas: &results,
                summary,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    let infrastructure = results.iter().any(|r| r.status == Status::Error);
    Ok(if all_passed {
        exit::SUCCESS
    } else if infrastructure {
        exit::INFRASTRUCTURE
    } else {
        exit::FAILED
    })
}
