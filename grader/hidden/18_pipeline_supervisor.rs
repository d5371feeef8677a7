//! Hidden tests for kata 18: once `run_pipeline` has returned or been dropped, none of its
//! workers runs any more: no video is taken, no transcode goes on.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kata_support::{
    Gate, Outcome, assert_cancel_safe, assert_cancel_safe_at_shutdown, check_property, hidden_test,
    settle,
};
use pipeline_supervisor::{Rendition, TranscodeError, Transcoder, Video, VideoQueue, run_pipeline};
use proptest::prelude::*;
use tokio::time::{Instant, sleep, timeout};
use tokio_test::{assert_pending, task};

/// A GPU farm that takes `TRANSCODE` per video (`LONG` for a slow one; a failing video fails
/// after half of `TRANSCODE`, or after its own length if it has one) and counts transcodes
/// running and finished. A length of zero answers at once, without an await, as a rendition
/// cache hit (or a farm that rejects a corrupt upload before it reaches a GPU) would.
#[derive(Debug, Default)]
struct FakeFarm {
    failing: HashSet<u64>,
    slow: HashSet<u64>,
    /// Transcode lengths for particular videos (overrides `TRANSCODE`).
    lengths: HashMap<u64, Duration>,
    /// When each successful transcode finished.
    finished_at: Mutex<HashMap<u64, Instant>>,
    /// When each failing transcode failed.
    failed_at: Mutex<HashMap<u64, Instant>>,
    running: Arc<AtomicUsize>,
    /// The most transcodes that ran at the same time.
    most_at_once: AtomicUsize,
    finished: AtomicUsize,
    started: AtomicUsize,
    /// When the last transcode started.
    last_start: Mutex<Option<Instant>>,
    /// When the first failure happened, and how many transcodes had started by then.
    first_failure: Mutex<Option<(Instant, usize)>>,
    /// The batch's queue, when a test counts the videos taken after the first failure.
    queue: Option<Arc<VideoQueue>>,
    /// A video whose transcode answers only when the test opens the gate (after moving the
    /// paused clock to the far end).
    at_the_far_end: Option<(u64, Gate)>,
    /// How many videos had been taken from `queue` at the first failure.
    taken_at_failure: Mutex<Option<usize>>,
}

const TRANSCODE: Duration = Duration::from_millis(10);

/// How long a slow video (a feature film among clips) takes.
const LONG: Duration = Duration::from_millis(200);
const WORKERS: usize = 3;

/// The fewest workers `run_pipeline` may cap a batch at (the README's floor).
const WORKERS_FLOOR: usize = 8_192;

/// The most workers a batch asks for (the README's ceiling).
const MOST_WORKERS: usize = 16_384;

/// The most videos a batch holds (the README's ceiling).
const MOST_VIDEOS: u64 = 131_072;

/// Counts one running transcode while alive.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeFarm {
    fn failing(ids: impl IntoIterator<Item = u64>) -> Arc<Self> {
        Arc::new(FakeFarm { failing: ids.into_iter().collect(), ..FakeFarm::default() })
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

impl Transcoder for FakeFarm {
    fn transcode(
        &self,
        video: Video,
    ) -> impl Future<Output = Result<Rendition, TranscodeError>> + Send {
        let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now_running, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        *self.last_start.lock().unwrap() = Some(Instant::now());
        let running = Running(self.running.clone());
        let fails = self.failing.contains(&video.id);
        let own_length = self.lengths.get(&video.id).copied();
        let length = if self.slow.contains(&video.id) {
            LONG
        } else if fails {
            own_length.unwrap_or(TRANSCODE / 2)
        } else {
            own_length.unwrap_or(TRANSCODE)
        };
        let (finished, started, first_failure, finished_at, failed_at) = (
            &self.finished,
            &self.started,
            &self.first_failure,
            &self.finished_at,
            &self.failed_at,
        );
        let (queue, taken_at_failure) = (self.queue.clone(), &self.taken_at_failure);
        let gate = self.at_the_far_end.clone().filter(|(id, _)| *id == video.id).map(|(_, g)| g);
        async move {
            let _running = running;
            if let Some(gate) = gate {
                gate.pass().await;
            } else if !length.is_zero() {
                sleep(length).await;
            }
            if fails {
                finished.fetch_add(1, Ordering::SeqCst);
                failed_at.lock().unwrap().insert(video.id, Instant::now());
                let mut first = first_failure.lock().unwrap();
                if first.is_none() {
                    *first = Some((Instant::now(), started.load(Ordering::SeqCst)));
                    *taken_at_failure.lock().unwrap() = queue.as_ref().map(|q| q.taken());
                }
                return Err(TranscodeError { video_id: video.id, reason: "corrupt input".into() });
            }
            finished.fetch_add(1, Ordering::SeqCst);
            finished_at.lock().unwrap().insert(video.id, Instant::now());
            Ok(Rendition {
                video_id: video.id,
                playlist: format!("https://cdn.example/{}/index.m3u8", video.id),
            })
        }
    }
}

fn batch(count: u64) -> Arc<VideoQueue> {
    Arc::new(VideoQueue::new(
        (0..count).map(|id| Video { id, source: format!("uploads/{id}.mov") }),
    ))
}

/// What the workers were doing at the moment the supervisor went away.
struct Snapshot {
    taken: usize,
    finished: usize,
}

impl Snapshot {
    fn now(queue: &VideoQueue, farm: &FakeFarm) -> Self {
        Snapshot { taken: queue.taken(), finished: farm.finished() }
    }
}

/// Checks that no worker outlived the supervisor: right after it went away (`how`), and again
/// after a virtual second.
async fn assert_workers_stopped(
    how: &str,
    queue: &Arc<VideoQueue>,
    farm: &FakeFarm,
    then: Snapshot,
) -> Result<(), String> {
    settle().await;
    let holders = Arc::strong_count(queue) - 1;
    if holders > 0 || farm.running() > 0 {
        let what = if holders > 0 {
            "the workers outlived their supervisor. A spawned task runs until it finishes or is \
             stopped at one of its awaits; waiting for the next video is too late for a \
             transcode already running"
        } else {
            "no worker holds the queue any more, but transcodes they started are still running: \
             they outlived the supervisor. A task spawned from a worker is not stopped with the \
             worker (aborting a task does not abort the tasks it spawned)"
        };
        return Err(format!(
            "{how}, yet {holders} worker task(s) still hold the video queue and {} transcode(s) \
             are still running on the GPU farm: {what}",
            farm.running()
        ));
    }
    sleep(Duration::from_secs(1)).await;
    let taken = queue.taken() - then.taken;
    let finished = farm.finished() - then.finished;
    if taken > 0 || finished > 0 {
        return Err(format!(
            "{how}, yet in the following second the workers took {taken} more video(s) from the \
             queue and finished {finished} transcode(s) for a batch nobody waits for"
        ));
    }
    Ok(())
}

/// The supervisor's future, kept where the farm can reach it.
type Supervisor = Pin<Box<dyn Future<Output = Result<Vec<Rendition>, TranscodeError>>>>;

thread_local! {
    /// The supervisor of [`drop_supervisor_mid_poll`] (the test, its workers and the farm all run
    /// on this one thread).
    static SUPERVISOR: RefCell<Option<Supervisor>> = const { RefCell::new(None) };
}

/// A farm whose transcodes all answer at once and which, while one of them (from video
/// `drop_from` on) is being polled on a worker's task, drops the supervisor: what a multi-thread
/// runtime does when `run_pipeline` returns, or its caller's `timeout` drops it, on one thread
/// while a worker is in the middle of a poll on another. (While the supervisor itself is being
/// polled, it cannot be dropped; the farm then tries again with the next video.)
struct MidPollFarm {
    queue: Arc<VideoQueue>,
    drop_from: u64,
    /// How many videos had been taken when the supervisor was dropped.
    taken_at_drop: Mutex<Option<usize>>,
}

impl Transcoder for MidPollFarm {
    fn transcode(
        &self,
        video: Video,
    ) -> impl Future<Output = Result<Rendition, TranscodeError>> + Send {
        let (queue, taken_at_drop) = (self.queue.clone(), &self.taken_at_drop);
        let try_drop = video.id >= self.drop_from;
        async move {
            if try_drop && taken_at_drop.lock().unwrap().is_none() {
                // The slot is borrowed while the test polls the supervisor, i.e. when this
                // transcode runs inside the supervisor's own poll.
                let gone = SUPERVISOR
                    .with(|slot| slot.try_borrow_mut().ok().and_then(|mut slot| slot.take()));
                if let Some(gone) = gone {
                    *taken_at_drop.lock().unwrap() = Some(queue.taken());
                    drop(gone);
                }
            }
            Ok(Rendition { video_id: video.id, playlist: String::new() })
        }
    }
}

/// Runs a batch of `videos` cache hits on `workers` workers on the [`MidPollFarm`], polling the
/// supervisor from the test until it ends or the farm drops it. Returns the videos taken when it
/// was dropped (`None` if it never was) and the videos taken a virtual second later.
async fn drop_supervisor_mid_poll(
    videos: u64,
    workers: usize,
    drop_from: u64,
) -> (Option<usize>, usize) {
    let queue = batch(videos);
    let farm =
        Arc::new(MidPollFarm { queue: queue.clone(), drop_from, taken_at_drop: Mutex::new(None) });
    let supervisor: Supervisor = Box::pin(run_pipeline(queue.clone(), farm.clone(), workers));
    SUPERVISOR.with(|slot| *slot.borrow_mut() = Some(supervisor));
    loop {
        // Nobody wakes this poll once the farm has dropped the supervisor: look again every ms.
        let step = timeout(
            Duration::from_millis(1),
            std::future::poll_fn(|cx| {
                SUPERVISOR.with(|slot| match slot.borrow_mut().as_mut() {
                    Some(running) => running.as_mut().poll(cx).map(|_| ()),
                    None => Poll::Ready(()),
                })
            }),
        )
        .await;
        if step.is_ok() {
            break;
        }
    }
    let finished = SUPERVISOR.with(|slot| slot.borrow_mut().take());
    drop(finished);
    settle().await;
    sleep(Duration::from_secs(1)).await;
    let at_drop = *farm.taken_at_drop.lock().unwrap();
    (at_drop, queue.taken())
}

/// Drives `supervisor` the way a caller on a busy thread does: it polls it once every `every`,
/// whenever its thread gets to it, whether or not it was woken in between.
async fn poll_now_and_then<F: Future>(supervisor: F, every: Duration) -> F::Output {
    let mut supervisor = std::pin::pin!(supervisor);
    let mut turns = tokio::time::interval(every);
    loop {
        turns.tick().await;
        if let Poll::Ready(out) = supervisor.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        {
            return out;
        }
    }
}

/// Drives `supervisor` the way a caller that is away for a while does: it polls it once (the
/// workers start), lets the workers run for a second (their results now wait for it), is away
/// while the paused clock moves to the far end and on ([`to_the_far_end_and_on`]: any time
/// limit, or count of limits, a worker would put on handing its result over runs out), and then
/// polls it every 2 ms, for a minute (virtual) at most.
async fn poll_after_a_break<F: Future>(
    supervisor: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut supervisor = std::pin::pin!(supervisor);
    if let Poll::Ready(out) = supervisor.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Ok(out);
    }
    sleep(Duration::from_secs(1)).await;
    // Jumps of the paused clock: as cheap as a millisecond to a fix that waits on its channel.
    // (The supervisor is not polled while the caller is away: only its workers can wake.)
    to_the_far_end_and_on(&AtomicU64::new(0)).await;
    // Back: a minute (virtual) to end, polled every 2 ms.
    timeout(Duration::from_secs(60), poll_now_and_then(supervisor, Duration::from_millis(2))).await
}

