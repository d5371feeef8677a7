//! `grader list`: every kata in order with its level and the learner's progress.

use crate::course::Course;
use crate::exit;
use crate::state::{Standing, State};
use crate::style;

pub fn run(course: &Course) -> anyhow::Result<u8> {
    let state = State::load(course);
    let current = state.current(course).map(|k| k.name.as_str());
    // Sized to the course so that a line fits 60 columns (issue 13).
    let width = course.katas.iter().map(|k| k.slug().len()).max().unwrap_or(0).max(4);
    let levels = course.katas.iter().map(|k| k.level.to_string().len()).max().unwrap_or(0).max(5);
    outln!("  #  {:<width$} {:<levels$} {:>3} status", "kata", "level", "pts");
    for kata in &course.katas {
        let status = match state.progress(course, kata) {
            Standing::Done => style::good("done"),
            Standing::Failing => style::bad("failing"),
            Standing::Unchecked => "unchecked".to_owned(),
        };
        let marker = if current == Some(kata.name.as_str()) { ">" } else { " " };
        outln!(
            "{marker} {:02} {:<width$} {:<levels$} {:>3} {status}",
            kata.number(),
            kata.slug(),
            kata.level.to_string(),
            kata.points
        );
    }
    outln!();
    outln!("{}", crate::report::progress_line(course, &state));
    Ok(exit::SUCCESS)
}
