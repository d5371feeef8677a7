//! The two stages of the sandbox (Linux), shared by the small `grader-sandbox` binary and the
//! grader's hidden `sandbox-exec` subcommand (the fallback when the helper is missing or stale).
//! See `crate::sandbox` for the walls and why they are raised by re-executing.
//!
//! Kept free of the grader's other modules and of clap: each test process execs this code twice,
//! and a small binary with a hand-parsed argv starts in a fraction of the time the grader takes.
//!
//! argv: `[--init] [--serve] [--netns PATH] --scratch DIR --cpu-secs N -- PROGRAM [ARGS..]`;
//! `--fingerprint` prints [`FINGERPRINT`]; `--hold-netns` holds the run's shared network namespace.
//!
//! With `--serve` one sandbox runs many tests of one executable, one after another, so the walls
//! go up once per kata rather than once per test (they had cost more than the tests). The init
//! then reads requests on standard input, one line each:
//!
//! ```text
//! <marker> <test> <nonce>\n
//! ```
//!
//! and for each starts `PROGRAM` with `<test> <nonce>\n` on its standard input and the init's
//! standard output and error. When the test process ends, everything else in the sandbox is
//! killed and reaped and the scratch directory emptied; then `\n<marker>\n` goes to standard
//! error and `\n<marker> <code>\n` to standard output, `<code>` as [`code`] gives it. The grader
//! draws each marker at random and never shows it to a test, so output before a marker is that
//! test's own and cannot fake its end. Standard input closed: the init exits 0.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Gid, Pid, Uid};

/// Exit code of a stage that could not do its job (as `env` and `timeout` use it).
pub const STAGE_FAILED: u8 = 125;

/// Address space of a test process: far more than a kata needs, far less than the machine has.
const ADDRESS_SPACE: u64 = 1 << 30;
/// Tasks (processes and threads) under the test's uid: a two-worker runtime and a blocking pool.
const TASKS: u64 = 32;
const FILE_SIZE: u64 = 64 << 20;
const OPEN_FILES: u64 = 256;

/// Directories the dynamic loader reads shared libraries from.
const SYSTEM_LIBS: &[&str] = &["/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64"];
const SYSTEM_FILES: &[&str] = &["/etc/ld.so.cache", "/dev/urandom", "/dev/zero"];

/// A fingerprint of this file: the grader uses the helper binary only when it was built from the
/// same walls as itself (`cargo run -p grader` rebuilds the grader alone, not the helper).
pub const FINGERPRINT: u64 = fnv1a(include_bytes!("stages.rs"));

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A stage's command line.
#[derive(Debug)]
struct Args {
    /// The second stage: PID 1 of the new namespace.
    init: bool,
    /// Run the tests the grader asks for on standard input (see the module docs), not one.
    serve: bool,
    /// A network namespace to join (the run's shared one) instead of creating one.
    netns: Option<PathBuf>,
    /// The test's private, writable working directory.
    scratch: PathBuf,
    /// CPU time limit in seconds.
    cpu_secs: u64,
    /// The executable and its arguments.
    command: Vec<OsString>,
}

impl Args {
    fn parse(argv: Vec<OsString>) -> anyhow::Result<Args> {
        let mut argv = argv.into_iter();
        let (mut init, mut serve, mut netns, mut scratch, mut cpu_secs) =
            (false, false, None, None, None);
        while let Some(arg) = argv.next() {
            match arg.to_str() {
                Some("--init") => init = true,
                Some("--serve") => serve = true,
                Some("--netns") => netns = argv.next().map(PathBuf::from),
                Some("--scratch") => scratch = argv.next().map(PathBuf::from),
                Some("--cpu-secs") => {
                    let secs = argv.next().context("--cpu-secs needs a value")?;
                    cpu_secs =
                        Some(secs.to_str().and_then(|s| s.parse().ok()).with_context(|| {
                            format!("--cpu-secs {}: not a number", secs.to_string_lossy())
                        })?);
                }
                Some("--") => break,
                _ => bail!("unexpected argument {}", arg.to_string_lossy()),
            }
        }
        let command: Vec<OsString> = argv.collect();
        if command.is_empty() {
            bail!("no command to run");
        }
        Ok(Args {
            init,
            serve,
            netns,
            scratch: scratch.context("--scratch is required")?,
            cpu_secs: cpu_secs.context("--cpu-secs is required")?,
            command,
        })
    }
}