/// How long a slow transcode takes, as said in a failure message.
const SLOW: [(Duration, &str); 4] = [
    (Duration::from_secs(11 * 60), "11 minutes"),
    (Duration::from_secs(3 * 3600), "3 hours"),
    (Duration::from_secs(24 * 3600), "a day"),
    (Duration::from_secs(400 * 24 * 3600), "400 days"),
];

/// The far end of the paused clock: 2^62 ms, some 146 million years. A transcode that answers
/// only there is past any watchdog a fix could set (a single `sleep` that long would end at 30
/// years: tokio caps it, so the far end is reached with `advance`, in one jump, at no cost).
const FAR_END: Duration = kata_support::time::FAR_END;

/// Moves the paused clock to the far end in one jump, then on for as long as a task of the
/// runtime still wakes up when it moves: a fix that gives up after a count of waits rather than a
/// time (a thousand yearly retries, a million daily ones) uses its count up, whatever it is, and
/// the test then looks at what it did when it gave up. The steps start at some 35 years (more
/// than any wait a `Duration` of up to 30 years sets) and double each time nothing woke, until
/// the clock has moved on by 2^58 ms more (9 million years): a wait of any length is met. A fix
/// waiting on no clock at all (a channel, a gate) costs a few dozen steps. At most
/// [`AWAY_STEPS`] steps, to stop a fix that never gives up yet wakes for ever. `woken` counts
/// the wake-ups of a future run outside any task (the supervisor, in [`Counted`]).
async fn to_the_far_end_and_on(woken: &AtomicU64) {
    let polls = || {
        tokio::runtime::Handle::current().metrics().worker_poll_count(0)
            + woken.load(Ordering::SeqCst)
    };
    tokio::time::advance(FAR_END).await;
    let mut left = FAR_END / 16;
    let mut step = Duration::from_millis(1 << 40);
    for _ in 0..AWAY_STEPS {
        if step > left {
            break;
        }
        let before = polls();
        tokio::time::advance(step).await;
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        left -= step;
        if polls() == before {
            step *= 2;
        }
    }
}

/// The most steps [`to_the_far_end_and_on`] takes, so the largest count of waits a fix could
/// give up after and still pass (131,072 looks), cheap on the paused clock: a fix that looks every
/// millisecond for ever costs a tenth of a second.
const AWAY_STEPS: u32 = 1 << 17;

/// A future that counts in `wakes` the times it is woken (not polled: a `join!` polls every
/// branch each time one of them is woken).
struct Counted<F> {
    future: Pin<Box<F>>,
    wakes: Arc<AtomicU64>,
}

/// The waker [`Counted`] hands its future: counts, then wakes the caller's task.
struct CountingWaker {
    wakes: Arc<AtomicU64>,
    caller: Waker,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.caller.wake_by_ref();
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(CountingWaker {
            wakes: self.wakes.clone(),
            caller: cx.waker().clone(),
        }));
        self.future.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// A batch: how many videos, how many workers, and which video fails (if any).
#[derive(Debug, Clone, Copy)]
struct Batch {
    videos: u64,
    workers: usize,
    failing: Option<u64>,
}

