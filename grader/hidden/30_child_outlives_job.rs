//! Hidden tests for kata 30: a thumbnail request dropped while its `ffmpeg` worker runs (a
//! timeout, a client gone, a runtime shutting down, a drop after the runtime is gone) kills that
//! worker, and only that worker, before its slot goes to the next request.
//!
//! No real process is started: the kata's process API runs on a fake system ([`FakeOs`]) that
//! follows tokio's documented semantics and records every process, every `SIGKILL` and every
//! reap. It gives the pid of every reaped process at once to a new process of another program (a
//! `backup-agent`), so that a kill by pid that comes too late hits a stranger, as pid reuse does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use child_outlives_job::process::{ExitStatus, Launcher, Os};
use child_outlives_job::{ThumbnailError, Thumbnailer, WORKERS};
use kata_support::runtime::{self, SEEDS};
use kata_support::{Outcome, assert_cancel_safe, assert_cancel_safe_at_shutdown, hidden_test};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep, sleep_until, timeout};

/// How long a worker decodes and seeks before it writes anything (virtual time).
const DECODE: Duration = Duration::from_millis(400);
/// Between the two chunks of its PNG, and between the last chunk and closing its stdout.
const CHUNK_GAP: Duration = Duration::from_millis(10);
/// How long a worker takes to exit once it closed its stdout (it removes its temporary files).
const CLEAN_UP: Duration = Duration::from_millis(100);
/// How long a request may take before the test calls it stuck (virtual time).
const PATIENCE: Duration = Duration::from_secs(5);
/// The pid of the first process the fake system starts.
const FIRST_PID: u32 = 4100;

/// Whose process it is: a worker the thumbnailer started, or another program's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Worker,
    Stranger,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    /// Exited (or killed), not reaped yet: a zombie.
    Zombie(ExitStatus),
    Reaped(ExitStatus),
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    who: Who,
    /// The video a worker decodes (`-i`); the program's name for a stranger.
    video: String,
    started: Instant,
    life: Life,
    /// Whether `SIGKILL` reached it while it ran.
    killed: bool,
    /// Whether its parent dropped its `Child` before reaping it.
    orphaned: bool,
    /// Woken when it is killed.
    died: Arc<Notify>,
}

impl Proc {
    fn broken(&self) -> bool {
        self.video.starts_with("broken")
    }

    /// The chunks a worker writes to its stdout: the PNG of its video, in two parts.
    fn chunks(&self) -> Vec<Vec<u8>> {
        if self.broken() {
            return Vec::new();
        }
        let png = png_of(&self.video);
        let half = png.len() / 2;
        vec![png[..half].to_vec(), png[half..].to_vec()]
    }

    /// When it closes its stdout.
    fn eof_at(&self) -> Instant {
        self.started + DECODE + CHUNK_GAP * self.chunks().len() as u32
    }

    /// When it exits, if nobody kills it.
    fn exit_at(&self) -> Instant {
        self.eof_at() + CLEAN_UP
    }

    fn exit_status(&self) -> ExitStatus {
        ExitStatus::exited(if self.broken() { 1 } else { 0 })
    }

    /// `pid 4101 (ffmpeg on "launch.mp4")`, for messages.
    fn name(&self) -> String {
        match self.who {
            Who::Worker => format!("pid {} (the `ffmpeg` worker for `{}`)", self.pid, self.video),
            Who::Stranger => format!("pid {} (`{}`, another program)", self.pid, self.video),
        }
    }
}

/// What the thumbnail of `video` holds: a PNG header and the video's name.
fn png_of(video: &str) -> Vec<u8> {
    format!("\u{89}PNG frame@5s of {video}").into_bytes()
}

#[derive(Debug, Default)]
struct Table {
    procs: Vec<Proc>,
    next_pid: u32,
    /// The most workers that ran at once.
    most_running: usize,
}

impl Table {
    /// The process that has `pid` now (not yet reaped), if any.
    fn live(&mut self, pid: u32) -> Option<usize> {
        self.procs.iter().position(|p| p.pid == pid && !matches!(p.life, Life::Reaped(_)))
    }