/// Runs the stage `argv` asks for; returns the exit code. `reexec` is what follows
/// `/proc/self/exe` to reach these stages again (`sandbox-exec` in the grader, nothing in the helper).
pub fn run(reexec: &[&str], argv: Vec<OsString>) -> u8 {
    if argv.first().is_some_and(|arg| arg == "--fingerprint") {
        println!("{FINGERPRINT:016x}");
        return 0;
    }
    if argv.first().is_some_and(|arg| arg == "--hold-netns") {
        return hold_netns().unwrap_or_else(|err| {
            eprintln!("grader sandbox: {err:#}");
            STAGE_FAILED
        });
    }
    let stage = Args::parse(argv)
        .and_then(|args| if args.init { init(&args) } else { outer(reexec, &args) });
    stage.unwrap_or_else(|err| {
        eprintln!("grader sandbox: {err:#}");
        STAGE_FAILED
    })
}

fn outer(reexec: &[&str], args: &Args) -> anyhow::Result<u8> {
    prctl::set_pdeathsig(Signal::SIGKILL).context("failed to tie the sandbox to the grader")?;
    isolate(args.netns.as_deref());
    let mut init = Command::new("/proc/self/exe");
    init.args(reexec).arg("--init");
    if args.serve {
        init.arg("--serve");
    }
    let status = init
        .arg("--scratch")
        .arg(&args.scratch)
        .arg("--cpu-secs")
        .arg(args.cpu_secs.to_string())
        .arg("--")
        .args(&args.command)
        .status()
        .context("failed to start the sandbox's init")?;
    Ok(code(status))
}

/// Holds the network namespace a run's tests share (`crate::sandbox::SharedNetwork`): creates
/// it, says `ready`, and keeps it alive until the grader closes standard input or dies.
fn hold_netns() -> anyhow::Result<u8> {
    // Closed standard input covers a grader that died before this line.
    prctl::set_pdeathsig(Signal::SIGKILL).context("failed to tie the holder to the grader")?;
    unshare(CloneFlags::CLONE_NEWNET).context("failed to create a network namespace")?;
    println!("ready");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
        .context("failed to wait for the grader")?;
    Ok(0)
}

/// A new PID namespace, and a network namespace: the run's shared one (`netns`) when it can be
/// joined, else a new one; a user namespace too when not root (mapping the user to itself).
/// Best effort: the init notices when it is not PID 1.
fn isolate(netns: Option<&Path>) {
    let flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET;
    if nix::unistd::geteuid().is_root() {
        // Joining skips a namespace's creation and teardown per test, most of the walls' cost.
        let joined = netns.is_some_and(|path| {
            File::open(path).is_ok_and(|ns| setns(&ns, CloneFlags::CLONE_NEWNET).is_ok())
        });
        let _ = unshare(if joined { CloneFlags::CLONE_NEWPID } else { flags });
        return;
    }
    // Not root: the shared namespace belongs to the holder's user namespace, which this one
    // cannot enter; the grader starts no holder then.
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    if unshare(flags | CloneFlags::CLONE_NEWUSER).is_ok() {
        let _ = std::fs::write("/proc/self/setgroups", "deny");
        let _ = std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"));
        let _ = std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"));
    }
}