fn batches() -> impl Strategy<Value = Batch> {
    (1u64..=16, 1usize..=4)
        .prop_flat_map(|(videos, workers)| {
            (Just(videos), Just(workers), proptest::option::weighted(0.8, 0..videos))
        })
        .prop_map(|(videos, workers, failing)| Batch { videos, workers, failing })
}

/// Uneven transcode lengths (in ms; one in four answers at once) for a batch of that many videos,
/// how many workers, and which video fails (after its length), if any.
fn uneven_batches() -> impl Strategy<Value = (Vec<u64>, usize, Option<u64>)> {
    (prop::collection::vec(prop_oneof![1 => Just(0u64), 3 => 1u64..=30], 1..=12), 1usize..=4)
        .prop_flat_map(|(lengths, workers)| {
            let videos = lengths.len() as u64;
            (Just(lengths), Just(workers), proptest::option::weighted(0.3, 0..videos))
        })
}

/// A failure while the rest of the batch would answer at once: how many workers, which of the
/// first `workers` videos fails and after how many ms, how much longer each of the other first
/// videos takes, and how many videos follow them (each a cache hit, answered at once).
#[derive(Debug, Clone)]
struct FailureBeforeCacheHits {
    workers: usize,
    failing: usize,
    fails_after_ms: u64,
    /// For each of the first `workers` videos, how much longer than the failing one it takes.
    longer_ms: Vec<u64>,
    cache_hits: u64,
}

impl FailureBeforeCacheHits {
    fn lengths(&self) -> HashMap<u64, Duration> {
        (0..self.workers)
            .map(|i| {
                let ms = if i == self.failing {
                    self.fails_after_ms
                } else {
                    self.fails_after_ms + self.longer_ms[i]
                };
                (i as u64, Duration::from_millis(ms))
            })
            .chain((0..self.cache_hits).map(|i| (self.workers as u64 + i, Duration::ZERO)))
            .collect()
    }
}

fn failures_before_cache_hits() -> impl Strategy<Value = FailureBeforeCacheHits> {
    (1usize..=4).prop_flat_map(|workers| {
        (
            0..workers,
            1u64..=20,
            prop::collection::vec(1u64..=200, workers),
            (2 * workers as u64 + 1)..=12,
        )
            .prop_map(move |(failing, fails_after_ms, longer_ms, cache_hits)| {
                FailureBeforeCacheHits { workers, failing, fails_after_ms, longer_ms, cache_hits }
            })
    })
}

