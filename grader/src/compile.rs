//! Building the hidden tests: one `cargo build --tests --keep-going` over a generated workspace,
//! with cargo's JSON messages sorted per unit.
//!
//! Cargo runs with the filesystem root as its working directory, so no `.cargo/config.toml` in
//! the course repository (a runner, an alias, rustflags) applies to the build.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cargo_metadata::Message;
use cargo_metadata::diagnostic::DiagnosticLevel;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::build_sandbox::{self, Walls};
use crate::progress::Progress;
use crate::workspace::Staged;

/// What the build produced for one unit.
#[derive(Debug, Default, Clone)]
pub struct Built {
    /// The hidden-test executable, when the unit compiled.
    pub executable: Option<PathBuf>,
    /// Rendered compiler errors in the unit's own sources.
    pub errors: Vec<String>,
    /// Rendered compiler warnings in the unit's own sources.
    pub warnings: Vec<String>,
}

/// One unit to build: its package name, what was staged for it, and how its files are named to
/// the learner (staged path prefix, shown prefix), longest first.
#[derive(Debug, Clone)]
pub struct Input {
    pub package: String,
    pub label: String,
    pub staged: Staged,
    pub shown: Vec<(String, String)>,
}

/// How long the build may go without finishing anything before it is taken for a runaway (a
/// `const` loop under `#[allow(long_running_const_eval)]` never ends).
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(120);

/// Builds every unit's hidden tests; the result is in the order of `units`.
///
/// When cargo reports nothing for `idle_limit`, it is killed with its compilers; the units it
/// finished keep their results and the rest are built one by one, each with the same limit, so
/// only a runaway unit gets `compile timed out`.
#[expect(clippy::too_many_arguments, reason = "one call site, each argument distinct")]
pub fn build(
    dir: &Path,
    target: &Path,
    root: &Path,
    units: &[Input],
    walls: &Walls,
    color: bool,
    idle_limit: Duration,
    progress: &Progress,
) -> anyhow::Result<Vec<Built>> {
    progress.phase("building", units.len());
    let (mut built, timed_out) =
        build_once(dir, target, root, units, None, walls, color, idle_limit, progress)?;
    if timed_out {
        let pending: Vec<usize> = (0..units.len())
            .filter(|&i| built[i].executable.is_none() && built[i].errors.is_empty())
            .collect();
        for i in pending {
            let one = std::slice::from_ref(&units[i]);
            let test = format!("hidden-{}", units[i].package);
            let (mut alone, timed_out) = build_once(
                dir,
                target,
                root,
                one,
                Some(&test),
                walls,
                color,
                idle_limit,
                progress,
            )?;
            if timed_out && alone[0].executable.is_none() {
                alone[0].errors = vec![format!(
                    "compile timed out: the compiler made no progress for {}s (a `const` that \
                     never finishes evaluating?)",
                    idle_limit.as_secs()
                )];
            }
            built[i] = alone.swap_remove(0);
        }
    }
    for (unit, built) in units.iter().zip(&mut built) {
        if built.executable.is_none() && built.errors.is_empty() {
            built.errors.push(format!("`{}` was not built", unit.label));
        }
    }
    Ok(built)
}

