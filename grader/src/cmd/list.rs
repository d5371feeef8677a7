//! `grader list`: every kata in order with its level and the learner's progress.

use crate::course::Course;
use crate::exit;
use crate::state::{Progress, State};

pub fn run(course: &Course) -> anyhow::Result<u8> {
    let state = State::load(course);
    let mut done = 0;
    println!("{:<4} {:<28} {:<13} {:>6}  status", "#", "kata", "level", "points");
    for kata in &course.katas {
        let progress = state.progress(course, kata);
        let status = match progress {
            Progress::Done => {
                done += 1;
                "done"
            }
            Progress::Failing => "failing",
            Progress::Unchecked => "not checked",
        };
        println!(
            "{:<4} {:<28} {:<13} {:>6}  {status}",
            format!("{:02}", kata.number()),
            kata.slug(),
            kata.level.to_string(),
            kata.points
        );
    }
    println!();
    println!("{}", crate::report::progress_line(course, &state, done));
    Ok(exit::SUCCESS)
}