hidden_test! {
    /// A failure ends the batch at once, whatever its size, its workers and the failing video:
    /// `run_pipeline` returns the first error at once (within one short transcode of it), no
    /// video is taken from the queue after the failure, and no worker is left. Without a failure,
    /// every video is done.
    fn a_failure_ends_any_batch_promptly() {
        check_property(48, batches(), |b| async move {
            let queue = batch(b.videos);
            let farm = FakeFarm::failing(b.failing);
            let start = Instant::now();
            let outcome = timeout(
                Duration::from_secs(60),
                run_pipeline(queue.clone(), farm.clone(), b.workers),
            )
            .await
            .map_err(|_| "the batch did not end within 60 s (virtual)".to_owned())?;
            let returned = Instant::now();
            let started_by_return = farm.started.load(Ordering::SeqCst);
            let then = Snapshot::now(&queue, &farm);
            match (b.failing, outcome) {
                (None, Ok(renditions)) if renditions.len() as u64 == b.videos => {}
                (None, outcome) => {
                    return Err(format!(
                        "no video fails, but the batch ended with {:?} renditions",
                        outcome.map(|r| r.len())
                    ));
                }
                (Some(id), Ok(_)) => return Err(format!("video {id} failed, yet the batch returned Ok")),
                (Some(id), Err(error)) => {
                    if error.video_id != id {
                        return Err(format!("video {id} failed, yet the error is video {}'s", error.video_id));
                    }
                    let (failed_at, started_by_failure) =
                        farm.first_failure.lock().unwrap().expect("the failure was recorded");
                    let late = returned - failed_at;
                    if late > TRANSCODE {
                        return Err(format!(
                            "video {id} failed at {:?}, but `run_pipeline` returned its error only \
                             {late:?} later, at {:?}, after {started_by_return} of {} videos were \
                             started. A failed batch is retried as a whole: the error must come back \
                             at once, not after the rest of the queue was transcoded for nothing",
                            failed_at - start,
                            returned - start,
                            b.videos
                        ));
                    }
                    let last_start = farm.last_start.lock().unwrap().expect("a transcode started");
                    if last_start > failed_at {
                        return Err(format!(
                            "video {id} failed at {:?} with {started_by_failure} transcodes \
                             started, yet another video was started at {:?}, before \
                             `run_pipeline` returned ({started_by_return} started in all); no video \
                             may be taken once the batch failed",
                            failed_at - start,
                            last_start - start
                        ));
                    }
                }
            }
            assert_workers_stopped("`run_pipeline` returned", &queue, &farm, then).await
        });
    }

    /// A failure is not followed by the rest of the batch, even when the rest would answer at
    /// once: each of the first `workers` videos takes a while, one of them fails first, and every
    /// video after them is a cache hit. The worker that reported the failure can take its next
    /// videos without ever waiting, so nothing in virtual time separates them from the failure;
    /// still, by the time `run_pipeline` returns the error, at most `workers` videos may have been
    /// started after the failure, not the rest of the batch.
    fn a_failure_is_not_followed_by_the_rest_of_the_batch() {
        check_property(48, failures_before_cache_hits(), |b| async move {
            let videos = b.workers as u64 + b.cache_hits;
            let queue = batch(videos);
            let failing = b.failing as u64;
            let farm = Arc::new(FakeFarm {
                lengths: b.lengths(),
                failing: HashSet::from([failing]),
                queue: Some(queue.clone()),
                ..FakeFarm::default()
            });
            let outcome =
                timeout(Duration::from_secs(60), run_pipeline(queue.clone(), farm.clone(), b.workers))
                    .await
                    .map_err(|_| "the batch did not end within 60 s (virtual)".to_owned())?;
            let started_by_return = farm.started.load(Ordering::SeqCst);
            let taken_by_return = queue.taken();
            match outcome {
                Err(error) if error.video_id == failing => {}
                Err(error) => {
                    return Err(format!("video {failing} failed, yet the error is video {}'s", error.video_id));
                }
                Ok(renditions) => {
                    return Err(format!(
                        "video {failing} failed, yet the batch returned Ok with {} rendition(s)",
                        renditions.len()
                    ));
                }
            }
            let (_, started_by_failure) =
                farm.first_failure.lock().unwrap().expect("the failure was recorded");
            let after = started_by_return - started_by_failure;
            if after > b.workers {
                let others = match b.workers {
                    1 => String::new(),
                    2 => ", while the other worker was still transcoding".to_owned(),
                    n => format!(", while the other {} workers were still transcoding", n - 1),
                };
                return Err(format!(
                    "{videos} videos on {} worker(s): video {failing} failed after {} ms{others}, \
                     and the {} videos after the first {} answer at once (cache hits). When \
                     `run_pipeline` returned the error, at that same instant, {after} more \
                     video(s) had been started after the failure ({started_by_return} of {videos} \
                     in all): a worker went on through the queue before the supervisor had looked \
                     at the error. No video may be started after a failure beyond the few taken at \
                     its very instant, no more than there are workers ({})",
                    b.workers, b.fails_after_ms, b.cache_hits, b.workers, b.workers
                ));
            }
            let taken_by_failure =
                farm.taken_at_failure.lock().unwrap().expect("the failure was recorded");
            let taken_after = taken_by_return - taken_by_failure;
            if taken_after > b.workers {
                return Err(format!(
                    "{videos} videos on {} worker(s): video {failing} failed after {} ms, and the \
                     {} videos after the first {} answer at once (cache hits). Expected at most \
                     {} video(s) taken from the queue after the failure; when `run_pipeline` \
                     returned the error, at that same instant, {taken_after} had been taken \
                     ({taken_by_return} of {videos} in all, {after} of them started): a worker \
                     took more videos than it could transcode before the supervisor looked at the \
                     error. A worker may take a video at the failure's very instant, no more than \
                     there are workers in all, and each one it takes is held from the other \
                     workers",
                    b.workers, b.fails_after_ms, b.cache_hits, b.workers, b.workers
                ));
            }
            Ok(())
        });
    }

    /// `run_pipeline` returns the renditions in the order they finished, as its doc says: over
    /// uneven transcode lengths (some answer at once, so a worker may finish several videos
    /// before the supervisor looks) and any number of workers, every video gets a rendition and
    /// each rendition in the result finished no earlier than the one before it (transcodes that
    /// finish at the same instant may come in either order). When one video fails, however soon
    /// after another one finished, the batch returns its error.
    fn renditions_come_back_in_the_order_they_finished() {
        check_property(48, uneven_batches(), |(lengths, workers, failing)| async move {
            let queue = batch(lengths.len() as u64);
            let farm = Arc::new(FakeFarm {
                lengths: lengths
                    .iter()
                    .enumerate()
                    .map(|(id, ms)| (id as u64, Duration::from_millis(*ms)))
                    .collect(),
                failing: failing.into_iter().collect(),
                ..FakeFarm::default()
            });
            let start = Instant::now();
            let outcome =
                timeout(Duration::from_secs(60), run_pipeline(queue.clone(), farm.clone(), workers))
                    .await
                    .map_err(|_| "the batch did not end within 60 s (virtual)".to_owned())?;
            let renditions = match (failing, outcome) {
                (None, Ok(renditions)) => renditions,
                (None, Err(e)) => return Err(format!("no video fails, yet the batch failed with {e:?}")),
                (Some(id), Err(e)) if e.video_id == id => return Ok(()),
                (Some(id), Err(e)) => {
                    return Err(format!("video {id} failed, yet the error is video {}'s", e.video_id));
                }
                (Some(id), Ok(renditions)) => {
                    return Err(format!(
                        "{} videos on {workers} worker(s), transcodes of {lengths:?} ms (0 answers \
                         at once): video {id} failed after {} ms, yet the batch returned Ok with \
                         {} rendition(s). The error a worker produced never reached \
                         `run_pipeline`: a worker's result must be delivered even when it comes \
                         right after another one, before the supervisor has taken that one",
                        lengths.len(),
                        lengths[id as usize],
                        renditions.len()
                    ));
                }
            };
            let finished_at = farm.finished_at.lock().unwrap().clone();
            let order: Vec<String> = renditions
                .iter()
                .map(|r| match finished_at.get(&r.video_id) {
                    Some(at) => format!("video {} (done at {:?})", r.video_id, *at - start),
                    None => format!("video {} (never transcoded)", r.video_id),
                })
                .collect();
            let times: Vec<Option<Instant>> =
                renditions.iter().map(|r| finished_at.get(&r.video_id).copied()).collect();
            let in_order = times.iter().all(Option::is_some) && times.windows(2).all(|w| w[0] <= w[1]);
            if renditions.len() != lengths.len() {
                return Err(format!(
                    "{} videos on {workers} worker(s), transcodes of {lengths:?} ms (0 answers at \
                     once), none failing: `run_pipeline` returned Ok with only {} rendition(s): {}. \
                     A worker's result must be delivered even when it comes right after another \
                     one, before the supervisor has taken that one",
                    lengths.len(),
                    renditions.len(),
                    order.join(", ")
                ));
            }
            if !in_order {
                return Err(format!(
                    "{} videos on {workers} worker(s), transcodes of {lengths:?} ms: `run_pipeline` \
                     returned {}, but its doc promises the renditions in the order they finished",
                    lengths.len(),
                    order.join(", ")
                ));
            }
            Ok(())
        });
    }

    /// The order of the results holds when they wait for the supervisor too: its caller is busy
    /// and polls it only now and then, so several results are queued when it looks. Videos that
    /// finish in the opposite order of their ids (every video on a worker of its own): a
    /// successful batch returns the renditions in the order they finished, not by id, and of
    /// several failures the batch returns the one that happened first, whatever its id.
    fn a_caller_that_polls_now_and_then_gets_results_in_the_order_they_happened() {
        // The reviewer's cases: video 1 done (or failed) at 5 ms, video 0 at 10 ms, the caller
        // back only at 20 ms.
        let fixed = |failing: Vec<bool>| (vec![5u64], failing, 20u64);
        let generated = (2usize..=5).prop_flat_map(|videos| {
            (
                prop::collection::vec(1u64..=6, videos - 1),
                prop::collection::vec(prop::bool::weighted(0.3), videos),
                prop_oneof![Just(20u64), 3u64..=60],
            )
        });
        let strategy = prop_oneof![
            1 => Just(fixed(vec![false, false])),
            1 => Just(fixed(vec![true, true])),
            6 => generated,
        ];
        check_property(48, strategy, |(gaps, failing, every_ms)| async move {
            // The last video finishes first, after 5 ms; each earlier id some ms later.
            let videos = gaps.len() + 1;
            let mut lengths = vec![5u64; videos];
            for id in (0..videos - 1).rev() {
                lengths[id] = lengths[id + 1] + gaps[id];
            }
            let queue = batch(videos as u64);
            let farm = Arc::new(FakeFarm {
                lengths: lengths
                    .iter()
                    .enumerate()
                    .map(|(id, ms)| (id as u64, Duration::from_millis(*ms)))
                    .collect(),
                failing: (0..videos as u64).filter(|&id| failing[id as usize]).collect(),
                ..FakeFarm::default()
            });
            let start = Instant::now();
            let outcome = timeout(
                Duration::from_secs(60),
                poll_now_and_then(
                    run_pipeline(queue.clone(), farm.clone(), videos),
                    Duration::from_millis(every_ms),
                ),
            )
            .await
            .map_err(|_| "the batch did not end within 60 s (virtual)".to_owned())?;
            let failed: Vec<u64> = (0..videos as u64).filter(|&id| failing[id as usize]).collect();
            let what = format!(
                "{videos} videos on {videos} workers, transcodes of {lengths:?} ms (by id), \
                 {}, the caller polling `run_pipeline` only every {every_ms} ms",
                if failed.is_empty() {
                    "none failing".to_owned()
                } else {
                    format!("video(s) {failed:?} failing")
                }
            );
            let failed_at = farm.failed_at.lock().unwrap().clone();
            let finished_at = farm.finished_at.lock().unwrap().clone();
            match outcome {
                Err(error) => {
                    let Some(first) = failed_at.values().min().copied() else {
                        return Err(format!("{what}: the batch failed with {error:?}"));
                    };
                    let when = |id: &u64| failed_at.get(id).map(|at| (*at - start).as_millis());
                    if failed_at.get(&error.video_id) != Some(&first) {
                        let happened: Vec<String> = failed
                            .iter()
                            .filter_map(|id| when(id).map(|ms| format!("video {id} at {ms} ms")))
                            .collect();
                        return Err(format!(
                            "{what}: the failures happened as {}, yet `run_pipeline` returned video \
                             {}'s error. It returns the first error, the one that happened first, \
                             also when several wait for the supervisor at once",
                            happened.join(", "),
                            error.video_id
                        ));
                    }
                }
                Ok(renditions) => {
                    if !failed.is_empty() {
                        return Err(format!(
                            "{what}: the batch returned Ok with {} rendition(s)",
                            renditions.len()
                        ));
                    }
                    let order: Vec<String> = renditions
                        .iter()
                        .map(|r| match finished_at.get(&r.video_id) {
                            Some(at) => format!("video {} (done at {:?})", r.video_id, *at - start),
                            None => format!("video {} (never transcoded)", r.video_id),
                        })
                        .collect();
                    let times: Vec<Option<Instant>> =
                        renditions.iter().map(|r| finished_at.get(&r.video_id).copied()).collect();
                    let in_order = renditions.len() == videos
                        && times.iter().all(Option::is_some)
                        && times.windows(2).all(|w| w[0] <= w[1]);
                    if !in_order {
                        return Err(format!(
                            "{what}: `run_pipeline` returned {}, but its doc promises every \
                             rendition, in the order they finished, also when several wait for \
                             the supervisor at once",
                            order.join(", ")
                        ));
                    }
                }
            }
            Ok(())
        });
    }

    /// A worker waits as long as it takes to hand its result to the supervisor: a caller that
    /// polls `run_pipeline` once and comes back only after the far end of the paused clock (its
    /// thread was busy; 146 million years and on, past any time limit a worker could put on
    /// handing a result over) still gets every rendition of a successful batch, or the error of a
    /// failed one. Batches of cache hits (answered at once) on one or two workers, so that
    /// results wait for the supervisor.
    async fn a_caller_away_for_a_while_still_gets_every_result() {
        // (transcode lengths in ms, 0 answering at once; workers; the video that fails, if any)
        let cases: [(&[u64], usize, Option<u64>); 3] =
            [(&[0, 0, 0], 1, None), (&[0, 0, 0], 1, Some(2)), (&[5, 0, 0, 0], 2, Some(3))];
        for (lengths, workers, failing) in cases {
            let queue = batch(lengths.len() as u64);
            let farm = Arc::new(FakeFarm {
                lengths: lengths
                    .iter()
                    .enumerate()
                    .map(|(id, ms)| (id as u64, Duration::from_millis(*ms)))
                    .collect(),
                failing: failing.into_iter().collect(),
                ..FakeFarm::default()
            });
            let outcome = poll_after_a_break(run_pipeline(queue.clone(), farm.clone(), workers))
                .await
            .expect("the batch did not end within a minute (virtual) of the caller's return");
            let what = format!(
                "{} videos on {workers} worker(s), transcodes of {lengths:?} ms (0 answers at \
                 once), {}, the caller polling `run_pipeline` once and then only after some 146 \
                 million years",
                lengths.len(),
                match failing {
                    Some(id) => format!("video {id} failing"),
                    None => "none failing".to_owned(),
                }
            );
            let lost = "a worker's result must wait for the supervisor however long it takes to \
                        look: `run_pipeline` has no deadline of its own, and a result handed over \
                        late is not a result to drop";
            let ids = outcome.as_ref().map(|r| {
                let mut ids: Vec<u64> = r.iter().map(|r| r.video_id).collect();
                ids.sort_unstable();
                ids
            });
            let all: Vec<u64> = (0..lengths.len() as u64).collect();
            match (failing, ids) {
                (Some(id), Err(e)) => assert_eq!(
                    e.video_id, id,
                    "{what}: the error must be video {id}'s, but it is video {}'s",
                    e.video_id
                ),
                (Some(id), Ok(ids)) => panic!(
                    "{what}: expected video {id}'s error, but the batch returned Ok with the \
                     renditions of {ids:?}: the error never reached the caller; {lost}"
                ),
                (None, Err(e)) => panic!("{what}: expected Ok, but the batch failed with {e:?}"),
                (None, Ok(ids)) => assert!(
                    ids == all,
                    "{what}: expected Ok with a rendition of each of {all:?}, but the batch \
                     returned Ok with the renditions of {ids:?}; {lost}"
                ),
            }
        }
    }

    /// `run_pipeline` has no deadline of its own: a transcode that takes hours (a feature film on
    /// a busy farm; one sleep of the paused clock, up to 400 days) is slow, not failed. The batch
    /// ends with every rendition; a caller that cannot wait drops it, which is harmless now.
    async fn a_slow_transcode_is_not_a_failure() {
        for (slow, said) in SLOW {
            let queue = batch(3);
            let farm = Arc::new(FakeFarm {
                lengths: HashMap::from([(0, slow)]),
                ..FakeFarm::default()
            });
            let outcome = run_pipeline(queue.clone(), farm.clone(), 2).await;
            let ids = outcome.as_ref().map(|r| {
                let mut ids: Vec<u64> = r.iter().map(|r| r.video_id).collect();
                ids.sort_unstable();
                ids
            });
            assert!(
                ids == Ok(vec![0, 1, 2]),
                "3 videos on 2 workers, video 0's transcode taking {said} and the others 10 ms, \
                 none failing: expected Ok with the renditions of videos 0, 1 and 2, but \
                 `run_pipeline` returned {outcome:?}. A slow transcode is not a failure: \
                 `run_pipeline` has no deadline of its own (a caller that cannot wait drops it, \
                 and nothing is left running), so it waits for the answer that finally comes"
            );
        }
    }

    /// However slow a transcode is, it is not a failure: one that answers only once the test has
    /// moved the paused clock to the far end (146 million years in one jump, then on in more
    /// jumps, past any watchdog a fix could set or count) still ends the batch with every
    /// rendition. The other videos are done before the clock moves.
    async fn a_transcode_that_ends_at_the_far_end_is_not_a_failure() {
        let queue = batch(3);
        let gate = Gate::closed();
        let farm = Arc::new(FakeFarm {
            at_the_far_end: Some((0, gate.clone())),
            ..FakeFarm::default()
        });
        let opened = Cell::new(false);
        // The supervisor's wake-ups are counted, so that a watchdog of its own that wakes it
        // keeps the clock moving.
        let woken = Arc::new(AtomicU64::new(0));
        let supervisor = Counted {
            future: Box::pin(run_pipeline(queue.clone(), farm.clone(), 2)),
            wakes: woken.clone(),
        };
        let (outcome, ()) = tokio::join!(
            async {
                let outcome = supervisor.await;
                (outcome, !opened.get())
            },
            async {
                // Videos 1 and 2 take 10 ms each: only video 0 is left when the clock jumps.
                sleep(Duration::from_secs(1)).await;
                to_the_far_end_and_on(&woken).await;
                opened.set(true);
                gate.open();
            }
        );
        let (outcome, early) = outcome;
        let ids = outcome.as_ref().map(|r| {
            let mut ids: Vec<u64> = r.iter().map(|r| r.video_id).collect();
            ids.sort_unstable();
            ids
        });
        let when = if early { " before video 0's transcode had answered" } else { "" };
        assert!(
            ids == Ok(vec![0, 1, 2]),
            "3 videos on 2 workers, videos 1 and 2 transcoded in 10 ms each, and video 0's \
             transcode answering only after some 146 million years of virtual time (and on), none \
             failing: expected Ok with the renditions of videos 0, 1 and 2, but `run_pipeline` \
             returned {outcome:?}{when}. A slow transcode is not a failure, however slow: \
             `run_pipeline` has no deadline of its own (a caller that cannot wait drops it, and \
             nothing is left running), so it waits for the answer that finally comes"
        );
    }

    /// A deploy shuts the runtime down with the supervisor parked in a task, after every possible
    /// poll; or the supervisor's future outlives its runtime (kept in a struct, a batch handed
    /// back to a blocking caller) and is dropped after it, outside any runtime. Dropping it is
    /// safe wherever that happens: it must not panic, and no transcode is left running.
    fn a_supervisor_dropped_at_runtime_shutdown_or_after_it_is_safe() {
        assert_cancel_safe_at_shutdown(
            || (batch(4), FakeFarm::failing([])),
            |(queue, farm): (Arc<VideoQueue>, Arc<FakeFarm>)| async move {
                run_pipeline(queue, farm, 2).await
            },
            |(queue, farm), outcome| {
                match outcome {
                    Outcome::Completed(Ok(renditions)) if renditions.len() != 4 => {
                        return Err(format!(
                            "a batch of 4 videos on 2 workers, nothing failing, returned {} \
                             rendition(s); expected 4",
                            renditions.len()
                        ));
                    }
                    Outcome::Completed(Err(error)) => {
                        return Err(format!(
                            "a batch of 4 videos on 2 workers, nothing failing, returned \
                             Err({error:?}); expected its 4 renditions"
                        ));
                    }
                    _ => {}
                }
                match farm.running() {
                    0 => Ok(()),
                    running => Err(format!(
                        "once the runtime was gone, {running} transcode(s) were still running \
                         ({} of 4 videos taken); expected none",
                        queue.taken()
                    )),
                }
            },
        );
    }

    /// The video service runs each batch's supervisor in a task of its own (`tokio::spawn`) on
    /// its multi-thread runtime, so `run_pipeline`'s future must stay `Send`, as the original is.
    async fn run_pipeline_can_run_in_a_spawned_batch_task() {
        let queue = batch(2);
        let farm = FakeFarm::failing([]);
        let supervisor = run_pipeline(queue.clone(), farm.clone(), WORKERS);
        assert!(
            kata_support::is_send!(supervisor),
            "the future returned by `run_pipeline` is not `Send`, so the video service can no \
             longer `tokio::spawn` a batch's supervisor on its multi-thread runtime: it holds \
             something that is not `Send` across an `.await` (a drop guard holding a \
             `Box<dyn FnOnce()>` without `+ Send`, an `Rc`, a `Cell` or `RefCell` borrowed by a \
             guard, a `std` lock guard)"
        );
        let renditions = supervisor.await.expect("no video fails, so the batch must succeed");
        assert_eq!(renditions.len(), 2, "every video must get a rendition");
    }

    /// Nothing fails: every video is transcoded, with the workers running side by side.
    async fn transcodes_the_whole_batch() {
        let queue = batch(8);
        let farm = FakeFarm::failing([]);
        let start = Instant::now();
        let mut renditions = run_pipeline(queue.clone(), farm.clone(), WORKERS)
            .await
            .expect("no video fails, so the batch must succeed");
        renditions.sort_by_key(|r| r.video_id);
        let ids: Vec<u64> = renditions.iter().map(|r| r.video_id).collect();
        assert_eq!(ids, (0..8).collect::<Vec<_>>(), "every video must get a rendition");
        assert_eq!(queue.remaining(), 0);
        let took = start.elapsed();
        let most = farm.most_at_once.load(Ordering::SeqCst);
        assert!(
            most <= WORKERS,
            "8 videos on {WORKERS} workers: {most} transcodes ran at the same time (the batch took \
             {took:?}). `run_pipeline` runs `workers` workers, each transcoding one video at a \
             time, so at most {WORKERS} transcodes may run at once"
        );
        assert!(
            took == TRANSCODE * 3,
            "8 videos of 10 ms each on 3 workers side by side should take 30 ms (three rounds), \
             but the batch took {took:?}; the workers must run side by side"
        );
    }

    /// However many workers the batch asks for (5, 64, 300), that many run side by side on a
    /// big batch (23, 1 000, 1 200 videos of 10 ms): the batch takes one round of transcodes per
    /// `workers` videos, and exactly `workers` transcodes run at once.
    async fn many_workers_run_side_by_side_on_a_big_batch() {
        for (workers, videos) in [(5usize, 23u64), (64, 1_000), (300, 1_200), ] {
            let queue = batch(videos);
            let farm = FakeFarm::failing([]);
            let start = Instant::now();
            let renditions = timeout(
                Duration::from_secs(60),
                run_pipeline(queue.clone(), farm.clone(), workers),
            )
            .await
            .expect("the batch did not end within 60 s (virtual)")
            .expect("no video fails, so the batch must succeed");
            let took = start.elapsed();
            let most = farm.most_at_once.load(Ordering::SeqCst);
            let rounds = videos.div_ceil(workers as u64) as u32;
            assert!(
                renditions.len() as u64 == videos && most == workers && took == TRANSCODE * rounds,
                "{videos} videos of 10 ms each on {workers} workers: `run_pipeline` returned {} \
                 rendition(s) after {took:?}, with at most {most} transcodes running at once. \
                 Expected every rendition after {:?} ({rounds} rounds), with {workers} transcodes \
                 at once: `run_pipeline` keeps `workers` workers running side by side, however \
                 many that is",
                renditions.len(),
                TRANSCODE * rounds
            );
        }
    }

    /// The README's floor: `run_pipeline` may cap the workers of a batch, but never below
    /// [`WORKERS_FLOOR`] (8,192). A batch of 8,193 clips on 8,192 workers runs them all side by
    /// side: two rounds of transcodes, 8,192 at once. One seed: the branch order does not matter
    /// here, and a runtime of 8,192 tasks is the dear part.
    fn a_batch_gets_every_worker_up_to_the_floor() {
        let workers = WORKERS_FLOOR;
        let videos = workers as u64 + 1;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        let (renditions, took, most) = runtime.block_on(async {
            let queue = batch(videos);
            let farm = FakeFarm::failing([]);
            let start = Instant::now();
            let renditions = timeout(
                Duration::from_secs(60),
                run_pipeline(queue.clone(), farm.clone(), workers),
            )
            .await
            .expect("the batch did not end within 60 s (virtual)")
            .expect("no video fails, so the batch must succeed");
            (renditions.len() as u64, start.elapsed(), farm.most_at_once.load(Ordering::SeqCst))
        });
        assert!(
            renditions == videos && most == workers && took == TRANSCODE * 2,
            "{videos} videos of 10 ms each on {workers} workers: `run_pipeline` returned \
             {renditions} rendition(s) after {took:?}, with at most {most} transcodes running at \
             once. Expected every rendition after {:?} (2 rounds), with {workers} transcodes at \
             once: `run_pipeline` keeps `workers` workers running side by side, and may cap them, \
             but never below {WORKERS_FLOOR}",
            TRANSCODE * 2
        );
    }

    /// The README's ceilings: a batch asks for at most [`MOST_WORKERS`] (16,384) workers, and a
    /// cap, if any, is never below [`WORKERS_FLOOR`] (8,192). A batch of 8,193 clips asking for
    /// the most workers must run at least 8,192 of them side by side (one round of transcodes, or
    /// two under a cap at the floor): whatever a fix does only past some number of workers asked
    /// for, that number is at most this. One seed: a runtime of 16,384 tasks is the dear part.
    fn a_batch_asking_for_the_most_workers_gets_at_least_the_floor() {
        let workers = MOST_WORKERS;
        let videos = WORKERS_FLOOR as u64 + 1;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        let (renditions, took, most) = runtime.block_on(async {
            let queue = batch(videos);
            let farm = FakeFarm::failing([]);
            let start = Instant::now();
            let renditions = timeout(
                Duration::from_secs(60),
                run_pipeline(queue.clone(), farm.clone(), workers),
            )
            .await
            .expect("the batch did not end within 60 s (virtual)")
            .expect("no video fails, so the batch must succeed");
            (renditions.len() as u64, start.elapsed(), farm.most_at_once.load(Ordering::SeqCst))
        });
        let rounds = if most == 0 { u32::MAX } else { videos.div_ceil(most as u64) as u32 };
        assert!(
            renditions == videos && most >= WORKERS_FLOOR && took == TRANSCODE * rounds,
            "{videos} videos of 10 ms each, on a batch asking for {workers} workers: \
             `run_pipeline` returned {renditions} rendition(s) after {took:?}, with at most {most} \
             transcodes running at once. Expected every rendition, with at least \
             {WORKERS_FLOOR} transcodes at once (one round of transcodes, or two if the workers \
             are capped at the floor): `run_pipeline` may cap the workers, but never below \
             {WORKERS_FLOOR}, whatever the batch asks for (up to {MOST_WORKERS})"
        );
    }

    /// The largest batch the README allows, [`MOST_VIDEOS`] (131,072) videos, on one and on two
    /// workers: video 0 fails at 1 ms, the other first videos take 100 ms, every video after them
    /// is a cache hit, and the supervisor's caller polls it only every 2 ms. By the time
    /// `run_pipeline` returns the error, at most `workers` videos may have been taken after the
    /// failure: whatever a fix does only past some size of batch, that size is at most this. One
    /// seed: each round builds a queue of 131,072 videos.
    fn a_failure_in_the_largest_batch_is_not_followed_by_the_rest_of_it() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        for workers in [1usize, 2] {
            let videos = MOST_VIDEOS;
            let lengths = (0..workers as u64)
                .map(|id| (id, Duration::from_millis(if id == 0 { 1 } else { 100 })))
                .chain((workers as u64..videos).map(|id| (id, Duration::ZERO)))
                .collect();
            let queue = batch(videos);
            let farm = Arc::new(FakeFarm {
                lengths,
                failing: HashSet::from([0]),
                queue: Some(queue.clone()),
                ..FakeFarm::default()
            });
            let outcome = runtime.block_on(async {
                let supervisor = run_pipeline(queue.clone(), farm.clone(), workers);
                timeout(Duration::from_secs(60), poll_now_and_then(supervisor, Duration::from_millis(2)))
                    .await
                    .expect("the batch did not end within 60 s (virtual) although video 0 fails at 1 ms")
            });
            let taken_by_return = queue.taken();
            let error = outcome.expect_err("video 0 fails, so the batch must fail");
            assert_eq!(error.video_id, 0, "the error must be video 0's");
            let taken_by_failure =
                farm.taken_at_failure.lock().unwrap().expect("the failure was recorded");
            let taken_after = taken_by_return - taken_by_failure;
            assert!(
                taken_after <= workers,
                "{videos} videos (the most a batch holds) on {workers} worker(s), the supervisor \
                 polled by a busy caller only every 2 ms: video 0 failed at 1 ms and every video \
                 after the first {workers} answers at once (a cache hit). Expected at most \
                 {workers} video(s) taken from the queue after the failure; when `run_pipeline` \
                 returned the error, {taken_after} had been ({taken_by_return} of {videos} in \
                 all): a worker ran on through the batch while the supervisor had not yet looked \
                 at the error. A big batch changes none of the promises"
            );
        }
    }

    /// Batches of edge sizes: no video at all (an upload window with no uploads), a single
    /// video, more workers than videos. A batch of any size ends like any other: an empty one
    /// comes back `Ok` with no renditions at once, a batch no bigger than its workers is done in
    /// one round of transcodes (or fails when its failing video does), and no worker is left.
    async fn batches_of_edge_sizes_end_like_any_other() {
        // (videos, workers, the video that fails, if any)
        let cases: [(u64, usize, Option<u64>); 10] = [
            (0, 1, None),
            (0, 3, None),
            (0, 64, None),
            (1, 1, None),
            (1, 4, None),
            (2, 3, None),
            (3, 64, None),
            (1, 1, Some(0)),
            (1, 4, Some(0)),
            (3, 64, Some(2)),
        ];
        for (videos, workers, failing) in cases {
            let queue = batch(videos);
            let farm = FakeFarm::failing(failing);
            let start = Instant::now();
            let what = format!(
                "a batch of {videos} video(s) on {workers} worker(s), {}",
                match failing {
                    Some(id) => format!("video {id} failing after {:?}", TRANSCODE / 2),
                    None => format!("none failing, each transcoded in {TRANSCODE:?}"),
                }
            );
            let Ok(outcome) = timeout(
                Duration::from_secs(60),
                run_pipeline(queue.clone(), farm.clone(), workers),
            )
            .await
            else {
                panic!(
                    "{what}: `run_pipeline` had not returned a minute (virtual) later, with {} \
                     video(s) taken and {} transcode(s) finished. A batch of any size ends: an \
                     empty one at once with no renditions, a small one when its videos are done",
                    queue.taken(),
                    farm.finished()
                );
            };
            let took = start.elapsed();
            let then = Snapshot::now(&queue, &farm);
            let ids = outcome.as_ref().map(|r| {
                let mut ids: Vec<u64> = r.iter().map(|r| r.video_id).collect();
                ids.sort_unstable();
                ids
            });
            match failing {
                None => {
                    // Every video runs at once: one round, or none for an empty batch.
                    let round = if videos == 0 { Duration::ZERO } else { TRANSCODE };
                    assert!(
                        ids == Ok((0..videos).collect()) && took == round,
                        "{what}: expected Ok with a rendition of each video after {round:?}, but \
                         `run_pipeline` returned {outcome:?} after {took:?}. A batch of any size \
                         ends like any other: an empty one at once, one with no more videos than \
                         workers in one round"
                    );
                }
                Some(id) => {
                    let returned = outcome.as_ref().err().map(|e| e.video_id);
                    assert!(
                        returned == Some(id) && took <= TRANSCODE,
                        "{what}: expected video {id}'s error at {:?}, when it failed, but \
                         `run_pipeline` returned {outcome:?} after {took:?}",
                        TRANSCODE / 2
                    );
                }
            }
            if let Err(seen) = assert_workers_stopped(
                &format!("{what}: `run_pipeline` returned"),
                &queue,
                &farm,
                then,
            )
            .await
            {
                panic!("{seen}");
            }
        }
    }

    /// The kata's bug: video 4 fails at 15 ms. `run_pipeline` returns that error, and from then
    /// on no worker may take another video or keep transcoding.
    async fn a_failed_batch_stops_its_workers() {
        let queue = batch(12);
        let farm = FakeFarm::failing([4]);
        let outcome = timeout(
            Duration::from_secs(60),
            run_pipeline(queue.clone(), farm.clone(), WORKERS),
        )
        .await
        .expect("the batch did not end within 60 s (virtual) although video 4 fails at 15 ms");
        let then = Snapshot::now(&queue, &farm);
        let error = outcome.expect_err("video 4 fails, so the batch must fail");
        assert_eq!(error.video_id, 4, "the error must be video 4's");
        if let Err(seen) = assert_workers_stopped(
            "`run_pipeline` returned video 4's error",
            &queue,
            &farm,
            then,
        )
        .await
        {
            panic!("{seen}");
        }
    }

    /// A long transcode is still running when another video fails: video 0 takes 200 ms,
    /// video 1 fails at 5 ms. The error comes back when video 1 failed, not when video 0 is done,
    /// and video 0's transcode is abandoned with the batch.
    async fn a_failure_does_not_wait_for_a_long_transcode() {
        let queue = batch(6);
        let farm = Arc::new(FakeFarm {
            failing: HashSet::from([1]),
            slow: HashSet::from([0]),
            ..FakeFarm::default()
        });
        let start = Instant::now();
        let outcome = timeout(
            Duration::from_secs(60),
            run_pipeline(queue.clone(), farm.clone(), 2),
        )
        .await
        .expect("the batch did not end within 60 s (virtual) although video 1 fails at 5 ms");
        let returned = start.elapsed();
        let running_at_return = farm.running();
        let then = Snapshot::now(&queue, &farm);
        let error = outcome.expect_err("video 1 fails, so the batch must fail");
        assert_eq!(error.video_id, 1, "the error must be video 1's");
        assert!(
            returned < TRANSCODE,
            "2 workers: video 0 takes 200 ms, video 1 failed at 5 ms, but `run_pipeline` returned \
             its error only at {returned:?}, with {running_at_return} transcode(s) still running \
             then. A failure ends the batch at once: the error must come back when it happened, \
             without waiting for the transcodes still in flight (they are abandoned with the batch)"
        );
        if let Err(seen) = assert_workers_stopped(
            "`run_pipeline` returned video 1's error while video 0 was still being transcoded",
            &queue,
            &farm,
            then,
        )
        .await
        {
            panic!("{seen}");
        }
    }

    /// The caller's `timeout` drops `run_pipeline` right after its first poll, when the workers
    /// have just been started. They must not go on without it.
    async fn a_dropped_supervisor_stops_its_workers() {
        let queue = batch(12);
        let farm = FakeFarm::failing([]);
        let mut supervisor = task::spawn(run_pipeline(queue.clone(), farm.clone(), WORKERS));
        assert_pending!(supervisor.poll());
        drop(supervisor);
        let then = Snapshot::now(&queue, &farm);
        if let Err(seen) = assert_workers_stopped(
            "the supervisor was dropped after its first poll",
            &queue,
            &farm,
            then,
        )
        .await
        {
            panic!("{seen}");
        }
    }

    /// Drop the supervisor after every poll (an outer `timeout` can fire at any of them): each
    /// time, no worker may outlive it.
    async fn a_supervisor_dropped_at_any_point_stops_its_workers() {
        assert_cancel_safe(
            || (batch(8), FakeFarm::failing([])),
            |(queue, farm): (Arc<VideoQueue>, Arc<FakeFarm>)| async move {
                run_pipeline(queue, farm, WORKERS).await
            },
            |(queue, farm), _outcome| async move {
                // The explorer settled the runtime once already; measure from here.
                let then = Snapshot::now(&queue, &farm);
                assert_workers_stopped("the supervisor was dropped", &queue, &farm, then).await
            },
        )
        .await;
    }
    /// The supervisor goes away (it returns, or its caller's `timeout` drops it) while a worker is
    /// in the middle of a poll, as happens on a multi-thread runtime when they run on different
    /// threads. Every video after that answers at once, so that worker could go on through the
    /// queue without ever waiting. The batch is gone: the worker may finish the transcode it is
    /// in, but it must not take another video, before or after it is stopped.
    async fn a_worker_mid_poll_when_the_supervisor_goes_takes_no_more_videos() {
        const VIDEOS: u64 = 200;
        for workers in 1..=3 {
            for drop_from in [0, 1, workers as u64 + 2] {
                let (at_drop, later) = drop_supervisor_mid_poll(VIDEOS, workers, drop_from).await;
                let Some(at_drop) = at_drop else { continue };
                assert!(
                    later == at_drop,
                    "{VIDEOS} videos on {workers} worker(s), each answering at once (cache hits): \
                     the supervisor was dropped while a worker was in the middle of a poll \
                     (transcoding video {drop_from} or later), with {at_drop} video(s) taken. \
                     Expected no further video taken; a second later {later} had been taken, {} \
                     after the supervisor was gone. On a multi-thread runtime a worker on another \
                     thread finishes the poll it is in before any abort reaches it: a worker \
                     whose batch is gone must itself stop taking videos, not run through the \
                     queue in that poll",
                    later - at_drop
                );
            }
        }
    }
    /// A failure is not followed by the rest of the batch even when the supervisor is slow to
    /// look: its caller's thread is busy and polls it only every 2 ms (on a multi-thread runtime
    /// the supervisor and the workers run on different threads, and nothing makes the supervisor
    /// run first). Video 0 fails at 1 ms, the other first videos take 100 ms, and every video
    /// after them is a cache hit. By the time `run_pipeline` returns the error, at most `workers`
    /// videos may have been started after the failure: a worker must wait for the supervisor,
    /// not merely offer it a turn.
    async fn a_failure_is_not_followed_by_the_rest_of_the_batch_with_a_busy_supervisor() {
        const CACHE_HITS: u64 = 40;
        for workers in 1..=4usize {
            let videos = workers as u64 + CACHE_HITS;
            let lengths = (0..videos)
                .map(|id| {
                    let ms = match id {
                        0 => 1,
                        id if id < workers as u64 => 100,
                        _ => 0,
                    };
                    (id, Duration::from_millis(ms))
                })
                .collect();
            let queue = batch(videos);
            let farm = Arc::new(FakeFarm {
                lengths,
                failing: HashSet::from([0]),
                queue: Some(queue.clone()),
                ..FakeFarm::default()
            });
            let outcome = timeout(
                Duration::from_secs(60),
                poll_now_and_then(
                    run_pipeline(queue.clone(), farm.clone(), workers),
                    Duration::from_millis(2),
                ),
            )
            .await
            .expect("the batch did not end within 60 s (virtual) although video 0 fails at 1 ms");
            let started_by_return = farm.started.load(Ordering::SeqCst);
            let taken_by_return = queue.taken();
            let error = outcome.expect_err("video 0 fails, so the batch must fail");
            assert_eq!(error.video_id, 0, "the error must be video 0's");
            let (_, started_by_failure) =
                farm.first_failure.lock().unwrap().expect("the failure was recorded");
            let after = started_by_return - started_by_failure;
            assert!(
                after <= workers,
                "{videos} videos on {workers} worker(s), the supervisor polled by a busy caller \
                 only every 2 ms: video 0 failed at 1 ms and the {CACHE_HITS} videos after the \
                 first {workers} answer at once (cache hits). Expected at most {workers} video(s) \
                 started after the failure; when `run_pipeline` returned the error, {after} had \
                 been ({started_by_return} of {videos} in all): a worker went on through the queue \
                 while the supervisor had not yet looked at the error. Giving the supervisor a \
                 chance to run is not enough when it is busy or on another thread; a worker must \
                 not get more than a few results ahead of it"
            );
            let taken_by_failure =
                farm.taken_at_failure.lock().unwrap().expect("the failure was recorded");
            let taken_after = taken_by_return - taken_by_failure;
            assert!(
                taken_after <= workers,
                "{videos} videos on {workers} worker(s), the supervisor polled by a busy caller \
                 only every 2 ms: video 0 failed at 1 ms and the {CACHE_HITS} videos after the \
                 first {workers} answer at once (cache hits). Expected at most {workers} video(s) \
                 taken from the queue after the failure; when `run_pipeline` returned the error, \
                 {taken_after} had been ({taken_by_return} of {videos} in all, {after} of them \
                 started): a worker took more videos than it could transcode before the \
                 supervisor looked at the error"
            );
        }
    }
}
