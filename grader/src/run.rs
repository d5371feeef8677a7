//! Running hidden tests: a process per test, in parallel, each with a timeout, a captured and
//! capped output, and a pass proven by a nonce rather than parsed from what the test printed.
//!
//! Every test process runs inside the sandbox's walls (`crate::sandbox`), in a private scratch
//! directory. The test's name and its nonce go to standard input, never to argv or the
//! environment. A sandbox serves the tests of one kata in turn ([`Session`]): between two tests
//! it kills everything the first left behind, and a random marker, which no test sees, ends each
//! test's output. A test that times out takes its sandbox with it (the sandbox's process group
//! is killed, and its PID namespace takes everything the test started); the next test gets a new
//! one. Output readers get a bounded grace after a kill, so a pipe held open by something that
//! survived cannot hang the grader.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    run_until_failed(jobs, parallel, false, done).into_iter().flatten().collect()
}

/// Runs the jobs as [`run_all`] does; with `stop_at_failure`, a unit's jobs not yet started when
/// one of its tests has failed are skipped (`None`): enough for a verdict that only has to reject.
/// A timed-out test does not stop its unit, so a unit that a test fails outright is still told
/// from one rejected by nothing but the timeout.
pub fn run_until_failed(
    jobs: Vec<Job>,
    parallel: usize,
    stop_at_failure: bool,
    done: &(dyn Fn() + Sync),
) -> Vec<Option<TestRun>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let failed = Mutex::new(std::collections::HashSet::new());
    let (tx, rx) = mpsc::channel();
    // Held until every test has ended; started here so it lives exactly as long as the tests.
    let netns = if count > 0 { sandbox::SharedNetwork::start() } else { None };
    let netns = netns.as_ref();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(count.max(1)) {
            let tx = tx.clone();
            let (queue, failed) = (&queue, &failed);
            scope.spawn(move || {
                // This worker's sandbox, kept while its jobs come from the same executable.
                let mut session = None;
                loop {
                    let next = queue.lock().expect("job queue").next();
                    let Some((i, job)) = next else { break };
                    let run = if failed.lock().expect("failed units").contains(&job.unit) {
                        None
                    } else {
                        let run = run_one(&job, netns, &mut session);
                        if stop_at_failure && run.outcome == Outcome::Failed {
                            failed.lock().expect("failed units").insert(job.unit);
                        }
                        Some(run)
                    };
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

fn run_one(
    job: &Job,
    netns: Option<&sandbox::SharedNetwork>,
    session: &mut Option<Session>,
) -> TestRun {
    let start = Instant::now();
    let (outcome, message) = match execute(job, netns, session) {
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

fn execute(
    job: &Job,
    netns: Option<&sandbox::SharedNetwork>,
    session: &mut Option<Session>,
) -> anyhow::Result<Finished> {
    let nonce = nonce()?;
    let proof = format!("{PROOF_PREFIX}{nonce}");
    let ran = if sandbox::walled() {
        let current = session.take().filter(|s| s.serves(job));
        let mut serving = match current {
            Some(serving) => serving,
            None => Session::start(job, netns)?,
        };
        let (ran, usable) = serving.run(&job.test, &nonce, &proof)?;
        if usable {
            *session = Some(serving);
        }
        ran
    } else {
        // Only for `scripts/bench`, to measure the walls: the test process alone.
        let scratch = scratch()?;
        let mut cmd = Command::new(&job.executable);
        cmd.current_dir(scratch.path()).env_clear();
        let input = format!("{} {nonce}\n", job.test);
        supervise(cmd, input.as_bytes(), job.timeout, Some(&proof))?
    };
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
        let output = &finished.output;
        // A test that never stops printing is not stuck: say what was seen (issue 13).
        if output.total > (KEEP_HEAD + KEEP_TAIL) as u64 {
            return (
                Outcome::TimedOut,
                format!(
                    "timed out after {}s while still writing output: {} bytes in all (only the \
                     first and last {} KiB are kept), likely a loop that prints on every turn; \
                     its last output:\n{}",
                    job.timeout.as_secs_f64(),
                    output.total,
                    KEEP_HEAD / 1024,
                    output.tail_lines(4)
                ),
            );
        }
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

/// The message of the last panic in a test's output: the one that ended the test. Earlier ones
/// are often the test's own doing (a callee that panics on purpose, caught by the test). When
/// the last is Rust's notice of a destructor panicking during unwinding, the panic that started
/// the unwinding comes first.
pub fn panic_message(text: &str) -> Option<String> {
    let start = text.rfind("panicked at ")?;
    let last = panic_at(text, start);
    if last.starts_with("panic in a destructor during cleanup")
        && let Some(in_drop) = text[..start].rfind("panicked at ")
    {
        let destructor = panic_at(text, in_drop);
        return Some(match text[..in_drop].rfind("panicked at ") {
            Some(cause) => format!(
                "{}\n(then a destructor panicked while unwinding: {destructor}; the process \
                 aborted)",
                panic_at(text, cause)
            ),
            None => format!(
                "{destructor}\n(a destructor panicked while unwinding; the process aborted)"
            ),
        });
    }
    Some(last)
}

/// The message of the panic whose `panicked at` starts at `start`.
fn panic_at(text: &str, start: usize) -> String {
    let rest = &text[start..];
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    let end = [
        "\nnote: run with `RUST_BACKTRACE",
        "\nstack backtrace:",
        "\n\nfailures:",
        "\nerror: test failed",
        "\nthread '",
    ]
    .iter()
    .filter_map(|marker| body.find(marker))
    .min()
    .unwrap_or(body.len());
    let message = body[..end].trim();
    // The harness's `[last cut at: ..]` line follows the panic hook's output (explain builds).
    let last_cut = body[end..]
        .lines()
        .find(|line| line.starts_with("[last cut at: "))
        .filter(|_| !message.contains("\n[last cut at: "));
    // The assertion boilerplate says nothing a learner needs; the message and left/right do.
    let message = ["assertion `left == right` failed: ", "assertion `left != right` failed: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .unwrap_or(message);
    let message = if message.is_empty() {
        rest.lines().next().unwrap_or_default().to_owned()
    } else {
        message.to_owned()
    };
    match last_cut {
        Some(line) => format!("{message}\n{line}"),
        None => message,
    }
}

/// A test's output with the middle dropped past the caps.
#[derive(Debug, Default)]
pub struct Captured {
    head: Vec<u8>,
    tail: Vec<u8>,
    dropped: u64,
    /// Bytes written in all, dropped ones included.
    total: u64,
}

impl Captured {
    fn merge(stdout: Captured, stderr: Captured) -> Captured {
        let mut head = stdout.text().into_bytes();
        head.extend_from_slice(stderr.text().as_bytes());
        Captured { head, tail: Vec::new(), dropped: 0, total: stdout.total + stderr.total }
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
    let mut capture = Capture::new(proof);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => capture.feed(&buf[..n]),
        }
    }
    capture.finish()
}

/// A stream being captured: its head and tail, and whether `proof` appeared anywhere in it.
struct Capture {
    captured: Captured,
    proof: Option<String>,
    found: bool,
    /// The last `proof.len() - 1` bytes, for a proof split between two reads.
    window: Vec<u8>,
}

impl Capture {
    fn new(proof: Option<&str>) -> Capture {
        Capture {
            captured: Captured::default(),
            proof: proof.map(str::to_owned),
            found: false,
            window: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if let Some(proof) = &self.proof
            && !self.found
        {
            self.window.extend_from_slice(chunk);
            self.found = contains(&self.window, proof.as_bytes());
            let keep = proof.len().saturating_sub(1);
            if self.window.len() > keep {
                self.window.drain(..self.window.len() - keep);
            }
        }
        let captured = &mut self.captured;
        captured.total += chunk.len() as u64;
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

    fn finish(self) -> (Captured, bool) {
        (self.captured, self.found)
    }
}

/// A sandbox serving the tests of one executable in turn (`sandbox::serve_command`; the protocol
/// is in the stages' module docs), in its own process group, killed with it on drop.
struct Session {
    executable: PathBuf,
    timeout: Duration,
    child: Child,
    requests: Option<ChildStdin>,
    stopped: bool,
    /// Chunks of both output streams as they are read, each consumed at once into the running
    /// test's capped capture, so a flood on one stream never piles up while the other is awaited.
    chunks: mpsc::Receiver<(Which, Option<Vec<u8>>)>,
    stdout: Split,
    stderr: Split,
    /// Shared by the session's tests and emptied by the sandbox between them.
    _scratch: tempfile::TempDir,
}

impl Session {
    fn start(job: &Job, netns: Option<&sandbox::SharedNetwork>) -> anyhow::Result<Session> {
        let scratch = scratch()?;
        let mut child = sandbox::serve_command(&job.executable, scratch.path(), job.timeout, netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("failed to start the test sandbox")?;
        let requests = child.stdin.take();
        let (tx, chunks) = mpsc::channel();
        read_into(child.stdout.take().expect("piped stdout"), Which::Out, tx.clone());
        read_into(child.stderr.take().expect("piped stderr"), Which::Err, tx);
        Ok(Session {
            executable: job.executable.clone(),
            timeout: job.timeout,
            child,
            requests,
            stopped: false,
            chunks,
            stdout: Split::default(),
            stderr: Split::default(),
            _scratch: scratch,
        })
    }

    /// Whether this session can run `job`: same executable, same limits.
    fn serves(&self, job: &Job) -> bool {
        self.executable == job.executable && self.timeout == job.timeout
    }

    /// Runs one test; also says whether the session can run another (not after a timeout, or
    /// when the sandbox ended early).
    fn run(&mut self, test: &str, nonce: &str, proof: &str) -> anyhow::Result<(Supervised, bool)> {
        let marker = format!("kata-end:{}", self::nonce()?);
        let mut deadline = Instant::now() + self.timeout;
        let sent = self
            .requests
            .as_mut()
            .is_some_and(|requests| writeln!(requests, "{marker} {test} {nonce}").is_ok());
        let (out_marker, err_marker) = (format!("\n{marker} "), format!("\n{marker}\n"));
        let mut out = Capture::new(Some(proof));
        let mut err = Capture::new(None);
        let (mut code, mut err_ended) = (None, false);
        let ended = loop {
            if !sent {
                break Ended::Closed;
            }
            if code.is_none()
                && let Some(found) = self.stdout.scan(&out_marker, true, &mut out)
            {
                code = Some(found);
                // The init writes standard error's marker first: it is due at once.
                deadline = deadline.min(Instant::now() + READER_GRACE);
            }
            err_ended = err_ended || self.stderr.scan(&err_marker, false, &mut err).is_some();
            match code {
                Some(code) if err_ended || self.stderr.closed => break Ended::Marker(code),
                _ if self.stdout.closed && code.is_none() => break Ended::Closed,
                _ => {}
            }
            match self.chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((Which::Out, Some(chunk))) => self.stdout.pending.extend_from_slice(&chunk),
                Ok((Which::Err, Some(chunk))) => self.stderr.pending.extend_from_slice(&chunk),
                Ok((Which::Out, None)) => self.stdout.closed = true,
                Ok((Which::Err, None)) => self.stderr.closed = true,
                Err(mpsc::RecvTimeoutError::Timeout) => match code {
                    // Standard error's marker never came: the test's verdict stands.
                    Some(code) => break Ended::Marker(code),
                    None => break Ended::TimedOut,
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => match code {
                    Some(code) => break Ended::Marker(code),
                    None => break Ended::Closed,
                },
            }
        };
        let status = match ended {
            Ended::Marker(code) => {
                let (stdout, proven) = out.finish();
                let status = sandbox::decode(ExitStatus::from_raw(i32::from(code) << 8));
                let ran =
                    Supervised { status: Some(status), stdout, stderr: err.finish().0, proven };
                return Ok((ran, true));
            }
            Ended::TimedOut => None,
            // The sandbox ended without a verdict (a stage failed, or its init was killed).
            Ended::Closed => Some(
                self.stop()
                    .map_or(ExitStatus::from_raw(i32::from(STAGE_LOST) << 8), sandbox::decode),
            ),
        };
        self.stop();
        self.rest(Instant::now() + READER_GRACE, &mut out, &mut err);
        let (stdout, proven) = out.finish();
        Ok((Supervised { status, stdout, stderr: err.finish().0, proven }, false))
    }

    /// Gives the captures what is left of both streams once the sandbox was killed, until they
    /// end or `deadline` passes.
    fn rest(&mut self, deadline: Instant, out: &mut Capture, err: &mut Capture) {
        out.feed(&std::mem::take(&mut self.stdout.pending));
        err.feed(&std::mem::take(&mut self.stderr.pending));
        while let Ok((which, chunk)) =
            self.chunks.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            match (which, chunk) {
                (Which::Out, Some(chunk)) => out.feed(&chunk),
                (Which::Err, Some(chunk)) => err.feed(&chunk),
                (_, None) => {}
            }
        }
    }

    /// Kills the sandbox's process group (its PID namespace goes with its init) and reaps it;
    /// its status, the first time.
    fn stop(&mut self) -> Option<ExitStatus> {
        // Once reaped, the group's id may belong to someone else: never signal it again.
        if self.stopped {
            return None;
        }
        self.stopped = true;
        self.requests = None;
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        self.child.wait().ok()
    }
}

impl Drop for Session {
    /// Closes the requests, so the sandbox ends on its own (and its CPU time is accounted to the
    /// grader, as `scripts/bench` needs); kills it if it has not ended within a second.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.requests = None;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut pause = Duration::from_micros(100);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stopped = true;
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        self.stop();
    }
}

/// The exit code reported for a sandbox that ended without a status of its own.
const STAGE_LOST: u8 = sandbox::stages::STAGE_FAILED;

/// How reading a test's output up to its marker ended.
enum Ended {
    /// The marker on standard output, with the exit code after it ([`STAGE_LOST`] when it was
    /// not a number).
    Marker(u8),
    /// Standard output ended first.
    Closed,
    TimedOut,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy)]
enum Which {
    Out,
    Err,
}

/// Reads `source` on a thread of its own, sending each chunk tagged with `which`, then `None`.
fn read_into(
    mut source: impl Read + Send + 'static,
    which: Which,
    tx: mpsc::Sender<(Which, Option<Vec<u8>>)>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = source.read(&mut buf) {
            if tx.send((which, Some(buf[..n].to_vec()))).is_err() {
                return;
            }
        }
        let _ = tx.send((which, None));
    });
}

/// One output stream of a [`Session`], split into tests at their markers.
#[derive(Debug, Default)]
struct Split {
    /// Read, not yet given to a test: the start of a marker, or what follows one.
    pending: Vec<u8>,
    closed: bool,
}

impl Split {
    /// Gives `sink` what is pending up to `marker` (with `code`, up to the end of the decimal
    /// code that follows it and its newline) and consumes the marker: `Some` (the code, or
    /// [`STAGE_LOST`] without one) once the marker is complete. Without it, everything that
    /// cannot be the start of the marker goes to `sink`.
    fn scan(&mut self, marker: &str, code: bool, sink: &mut Capture) -> Option<u8> {
        let marker = marker.as_bytes();
        if let Some(at) = find(&self.pending, marker) {
            let rest = &self.pending[at + marker.len()..];
            let end = if code { rest.iter().position(|&b| b == b'\n') } else { Some(0) };
            sink.feed(&self.pending[..at]);
            let Some(end) = end else {
                self.pending.drain(..at);
                return None;
            };
            let value = std::str::from_utf8(&rest[..end]).ok().and_then(|v| v.parse().ok());
            self.pending.drain(..at + marker.len() + end + usize::from(code));
            return Some(value.unwrap_or(STAGE_LOST));
        }
        if self.closed {
            sink.feed(&std::mem::take(&mut self.pending));
            return None;
        }
        let safe = self.pending.len().saturating_sub(marker.len() - 1);
        sink.feed(&self.pending[..safe]);
        self.pending.drain(..safe);
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    fn a_flood_of_output_is_reported_as_such_not_as_a_deadlock() {
        let job = Job {
            unit: 0,
            executable: PathBuf::from("t"),
            test: "t".into(),
            timeout: Duration::from_secs(10),
        };
        let mut flood = Capture::new(None);
        for _ in 0..10_000 {
            flood.feed(b"polling the queue again\n");
        }
        let (output, _) = flood.finish();
        let (outcome, message) = judge(&job, Finished { status: None, output, proven: false });
        assert_eq!(outcome, Outcome::TimedOut);
        assert!(message.contains("while still writing output: 240000 bytes"), "{message}");
        assert!(message.contains("polling the queue again"), "{message}");
        assert!(!message.contains("deadlock"), "{message}");
        let quiet = Finished { status: None, output: Captured::default(), proven: false };
        assert!(judge(&job, quiet).1.contains("likely a deadlock"));
    }

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
    fn the_panic_that_ended_the_test_is_the_one_reported() {
        let out = "thread 'main' (7) panicked at grader/hidden/a.rs:9:13:\n\
                   the backend panicked on purpose\n\
                   thread 'main' (7) panicked at grader/hidden/a.rs:14:9:\n\
                   the gauge still counts the request (expected 0)\n";
        assert_eq!(panic_message(out).unwrap(), "the gauge still counts the request (expected 0)");
        let aborted = "thread 'main' (7) panicked at src/lib.rs:3:9:\nfirst panic\n\
                       thread 'main' (7) panicked at src/lib.rs:9:9:\nboom in drop\n\
                       thread 'main' (7) panicked at library/core/src/panicking.rs:233:5:\n\
                       panic in a destructor during cleanup\n\
                       thread caused non-unwinding panic. aborting.\n";
        let message = panic_message(aborted).unwrap();
        assert_eq!(
            message,
            "first panic\n(then a destructor panicked while unwinding: boom in drop; the process \
             aborted)"
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

    #[test]
    fn a_session_stream_splits_at_markers_cut_anywhere() {
        let mut split = Split::default();
        let mut first = Capture::new(Some("output"));
        let mut second = Capture::new(None);
        let mut found = Vec::new();
        let chunks = ["first out", "put\nkata-en", "d:1 0\nsecond", "\nkata-end:2 10", "1\nrest"];
        for chunk in chunks {
            split.pending.extend_from_slice(chunk.as_bytes());
            let (marker, sink) = if found.is_empty() {
                ("\nkata-end:1 ", &mut first)
            } else {
                ("\nkata-end:2 ", &mut second)
            };
            found.extend(split.scan(marker, true, sink));
            if found.len() == 1 {
                found.extend(split.scan("\nkata-end:2 ", true, &mut second));
            }
        }
        assert_eq!(found, [0, 101]);
        let (first, proven) = first.finish();
        assert_eq!(first.text(), "first output");
        assert!(proven, "the proof was cut between two reads");
        assert_eq!(second.finish().0.text(), "second");
        let mut rest = Capture::new(None);
        assert_eq!(split.scan("\nkata-end:3 ", true, &mut rest), None);
        split.closed = true;
        assert_eq!(split.scan("\nkata-end:3 ", true, &mut rest), None);
        assert_eq!(rest.finish().0.text(), "rest");
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
