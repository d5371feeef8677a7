//! How the learner started the grader, so that a message names a command they can type: under
//! `cargo run -p grader -- check` a bare `grader hint 2` would not work (issue 13), and inside
//! `watch` a key does the same job.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static PREFIX: OnceLock<String> = OnceLock::new();
static WATCHING: AtomicBool = AtomicBool::new(false);

/// The command that runs the grader, as the learner would type it: `cargo run -p grader --` when
/// cargo started it (cargo sets `CARGO_PKG_NAME` for the program it runs), else `grader`.
pub fn grader() -> &'static str {
    PREFIX.get_or_init(|| {
        prefix(std::env::var_os("CARGO_PKG_NAME").as_deref().and_then(|n| n.to_str()))
    })
}

fn prefix(cargo_package: Option<&str>) -> String {
    match cargo_package {
        Some(package) if !package.is_empty() => format!("cargo run -p {package} --"),
        _ => "grader".to_owned(),
    }
}

/// `grader <args>` in the form the learner can type.
pub fn command(args: &str) -> String {
    format!("{} {args}", grader())
}

/// Marks the rest of the run as inside `grader watch`, where single keys replace commands.
pub fn set_watching() {
    WATCHING.store(true, Ordering::Relaxed);
}

/// Whether the grader runs inside `grader watch`.
pub fn watching() -> bool {
    WATCHING.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_command_that_started_the_grader() {
        assert_eq!(prefix(Some("grader")), "cargo run -p grader --");
        assert_eq!(prefix(None), "grader");
        assert_eq!(prefix(Some("")), "grader");
    }
}
