//! `grader next`: the current kata (the first not done) in brief: its story, task and file.

use crate::course::{Course, Tree};
use crate::exit;
use crate::state::State;
use crate::style;

pub fn run(course: &Course) -> anyhow::Result<u8> {
    let state = State::load(course);
    let Some(kata) = state.current(course) else {
        outln!(
            "{}",
            style::good(&format!("all {} katas are done. Well played.", course.katas.len()))
        );
        return Ok(exit::SUCCESS);
    };
    outln!(
        "{} {} ({}, {} points)\n",
        style::bold(&format!("kata {:02}:", kata.number())),
        style::bold(&kata.title),
        kata.level,
        kata.points
    );
    for heading in ["The story", "Your task"] {
        if let Some(text) = course.readme_section(Tree::Exercises, kata, heading) {
            outln!("{}\n{}\n", style::bold(heading), first_paragraphs(&text, 2));
        }
    }
    let file = course.lib_rs(Tree::Exercises, kata);
    let readme = course.kata_dir(Tree::Exercises, kata).join("README.md");
    outln!("edit  {}", file.strip_prefix(&course.root).unwrap_or(&file).display());
    outln!("read  {}", readme.strip_prefix(&course.root).unwrap_or(&readme).display());
    outln!("then  grader check {}   (or `grader watch`)", kata.number());
    Ok(exit::SUCCESS)
}

fn first_paragraphs(text: &str, n: usize) -> String {
    text.split("\n\n").take(n).collect::<Vec<_>>().join("\n\n")
}
