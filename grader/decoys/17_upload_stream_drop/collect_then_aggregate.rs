//! Decoy for kata 17: collects every result before looking at errors, but has no guard for a dropped batch.
//!
//! A photo-backup service uploads a user's files to an S3-style object store. Big files go up as
//! *multipart uploads*: the client opens an upload, sends the parts, and completes it; until it
//! is completed or aborted, the store keeps every part it received, and bills for them.
//! [`upload_all`] uploads a batch, four files at a time:
//!
//! ```text
//! stream::iter(files)
//!     .map(|file| upload_one(store, file))
//!     .buffer_unordered(4)
//!     .try_collect()
//! ```
//!
//! `upload_one` aborts its multipart upload when one of *its* parts fails. But `try_collect`
//! stops at the first error and drops the stream, and with it every upload still in flight,
//! each parked at an `.await` with its multipart upload open. Read `README.md` for the story.

use std::future::Future;

use futures::stream::{self, StreamExt};

/// How many files are uploaded at once.
pub const CONCURRENT_UPLOADS: usize = 4;

/// One file to upload, already split into parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpload {
    /// The object key, such as "alice/2026/beach.jpg".
    pub key: String,
    /// The parts, in order.
    pub parts: Vec<Vec<u8>>,
}

/// A file that made it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The object key.
    pub key: String,
    /// How many parts it was sent in.
    pub parts: u32,
}

/// The store's handle on an open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(pub u64);

/// What the store answered when a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// Why [`upload_all`] failed: which file, and what the store said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadError {
    /// The key of the file that failed.
    pub key: String,
    /// The store's error.
    pub error: StoreError,
}

/// The object store's multipart API: a network client in production, a fake in the tests.
pub trait ObjectStore {
    /// Opens a multipart upload for `key`.
    fn create_multipart(&self, key: &str) -> impl Future<Output = Result<UploadId, StoreError>>;

    /// Sends part number `part` (counting from 1).
    fn upload_part(
        &self,
        upload: &UploadId,
        part: u32,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Assembles the parts into the object and closes the upload.
    fn complete(&self, upload: &UploadId) -> impl Future<Output = Result<(), StoreError>>;

    /// Discards the parts and closes the upload. Synchronous: the client queues the request and
    /// returns at once, so it may be called from `Drop`.
    fn abort(&self, upload: &UploadId);
}

/// Uploads one file as a multipart upload.
async fn upload_one<S: ObjectStore>(store: &S, file: FileUpload) -> Result<Uploaded, UploadError> {
    let failed = |error| UploadError { key: file.key.clone(), error };
    let upload = store.create_multipart(&file.key).await.map_err(failed)?;
    let mut sent = 0;
    for data in file.parts.iter().cloned() {
        sent += 1;
        if let Err(error) = store.upload_part(&upload, sent, data).await {
            // A failed part: do not leave the upload open.
            store.abort(&upload);
            return Err(failed(error));
        }
    }
    if let Err(error) = store.complete(&upload).await {
        store.abort(&upload);
        return Err(failed(error));
    }
    Ok(Uploaded { key: file.key.clone(), parts: sent })
}

/// Uploads every file, [`CONCURRENT_UPLOADS`] at a time, and returns what was uploaded, or the
/// first error.
///
/// # Cancel safety
///
/// Not cancel safe: dropping this future drops the uploads in flight with their multipart
/// uploads open, and `try_collect` does exactly that to the other uploads when one fails.
/// Open multipart uploads are never cleaned up, and their parts are billed for ever.
pub async fn upload_all<S: ObjectStore>(
    store: &S,
    files: Vec<FileUpload>,
) -> Result<Vec<Uploaded>, UploadError> {
    // TODO: `try_collect` drops the stream at the first error, and the stream owns the uploads
    // still in flight; the caller may drop this whole future too. No multipart upload may be
    // left open, however this function ends.
    // Do not short-circuit: let every upload finish (or fail and abort itself), then report
    // the first error.
    let results: Vec<Result<Uploaded, UploadError>> = stream::iter(files)
        .map(|file| upload_one(store, file))
        .buffer_unordered(CONCURRENT_UPLOADS)
        .collect()
        .await;
    results.into_iter().collect()
}