fn init(args: &Args) -> anyhow::Result<u8> {
    let (program, test_args) = args.command.split_first().context("no command to run")?;
    let program = Path::new(program);
    // Absolute, so the Landlock rule still names it after the change of directory.
    let program = &std::fs::canonicalize(program)
        .with_context(|| format!("failed to find {}", program.display()))?;
    // Opened before the uid changes: the test may not be able to reach its own path.
    let exe =
        File::open(program).with_context(|| format!("failed to open {}", program.display()))?;
    let interpreter = elf_interpreter(&exe);
    std::env::set_current_dir(&args.scratch)
        .with_context(|| format!("failed to enter {}", args.scratch.display()))?;
    let orphans = if nix::unistd::getpid().as_raw() == 1 {
        None
    } else {
        prctl::set_child_subreaper(true).context("failed to become a child subreaper")?;
        File::open("/proc/thread-self/children").ok()
    };
    // Opened before the uid changes too: the test's uid may not be able to reach the target
    // directory (a course under a private home, run as root), and Landlock grants only what it
    // can open. A rule that silently failed to open would deny the test its own executable.
    let own = OwnPaths::open(program, interpreter.as_deref(), &args.scratch)?;
    if nix::unistd::geteuid().is_root() {
        drop_root(&args.scratch)?;
    }
    // After the uid change, which clears it.
    prctl::set_pdeathsig(Signal::SIGKILL).context("failed to tie the test to the grader")?;
    limit(args.cpu_secs)?;
    let status = landlock(own).context("failed to apply Landlock")?;
    if status.ruleset == RulesetStatus::NotEnforced {
        eprintln!("warning: no Landlock on this kernel: the test can reach your files");
    }
    // A test runs as this uid: it must not read the markers of a serving init from its memory.
    prctl::set_dumpable(false).context("failed to make the init undumpable")?;

    let test = || {
        let mut test = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
        test.arg0(program).args(test_args).env_clear();
        test
    };
    if args.serve {
        return serve(test, orphans.as_ref());
    }
    let mut child =
        test().spawn().with_context(|| format!("failed to start {}", program.display()))?;
    let status = child.wait().context("failed to wait for the test")?;
    clean_up(orphans.as_ref());
    Ok(code(status))
}

/// The init's loop with `--serve`: one test per request line, each in a sandbox emptied of the
/// previous test's processes and files (see the module docs).
fn serve(test: impl Fn() -> Command, orphans: Option<&File>) -> anyhow::Result<u8> {
    use std::io::{BufRead, Write};
    for request in std::io::stdin().lock().lines() {
        let request = request.context("failed to read a request")?;
        let Some((marker, input)) = request.split_once(' ') else {
            bail!("a request without a test: {request:?}");
        };
        let mut child = test()
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("failed to start the test")?;
        if let Some(mut stdin) = child.stdin.take() {
            // A test that exits before reading its input closes the pipe; its verdict says so.
            let _ = writeln!(stdin, "{input}");
        }
        let status = child.wait().context("failed to wait for the test")?;
        clean_up(orphans);
        empty_scratch();
        let mut err = std::io::stderr().lock();
        write!(err, "\n{marker}\n").and_then(|()| err.flush())?;
        let mut out = std::io::stdout().lock();
        write!(out, "\n{marker} {}\n", code(status)).and_then(|()| out.flush())?;
    }
    Ok(0)
}

