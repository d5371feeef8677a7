//! `grader completions SHELL`: a completion script on standard output.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit;

pub fn run(args: &CompletionsArgs) -> anyhow::Result<u8> {
    clap_complete::generate(args.shell, &mut Cli::command(), "grader", &mut std::io::stdout());
    Ok(exit::SUCCESS)
}