    /// Reaps process `at`: its pid goes at once to a new process of another program.
    fn reap(&mut self, at: usize, status: ExitStatus) {
        let pid = self.procs[at].pid;
        self.procs[at].life = Life::Reaped(status);
        self.procs.push(Proc {
            pid,
            who: Who::Stranger,
            video: "backup-agent".into(),
            started: Instant::now(),
            life: Life::Running,
            killed: false,
            orphaned: false,
            died: Arc::new(Notify::new()),
        });
    }

    /// Whether process `at` has exited by now: killed, or past its exit time in the runtime it
    /// was started in (outside any runtime, only a kill counts).
    fn exited(&self, at: usize) -> Option<ExitStatus> {
        let proc = &self.procs[at];
        match proc.life {
            Life::Zombie(status) | Life::Reaped(status) => Some(status),
            Life::Running if proc.who == Who::Worker && in_runtime() => {
                (Instant::now() >= proc.exit_at()).then(|| proc.exit_status())
            }
            Life::Running => None,
        }
    }
}

fn in_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// The fake system: every process it started, and what became of it. Clones share it.
#[derive(Debug, Clone, Default)]
struct FakeOs(Arc<Mutex<Table>>);

impl FakeOs {
    fn new() -> Self {
        let os = FakeOs::default();
        os.lock().next_pid = FIRST_PID;
        os
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is wrong with the system now: a worker left running (not killed, not exited, not
    /// waited for), a stranger killed, more workers at once than there are slots.
    fn trouble(&self) -> Result<(), String> {
        let table = self.lock();
        if let Some(p) = table.procs.iter().find(|p| p.who == Who::Stranger && p.killed) {
            return Err(format!(
                "SIGKILL hit {}: that pid had belonged to a worker that was already reaped, and \
                 the system had given it to another program (a kill by pid after the reap)",
                p.name()
            ));
        }
        let running: Vec<String> = table
            .procs
            .iter()
            .filter(|p| p.who == Who::Worker && p.life == Life::Running)
            .map(Proc::name)
            .collect();
        if !running.is_empty() {
            return Err(format!(
                "{} still running: nobody killed it and nobody waits for it, and its slot is \
                 free for the next request",
                running.join(", ")
            ));
        }
        if table.most_running > WORKERS {
            return Err(format!(
                "{} workers ran at once, on {WORKERS} slots: a worker kept running after its \
                 request gave its slot back",
                table.most_running
            ));
        }
        Ok(())
    }

    /// The workers that were killed, by video.
    fn killed_workers(&self) -> Vec<String> {
        let table = self.lock();
        table
            .procs
            .iter()
            .filter(|p| p.who == Who::Worker && p.killed)
            .map(|p| p.video.clone())
            .collect()
    }

    fn count(&self, who: Who) -> usize {
        self.lock().procs.iter().filter(|p| p.who == who).count()
    }

    /// What became of the worker for `video`: `Running`, `Zombie(..)` or `Reaped(..)`, and
    /// whether it was killed.
    fn describe(&self, video: &str) -> String {
        let table = self.lock();
        match table.procs.iter().find(|p| p.who == Who::Worker && p.video == video) {
            Some(p) => format!("{:?}, killed: {}", p.life, p.killed),
            None => "never started".into(),
        }
    }
}

impl Os for FakeOs {
    fn spawn(
        &self,
        program: &str,
        args: &[String],
    ) -> io::Result<(u32, Box<dyn AsyncRead + Send + Unpin>)> {
        let mut table = self.lock();
        // The orphans that died since are reaped now, best effort, as tokio's orphan queue does.
        for at in 0..table.procs.len() {
            if let (true, Life::Zombie(status)) = (table.procs[at].orphaned, table.procs[at].life) {
                table.reap(at, status);
            }
        }
        if program != "ffmpeg" {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no program `{program}`")));
        }
        let video = args
            .iter()
            .position(|a| a == "-i")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default();
        let pid = table.next_pid;
        table.next_pid += 1;
        table.procs.push(Proc {
            pid,
            who: Who::Worker,
            video,
            started: Instant::now(),
            life: Life::Running,
            killed: false,
            orphaned: false,
            died: Arc::new(Notify::new()),
        });
        let at = table.procs.len() - 1;
        let running =
            table.procs.iter().filter(|p| p.who == Who::Worker && p.life == Life::Running).count();
        table.most_running = table.most_running.max(running);
        Ok((pid, Box::new(Pipe { os: self.clone(), at, chunk: 0, offset: 0, sleep: None })))
    }

    fn wait(&self, pid: u32) -> Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send>> {
        let os = self.clone();
        Box::pin(async move {
            let (at, died, exit_at) = {
                let mut table = os.lock();
                let at = table.live(pid).ok_or_else(|| io::Error::from_raw_os_error(10))?;
                let proc = &table.procs[at];
                (at, Arc::clone(&proc.died), proc.exit_at())
            };
            loop {
                let notified = died.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut table = os.lock();
                    if let Some(status) = table.exited(at) {
                        table.reap(at, status);
                        return Ok(status);
                    }
                }
                tokio::select! {
                    _ = sleep_until(exit_at) => {}
                    _ = notified => {}
                }
            }
        })
    }

    fn try_wait(&self, pid: u32) -> io::Result<Option<ExitStatus>> {
        let mut table = self.lock();
        let at = table.live(pid).ok_or_else(|| io::Error::from_raw_os_error(10))?;
        let status = table.exited(at);
        if let Some(status) = status {
            table.reap(at, status);
        }
        Ok(status)
    }

    fn kill(&self, pid: u32) -> io::Result<()> {
        let mut table = self.lock();
        let at = table.live(pid).ok_or_else(|| io::Error::from_raw_os_error(3))?;
        let proc = &mut table.procs[at];
        if proc.life == Life::Running {
            proc.killed = true;
            proc.life = Life::Zombie(ExitStatus::killed());
            proc.died.notify_waiters();
        }
        Ok(())
    }

    fn orphan(&self, pid: u32) {
        let mut table = self.lock();
        if let Some(at) = table.live(pid) {
            table.procs[at].orphaned = true;
        }
    }
}

/// The read end of a worker's stdout: nothing for [`DECODE`], then its PNG in two chunks, then
/// end of file. A dead worker's pipe is at end of file.
struct Pipe {
    os: FakeOs,
    at: usize,
    chunk: usize,
    offset: usize,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let (dead, chunks, started, eof_at) = {
                let table = self.os.lock();
                let proc = &table.procs[self.at];
                (proc.killed, proc.chunks(), proc.started, proc.eof_at())
            };
            if dead {
                return Poll::Ready(Ok(()));
            }
            let (due, data) = match chunks.get(self.chunk) {
                Some(chunk) => (started + DECODE + CHUNK_GAP * self.chunk as u32, Some(chunk)),
                None => (eof_at, None),
            };
            if Instant::now() >= due {
                self.sleep = None;
                if let Some(chunk) = data {
                    let rest = &chunk[self.offset..];
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    self.offset += n;
                    if self.offset == chunk.len() {
                        self.chunk += 1;
                        self.offset = 0;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let sleep = self.sleep.get_or_insert_with(|| Box::pin(sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A thumbnailer on a fresh fake system.
#[derive(Clone)]
struct Farm {
    thumbnailer: Arc<Thumbnailer>,
    os: FakeOs,
}

fn fresh() -> Farm {
    let os = FakeOs::new();
    Farm { thumbnailer: Arc::new(Thumbnailer::new(Launcher::new(os.clone()))), os }
}

/// What a request returned, checked: its own video's PNG.
fn own_png(video: &str, got: Result<Vec<u8>, ThumbnailError>) -> Result<(), String> {
    match got {
        Ok(png) if png == png_of(video) => Ok(()),
        Ok(png) => Err(format!(
            "`thumbnail({video:?})` returned {:?}, not its own video's frame",
            String::from_utf8_lossy(&png)
        )),
        Err(e) => Err(format!("`thumbnail({video:?})` failed: {e}")),
    }
}

/// One request, within [`PATIENCE`].
async fn request(farm: &Farm, video: &str) -> Result<(), String> {
    match timeout(PATIENCE, farm.thumbnailer.thumbnail(video)).await {
        Ok(got) => own_png(video, got),
        Err(_) => Err(format!(
            "`thumbnail({video:?})` got no frame in {PATIENCE:?} (a worker takes about \
             {DECODE:?}): it never got a slot"
        )),
    }
}

/// The next requests after a cut: one per slot, at once. Each must get a slot and its own frame,
/// and the system must be in order after them.
async fn next_requests(farm: &Farm) -> Result<(), String> {
    let (first, second) = tokio::join!(request(farm, "next-1.mp4"), request(farm, "next-2.mp4"));
    first.and(second).map_err(|seen| format!("then, {WORKERS} requests at once: {seen}"))?;
    farm.os.trouble().map_err(|seen| format!("after the next {WORKERS} requests: {seen}"))
}

/// The check after a request for `launch.mp4` was cut (or ran to its end).
fn check_cut(farm: &Farm, outcome: Outcome<Result<Vec<u8>, ThumbnailError>>) -> Result<(), String> {
    if let Outcome::Completed(got) = outcome {
        own_png("launch.mp4", got).map_err(|seen| format!("nothing was cut, yet {seen}"))?;
    }
    farm.os.trouble()
}

hidden_test! {
    /// Nothing cancelled: requests one after the other, three at once on two slots (the third
    /// waits for a slot), and a broken video. Each gets its own frame (or an error for the broken
    /// one); every worker is reaped; no kill hits a stranger that got a reaped worker's pid.
    async fn thumbnails_when_nothing_is_cancelled() {
        let farm = fresh();
        for video in ["a.mp4", "b.mp4"] {
            if let Err(seen) = request(&farm, video).await {
                panic!("nothing was cancelled, one request after the other: {seen}");
            }
        }
        let (a, b, c) = tokio::join!(
            request(&farm, "c.mp4"),
            request(&farm, "d.mp4"),
            request(&farm, "e.mp4")
        );
        if let Err(seen) = a.and(b).and(c) {
            panic!("nothing was cancelled, three requests at once on {WORKERS} slots: {seen}");
        }
        match farm.thumbnailer.thumbnail("broken.mp4").await {
            Err(ThumbnailError::Failed { status, .. }) if status.code() == Some(1) => {}
            other => panic!(
                "`thumbnail(\"broken.mp4\")`, whose worker exits with code 1, returned {other:?}"
            ),
        }
        if let Err(seen) = farm.os.trouble() {
            panic!("nothing was cancelled, six requests: {seen}");
        }
        let killed = farm.os.killed_workers();
        assert!(
            killed.is_empty(),
            "nothing was cancelled, yet the workers for {killed:?} were killed before they finished"
        );
    }

    /// A request dropped after every possible poll (a timeout, a client gone), at both moments:
    /// waiting for a slot, for the worker's output, for its exit. Its worker must be dead (killed
    /// or exited) once the future is dropped, no stranger killed, and the next two requests at
    /// once each get a slot and their own frame, with never more workers than slots.
    async fn a_request_cut_anywhere_kills_its_worker() {
        assert_cancel_safe(
            fresh,
            |farm| async move { farm.thumbnailer.thumbnail("launch.mp4").await },
            |farm, outcome| async move {
                check_cut(&farm, outcome)?;
                next_requests(&farm).await
            },
        )
        .await;
    }

    /// A deploy shuts the runtime down while the request's future is parked, after every possible
    /// poll; or the future outlives its runtime and is dropped after it. Nothing may panic, the
    /// worker must be dead, and the next two requests on a new runtime get a slot each.
    fn a_request_cut_by_runtime_shutdown_or_dropped_after_it_kills_its_worker() {
        assert_cancel_safe_at_shutdown(
            fresh,
            |farm| async move { farm.thumbnailer.thumbnail("launch.mp4").await },
            |farm, outcome| {
                check_cut(&farm, outcome)?;
                runtime::current_thread(SEEDS[0]).block_on(next_requests(&farm))
            },
        );
    }

    /// Two requests at once, one of them cut by its timeout while its worker decodes, writes its
    /// frame, cleans up (and polled first or second): its worker must die, and the other
    /// request's worker must not be touched: the other request gets its own frame.
    async fn two_requests_at_once_each_kill_only_their_own_worker() {
        // Decoding until 400 ms, the frame at 400 and 410, stdout closed at 420, exit at 520.
        for cut_ms in [0, 100, 200, 300, 399, 400, 405, 410, 415, 420, 425, 450, 500, 519] {
            for cut_first in [true, false] {
                let farm = fresh();
                let cut = timeout(
                    Duration::from_millis(cut_ms),
                    farm.thumbnailer.thumbnail("abandoned.mp4"),
                );
                let other = timeout(PATIENCE, farm.thumbnailer.thumbnail("kept.mp4"));
                let (cut, other) = if cut_first {
                    tokio::join!(cut, other)
                } else {
                    let (other, cut) = tokio::join!(other, cut);
                    (cut, other)
                };
                let when = format!(
                    "two requests at once (`abandoned.mp4` {} `kept.mp4`), `abandoned.mp4` cut \
                     by its timeout {cut_ms} ms in",
                    if cut_first { "started before" } else { "started after" }
                );
                assert!(cut.is_err(), "{when}: the cut request finished before its timeout");
                let other = other.unwrap_or_else(|_| {
                    panic!("{when}: `kept.mp4` got no frame in {PATIENCE:?}")
                });
                if let Err(seen) = own_png("kept.mp4", other) {
                    panic!(
                        "{when}: {seen} (workers killed: {:?}): a cut request killed a worker \
                         that was not its own",
                        farm.os.killed_workers()
                    );
                }
                if let Err(seen) = farm.os.trouble() {
                    panic!("{when}: {seen}");
                }
            }
        }
    }

    /// The process API keeps tokio's semantics, which the kata is about: a `Child` dropped
    /// without `kill_on_drop` leaves its process running; with it, the drop sends `SIGKILL` at
    /// once and leaves the zombie to be reaped later; `start_kill` does not reap, `kill` does;
    /// `id` is `None` once reaped. (Fix the thumbnailer, not the process module.)
    async fn the_process_api_keeps_tokios_semantics() {
        let os = FakeOs::new();
        let launcher = Launcher::new(os.clone());
        let child = launcher.command("ffmpeg").arg("-i").arg("plain.mp4").spawn().expect("spawn");
        assert!(child.id().is_some(), "a running child has a pid");
        drop(child);
        let state = os.describe("plain.mp4");
        assert!(
            state.starts_with("Running"),
            "a `Child` without `kill_on_drop`, dropped, must leave its process running, as \
             tokio's does; the process is {state}"
        );
        let child = launcher
            .command("ffmpeg")
            .arg("-i")
            .arg("kill-on-drop.mp4")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        drop(child);
        let state = os.describe("kill-on-drop.mp4");
        assert!(
            state.starts_with("Zombie") && state.ends_with("killed: true"),
            "a `Child` with `kill_on_drop(true)`, dropped, must send SIGKILL at once and leave \
             the zombie to be reaped later; the process is {state}"
        );
        let mut child =
            launcher.command("ffmpeg").arg("-i").arg("start-kill.mp4").spawn().expect("spawn");
        child.start_kill().expect("start_kill");
        let state = os.describe("start-kill.mp4");
        assert!(
            state.starts_with("Zombie"),
            "`start_kill` must send SIGKILL and not wait; the process is {state}"
        );
        child.wait().await.expect("wait");
        assert_eq!(child.id(), None, "`id()` must be `None` once the child was reaped");
        let mut child =
            launcher.command("ffmpeg").arg("-i").arg("kill.mp4").spawn().expect("spawn");
        child.kill().await.expect("kill");
        let state = os.describe("kill.mp4");
        assert!(
            state.starts_with("Reaped") && state.ends_with("killed: true"),
            "`kill().await` must kill the child and reap it; the process is {state}"
        );
        assert_eq!(os.count(Who::Worker), 4);
    }
}
