//! Running hidden tests: a process per test, in parallel, each with a timeout, a captured and
//! capped output, and a pass proven by a nonce rather than parsed from what the test printed.
//!
//! Every test process runs inside the sandbox's walls (`crate::sandbox`), in a private scratch
//! directory, in its own process group. The test's name and its nonce go to standard input, never
//! to argv or the environment. When the test ends or times out the group is killed; the sandbox's
//! PID namespace takes everything else the test started with it. Output readers get a bounded
//! grace after that, so a pipe held open by something that survived cannot hang the grader.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::sandbox;

/// Bytes of output kept from the start and from the end of each test's output.
pub const KEEP_HEAD: usize = 16 * 1024;
pub const KEEP_TAIL: usize = 16 * 1024;

/// How long output readers may take to finish once the test's processes are gone.
const READER_GRACE: Duration = Duration::from_secs(2);

/// One test to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Index of the unit the test belongs to.
    pub unit: usize,
    pub executable: PathBuf,
    pub test: String,
    pub timeout: Duration,
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    TimedOut,
}

/// The verdict on one test.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub unit: usize,
    pub test: String,
    pub outcome: Outcome,
    /// Why it failed, for a learner; empty when it passed.
    pub message: String,
    pub duration: Duration,
}

/// Lists the tests in a hidden-test executable within `timeout`, outside the sandbox.
///
/// No kata code runs during `--list`, so the walls would cost a sandbox start-up per kata for
/// nothing. The executable's `main` is `kata_support::harness::main`, which prints the static
/// names `hidden_test!` collected and returns before reading stdin or calling a test. Kata code
/// could only run earlier as life before `main`: a constructor in `.init_array`, which needs
/// `#[link_section]`, `#[no_mangle]`, `#[export_name]` or `global_asm!`; the generated kata crate is built with
/// `unsafe_code = "forbid"` (`workspace::generate`), which rejects all four and cannot be
/// lowered from inside the crate, and a kata crate has no build script and no dependencies of its
/// own choosing. The test executable is the one built behind the build's walls, hashed before and
/// after the tests. The timeout, the process group and the empty environment stay.
pub fn list_tests(executable: &Path, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let scratch = scratch()?;
    let mut cmd = Command::new(executable);
    cmd.args(["--list", "--format", "terse"]).current_dir(scratch.path()).env_clear();
    list_with(cmd, executable, timeout)
}

fn list_with(cmd: Command, executable: &Path, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let ran = supervise(cmd, b"", timeout, None)
        .with_context(|| format!("failed to list the tests in {}", executable.display()))?;
    match ran.status {
        None => bail!(
            "failed to list the tests in {}: no answer within {}s",
            executable.display(),
            timeout.as_secs()
        ),
        Some(status) if !status.success() => bail!(
            "failed to list the tests in {} ({status}): {}",
            executable.display(),
            ran.stderr.text().trim()
        ),
        Some(_) => {}
    }
    let stdout = ran.stdout.text();
    Ok(stdout.lines().filter_map(|line| line.strip_suffix(": test")).map(str::to_owned).collect())
}

/// Runs every job, `parallel` at a time; results come back in job order.
pub fn run_all(jobs: Vec<Job>, parallel: usize, done: &(dyn Fn() + Sync)) -> Vec<TestRun> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let (tx, rx) = mpsc::channel();
    // Held until every test has ended; started here so it lives exactly as long as the tests.
    let netns = if count > 0 { sandbox::SharedNetwork::start() } else { None };
    let netns = netns.as_ref();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(count.max(1)) {
            let tx = tx.clone();
            let queue = &queue;
            scope.spawn(move || {
                loop {
                    let next = queue.lock().expect("job queue").next();
                    let Some((i, job)) = next else { break };
                    let run = run_one(&job, netns);
                    done();
                    let _ = tx.send((i, run));
                }
            });
        }
    });
    drop(tx);
    let mut runs: Vec<_> = rx.into_iter().collect();
    runs.sort_by_key(|(i, _)| *i);
    runs.into_iter().map(|(_, run)| run).collect()
}

fn run_one(job: &Job, netns: Option<&sandbox::SharedNetwork>) -> TestRun {
    let start = Instant::now();
    let (outcome, message) = match execute(job, netns) {
        Ok(result) => judge(job, result),
        Err(err) => (Outcome::Failed, format!("the grader could not run this test: {err:#}")),
    };
    TestRun { unit: job.unit, test: job.test.clone(), outcome, message, duration: start.elapsed() }
}

struct Finished {
    status: Option<ExitStatus>,
    output: Captured,
    proven: bool,
}

