//! `grader next`: the current kata (the first not done) in brief: its story, task and file.
//!
//! A section is shown up to its first two paragraphs of prose; code blocks are kept whole and do
//! not count (kata 01's story is two paragraphs around a `select!`), and a paragraph that
//! introduces one (ending with `:`) brings it along.

use crate::course::{Course, Kata, Tree};
use crate::exit;
use crate::state::State;
use crate::style;

/// Paragraphs of prose shown per section.
const PARAGRAPHS: usize = 2;

pub fn run(course: &Course) -> anyhow::Result<u8> {
    let state = State::load(course);
    let Some(kata) = state.current(course) else {
        outln!(
            "{}",
            style::good(&format!("all {} katas are done. Well played.", course.katas.len()))
        );
        return Ok(exit::SUCCESS);
    };
    show(course, kata)?;
    outln!(
        "then  {}   (or `{}`)",
        crate::invoked::command(&format!("check {}", kata.number())),
        crate::invoked::command("watch")
    );
    Ok(exit::SUCCESS)
}

/// A kata's title, story and task, and the files to open.
pub fn show(course: &Course, kata: &Kata) -> anyhow::Result<()> {
    outln!(
        "{} {} ({}, {} points)\n",
        style::bold(&format!("kata {:02}:", kata.number())),
        style::bold(&kata.title),
        kata.level,
        kata.points
    );
    for heading in ["The story", "Your task"] {
        if let Some(text) = course.readme_section(Tree::Exercises, kata, heading) {
            outln!("{}\n{}\n", style::bold(heading), first_paragraphs(&text, PARAGRAPHS));
        }
    }
    let file = course.learner_file(kata);
    let readme = course.kata_dir(Tree::Exercises, kata).join("README.md");
    outln!("edit  {}", file.strip_prefix(&course.root).unwrap_or(&file).display());
    outln!("read  {}", readme.strip_prefix(&course.root).unwrap_or(&readme).display());
    Ok(())
}

/// The section's blocks up to its `n`th paragraph of prose, with fenced code blocks whole.
fn first_paragraphs(text: &str, n: usize) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut prose = 0;
    for block in blocks(text) {
        let code = block.starts_with("```");
        if prose == n {
            // A last paragraph that introduces a code block brings it along.
            let introduces = kept.last().is_some_and(|p| p.trim_end().ends_with(':'));
            if !(code && introduces) {
                break;
            }
        }
        if !code {
            prose += 1;
        }
        kept.push(block);
    }
    kept.join("\n\n")
}

/// Blank-line separated blocks, a fenced code block (blank lines and all) being one.
fn blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            if !fenced && !current.is_empty() {
                blocks.push(current.join("\n"));
                current.clear();
            }
            current.push(line);
            if fenced {
                blocks.push(current.join("\n"));
                current.clear();
            }
            fenced = !fenced;
        } else if line.trim().is_empty() && !fenced {
            if !current.is_empty() {
                blocks.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current.join("\n"));
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_are_shown_whole_and_do_not_count() {
        let story = "One.\n\nTwo, racing:\n\n```rust\nselect! {\n\n    a => b,\n}\n```\n\nThree.\n";
        assert_eq!(
            first_paragraphs(story, 2),
            "One.\n\nTwo, racing:\n\n```rust\nselect! {\n\n    a => b,\n}\n```"
        );
        let inside = "One:\n```sh\nx\n```\nTwo.\n\nThree.";
        assert_eq!(first_paragraphs(inside, 2), "One:\n\n```sh\nx\n```\n\nTwo.");
        assert_eq!(first_paragraphs("A.\n\nB.\n\nC.", 2), "A.\n\nB.");
    }
}
