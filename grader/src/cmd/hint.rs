//! `grader hint KATA`: reveals the kata's hints one at a time, remembering how far the learner got.

use crate::cli::HintArgs;
use crate::course::Course;
use crate::exit;
use crate::state::State;

pub fn run(course: &Course, args: &HintArgs) -> anyhow::Result<u8> {
    let kata = course.find(&args.kata)?;
    let total = kata.hints.len();
    if total == 0 {
        outln!("kata {} has no hints", kata.name);
        return Ok(exit::SUCCESS);
    }
    let state = State::load(course);
    let seen = state.hints_seen.get(&kata.name).copied().unwrap_or(0);
    let show = if args.all { total } else { (seen + 1).min(total) };
    for (i, hint) in kata.hints.iter().enumerate().take(show) {
        outln!("hint {}/{total}: {hint}", i + 1);
    }
    if show < total {
        if crate::invoked::watching() {
            outln!("\n(press h again for the next hint)");
        } else {
            let again = crate::invoked::command(&format!("hint {}", kata.number()));
            outln!("\n(run `{again}` again for the next hint)");
        }
    }
    if show > seen {
        State::update(course, |state| {
            let seen = state.hints_seen.entry(kata.name.clone()).or_default();
            *seen = (*seen).max(show);
        })?;
    }
    Ok(exit::SUCCESS)
}