fn execute(job: &Job, netns: Option<&sandbox::SharedNetwork>) -> anyhow::Result<Finished> {
    let nonce = nonce()?;
    let scratch = scratch()?;
    let cmd = sandbox::command(&job.executable, &[], scratch.path(), job.timeout, netns);
    let input = format!("{} {nonce}\n", job.test);
    let proof = format!("{PROOF_PREFIX}{nonce}");
    let ran = supervise(cmd, input.as_bytes(), job.timeout, Some(&proof))?;
    Ok(Finished {
        status: ran.status,
        output: Captured::merge(ran.stdout, ran.stderr),
        proven: ran.proven,
    })
}

/// A private working directory for one test process, removed when dropped.
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("kata-")
        .tempdir()
        .context("failed to create a scratch directory")
}

/// What a supervised process did: its status (`None`: timed out), output and whether the proof
/// appeared on standard output.
struct Supervised {
    status: Option<ExitStatus>,
    stdout: Captured,
    stderr: Captured,
    proven: bool,
}

/// Runs `cmd` in its own process group with `input` on stdin, kills the group when it exits or
/// `timeout` passes, and reads its output for at most [`READER_GRACE`] after that.
fn supervise(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    proof: Option<&str>,
) -> anyhow::Result<Supervised> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("failed to start the test process")?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    if let Some(mut stdin) = child.stdin.take() {
        // A test that exits before reading its input closes the pipe; that is its own verdict.
        let _ = stdin.write_all(input);
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (out_tx, out_rx) = mpsc::channel();
    let proof = proof.map(str::to_owned);
    std::thread::spawn(move || out_tx.send(capture(stdout, proof.as_deref())));
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || err_tx.send(capture(stderr, None)));

    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => Some(sandbox::decode(status.context("failed to wait for the test process")?)),
        Err(_) => None,
    };
    // Whatever is left in the group goes now; the sandbox's init takes its namespace with it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = waiter.join();
    let deadline = Instant::now() + READER_GRACE;
    let left = || deadline.saturating_duration_since(Instant::now());
    let (stdout, proven) = out_rx.recv_timeout(left()).unwrap_or_default();
    let (stderr, _) = err_rx.recv_timeout(left()).unwrap_or_default();
    Ok(Supervised { status, stdout, stderr, proven })
}

fn judge(job: &Job, finished: Finished) -> (Outcome, String) {
    let Some(status) = finished.status else {
        return (
            Outcome::TimedOut,
            format!(
                "timed out after {}s: likely a deadlock, a busy loop or a blocking call \
                 (`std::thread::sleep`, a lock held across an `.await`)",
                job.timeout.as_secs_f64()
            ),
        );
    };
    if status.success() && finished.proven {
        return (Outcome::Passed, String::new());
    }
    let text = finished.output.text();
    if let Some(panic) = panic_message(&text) {
        return (Outcome::Failed, panic);
    }
    let how = describe_exit(status);
    let message = if status.success() {
        "the test process exited before the test body finished (does the code call \
         `std::process::exit`?)"
            .to_owned()
    } else {
        format!("the test process {how}")
    };
    let tail = finished.output.tail_lines(8);
    if tail.is_empty() {
        (Outcome::Failed, message)
    } else {
        (Outcome::Failed, format!("{message}; its last output:\n{tail}"))
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(6)) => {
            "aborted (SIGABRT: `abort`, a panic while panicking, or a stack overflow)".into()
        }
        (_, Some(11)) => "crashed (SIGSEGV)".into(),
        (_, Some(24)) => "ran out of CPU time (SIGXCPU): likely a busy loop".into(),
        (_, Some(25)) => "wrote past the file size limit (SIGXFSZ)".into(),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        (Some(code), None) => format!("exited with code {code}"),
        (None, None) => "ended without an exit status".into(),
    }
}

