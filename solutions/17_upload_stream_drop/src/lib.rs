//! # Kata 17 solution: every open multipart upload has an owner that aborts it
//!
//! Each upload owns its open multipart upload through a guard. The guard aborts the upload when
//! it is dropped, unless the upload was completed. Dropping a future drops its locals, so the
//! guard fires on every way an upload can end early: its own failed part, `try_collect`
//! dropping the stream after another file failed, or the caller dropping `upload_all`.

use std::future::Future;

use futures::stream::{self, StreamExt, TryStreamExt};

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

/// An open multipart upload: aborted when dropped, unless it was completed.
struct OpenUpload<'a, S: ObjectStore> {
    store: &'a S,
    id: Option<UploadId>,
}

impl<'a, S: ObjectStore> OpenUpload<'a, S> {
    fn id(&self) -> &UploadId {
        self.id.as_ref().expect("the upload is open until `completed`")
    }

    /// The store has assembled the object: nothing left to abort.
    fn completed(mut self) {
        self.id = None;
    }
}

impl<S: ObjectStore> Drop for OpenUpload<'_, S> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            // `abort` is synchronous, which is what lets it run here: a destructor cannot await.
            self.store.abort(&id);
        }
    }
}

/// Uploads one file as a multipart upload.
async fn upload_one<S: ObjectStore>(store: &S, file: FileUpload) -> Result<Uploaded, UploadError> {
    let failed = |error| UploadError { key: file.key.clone(), error };
    // The guard takes the upload the moment it exists. From here on, every way out of this
    // function (`?`, a panic, or the future being dropped at an await) aborts it, except the
    // one that completes it.
    let upload =
        OpenUpload { store, id: Some(store.create_multipart(&file.key).await.map_err(failed)?) };
    let mut sent = 0;
    for data in file.parts.iter().cloned() {
        sent += 1;
        store.upload_part(upload.id(), sent, data).await.map_err(failed)?;
    }
    // Disarm only once the store confirmed: a failed or interrupted `complete` is aborted.
    store.complete(upload.id()).await.map_err(failed)?;
    upload.completed();
    Ok(Uploaded { key: file.key.clone(), parts: sent })
}

/// Uploads every file, [`CONCURRENT_UPLOADS`] at a time, and returns what was uploaded, or the
/// first error.
///
/// On the first error the uploads still in flight are abandoned *and aborted*, and files not yet
/// started are not started.
///
/// # Cancel safety
///
/// Cancel safe: dropping this future drops the uploads in flight, and each of them aborts its
/// multipart upload as it is dropped. Files already completed stay uploaded.
pub async fn upload_all<S: ObjectStore>(
    store: &S,
    files: Vec<FileUpload>,
) -> Result<Vec<Uploaded>, UploadError> {
    // `try_collect` still drops the stream at the first error, and that is now fine: what it
    // drops are uploads whose guards abort them.
    stream::iter(files)
        .map(|file| upload_one(store, file))
        .buffer_unordered(CONCURRENT_UPLOADS)
        .try_collect()
        .await
}
