//! `grader watch`: checks the current kata, then re-checks it on every save, with single keys for
//! the rest: `h` hint, `n` next kata, `l` list, `r` re-check, `q` quit.
//!
//! It needs a terminal: without one it says so and exits with a usage error instead of waiting
//! for keys that will never come.

use std::collections::VecDeque;
use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use notify::{RecursiveMode, Watcher};

use crate::UsageError;
use crate::cli::{HintArgs, WatchArgs};
use crate::course::{Course, Kata, Tree};
use crate::exit;
use crate::grade::{self, Options, Status};
use crate::progress::Progress;
use crate::report::human::Detail;
use crate::state::{Standing, State};
use crate::style;
use crate::workspace::Unit;

/// Quiet time after the last file event before re-checking: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// How often `--poll` looks at the files.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// The exit code after Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2).
const INTERRUPTED: u8 = 130;

/// The separator between checks: as wide as the narrowest terminal the output fits (60).
const WIDTH: usize = 60;

enum Event {
    /// A key, and when it was pressed.
    Key(u8, Instant),
    /// Rust files changed: the katas they belong to, by folder name.
    Changed(Vec<String>),
}

pub fn run(course: &Course, args: &WatchArgs) -> anyhow::Result<u8> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(UsageError(format!(
            "`{}` needs a terminal to read keys from; in scripts and CI use `{}`",
            crate::invoked::command("watch"),
            crate::invoked::command("check")
        ))
        .into());
    }
    crate::invoked::set_watching();
    let _raw = RawMode::enter()?;
    let (tx, rx) = mpsc::channel();

    let keys = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        while stdin.read_exact(&mut byte).is_ok() {
            if keys.send(Event::Key(byte[0], Instant::now())).is_err() {
                break;
            }
        }
    });
    let exercises = course.root.join(Tree::Exercises.dir());
    let root = exercises.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let katas: Vec<String> = event
                .paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .filter_map(|p| kata_of(&root, p))
                .collect();
            if !katas.is_empty() {
                let _ = tx.send(Event::Changed(katas));
            }
        }
    };
    // Where the file system sends no events (network file systems, WSL's /mnt), `--poll` looks.
    let poll = args.poll || remote(&exercises);
    if poll && !args.poll {
        println!(
            "{} is on a network file system: looking for saves every second",
            exercises.display()
        );
    }
    let mut watcher: Box<dyn Watcher> = if poll {
        let config = notify::Config::default().with_poll_interval(POLL_EVERY);
        Box::new(notify::PollWatcher::new(handler, config).context("failed to poll the exercises")?)
    } else {
        Box::new(
            notify::recommended_watcher(handler)
                .context("failed to watch the exercises for changes")?,
        )
    };
    watcher
        .watch(&exercises, RecursiveMode::Recursive)
        .with_context(|| format!("failed to watch {}", exercises.display()))?;

    let mut current = State::load(course).current(course).map(|k| k.name.clone());
    let mut pending: VecDeque<Event> = VecDeque::new();
    let mut graded = check(course, current.as_deref())?;
    drain_rechecks(&rx, &mut pending, graded, None);
    while let Some(event) = pending.pop_front().or_else(|| rx.recv().ok()) {
        match event {
            Event::Changed(mut saved) => {
                // Editors write in bursts; anything saved meanwhile joins this check.
                while let Ok(event) = rx.recv_timeout(DEBOUNCE) {
                    match event {
                        Event::Changed(more) => saved.extend(more),
                        other => pending.push_back(other),
                    }
                }
                drain_rechecks(&rx, &mut pending, Instant::now(), Some(&mut saved));
                if !saved.iter().any(|k| Some(k) == current.as_ref())
                    && let Some(other) = saved.first()
                {
                    println!("you saved {other}: checking it");
                    current = Some(other.clone());
                }
                graded = check(course, current.as_deref())?;
                drain_rechecks(&rx, &mut pending, graded, None);
            }
            Event::Key(b'q' | 4, _) => break,
            Event::Key(3, _) => {
                println!("interrupted: run `{}` to go on", crate::invoked::command("watch"));
                return Ok(INTERRUPTED);
            }
            // Pressed while a verdict was on its way: that verdict answers it.
            Event::Key(b'r', at) if at <= graded => {}
            Event::Key(b'r', _) => {
                // Five quick presses are one check.
                drain_rechecks(&rx, &mut pending, Instant::now(), None);
                graded = check(course, current.as_deref())?;
                drain_rechecks(&rx, &mut pending, graded, None);
            }
            Event::Key(b'l', _) => {
                super::list::run(course)?;
                help(course, current.as_deref());
            }
            Event::Key(b'h', _) => {
                if let Some(name) = &current {
                    super::hint::run(course, &HintArgs { kata: name.clone(), all: false })?;
                }
                help(course, current.as_deref());
            }
            Event::Key(b'n', _) => {
                current = next_after(course, current.as_deref()).map(|k| k.name.clone());
                if let Some(kata) = current.as_deref().and_then(|c| find(course, c)) {
                    println!("{}", style::dim(&"-".repeat(WIDTH)));
                    super::next::show(course, kata)?;
                }
                graded = check(course, current.as_deref())?;
                drain_rechecks(&rx, &mut pending, graded, None);
            }
            Event::Key(..) => help(course, current.as_deref()),
        }
    }
    println!("bye: run `{}` to pick up where you left off", crate::invoked::command("watch"));
    Ok(exit::SUCCESS)
}