/// Kills and reaps everything the test left: the whole namespace when this is its PID 1 (where
/// `kill(-1)` reaches every other process in it and nothing outside), else the orphans this
/// subreaper collected.
fn clean_up(orphans: Option<&File>) {
    if let Some(orphans) = orphans {
        kill_orphans(orphans);
        return;
    }
    if nix::unistd::getpid().as_raw() != 1 {
        return;
    }
    loop {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        match waitpid(None, None) {
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
}

/// Removes what the test left in its scratch directory (the working directory), keeping it.
fn empty_scratch() {
    // Through the working directory, which is the scratch directory: the init's uid may not be
    // able to reach it by its path (a target directory under a private home, run as root).
    let Ok(entries) = std::fs::read_dir(".") else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        drop(removed);
    }
}

/// Switches to a uid and gid no one else uses, so the task limit counts this test alone.
fn drop_root(scratch: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    let id = 0x4000_0000 | (u32::from_le_bytes(bytes) & 0x0fff_ffff);
    std::os::unix::fs::chown(scratch, Some(id), Some(id))
        .with_context(|| format!("failed to hand {} to the test", scratch.display()))?;
    let (uid, gid) = (Uid::from_raw(id), Gid::from_raw(id));
    nix::unistd::setgroups(&[]).context("failed to drop supplementary groups")?;
    nix::unistd::setresgid(gid, gid, gid).context("failed to switch group")?;
    nix::unistd::setresuid(uid, uid, uid).context("failed to switch user")?;
    Ok(())
}

fn limit(cpu_secs: u64) -> anyhow::Result<()> {
    let limits = [
        (Resource::RLIMIT_AS, ADDRESS_SPACE, ADDRESS_SPACE),
        (Resource::RLIMIT_NPROC, TASKS, TASKS),
        (Resource::RLIMIT_FSIZE, FILE_SIZE, FILE_SIZE),
        (Resource::RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
        (Resource::RLIMIT_CPU, cpu_secs, cpu_secs + 1),
        (Resource::RLIMIT_CORE, 0, 0),
    ];
    for (resource, soft, hard) in limits {
        setrlimit(resource, soft, hard).with_context(|| format!("failed to set {resource:?}"))?;
    }
    Ok(())
}

/// The test's own paths for Landlock, opened (`O_PATH`) while the init can still reach them.
struct OwnPaths {
    /// The test executable and its ELF interpreter: read and executed.
    executables: Vec<PathFd>,
    /// The scratch directory: everything.
    scratch: PathFd,
}

impl OwnPaths {
    fn open(program: &Path, interpreter: Option<&Path>, scratch: &Path) -> anyhow::Result<Self> {
        let open = |path: &Path| {
            PathFd::new(path).with_context(|| format!("failed to open {}", path.display()))
        };
        let mut executables = vec![open(program)?];
        // The interpreter lives with the system's libraries; a missing one fails at exec anyway.
        executables.extend(interpreter.and_then(|path| PathFd::new(path).ok()));
        Ok(OwnPaths { executables, scratch: open(scratch)? })
    }
}

fn landlock(own: OwnPaths) -> Result<RestrictionStatus, landlock::RulesetError> {
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi) & !AccessFs::Execute;
    let existing = |paths: &'static [&'static str]| paths.iter().filter(|p| Path::new(p).exists());
    let executables = own.executables.into_iter().map(|fd| {
        Ok::<_, landlock::RulesetError>(PathBeneath::new(
            fd,
            AccessFs::ReadFile | AccessFs::Execute,
        ))
    });
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rules(path_beneath_rules(existing(SYSTEM_LIBS), read))?
        .add_rules(path_beneath_rules(existing(SYSTEM_FILES), read))?
        .add_rules(executables)?
        .add_rules(path_beneath_rules(["/dev/null"], AccessFs::ReadFile | AccessFs::WriteFile))?
        .add_rule(PathBeneath::new(own.scratch, AccessFs::from_all(abi)))?
        .restrict_self()
}

/// Kills what the test left behind when there is no PID namespace to do it: orphans are
/// re-parented to this subreaper, so killing children until there are none gets them all.
fn kill_orphans(children: &File) {
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        let n = children.read_at(&mut buf, 0).unwrap_or(0);
        let pids: Vec<i32> = String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The ELF interpreter (`PT_INTERP`) of a 64-bit little-endian executable, which the kernel opens
/// for execution too.
fn elf_interpreter(exe: &File) -> Option<PathBuf> {
    let mut header = [0u8; 64];
    exe.read_exact_at(&mut header, 0).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as u64;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(&header, 32), u16_at(&header, 54), u16_at(&header, 56));
    for i in 0..phnum.min(64) {
        let mut ph = [0u8; 56];
        exe.read_exact_at(&mut ph, phoff + i * phentsize).ok()?;
        if u32::from_le_bytes(ph[..4].try_into().unwrap()) == 3 {
            let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32).min(4096));
            let mut path = vec![0u8; size as usize];
            exe.read_exact_at(&mut path, offset).ok()?;
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            let text = String::from_utf8(path[..end].to_vec()).ok()?;
            return Some(PathBuf::from(text));
        }
    }
    None
}

/// An exit status as one exit code: a signal as 128 + N.
pub fn code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128 + signal as u8,
        (None, None) => STAGE_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_interpreter_of_a_dynamic_executable() {
        let exe = File::open("/bin/sh").unwrap();
        let interpreter = elf_interpreter(&exe).expect("/bin/sh is dynamically linked");
        assert!(interpreter.to_string_lossy().contains("ld-"), "{interpreter:?}");
        assert!(interpreter.exists());
    }
}
