//! `grader watch`: checks the current kata, then re-checks it on every save, with single keys for
//! the rest: `h` hint, `n` next kata, `l` list, `r` re-check, `q` quit.
//!
//! It needs a terminal: without one it says so and exits with a usage error instead of waiting
//! for keys that will never come.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use notify::{RecursiveMode, Watcher};

use crate::UsageError;
use crate::cli::HintArgs;
use crate::course::{Course, Kata, Tree};
use crate::exit;
use crate::grade::{self, Options, Status};
use crate::progress::Progress;
use crate::state::{Standing, State};
use crate::style;
use crate::workspace::Unit;

/// Quiet time after the last file event before re-checking: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(250);

enum Event {
    Key(u8),
    Changed,
}

pub fn run(course: &Course) -> anyhow::Result<u8> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "`grader watch` needs a terminal to read keys from; in scripts and CI use \
             `grader check`"
                .into(),
        )
        .into());
    }
    let _raw = RawMode::enter()?;
    let (tx, rx) = mpsc::channel();

    let keys = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        while stdin.read_exact(&mut byte).is_ok() {
            if keys.send(Event::Key(byte[0])).is_err() {
                break;
            }
        }
    });
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
            && event.paths.iter().any(|p| p.extension().is_some_and(|e| e == "rs"))
        {
            let _ = tx.send(Event::Changed);
        }
    })
    .context("failed to watch the exercises for changes")?;
    let exercises = course.root.join(Tree::Exercises.dir());
    watcher
        .watch(&exercises, RecursiveMode::Recursive)
        .with_context(|| format!("failed to watch {}", exercises.display()))?;

    let mut current = State::load(course).current(course).map(|k| k.name.clone());
    check(course, current.as_deref())?;
    while let Ok(event) = rx.recv() {
        match event {
            Event::Changed => {
                while rx.recv_timeout(DEBOUNCE).is_ok_and(|e| matches!(e, Event::Changed)) {}
                check(course, current.as_deref())?;
            }
            Event::Key(b'q' | 3 | 4) => break,
            Event::Key(b'r') => check(course, current.as_deref())?,
            Event::Key(b'l') => {
                super::list::run(course)?;
                help(course, current.as_deref());
            }
            Event::Key(b'h') => {
                if let Some(name) = &current {
                    super::hint::run(course, &HintArgs { kata: name.clone(), all: false })?;
                }
                help(course, current.as_deref());
            }
            Event::Key(b'n') => {
                current = next_after(course, current.as_deref()).map(|k| k.name.clone());
                check(course, current.as_deref())?;
            }
            Event::Key(_) => help(course, current.as_deref()),
        }
    }
    println!("bye: run `grader watch` to pick up where you left off");
    Ok(exit::SUCCESS)
}

/// The first kata after `current` that is not done, wrapping round; `None` when all are done.
fn next_after<'a>(course: &'a Course, current: Option<&str>) -> Option<&'a Kata> {
    let state = State::load(course);
    let start =
        current.and_then(|c| course.katas.iter().position(|k| k.name == c)).map_or(0, |i| i + 1);
    let n = course.katas.len();
    (0..n)
        .map(|i| &course.katas[(start + i) % n])
        .find(|k| state.progress(course, k) != Standing::Done)
}

fn check(course: &Course, current: Option<&str>) -> anyhow::Result<()> {
    println!("{}", style::dim(&"-".repeat(72)));
    let Some(kata) = current.and_then(|c| course.katas.iter().find(|k| k.name == c)) else {
        println!("{}", style::good("every kata is done. Well played."));
        help(course, None);
        return Ok(());
    };
    let unit = Unit {
        kata: course.katas.iter().position(|k| k.name == kata.name).expect("a course kata"),
        label: kata.name.clone(),
        lib_rs: course.lib_rs(Tree::Exercises, kata),
        root: course.root.clone(),
    };
    let options = Options {
        color: style::enabled(),
        parallel: Options::parallel_default(),
        timeout: None,
        trusted: false,
        build_timeout: None,
        cache: true,
        gate: None,
    };
    let progress = Progress::new(true, true);
    let (results, took) =
        grade::grade(course, Tree::Exercises.dir(), &[unit], &options, &progress)?;
    let summary = crate::report::Summary::of(&results, took);
    print!("{}", crate::report::human::render(&results, &summary));
    let passed = results.first().is_some_and(|r| r.status == Status::Passed);
    let hash =
        results[0].source_hash.clone().unwrap_or_else(|| crate::state::source_hash(course, kata));
    State::update(course, |state| state.record(kata, hash, results[0].status))?;
    if passed {
        println!(
            "{}",
            style::good(&format!("kata {:02} passes. Press n for the next kata.", kata.number()))
        );
    } else {
        println!("waiting for you to save {} ...", unit_file(course, kata));
    }
    help(course, Some(&kata.name));
    Ok(())
}

fn unit_file(course: &Course, kata: &Kata) -> String {
    let path = course.lib_rs(Tree::Exercises, kata);
    path.strip_prefix(&course.root).unwrap_or(&path).display().to_string()
}

fn help(course: &Course, current: Option<&str>) {
    let state = State::load(course);
    println!(
        "{}  {}",
        style::dim(&crate::report::progress_line(course, &state)),
        style::dim(match current {
            Some(_) => "keys: h hint, n next kata, l list, r re-check, q quit",
            None => "keys: l list, q quit",
        })
    );
}

/// Single-key input without echo while watching; the terminal is restored on drop, also after a
/// panic. Ctrl-C arrives as a key (signals are off) so that the restore always runs.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved =
            termios::tcgetattr(stdin.as_fd()).context("failed to read the terminal mode")?;
        let mut raw = saved.clone();
        raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("failed to set the terminal mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
