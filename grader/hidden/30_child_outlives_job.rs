//! Hidden tests for kata 30: a thumbnail request dropped while its `ffmpeg` worker runs (a
//! timeout, a client gone, a runtime shutting down, a drop after the runtime is gone) kills that
//! worker, and only that worker, before its slot goes to the next request.
//!
//! No real process is started: the kata's process API runs on a fake system ([`FakeOs`]) that
//! follows tokio's documented semantics and records every process, every `SIGKILL` and every
//! reap. It gives the pid of every reaped process at once to a new process of another program (a
//! `backup-agent`), so that a kill by pid that comes too late hits a stranger, as pid reuse does,
//! and it reaps a killed worker whose `Child` was dropped at once (tokio's orphan reaping at its
//! fastest), so that a pid remembered past the request that owned it is soon a stranger's.
//!
//! Two observations need no yield to the runtime, because a kill deferred to a task shows only
//! there: [`Watched`] looks at the workers in the same destructor that dropped the request's
//! future, and [`HandOff`] looks at them inside the waker the slot semaphore calls when it hands a
//! freed slot to a waiting request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
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
    /// How many `wait`s for it are pending.
    waiters: usize,
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
    /// The first time a worker started while [`WORKERS`] others still ran: who was running.
    overload: Option<String>,
    /// What [`Watched`] saw right after it dropped a request's future, if a worker still ran.
    at_drop: Option<String>,
    /// What [`HandOff`] saw when a waiting request was handed a slot, if every slot's worker still
    /// ran.
    at_hand_off: Option<String>,
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
            waiters: 0,
            died: Arc::new(Notify::new()),
        });
    }

    /// The workers running now (not killed, not past their exit time), by name.
    fn running_now(&self) -> Vec<String> {
        (0..self.procs.len())
            .filter(|&at| self.procs[at].who == Who::Worker && self.exited(at).is_none())
            .map(|at| self.procs[at].name())
            .collect()
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

    /// What is wrong with the system now: a stranger killed, a worker never killed nor reaped,
    /// more workers at once than there are slots; and what [`Watched`] and [`HandOff`] saw.
    fn trouble(&self) -> Result<(), String> {
        let table = self.lock();
        if let Some(p) = table.procs.iter().find(|p| p.who == Who::Stranger && p.killed) {
            return Err(format!(
                "SIGKILL hit {}: that pid had belonged to a worker that was already reaped, and \
                 the system had given it to another program (a kill by pid after the reap)",
                p.name()
            ));
        }
        if let Some(seen) = &table.at_drop {
            return Err(seen.clone());
        }
        if let Some(seen) = &table.at_hand_off {
            return Err(seen.clone());
        }
        let left: Vec<String> = (0..table.procs.len())
            .filter(|&at| {
                table.procs[at].who == Who::Worker && table.procs[at].life == Life::Running
            })
            .map(|at| {
                let p = &table.procs[at];
                let ran = match table.exited(at) {
                    None => "is still running",
                    Some(_) => "ran on until it exited on its own",
                };
                let waited = match p.waiters {
                    0 => "nothing waits for it",
                    _ => "a `wait` for it is pending",
                };
                format!("{} was never killed and {ran} ({waited})", p.name())
            })
            .collect();
        if !left.is_empty() {
            return Err(left.join("; "));
        }
        if let Some(seen) = &table.overload {
            return Err(seen.clone());
        }
        Ok(())
    }

    /// The workers that were killed, by name.
    fn killed_workers(&self) -> Vec<String> {
        let table = self.lock();
        table.procs.iter().filter(|p| p.who == Who::Worker && p.killed).map(Proc::name).collect()
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
            waiters: 0,
            died: Arc::new(Notify::new()),
        });
        let at = table.procs.len() - 1;
        let running = table.running_now();
        if running.len() > WORKERS && table.overload.is_none() {
            table.overload = Some(format!(
                "{} workers ran at once, on {WORKERS} slots: {} started while {} still ran",
                running.len(),
                table.procs[at].name(),
                running[..running.len() - 1].join(" and ")
            ));
        }
        Ok((pid, Box::new(Pipe { os: self.clone(), at, chunk: 0, offset: 0, sleep: None })))
    }

    fn wait(&self, pid: u32) -> Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send>> {
        let os = self.clone();
        Box::pin(async move {
            let (at, died, exit_at) = {
                let mut table = os.lock();
                let at = table.live(pid).ok_or_else(|| io::Error::from_raw_os_error(10))?;
                let proc = &mut table.procs[at];
                proc.waiters += 1;
                (at, Arc::clone(&proc.died), proc.exit_at())
            };
            let _waiting = Waiting { os: os.clone(), at };
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
        let died = {
            let mut table = self.lock();
            let at = table.live(pid).ok_or_else(|| io::Error::from_raw_os_error(3))?;
            let proc = &mut table.procs[at];
            let died = (proc.life == Life::Running).then(|| Arc::clone(&proc.died));
            if died.is_some() {
                proc.killed = true;
                proc.life = Life::Zombie(ExitStatus::killed());
            }
            reap_if_orphaned_zombie(&mut table, at);
            died
        };
        // Woken outside the lock: a waker may look at the system ([`HandOff`]).
        if let Some(died) = died {
            died.notify_waiters();
        }
        Ok(())
    }

    fn orphan(&self, pid: u32) {
        let mut table = self.lock();
        if let Some(at) = table.live(pid) {
            table.procs[at].orphaned = true;
            reap_if_orphaned_zombie(&mut table, at);
        }
    }
}

/// A killed process whose parent dropped its handle is reaped at once, and its pid given away.
fn reap_if_orphaned_zombie(table: &mut Table, at: usize) {
    if let (true, Life::Zombie(status)) = (table.procs[at].orphaned, table.procs[at].life) {
        table.reap(at, status);
    }
}

/// A pending `wait` for process `at`, counted while it lives.
struct Waiting {
    os: FakeOs,
    at: usize,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.os.lock().procs[self.at].waiters -= 1;
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

impl Farm {
    /// [`FakeOs::trouble`], and then, once every request has returned, a slot not given back.
    fn trouble_when_idle(&self) -> Result<(), String> {
        self.os.trouble()?;
        let free = self.thumbnailer.free_slots();
        if free != WORKERS {
            return Err(format!(
                "every request had returned, yet only {free} of {WORKERS} slots were free: a \
                 slot was never given back"
            ));
        }
        Ok(())
    }
}

/// A request's future that, dropped before it finished, looks at the workers in the same
/// destructor, right after the request's future is gone: no task has run since, so a kill left
/// to a task has not happened yet.
struct Watched<F> {
    farm: Farm,
    request: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let request = self.request.as_mut().expect("polled after it finished");
        let out = std::task::ready!(request.as_mut().poll(cx));
        self.request = None;
        Poll::Ready(out)
    }
}

impl<F> Drop for Watched<F> {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else { return };
        drop(request);
        let free = self.farm.thumbnailer.free_slots();
        let mut table = self.farm.os.lock();
        let running = table.running_now();
        if !running.is_empty() && table.at_drop.is_none() {
            table.at_drop = Some(format!(
                "right after the request's future was dropped, before any other task ran, {} \
                 still ran, not sent SIGKILL, with {free} of {WORKERS} slots free",
                running.join(" and ")
            ));
        }
    }
}

