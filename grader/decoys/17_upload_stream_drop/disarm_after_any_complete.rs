//! Decoy for kata 17: the guard is disarmed once `complete` returns, whatever it returned; a failed `complete` leaves the upload open.
//!
//! WRONG: guard on the open upload, but disarmed as soon as `complete` *returns*, whatever it
//! returned ("complete was called, the store owns it now"). A failed `complete` leaves the
//! upload open: S3 keeps the parts of an upload whose CompleteMultipartUpload failed.
//!
//! Scenario: a store whose `complete` fails for photo 2 (e.g. InvalidPart): `upload_all`
//! returns photo 2's error and photo 2's upload stays open (1 open). Right: aborted, 0 open.
//! Proven by /tmp/r4p/scratch/tests/t17.rs (`disarm_on_complete_err`).

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


/// An open multipart upload: aborted when dropped, unless disarmed.
struct OpenUpload<'a, S: ObjectStore> {
    store: &'a S,
    id: Option<UploadId>,
}

impl<S: ObjectStore> OpenUpload<'_, S> {
    fn id(&self) -> &UploadId {
        self.id.as_ref().expect("open")
    }
    fn completed(mut self) {
        self.id = None;
    }
    fn into_id(mut self) -> UploadId {
        self.id.take().expect("open")
    }
}

impl<S: ObjectStore> Drop for OpenUpload<'_, S> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.store.abort(&id);
        }
    }
}

/// Uploads one file as a multipart upload.
async fn upload_one<S: ObjectStore>(store: &S, file: FileUpload) -> Result<Uploaded, UploadError> {
    let failed = |error| UploadError { key: file.key.clone(), error };
    let upload =
        OpenUpload { store, id: Some(store.create_multipart(&file.key).await.map_err(failed)?) };
    let mut sent = 0;
    for data in file.parts.iter().cloned() {
        sent += 1;
        store.upload_part(upload.id(), sent, data).await.map_err(failed)?;
    }
    let completed = store.complete(upload.id()).await;
    upload.completed();
    completed.map_err(failed)?;
    Ok(Uploaded { key: file.key.clone(), parts: sent })
}

/// Uploads every file, [`CONCURRENT_UPLOADS`] at a time.
pub async fn upload_all<S: ObjectStore>(
    store: &S,
    files: Vec<FileUpload>,
) -> Result<Vec<Uploaded>, UploadError> {
    stream::iter(files)
        .map(|file| upload_one(store, file))
        .buffer_unordered(CONCURRENT_UPLOADS)
        .try_collect()
        .await
}
