//! `grader solution KATA`: the reference solution and its explanation, once the kata passes.

use crate::UsageError;
use crate::course::{Course, Tree};
use crate::exit;
use crate::state::{Standing, State};

pub fn run(course: &Course, args: &crate::cli::SolutionArgs) -> anyhow::Result<u8> {
    let kata = course.find(&args.kata)?;
    let dir = course.kata_dir(Tree::Solutions, kata);
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "this copy of the course has no solutions (a handout?); ask your teacher, or compare \
             notes once `{}` passes",
            crate::invoked::command(&format!("check {}", kata.number()))
        ))
        .into());
    }
    let done = State::load(course).progress(course, kata) == Standing::Done;
    if !done && !args.force {
        // Not a usage error: the command was right, the kata is not there yet (exit 1, as a
        // failing check).
        let n = kata.number();
        let command = |args: String| crate::invoked::command(&args);
        eprintln!(
            "kata {n} does not pass yet, so its solution stays hidden: run `{}` first, try `{}`, \
             or run `{}` to look anyway",
            command(format!("check {n}")),
            command(format!("hint {n}")),
            command(format!("solution {n} --force")),
        );
        return Ok(exit::FAILED);
    }
    // A write-the-test kata's solution is its reference test.
    let work = match kata.kind {
        crate::course::KataKind::Fix => "src/lib.rs",
        crate::course::KataKind::WriteTheTest => "tests/cancel.rs",
    };
    for file in ["README.md", work] {
        let path = dir.join(file);
        if file == "README.md" && !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
        outln!(
            "==> {} <==\n{}\n",
            path.strip_prefix(&course.root).unwrap_or(&path).display(),
            text.trim_end()
        );
    }
    Ok(exit::SUCCESS)
}