/// The request for `launch.mp4` that the cut tests drop, [`Watched`].
fn launch(farm: Farm) -> Watched<impl Future<Output = Result<Vec<u8>, ThumbnailError>>> {
    let request = {
        let farm = farm.clone();
        async move { farm.thumbnailer.thumbnail("launch.mp4").await }
    };
    Watched { farm, request: Some(Box::pin(request)) }
}

/// A request that waits for a slot, polled with a waker ([`Look`]) that looks at the workers when
/// it is called: the slot semaphore calls it in the very destructor that gives a slot back, before
/// any task has run.
struct HandOff<F> {
    os: FakeOs,
    video: &'static str,
    request: Pin<Box<F>>,
}

impl<F: Future> Future for HandOff<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let look = Look { os: self.os.clone(), video: self.video, waker: cx.waker().clone() };
        let waker = Waker::from(Arc::new(look));
        self.request.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// The waker of a [`HandOff`]: before its request has started a worker, a wake is the slot
/// semaphore handing it a slot; every slot's worker must not still run then.
struct Look {
    os: FakeOs,
    video: &'static str,
    waker: Waker,
}

impl Wake for Look {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        {
            let mut table = self.os.lock();
            let started = table.procs.iter().any(|p| p.who == Who::Worker && p.video == self.video);
            let running = table.running_now();
            if !started && running.len() >= WORKERS && table.at_hand_off.is_none() {
                table.at_hand_off = Some(format!(
                    "`thumbnail({:?})`, waiting for a slot, was handed one while {} still ran: \
                     {} workers on {WORKERS} slots as soon as it starts its own",
                    self.video,
                    running.join(" and "),
                    running.len() + 1
                ));
            }
        }
        self.waker.wake_by_ref();
    }
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
    farm.trouble_when_idle().map_err(|seen| format!("after the next {WORKERS} requests: {seen}"))
}