/// The message of the first panic in libtest output.
pub fn panic_message(text: &str) -> Option<String> {
    let start = text.find("panicked at ")?;
    let rest = &text[start..];
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    let end = [
        "\nnote: run with `RUST_BACKTRACE",
        "\nstack backtrace:",
        "\n\nfailures:",
        "\nerror: test failed",
    ]
    .iter()
    .filter_map(|marker| body.find(marker))
    .min()
    .unwrap_or(body.len());
    let message = body[..end].trim();
    // The assertion boilerplate says nothing a learner needs; the message and left/right do.
    let message = ["assertion `left == right` failed: ", "assertion `left != right` failed: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .unwrap_or(message);
    Some(if message.is_empty() {
        rest.lines().next().unwrap_or_default().to_owned()
    } else {
        message.to_owned()
    })
}

/// A test's output with the middle dropped past the caps.
#[derive(Debug, Default)]
pub struct Captured {
    head: Vec<u8>,
    tail: Vec<u8>,
    dropped: u64,
}

impl Captured {
    fn merge(stdout: Captured, stderr: Captured) -> Captured {
        let mut head = stdout.text().into_bytes();
        head.extend_from_slice(stderr.text().as_bytes());
        Captured { head, tail: Vec::new(), dropped: 0 }
    }

    /// The kept output, with a note where bytes were dropped.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n[.. {} bytes of output dropped ..]\n", self.dropped));
        }
        text.push_str(&String::from_utf8_lossy(&self.tail));
        text
    }

    fn tail_lines(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> =
            text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with(PROOF_PREFIX)).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Reads a stream to its end, keeping the head and tail, and watching the whole stream for `proof`.
fn capture(mut stream: impl Read, proof: Option<&str>) -> (Captured, bool) {
    let mut captured = Captured::default();
    let mut found = false;
    let mut window: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Some(proof) = proof
            && !found
        {
            window.extend_from_slice(chunk);
            found = contains(&window, proof.as_bytes());
            let keep = proof.len().saturating_sub(1);
            if window.len() > keep {
                window.drain(..window.len() - keep);
            }
        }
        let room = KEEP_HEAD.saturating_sub(captured.head.len());
        let (to_head, rest) = chunk.split_at(room.min(chunk.len()));
        captured.head.extend_from_slice(to_head);
        captured.tail.extend_from_slice(rest);
        if captured.tail.len() > KEEP_TAIL {
            let excess = captured.tail.len() - KEEP_TAIL;
            captured.tail.drain(..excess);
            captured.dropped += excess as u64;
        }
    }
    (captured, found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// 128 random bits, hex.
fn nonce() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("failed to read /dev/urandom for a test nonce")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Mirrors `kata_support::harness`: the grader and the harness agree on this string.
const PROOF_PREFIX: &str = "kata-proof:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_panic_message() {
        let out = "running 1 test\n\nthread 'x' (12) panicked at grader/hidden/a.rs:3:5:\n\
                   cancelled after poll 1 of 3: the gauge reads 1\nexpected 0\n\
                   note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(out).unwrap(),
            "cancelled after poll 1 of 3: the gauge reads 1\nexpected 0"
        );
    }

    #[test]
    fn capture_keeps_head_and_tail_and_finds_a_proof_across_reads() {
        struct Drip(Vec<Vec<u8>>);
        impl Read for Drip {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
        }
        let flood = vec![b'x'; 60 * 1024];
        let stream = Drip(vec![flood.clone(), flood, b"kata-pr".to_vec(), b"oof:abc\n".to_vec()]);
        let (captured, proven) = capture(stream, Some("kata-proof:abc"));
        assert!(proven);
        assert_eq!(captured.head.len(), KEEP_HEAD);
        assert_eq!(captured.tail.len(), KEEP_TAIL);
        assert_eq!(captured.dropped, (120 * 1024 + 15 - KEEP_HEAD - KEEP_TAIL) as u64);
        assert!(captured.text().contains("bytes of output dropped"));
    }

    /// A script in a fresh directory (the sandbox needs the grader binary, so these run without it).
    fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake-tests");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_listing_that_hangs_is_cut_off() {
        let (_dir, exe) = script("sleep 30");
        let start = Instant::now();
        let err = list_with(Command::new(&exe), &exe, Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }

    #[test]
    fn a_listing_is_parsed_from_the_terse_format() {
        let (_dir, exe) = script("echo 'first: test'; echo 'second: test'; echo 'x: bench'");
        let tests = list_with(Command::new(&exe), &exe, Duration::from_secs(10)).unwrap();
        assert_eq!(tests, ["first", "second"]);
    }

    #[test]
    fn output_held_open_by_an_escaped_process_does_not_hang_the_reader() {
        // The grandchild leaves the process group and keeps stdout open; without the sandbox's
        // namespace nothing kills it, so only the bounded readers keep this from hanging.
        let (_dir, exe) = script("setsid sleep 5 & echo done");
        let start = Instant::now();
        let ran = supervise(Command::new(&exe), b"", Duration::from_secs(10), None).unwrap();
        assert!(ran.status.is_some_and(|s| s.success()));
        assert!(start.elapsed() < Duration::from_secs(8), "took {:?}", start.elapsed());
    }

    #[test]
    fn proof_strings_match_the_harness() {
        assert_eq!(PROOF_PREFIX, kata_support::harness::PROOF_PREFIX);
    }
}
