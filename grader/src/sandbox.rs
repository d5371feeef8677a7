//! The walls around a test process (Linux): what kata code may touch is decided here, by the
//! operating system, not by convention.
//!
//! `unsafe` is forbidden in the grader, which rules out `pre_exec`; instead each test starts
//! through a small helper binary, `grader-sandbox` (next to the grader's own executable), which
//! re-executes itself once and raises the walls with safe APIs in two stages (`stages`):
//!
//! ```text
//! grader ─ grader-sandbox ──────────── grader-sandbox --init (PID 1) ───── test executable,
//!          new PID namespace; joins     uid, rlimits, no_new_privs,          one after another
//!          the run's network namespace  Landlock; runs each test asked     empty environment,
//!          (or a new one, + user ns     for, then kills what is left and     argv: the path only
//!          unless root); dies with      empties the scratch directory
//!          the grader
//! ```
//!
//! One sandbox serves the tests of one kata (`--serve`, see `stages`): raising the walls cost
//! more than most tests, and a kata's tests all run the same learner's code, so sharing the walls
//! between them gives kata code nothing new. What each test must not inherit from the one before
//! goes between them: every process, and the files in the scratch directory.
//!
//! The helper exists for speed: the grader is a large binary with a large command line, and two
//! of its start-ups per test cost more than the test itself. Without the helper, or with one built
//! from other walls (`cargo run -p grader` rebuilds only the grader), the grader runs the same
//! stages through its hidden `sandbox-exec` subcommand.
//!
//! - When PID 1 of a PID namespace exits the kernel kills everything else in it, so nothing the
//!   test started outlives it, `setsid` or not. Without namespaces the init is a child subreaper
//!   and kills the orphans it collects when the test ends (on a timeout only the process group).
//! - Landlock: read and execute only the test executable and its ELF interpreter, read the system
//!   libraries, write only the private scratch directory (the working directory). No `/proc`, no
//!   course, no target directory, no `$HOME`/`$CARGO_HOME`. TCP bind/connect are denied (and the
//!   network namespace has no interface up); signals and abstract sockets are scoped to the sandbox.
//! - Limits: address space, tasks (processes and threads), file size, open files, CPU time. The task
//!   limit counts per user: as root the init drops to an unused uid; otherwise the user namespace
//!   gives the test a counter of its own.
//! - A signal death travels up as exit code 128 + N, as shells report it.
//! - One network namespace per run, not per test ([`SharedNetwork`]): creating and tearing one
//!   down was most of the walls' cost. It has no interface up, tests run without `CAP_NET_ADMIN`
//!   and Landlock scopes abstract Unix sockets to each test, so tests reach neither each other
//!   nor the outside. Only as root (joining needs it) and only when the kernel scopes abstract
//!   sockets; otherwise each test gets a namespace of its own as before.

pub mod stages;

use std::ffi::OsString;
use std::fs::File;
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use anyhow::bail;
use landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};

/// The helper's file name, next to the grader's executable.
const HELPER: &str = "grader-sandbox";

/// The hidden `sandbox-exec` subcommand: the stages' own argv, passed through.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    argv: Vec<OsString>,
}

/// Runs a stage of the hidden `sandbox-exec` subcommand; returns the exit code.
pub fn run(args: &Args) -> u8 {
    stages::run(&["sandbox-exec"], args.argv.clone())
}

/// Set (to anything) for a local check, `scripts/bench` runs the tests without the walls to
/// measure what they cost. A `--trusted` grade refuses it.
pub const UNSANDBOXED: &str = "GRADER_UNSANDBOXED_FOR_BENCH";

fn unsandboxed() -> bool {
    std::env::var_os(UNSANDBOXED).is_some()
}

/// Whether tests run inside the walls: always, unless a bench measures what the walls cost.
pub fn walled() -> bool {
    !unsandboxed()
}

/// A command that starts a sandbox serving the tests of `executable` one after another (the
/// stages' `--serve`, whose module docs give the protocol), in `scratch`, joining `netns` (a
/// [`SharedNetwork`]) when there is one. Each test process may use `2 * timeout + 1` seconds of
/// CPU time.
pub fn serve_command(
    executable: &Path,
    scratch: &Path,
    timeout: Duration,
    netns: Option<&SharedNetwork>,
) -> Command {
    let mut cmd = stage_command();
    cmd.arg("--serve");
    if let Some(netns) = netns {
        cmd.arg("--netns").arg(&netns.path);
    }
    cmd.arg("--scratch")
        .arg(scratch)
        .arg("--cpu-secs")
        // Threads add up CPU time; the wall-clock timeout stays the one that usually fires.
        .arg((2 * timeout.as_secs() + 1).to_string())
        .arg("--")
        .arg(executable);
    cmd
}

