//! # Kata 18 solution: the supervisor owns its workers in a `JoinSet`
//!
//! Tokio has no parent and child tasks: a spawned task runs until it finishes, is aborted, or
//! the runtime shuts down, whatever happens to the code that spawned it. So ownership has to be
//! made explicit. `run_pipeline` spawns its workers into a `tokio::task::JoinSet` held in a
//! local variable; dropping a `JoinSet` aborts every task in it. The local is dropped on every
//! way out of `run_pipeline`: a normal return, an early `?`, and the caller dropping the future.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// One uploaded video to transcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// The upload's id.
    pub id: u64,
    /// Where the original file is.
    pub source: String,
}

/// A transcoded, streamable version of a video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// The [`Video::id`] it was made from.
    pub video_id: u64,
    /// Where the player finds it.
    pub playlist: String,
}

/// Why a video could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeError {
    /// The [`Video::id`] that failed.
    pub video_id: u64,
    /// What the transcoder said.
    pub reason: String,
}

/// The videos of one batch, taken one at a time by the workers.
#[derive(Debug)]
pub struct VideoQueue {
    videos: Mutex<VecDeque<Video>>,
    taken: AtomicUsize,
}

impl VideoQueue {
    /// A queue holding `videos`, in order.
    pub fn new(videos: impl IntoIterator<Item = Video>) -> Self {
        VideoQueue { videos: Mutex::new(videos.into_iter().collect()), taken: AtomicUsize::new(0) }
    }

    /// Takes the next video, if any is left.
    pub fn take(&self) -> Option<Video> {
        let video = self.videos.lock().expect("queue lock").pop_front();
        if video.is_some() {
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        video
    }

    /// How many videos have been taken so far.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }

    /// How many videos are still waiting.
    pub fn remaining(&self) -> usize {
        self.videos.lock().expect("queue lock").len()
    }
}

/// The GPU farm: turns one video into a rendition. Transcoding takes minutes.
pub trait Transcoder: Send + Sync + 'static {
    /// Transcodes `video`.
    fn transcode(
        &self,
        video: Video,
    ) -> impl Future<Output = Result<Rendition, TranscodeError>> + Send;
}

/// One worker: transcodes videos from `queue` until it is empty, reporting each result.
async fn worker<T: Transcoder>(
    queue: Arc<VideoQueue>,
    transcoder: Arc<T>,
    results: mpsc::Sender<Result<Rendition, TranscodeError>>,
) {
    while let Some(video) = queue.take() {
        let result = transcoder.transcode(video).await;
        // If nobody listens any more, the supervisor is gone, and so is the `JoinSet` that
        // would have aborted this worker at its next await already. Stop anyway.
        if results.send(result).await.is_err() {
            break;
        }
    }
}

/// Transcodes every video of the batch with `workers` workers, and returns the renditions (in
/// the order they finished), or the first failure.
///
/// # Cancel safety
///
/// Cancel safe: the workers live in a `JoinSet` owned by this future. When it returns (early or
/// not) or is dropped, the set is dropped and every worker is aborted at its next await: no
/// further video is taken and no transcode goes on for a batch nobody waits for. Videos taken
/// and not finished are abandoned with the batch, which is retried as a whole.
pub async fn run_pipeline<T: Transcoder>(
    queue: Arc<VideoQueue>,
    transcoder: Arc<T>,
    workers: usize,
) -> Result<Vec<Rendition>, TranscodeError> {
    let (results_tx, mut results) = mpsc::channel(workers.max(1));

    // The workers belong to this set, and the set belongs to this function's frame. Dropping
    // it, on any way out, aborts them all. (Dropping a `JoinHandle` would not: it detaches.)
    let mut pool = JoinSet::new();
    for _ in 0..workers {
        pool.spawn(worker(queue.clone(), transcoder.clone(), results_tx.clone()));
    }
    // The channel closes once every worker has finished and dropped its sender.
    drop(results_tx);

    let mut renditions = Vec::new();
    while let Some(result) = results.recv().await {
        // The first failure fails the whole batch; returning drops `pool`, which stops the
        // other workers.
        renditions.push(result?);
    }
    Ok(renditions)
}
