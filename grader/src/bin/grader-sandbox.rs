//! `grader-sandbox`: the grader's small helper that raises the walls around one test process
//! (see `grader/src/sandbox.rs`). Each test execs it twice, so it carries only the stages: no
//! clap, none of the grader's other modules.

#[path = "../sandbox/stages.rs"]
mod stages;

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(stages::run(&[], std::env::args_os().skip(1).collect()))
}
