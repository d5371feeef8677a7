//! The subcommands, one module each, every one with a single `run` entry point.

mod check;
mod completions;
mod grade;
mod gradebook;
mod handout;
mod hint;
mod list;
mod next;
mod reset;
mod solution;
mod verify;
mod watch;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::course::Course;

/// Runs the parsed command line and returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    crate::style::init(cli.color);
    // These read no course.
    match &cli.command {
        Command::Gradebook(args) => {
            return gradebook::run(args, cli.root.as_deref(), cli.manifest.as_deref());
        }
        Command::Completions(args) => return completions::run(args),
        Command::SandboxExec(args) => return Ok(crate::sandbox::run(args)),
        Command::BuildSandbox(args) => return crate::build_sandbox::exec(args),
        _ => {}
    }
    let course = match (&cli.manifest, &cli.root) {
        (Some(manifest), root) => Course::load_manifest(manifest, root.as_deref())?,
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
        Command::Grade(args) => grade::run(&course, &args),
        Command::Watch(args) => watch::run(&course, &args),
        Command::Next => next::run(&course),
        Command::Reset(args) => reset::run(&course, &args),
        Command::Solution(args) => solution::run(&course, &args),
        Command::Gradebook(_)
        | Command::Completions(_)
        | Command::SandboxExec(_)
        | Command::BuildSandbox(_) => {
            unreachable!("handled above")
        }
    }
}
