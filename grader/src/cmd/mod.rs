//! The subcommands, one module each, every one with a single `run` entry point.

mod check;
mod gradebook;
mod handout;
mod hint;
mod list;
mod verify;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::course::Course;

/// Runs the parsed command line and returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    // The gradebook reads reports, not a course.
    if let Command::Gradebook(args) = &cli.command {
        return gradebook::run(args);
    }
    let course = match (&cli.manifest, &cli.root) {
        (Some(manifest), _) => Course::load_manifest(manifest)?,
        (None, Some(root)) => Course::load(root)?,
        (None, None) => {
            let cwd = std::env::current_dir().context("failed to read the current directory")?;
            Course::discover(&cwd)?
        }
    };
    match cli.command {
        Command::List => list::run(&course),
        Command::Check(args) => check::run(&course, &args),
        Command::Hint(args) => hint::run(&course, &args),
        Command::Verify(args) => verify::run(&course, &args),
        Command::Handout(args) => handout::run(&course, &args),
        Command::Gradebook(_) => unreachable!("handled above"),
    }
}