/// The check after a request for `launch.mp4` was cut (or ran to its end).
fn check_cut(farm: &Farm, outcome: Outcome<Result<Vec<u8>, ThumbnailError>>) -> Result<(), String> {
    if let Outcome::Completed(got) = outcome {
        own_png("launch.mp4", got).map_err(|seen| format!("nothing was cut, yet {seen}"))?;
    }
    farm.os.trouble()
}

hidden_test! {
    /// The video site handles each upload's poster-frame request in a task of its own
    /// (`tokio::spawn`) on its multi-thread runtime, so `thumbnail`'s future must stay `Send`, as
    /// the original is.
    async fn thumbnail_can_run_in_a_spawned_request() {
        let farm = fresh();
        let poster = farm.thumbnailer.thumbnail("a.mp4");
        assert!(
            kata_support::is_send!(poster),
            "the future returned by `thumbnail` is not `Send`, so the video site can no longer \
             `tokio::spawn` a poster-frame request on its multi-thread runtime: it holds \
             something that is not `Send` across an `.await` (an `Rc`, a `RefCell` borrow, a \
             drop guard holding a `Box<dyn FnOnce()>` without `+ Send`, a `std` lock guard)"
        );
        let got = timeout(PATIENCE, poster).await.expect("the request got no frame in time");
        if let Err(seen) = own_png("a.mp4", got) {
            panic!("nothing was cancelled: {seen}");
        }
    }

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
        let free = farm.thumbnailer.free_slots();
        assert!(
            free == WORKERS,
            "nothing was cancelled: after `thumbnail(\"broken.mp4\")` returned its error, only \
             {free} of {WORKERS} slots were free: the failed request never gave its slot back"
        );
        if let Err(seen) = farm.trouble_when_idle() {
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
    /// or exited) by the time the drop returns, before any other task runs ([`Watched`]), no
    /// stranger killed, and the next two requests at once (its killed worker reaped, its pid a
    /// stranger's by then) each get a slot and their own frame, with never more workers than
    /// slots, and every slot free once they returned.
    async fn a_request_cut_anywhere_kills_its_worker() {
        assert_cancel_safe(
            fresh,
            launch,
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
            launch,
            |farm, outcome| {
                check_cut(&farm, outcome)?;
                runtime::current_thread(SEEDS[0]).block_on(next_requests(&farm))
            },
        );
    }

    /// Two requests at once, for two videos or for the same one, one of them cut by its timeout
    /// while its worker decodes, writes its frame, cleans up (and started first or second): its
    /// worker must die, and the other request's worker must not be touched: the other request
    /// gets its own frame.
    async fn two_requests_at_once_each_kill_only_their_own_worker() {
        // Decoding until 400 ms, the frame at 400 and 410, stdout closed at 420, exit at 520.
        let every_moment = [0, 100, 200, 300, 399, 400, 405, 410, 415, 420, 425, 450, 500, 519];
        // For the same video, one cut while the worker decodes, writes, and cleans up.
        let one_per_stage = [100, 405, 450];
        for (cut_video, kept_video, cuts) in [
            ("abandoned.mp4", "kept.mp4", &every_moment[..]),
            ("same.mp4", "same.mp4", &one_per_stage[..]),
        ] {
            for &cut_ms in cuts {
                for cut_first in [true, false] {
                    let farm = fresh();
                    let cut = timeout(
                        Duration::from_millis(cut_ms),
                        farm.thumbnailer.thumbnail(cut_video),
                    );
                    let other = timeout(PATIENCE, farm.thumbnailer.thumbnail(kept_video));
                    let (cut, other) = if cut_first {
                        tokio::join!(cut, other)
                    } else {
                        let (other, cut) = tokio::join!(other, cut);
                        (cut, other)
                    };
                    let videos = if cut_video == kept_video {
                        format!("for the same video `{cut_video}`")
                    } else {
                        format!("for `{cut_video}` and `{kept_video}`")
                    };
                    let when = format!(
                        "two requests at once {videos}, the one started {} cut by its timeout \
                         {cut_ms} ms in",
                        if cut_first { "first" } else { "second" }
                    );
                    assert!(cut.is_err(), "{when}: the cut request finished before its timeout");
                    let other = other.unwrap_or_else(|_| {
                        panic!("{when}: the other request got no frame in {PATIENCE:?}")
                    });
                    if let Err(seen) = own_png(kept_video, other) {
                        panic!(
                            "{when}: the request that was not cut: {seen} (workers killed: {}): \
                             a cut request killed a worker that was not its own",
                            farm.os.killed_workers().join(", ")
                        );
                    }
                    if let Err(seen) = farm.trouble_when_idle() {
                        panic!("{when}: {seen}");
                    }
                }
            }
        }
    }

    /// Three requests at once on two slots: `abandoned.mp4` and `kept.mp4` take the slots,
    /// `waiting.mp4` waits for one, and `abandoned.mp4` is cut by its timeout while its worker
    /// decodes, writes its frame or cleans up. The cut request's slot may go to `waiting.mp4` only
    /// once its worker is dead: seen in the waker the semaphore calls as it hands the slot over,
    /// and by polling `waiting.mp4` right after the cut, before any other task has run. All three
    /// requests end well and every slot is free again.
    async fn a_request_waiting_for_a_slot_starts_only_once_the_cut_worker_is_dead() {
        for cut_ms in [1, 100, 300, 399, 405, 415, 450, 519] {
            let farm = fresh();
            let mut cut = Some(Box::pin(timeout(
                Duration::from_millis(cut_ms),
                farm.thumbnailer.thumbnail("abandoned.mp4"),
            )));
            let mut kept = Box::pin(timeout(PATIENCE, farm.thumbnailer.thumbnail("kept.mp4")));
            let waiting = HandOff {
                os: farm.os.clone(),
                video: "waiting.mp4",
                request: Box::pin(farm.thumbnailer.thumbnail("waiting.mp4")),
            };
            let mut waiting = Box::pin(timeout(PATIENCE, waiting));
            let (mut cut_in_time, mut kept_got, mut waiting_got) = (None, None, None);
            // Always in this order, and the cut request dropped as soon as its timeout fires, so
            // that `waiting.mp4` is polled right after the drop, in the same pass.
            std::future::poll_fn(|cx| {
                if let Some(request) = cut.as_mut()
                    && let Poll::Ready(got) = request.as_mut().poll(cx)
                {
                    cut_in_time = Some(got.is_err());
                    cut = None;
                }
                if kept_got.is_none()
                    && let Poll::Ready(got) = kept.as_mut().poll(cx)
                {
                    kept_got = Some(got);
                }
                if waiting_got.is_none()
                    && let Poll::Ready(got) = waiting.as_mut().poll(cx)
                {
                    waiting_got = Some(got);
                }
                match (&cut, &kept_got, &waiting_got) {
                    (None, Some(_), Some(_)) => Poll::Ready(()),
                    _ => Poll::Pending,
                }
            })
            .await;
            let when = format!(
                "three requests at once on {WORKERS} slots (`waiting.mp4` waiting for one), \
                 `abandoned.mp4` cut by its timeout {cut_ms} ms in"
            );
            assert_eq!(
                cut_in_time,
                Some(true),
                "{when}: the cut request finished before its timeout"
            );
            if let Err(seen) = farm.os.trouble() {
                panic!("{when}: {seen}");
            }
            for (video, got) in [("kept.mp4", kept_got), ("waiting.mp4", waiting_got)] {
                let got = got.expect("polled to the end");
                let seen = match got {
                    Ok(got) => own_png(video, got),
                    Err(_) => Err(format!("`thumbnail({video:?})` got no frame in {PATIENCE:?}")),
                };
                if let Err(seen) = seen {
                    panic!("{when}: {seen}");
                }
            }
            if let Err(seen) = farm.trouble_when_idle() {
                panic!("{when}: {seen}");
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
            (state.starts_with("Zombie") || state.starts_with("Reaped"))
                && state.ends_with("killed: true"),
            "a `Child` with `kill_on_drop(true)`, dropped, must send SIGKILL at once and leave \
             the zombie to be reaped later (this fake system reaps it at once); the process is \
             {state}"
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