/// The stages' entry point: the helper, or the grader's own `sandbox-exec`.
fn stage_command() -> Command {
    match helper() {
        Some(helper) => Command::new(helper),
        None => {
            let mut cmd = Command::new("/proc/self/exe");
            cmd.arg("sandbox-exec");
            cmd
        }
    }
}

/// The network namespace one run's tests share, held by a `--hold-netns` stage process; the
/// holder is killed and reaped on drop. Its pid cannot be reused while it is unreaped, so the
/// path names this namespace for as long as this value lives; a stage that cannot open it
/// creates a namespace of its own.
#[derive(Debug)]
pub struct SharedNetwork {
    holder: Child,
    path: PathBuf,
}

impl SharedNetwork {
    /// Starts the holder, when the tests can share its namespace safely (see the module docs);
    /// `None` otherwise, and each test gets a namespace of its own.
    pub fn start() -> Option<SharedNetwork> {
        if unsandboxed() || !nix::unistd::geteuid().is_root() || !abstract_sockets_scoped() {
            return None;
        }
        let mut holder = stage_command()
            .arg("--hold-netns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        let mut line = String::new();
        let stdout = holder.stdout.take().map(std::io::BufReader::new);
        let ready = stdout.is_some_and(|mut out| out.read_line(&mut line).is_ok())
            && line.trim() == "ready";
        let shared = SharedNetwork { holder, path };
        // Dropping a holder that is not ready kills and reaps it.
        ready.then_some(shared)
    }
}

impl Drop for SharedNetwork {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Whether Landlock keeps a test from connecting to another test's abstract Unix sockets, which
/// live in the network namespace.
fn abstract_sockets_scoped() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::AbstractUnixSocket)
        .and_then(|ruleset| ruleset.create())
        .is_ok()
}

/// The helper binary, when it sits next to this executable and was built from the same stages;
/// asked once per grader run. It is then run through a descriptor this process holds open
/// (`/proc/self/fd/N`), so a rebuild that replaces the file while tests run changes nothing.
fn helper() -> Option<&'static Path> {
    static HELPER_PATH: OnceLock<Option<(File, PathBuf)>> = OnceLock::new();
    HELPER_PATH
        .get_or_init(|| {
            let path = std::env::current_exe().ok()?.with_file_name(HELPER);
            let file = File::open(&path).ok()?;
            let held = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let out = Command::new(&held)
                .arg("--fingerprint")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let expected = format!("{:016x}", stages::FINGERPRINT);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == expected)
                .then_some((file, held))
        })
        .as_ref()
        .map(|(_, held)| held.as_path())
}

/// Turns the status the stages report (a signal as 128 + N) back into the test's own.
pub fn decode(status: ExitStatus) -> ExitStatus {
    match status.code() {
        Some(code @ 129..=192) => ExitStatus::from_raw(code - 128),
        _ => status,
    }
}

/// Whether this kernel can raise the Landlock wall.
fn landlock_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI::V1))
            .and_then(|ruleset| ruleset.create())
            .is_ok()
    })
}

/// Whether kata code runs behind every wall: Landlock is there and no bench turned it off.
pub fn landlocked() -> bool {
    !unsandboxed() && landlock_available()
}

/// Checks that this kernel can raise the Landlock wall. Without it a local check runs with a
/// warning; a `trusted` grade refuses.
pub fn require(trusted: bool) -> anyhow::Result<()> {
    if unsandboxed() {
        if trusted {
            bail!(
                "{UNSANDBOXED} is set: a --trusted grade runs every test in the sandbox; unset it"
            );
        }
        eprintln!("warning: {UNSANDBOXED} is set: the tests run without the sandbox's walls");
        return Ok(());
    }
    if landlock_available() {
        return Ok(());
    }
    if trusted {
        bail!(
            "this kernel has no Landlock, so kata code would run unsandboxed; grade on Linux 5.13 \
             or later with Landlock enabled, or drop --trusted for a local check"
        );
    }
    static WARN: Once = Once::new();
    WARN.call_once(|| {
        eprintln!("warning: no Landlock on this kernel: kata code can reach your files (fine for a local check)");
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_survives_the_trip_through_an_exit_code() {
        let aborted = ExitStatus::from_raw(6);
        let reported = ExitStatus::from_raw(i32::from(stages::code(aborted)) << 8);
        assert_eq!(decode(reported).signal(), Some(6));
        let failed = ExitStatus::from_raw(101 << 8);
        assert_eq!(decode(failed).code(), Some(101));
    }
}