/// One cargo run over `units` (or the one test target `only`); also says whether it was cut off.
#[expect(clippy::too_many_arguments, reason = "the arguments of `build`, passed on")]
fn build_once(
    dir: &Path,
    target: &Path,
    root: &Path,
    units: &[Input],
    only: Option<&str>,
    walls: &Walls,
    color: bool,
    idle_limit: Duration,
    progress: &Progress,
) -> anyhow::Result<(Vec<Built>, bool)> {
    let format = if color { "json-diagnostic-rendered-ansi" } else { "json" };
    let mut command = build_sandbox::command(walls, &cargo_path()?)?;
    command
        .arg("build")
        .args(only.map_or(vec!["--tests"], |test| vec!["--test", test]))
        .arg("--keep-going")
        .arg(format!("--message-format={format}"))
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    let mut child = command
        .current_dir("/")
        .env_remove("RUSTC_WRAPPER")
        // The course's `.cargo/config.toml` does not apply from `/`; the one flag it sets does, so
        // tokio's seeded `select!` is available and tokio is shared with the course's own build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", RUSTFLAGS)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to run cargo; is the Rust toolchain installed and on PATH?")?;

    // The watchdog: cargo and every rustc it started are one process group, killed together.
    // Time spent waiting for another cargo's lock on the target directory (a second `grader`, or
    // `cargo test`, building in it) is not the build's: it does not count towards the limit.
    let last = Arc::new(Mutex::new(Instant::now()));
    let done = Arc::new(AtomicBool::new(false));
    let waiting_for_lock = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (last, done, waiting) =
            (Arc::clone(&last), Arc::clone(&done), Arc::clone(&waiting_for_lock));
        let group = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(mut last) = last.lock() {
                    if waiting.load(Ordering::Relaxed) {
                        *last = Instant::now();
                    } else if last.elapsed() > idle_limit {
                        let _ = killpg(group, Signal::SIGKILL);
                        return true;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };

    let stderr = child.stderr.take().expect("piped stderr");
    let stderr = {
        let waiting = Arc::clone(&waiting_for_lock);
        std::thread::spawn(move || {
            let mut text = String::new();
            // Read to the end whatever it holds, so cargo never blocks on a full pipe.
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                // Cargo's status line while another process holds the lock; it says nothing
                // when it gets the lock, but its first message on stdout follows.
                if line.contains("Blocking waiting for file lock") {
                    waiting.store(true, Ordering::Relaxed);
                }
                if text.len() < 1 << 20 {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        })
    };

    let mut built = vec![Built::default(); units.len()];
    let owner = |src: &Path| units.iter().position(|u| u.staged.lib_rs == src);
    let tests_of = |name: &str| units.iter().position(|u| format!("hidden-{}", u.package) == name);
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut any_message = false;
    for message in Message::parse_stream(stdout) {
        waiting_for_lock.store(false, Ordering::Relaxed);
        if let Ok(mut last) = last.lock() {
            *last = Instant::now();
        }
        match message.context("failed to read cargo's output")? {
            Message::CompilerArtifact(artifact) => {
                if let (Some(exe), Some(i)) = (artifact.executable, tests_of(&artifact.target.name))
                {
                    built[i].executable = Some(exe.into_std_path_buf());
                    progress.step();
                }
            }
            Message::CompilerMessage(msg) => {
                let src = msg.target.src_path.as_std_path();
                // Errors in the hidden tests are errors of the kata's API, shown with the kata.
                let unit = owner(src).or_else(|| tests_of(&msg.target.name));
                let Some(i) = unit else { continue };
                let rendered = msg.message.rendered.clone().unwrap_or(msg.message.message.clone());
                // Paths as the learner knows them: staged copies by their originals, relative to
                // the course root.
                let mut rendered = rendered;
                for (staged, shown) in &units[i].shown {
                    rendered = rendered.replace(staged, shown);
                }
                let rendered = rendered.replace(&format!("{}/", root.display()), "");
                match msg.message.level {
                    DiagnosticLevel::Error | DiagnosticLevel::Ice => {
                        any_message = true;
                        built[i].errors.push(rendered);
                    }
                    DiagnosticLevel::Warning => built[i].warnings.push(rendered),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("failed to wait for cargo")?;
    done.store(true, Ordering::Relaxed);
    let timed_out = watchdog.join().unwrap_or(false);
    let stderr = stderr.join().unwrap_or_default();
    if timed_out {
        return Ok((built, true));
    }
    if !status.success() && !any_message {
        bail!("failed to build the hidden tests (cargo {status}):\n{}", stderr.trim_end());
    }
    for (unit, built) in units.iter().zip(&mut built) {
        if built.executable.is_none() && built.errors.is_empty() {
            built.errors.push(format!(
                "`{}` was not built; cargo said:\n{}",
                unit.label,
                stderr.trim_end()
            ));
        }
    }
    Ok((built, false))
}

/// The flags every build of the hidden tests gets, as in the course's `.cargo/config.toml`.
pub const RUSTFLAGS: &str = "--cfg tokio_unstable";

/// The cargo that runs the grader (so `cargo run` and `cargo +toolchain` agree), else `cargo`.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// [`cargo`] as a path: looked up in `PATH` when it is a bare name (links kept: rustup's proxy
/// decides what to be by the name it is run as).
pub fn cargo_path() -> anyhow::Result<PathBuf> {
    let cargo = cargo();
    let found = if cargo.components().count() > 1 {
        Some(cargo.clone())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path).map(|dir| dir.join(&cargo)).find(|p| p.is_file())
        })
    };
    found.filter(|p| p.exists()).with_context(|| {
        format!(
            "failed to run cargo ({}); is the Rust toolchain installed and on PATH?",
            cargo.display()
        )
    })
}
