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
             notes once `grader check {}` passes",
            kata.number()
        ))
        .into());
    }
    let done = State::load(course).progress(course, kata) == Standing::Done;
    if !done && !args.force {
        return Err(UsageError(format!(
            "kata {} does not pass yet: run `grader check {0}` first, try `grader hint {0}`, or \
             pass --force to look anyway",
            kata.number()
        ))
        .into());
    }
    for file in ["README.md", "src/lib.rs"] {
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
