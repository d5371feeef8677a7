//! Hidden tests for kata 17: however `upload_all` ends (a file failing, or the caller dropping
//! it at any await), no multipart upload is left open, and completed uploads are never aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{assert_cancel_safe, hidden_test};
use tokio::time::sleep;
use upload_stream_drop::{
    CONCURRENT_UPLOADS, FileUpload, ObjectStore, StoreError, UploadId, Uploaded, upload_all,
};

/// How the fake store treats one key.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// How long each part takes.
    part_latency: Duration,
    /// This part number fails (after its latency).
    fail_part: Option<u32>,
}

#[derive(Debug, Default)]
struct Books {
    next_id: u64,
    /// Open multipart uploads: id -> key.
    open: BTreeMap<u64, String>,
    completed: Vec<String>,
    aborted: Vec<String>,
    /// Aborts of uploads that were not open (completed, or aborted twice).
    bad_aborts: Vec<String>,
    max_open: usize,
}

/// An object store that counts open multipart uploads.
#[derive(Debug, Clone, Default)]
struct FakeStore {
    books: Arc<Mutex<Books>>,
    plans: Arc<HashMap<String, Plan>>,
}

impl FakeStore {
    fn new(plans: impl IntoIterator<Item = (String, Plan)>) -> Self {
        FakeStore { books: Arc::default(), plans: Arc::new(plans.into_iter().collect()) }
    }

    fn open_keys(&self) -> Vec<String> {
        self.books.lock().unwrap().open.values().cloned().collect()
    }

    fn completed(&self) -> Vec<String> {
        let mut keys = self.books.lock().unwrap().completed.clone();
        keys.sort();
        keys
    }

    fn bad_aborts(&self) -> Vec<String> {
        self.books.lock().unwrap().bad_aborts.clone()
    }

    fn max_open(&self) -> usize {
        self.books.lock().unwrap().max_open
    }

    fn key_of(&self, upload: &UploadId) -> Option<String> {
        self.books.lock().unwrap().open.get(&upload.0).cloned()
    }
}

impl ObjectStore for FakeStore {
    fn create_multipart(&self, key: &str) -> impl Future<Output = Result<UploadId, StoreError>> {
        let books = self.books.clone();
        let key = key.to_owned();
        async move {
            let mut books = books.lock().unwrap();
            let id = books.next_id;
            books.next_id += 1;
            books.open.insert(id, key);
            books.max_open = books.max_open.max(books.open.len());
            Ok(UploadId(id))
        }
    }

    fn upload_part(
        &self,
        upload: &UploadId,
        part: u32,
        _data: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        let key = self.key_of(upload).expect("a part was sent to an upload that is not open");
        let plan = self.plans[&key];
        async move {
            sleep(plan.part_latency).await;
            if plan.fail_part == Some(part) {
                return Err(StoreError(format!("part {part} of {key}: checksum mismatch")));
            }
            Ok(())
        }
    }

    fn complete(&self, upload: &UploadId) -> impl Future<Output = Result<(), StoreError>> {
        let books = self.books.clone();
        let id = upload.0;
        async move {
            sleep(Duration::from_millis(1)).await;
            let mut books = books.lock().unwrap();
            let key = books.open.remove(&id).expect("completed an upload that is not open");
            books.completed.push(key);
            Ok(())
        }
    }

    fn abort(&self, upload: &UploadId) {
        let mut books = self.books.lock().unwrap();
        match books.open.remove(&upload.0) {
            Some(key) => books.aborted.push(key),
            None => books.bad_aborts.push(format!("upload {}", upload.0)),
        }
    }
}

fn key(n: usize) -> String {
    format!("alice/2026/photo-{n}.jpg")
}

fn file(n: usize) -> FileUpload {
    FileUpload { key: key(n), parts: vec![vec![n as u8; 8], vec![n as u8; 8]] }
}

fn ok_plan(n: usize) -> (String, Plan) {
    (key(n), Plan { part_latency: Duration::from_millis(10 + 5 * n as u64), fail_part: None })
}

