//! # Kata 18: the pipeline whose workers outlive it
//!
//! A video platform transcodes every upload into streaming renditions. Uploads are processed in
//! batches: [`run_pipeline`] starts a few worker tasks that take [`Video`]s from the batch's
//! [`VideoQueue`] and hand them to a [`Transcoder`] (the GPU farm), collects the renditions, and
//! gives up on the batch at the first failure; a failed batch is retried as a whole later.
//!
//! ```text
//! for _ in 0..workers {
//!     tokio::spawn(worker(queue.clone(), transcoder.clone(), results.clone()));
//! }
//! while let Some(result) = results.recv().await {
//!     renditions.push(result?); // the first failure ends the batch
//! }
//! ```
//!
//! The author assumed that when `run_pipeline` returns (or is dropped by its caller's
//! `timeout`), the workers it started stop with it. They do not: a tokio task belongs to the
//! runtime, not to the code that spawned it. Read `README.md` for the whole story.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

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
        // Nobody may be listening any more; the worker has nothing better to do than go on.
        let _ = results.send(result).await;
    }
}

/// Transcodes every video of the batch with `workers` workers, and returns the renditions (in
/// the order they finished), or the first failure.
///
/// # Cancel safety
///
/// Not cancel safe, and not even correct on its own early return: the workers are detached
/// tasks. When this function returns an error, or its future is dropped, they go on taking
/// videos from the queue and keeping the GPU farm busy for a batch that has already failed.
pub async fn run_pipeline<T: Transcoder>(
    queue: Arc<VideoQueue>,
    transcoder: Arc<T>,
    workers: usize,
) -> Result<Vec<Rendition>, TranscodeError> {
    let (results_tx, mut results) = mpsc::channel(workers.max(1));

    // TODO: these workers belong to the runtime, not to this function. Returning early with `?`
    // below, or being dropped by the caller, must stop them (no more videos taken, no transcode
    // left running) instead of leaving them to drain the queue.
    for _ in 0..workers {
        tokio::spawn(worker(queue.clone(), transcoder.clone(), results_tx.clone()));
    }
    // The channel closes once every worker has finished and dropped its sender.
    drop(results_tx);

    let mut renditions = Vec::new();
    while let Some(result) = results.recv().await {
        // The first failure fails the whole batch.
        renditions.push(result?);
    }
    Ok(renditions)
}
