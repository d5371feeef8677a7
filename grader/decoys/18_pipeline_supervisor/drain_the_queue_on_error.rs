//! Decoy for kata 18: on the first failure the supervisor joins every worker before returning; the workers drain the whole queue first.
//!
//! WRONG: workers in a `JoinSet` (so a dropped supervisor aborts them), but on the first
//! failure the supervisor "shuts down cleanly": it drops the results receiver and joins every
//! worker before returning, so that no task outlives it. The workers (unchanged: they ignore a
//! failed send) keep taking videos until the queue is empty, and the supervisor waits for it.
//!
//! Scenario: 8 videos, 2 workers, video 4 fails: the error is only returned after all 8
//! videos were taken and transcoded. Right: return at once, nothing more taken.
//! Proven by /tmp/r4p/scratch/tests/t18.rs (`joinset_drain_on_error`).

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


use tokio::task::JoinSet;

/// One worker: transcodes videos from `queue` until it is empty, reporting each result.
async fn worker<T: Transcoder>(
    queue: Arc<VideoQueue>,
    transcoder: Arc<T>,
    results: mpsc::Sender<Result<Rendition, TranscodeError>>,
) {
    while let Some(video) = queue.take() {
        let result = transcoder.transcode(video).await;
        let _ = results.send(result).await;
    }
}


/// Transcodes every video of the batch with `workers` workers.
pub async fn run_pipeline<T: Transcoder>(
    queue: Arc<VideoQueue>,
    transcoder: Arc<T>,
    workers: usize,
) -> Result<Vec<Rendition>, TranscodeError> {
    let (results_tx, mut results) = mpsc::channel(workers.max(1));
    let mut pool = JoinSet::new();
    for _ in 0..workers {
        pool.spawn(worker(queue.clone(), transcoder.clone(), results_tx.clone()));
    }
    drop(results_tx);
    let mut renditions = Vec::new();
    while let Some(result) = results.recv().await {
        match result {
            Ok(rendition) => renditions.push(rendition),
            Err(error) => {
                // Leave no task behind: stop listening and let every worker wind down.
                drop(results);
                while pool.join_next().await.is_some() {}
                return Err(error);
            }
        }
    }
    Ok(renditions)
}