/// Photo 0 fails on its first part at 10 ms; photos 1.. finish at 20, 30, 40 ms, ...
fn photo_zero_fails(count: usize) -> FakeStore {
    let mut plans: Vec<_> = (1..count).map(ok_plan).collect();
    plans.push((key(0), Plan { part_latency: Duration::from_millis(10), fail_part: Some(1) }));
    FakeStore::new(plans)
}

hidden_test! {
    /// Nothing fails: every file is uploaded, four at a time, and nothing is left open.
    async fn uploads_every_file_four_at_a_time() {
        let store = FakeStore::new((0..6).map(ok_plan));
        let mut uploaded = upload_all(&store, (0..6).map(file).collect())
            .await
            .expect("no part fails, so the batch must succeed");
        uploaded.sort_by(|a, b| a.key.cmp(&b.key));
        let expected: Vec<_> = (0..6).map(|n| Uploaded { key: key(n), parts: 2 }).collect();
        assert_eq!(uploaded, expected);
        assert_eq!(store.completed(), (0..6).map(key).collect::<Vec<_>>());
        assert!(store.open_keys().is_empty(), "uploads left open: {:?}", store.open_keys());
        assert!(store.bad_aborts().is_empty(), "completed uploads were aborted: {:?}", store.bad_aborts());
        assert_eq!(
            store.max_open(),
            CONCURRENT_UPLOADS,
            "the batch must upload {CONCURRENT_UPLOADS} files at a time; at most {} were open at once",
            store.max_open()
        );
    }

    /// A file whose part fails has its own upload aborted.
    async fn a_failed_part_aborts_its_upload() {
        let store = photo_zero_fails(1);
        let outcome = upload_all(&store, vec![file(0)]).await;
        let error = outcome.expect_err("photo 0's first part fails");
        assert_eq!(error.key, key(0));
        assert!(store.open_keys().is_empty(), "the failed upload was left open");
    }

    /// The kata's bug: photo 0 fails at 10 ms while photos 1 to 3 are halfway through. When
    /// `upload_all` returns, none of their multipart uploads may still be open.
    async fn a_failed_file_leaves_no_multipart_upload_open() {
        let store = photo_zero_fails(4);
        let outcome = upload_all(&store, (0..4).map(file).collect()).await;
        let error = outcome.expect_err("photo 0's first part fails, so the batch must fail");
        assert_eq!(error.key, key(0), "the error must name the file that failed");
        let open = store.open_keys();
        assert!(
            open.is_empty(),
            "`upload_all` returned photo 0's error, and these multipart uploads are still open: \
             {open:?}. They were in flight inside the stream when `try_collect` saw the error and \
             dropped it; each was dropped at its `.await` on a part, so the cleanup after that \
             `.await` never ran, and the store bills their parts for ever"
        );
        // Nothing comes back to close them later.
        sleep(Duration::from_secs(1)).await;
        assert!(store.open_keys().is_empty(), "uploads left open: {:?}", store.open_keys());
        assert!(store.bad_aborts().is_empty(), "completed uploads were aborted: {:?}", store.bad_aborts());
    }

    /// The caller may drop `upload_all` at any await (the user cancelled the backup). Cut it
    /// after every poll: no multipart upload may stay open, and none that completed is aborted.
    async fn a_dropped_batch_leaves_no_multipart_upload_open() {
        assert_cancel_safe(
            || FakeStore::new((0..6).map(ok_plan)),
            |store: FakeStore| async move { upload_all(&store, (0..6).map(file).collect()).await },
            |store, _outcome| async move {
                sleep(Duration::from_secs(1)).await;
                let open = store.open_keys();
                let bad = store.bad_aborts();
                if !open.is_empty() {
                    return Err(format!(
                        "the batch was dropped and these multipart uploads are still open: \
                         {open:?}. Dropping `upload_all` drops the stream and the uploads in it, \
                         each at its `.await`; only a destructor can still close them"
                    ));
                }
                if !bad.is_empty() {
                    return Err(format!("uploads that were already completed got aborted: {bad:?}"));
                }
                Ok(())
            },
        )
        .await;
    }
}