/// Takes every event already queued: `r` pressed before `covered` (the check about to run, or
/// the one that has just graded, covers it) is dropped; saves join `saved` when given (the check
/// about to run reads them), else wait in `pending` with everything else.
fn drain_rechecks(
    rx: &mpsc::Receiver<Event>,
    pending: &mut VecDeque<Event>,
    covered: Instant,
    mut saved: Option<&mut Vec<String>>,
) {
    while let Ok(event) = rx.try_recv() {
        match (event, saved.as_deref_mut()) {
            (Event::Key(b'r', at), _) if at <= covered => {}
            (Event::Changed(katas), Some(saved)) => saved.extend(katas),
            (other, _) => pending.push_back(other),
        }
    }
}

/// Whether `path` is on a file system whose changes made elsewhere (another machine, Windows
/// under WSL 2) send no events here: NFS, SMB/CIFS, 9p.
#[cfg(all(target_os = "linux", target_env = "gnu", not(target_arch = "s390x")))]
fn remote(path: &Path) -> bool {
    use nix::sys::statfs::{FsType, statfs};
    const REMOTE: [FsType; 5] = [
        FsType(0x6969),      // NFS
        FsType(0x517B),      // SMB
        FsType(0xFF53_4D42), // CIFS
        FsType(0xFE53_4D42), // SMB2
        FsType(0x0102_1997), // 9p (WSL 2's /mnt/c)
    ];
    statfs(path).is_ok_and(|fs| REMOTE.contains(&fs.filesystem_type()))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(target_arch = "s390x"))))]
fn remote(_path: &Path) -> bool {
    false
}

/// The kata folder under `exercises` that `path` is in.
fn kata_of(exercises: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(exercises).ok()?;
    let folder = rel.components().next()?.as_os_str().to_str()?;
    Some(folder.to_owned())
}

fn find<'a>(course: &'a Course, name: &str) -> Option<&'a Kata> {
    course.katas.iter().find(|k| k.name == name)
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

/// Checks the kata and prints the verdict; returns when the grading was done (a key pressed
/// before then asked for what the verdict already shows).
fn check(course: &Course, current: Option<&str>) -> anyhow::Result<Instant> {
    println!("{}", style::dim(&"-".repeat(WIDTH)));
    let Some(kata) = current.and_then(|c| find(course, c)) else {
        println!("{}", style::good("every kata is done. Well played."));
        help(course, None);
        return Ok(Instant::now());
    };
    let unit = Unit {
        kata: course.katas.iter().position(|k| k.name == kata.name).expect("a course kata"),
        label: kata.name.clone(),
        lib_rs: course.lib_rs(Tree::Exercises, kata),
        root: course.root.clone(),
        tests: None,
        focus: None,
    };
    let options = Options {
        color: style::enabled(),
        parallel: Options::parallel_default(),
        timeout: None,
        trusted: false,
        build_timeout: None,
        cache: true,
        gate: None,
        explain: true,
    };
    let progress = Progress::new(true, true);
    let (results, took) =
        grade::grade_katas(course, Tree::Exercises, &[unit], &options, &progress)?;
    let graded = Instant::now();
    let summary = crate::report::Summary::of(&results, took);
    print!("{}", crate::report::human::render(&results, &summary, Detail::All));
    let passed = results.first().is_some_and(|r| r.status == Status::Passed);
    let hash =
        results[0].source_hash.clone().unwrap_or_else(|| crate::state::source_hash(course, kata));
    State::update(course, |state| state.record(course, kata, hash, results[0].status))?;
    if passed {
        println!(
            "{}",
            style::good(&format!("kata {:02} passes. Press n for the next kata.", kata.number()))
        );
    } else {
        println!("waiting for you to save {} ...", unit_file(course, kata));
    }
    help(course, Some(&kata.name));
    Ok(graded)
}

fn unit_file(course: &Course, kata: &Kata) -> String {
    let path = course.learner_file(kata);
    path.strip_prefix(&course.root).unwrap_or(&path).display().to_string()
}

fn help(course: &Course, current: Option<&str>) {
    let state = State::load(course);
    println!(
        "{}\n{}",
        style::dim(&crate::report::progress_line(course, &state)),
        style::dim(match current {
            Some(_) => "keys: h hint, n next, l list, r re-check, q quit",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_is_watched_by_events_and_files_map_to_their_kata() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!remote(dir.path()));
        let exercises = Path::new("/course/exercises");
        let file = exercises.join("03_irc_line_reader/src/lib.rs");
        assert_eq!(kata_of(exercises, &file).as_deref(), Some("03_irc_line_reader"));
        assert_eq!(kata_of(exercises, Path::new("/elsewhere/x.rs")), None);
    }
}
