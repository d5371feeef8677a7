//! The one test target of every exercise crate. `cargo test` inside `exercises/NN_slug/` is a
//! learner's first instinct; without a target it printed `Finished` and passed, even with a syntax
//! error (issue 13). This target builds the kata (so a compile error shows) and then fails,
//! saying how to check it: a kata's tests are hidden, and only the grader runs them.
//!
//! In the project's own run (`cargo test --workspace`, or nextest's), where every exercise fails
//! as shipped by design and `grader verify` proves it, it passes without a word.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        // Test runners (nextest) ask a test binary for its tests first.
        println!("check_with_the_grader: test");
        return ExitCode::SUCCESS;
    }
    if whole_workspace() {
        return ExitCode::SUCCESS;
    }
    let folder = env!("CARGO_MANIFEST_DIR").rsplit('/').next().unwrap_or_default();
    let number = folder.split('_').next().unwrap_or(folder).trim_start_matches('0');
    eprintln!(
        "\n{folder} compiles, but `cargo test` cannot check it: its tests are hidden, and the \
         grader runs them. From anywhere in the repository:\n\n    \
         cargo run -p grader -- check {number}\n\n(or `grader check {number}` once \
         `cargo install --path grader` has put the grader on your PATH)\n"
    );
    ExitCode::FAILURE
}

/// Whether the cargo (or nextest) that started this test runs the whole workspace.
fn whole_workspace() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let Some(ppid) = after.split_whitespace().nth(1) else {
        return false;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{ppid}/cmdline")) else {
        return false;
    };
    cmdline.split(|b| *b == 0).any(|arg| arg == b"--workspace" || arg == b"--all")
}
