//! The handout's README: what a student needs to work the katas and hand them in, written from
//! the manifest. It names no solutions, no `--solutions`, and none of the maintainers' files or
//! commands, none of which the handout has.

use std::fmt::Write as _;

use crate::course::Course;

/// The README's Markdown.
pub fn text(course: &Course) -> String {
    let first = course.katas.first();
    let number = first.map_or(1, |k| k.number());
    let folder = first.map_or_else(|| "01_first".to_owned(), |k| k.name.clone());
    let total: u32 = course.katas.iter().map(|k| k.points).sum();
    let mut text = format!(
        "# Cancellation katas for async Rust

Small exercises (\"katas\") on **cancellation safety in async Rust**. Each kata is one realistic
function that works when it runs to the end and breaks when its future is dropped at an `.await`.
You find the bug and fix it; the grader runs hidden tests that cancel your code at every point it
can be cancelled, and tells you whether your fix holds and, if not, what was lost.

You need a Rust toolchain (rustup) on Linux. On a fresh copy every kata fails: that is the start.

## Working a kata

1. `cargo run -p grader -- list` shows every kata in order, with its level and your progress.
2. Open the first one that is not done: `exercises/{folder}/README.md` tells the story, which
   cancellation source bites, and what done means. The code is in `src/lib.rs`; the `// TODO`
   marks where you work. Keep the public API as it is: the hidden tests use it.
3. `cargo run -p grader -- check {number}` builds and runs the kata's hidden tests. A failure names
   the cancellation point and what was lost.
4. Stuck? `cargo run -p grader -- hint {number}` reveals the next hint; each call shows one more.

`cargo install --path grader` puts `grader` on your PATH; `grader watch` then re-checks the
current kata every time you save.

| command | what it does |
| --- | --- |
| `grader watch` | checks the current kata, then again on every save (`h` hint, `n` next, `q` quit) |
| `grader next` | the current kata: its story, task and the file to edit |
| `grader list` | every kata, its level, points and status |
| `grader check [KATA...]` | builds and runs the hidden tests of the named katas (default: all) |
| `grader hint KATA` | the next hint |
| `grader reset KATA` | your starting code back (your file is kept as a backup next to it) |

## The katas ({} points in all)

| kata | title | level | points |
| --- | --- | --- | --- |
",
        total
    );
    for kata in &course.katas {
        let _ = writeln!(
            text,
            "| `{}` | {} | {} | {} |",
            kata.name,
            kata.title.replace('|', "\\|"),
            kata.level,
            kata.points
        );
    }
    text.push_str(
        "
## Handing in

Commit and push. Every push runs `.github/workflows/classroom.yml`, which checks your katas and
shows the result in the repository's Actions tab (and in GitHub Classroom): that is feedback.
Your grade is computed by your teacher from your repository, with the course's own copy of the
hidden tests; only the files under `exercises/*/src` count.
",
    );
    text
}
