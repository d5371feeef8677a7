//! `grader`: runs the hidden tests of the cancellation katas and reports progress.
//!
//! `cli` declares the command line; each subcommand is a module under `cmd` with one `run`.
//! The shared machinery: `course` (the manifest), `decoy` (decoys and alternatives as patches),
//! `workspace` (the generated build), `cache` (verdicts kept by content), `compile` (cargo), `run` (test processes), `sandbox` (the
//! walls around them), `grade` (verdicts), `report` (output), `state` (progress), `wtt` (write-the-test katas: the learner's test against
//! every version of a function); for teachers,
//! `roster` (who to grade), `shard` (a part of the class), `submission` (fetching and taking a student's sources) and
//! `gradebook` (many students' results combined).

/// `println!` that returns an error instead of panicking when standard output is closed
/// (`grader list | head`); `main` ends such a run quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?;
    }};
}

/// `print!` with the same behaviour as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)?;
    }};
}

mod build_sandbox;
mod cache;
mod cli;
mod cmd;
mod compile;
mod course;
mod decoy;
mod explain;
mod grade;
mod gradebook;
mod invoked;
mod progress;
mod report;
mod results;
mod roster;
mod run;
mod sandbox;
mod shard;
mod stage;
mod state;
mod style;
mod submission;
mod workspace;
mod wtt;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, a documented API (see `grader --help`).
pub mod exit {
    /// Every checked kata passed (or the command succeeded).
    pub const SUCCESS: u8 = 0;
    /// Some kata failed, did not compile or timed out; or verify found a broken contract.
    pub const FAILED: u8 = 1;
    /// The command line was wrong (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The grader could not do its job: cargo missing, a broken course, an I/O error.
    pub const INFRASTRUCTURE: u8 = 3;
}

/// An error the user caused by what they asked for (an unknown kata, say), as opposed to a
/// failure of the grader or its environment.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::SUCCESS),
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::INFRASTRUCTURE)
            }
        }
    }
}

/// The reader of standard output went away: not worth an error message.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
