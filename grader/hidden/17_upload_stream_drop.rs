//! Hidden tests for kata 17: however `upload_all` ends (a file failing, or the caller dropping
//! it at any await), no multipart upload is left open, and completed uploads are never aborted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{Outcome, assert_cancel_safe, check_property, explore, hidden_test};
use proptest::prelude::*;
use tokio::time::{Instant, sleep};
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
    /// `complete` fails: the store keeps the upload open, with its parts.
    fail_complete: bool,
}

#[derive(Debug, Default)]
struct Books {
    next_id: u64,
    /// Open multipart uploads: id -> key.
    open: BTreeMap<u64, String>,
    completed: Vec<String>,
    /// Ids of completed uploads and of aborted ones, to name a wrong abort.
    completed_ids: BTreeMap<u64, String>,
    aborted_ids: BTreeMap<u64, String>,
    /// Aborts of uploads that were not open, each described: completed, or aborted twice.
    bad_aborts: Vec<String>,
    /// How many uploads each key has had opened: the n-th upload of a key follows its n-th plan.
    opened_per_key: HashMap<String, usize>,
    /// The plan each upload follows.
    plan_of: BTreeMap<u64, Plan>,
    /// The numbers of the parts each upload received (in any order: S3 takes them so).
    parts: BTreeMap<u64, BTreeSet<u32>>,
    /// Parts sent with the wrong number, each described.
    misnumbered: Vec<String>,
    max_open: usize,
    /// Each refused request (a part or `complete`), with the moment the store refused it.
    failures: Vec<(Instant, String)>,
    /// Each multipart upload opened, in order: its key and when it was opened.
    opened_at: Vec<(String, Instant)>,
}

/// An object store that counts open multipart uploads. A key may be uploaded more than once in
/// a batch: each upload of it gets its own id, and follows the key's plans in the order they were
/// given (the last one again, once they run out).
#[derive(Debug, Clone, Default)]
struct FakeStore {
    books: Arc<Mutex<Books>>,
    plans: Arc<HashMap<String, Vec<Plan>>>,
    /// Keys whose store client panics, and where (a bug in a client library).
    panics: Arc<HashMap<String, PanicAt>>,
    /// When set, each upload follows the plan of its file's place in the batch instead, read from
    /// the first byte of its parts' data (the tests fill a file's parts with its place): files of
    /// one key may then differ in everything, their parts included, whatever order they open in.
    plans_by_place: Option<Arc<Vec<Plan>>>,
}

/// Where the store client panics for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicAt {
    /// In the call to `upload_part` for this part, before it returns a future.
    CallingPart(u32),
    /// While the upload of this part is awaited, when it would have answered.
    AwaitingPart(u32),
    /// While `complete` is awaited.
    AwaitingComplete,
}

impl FakeStore {
    fn new(plans: impl IntoIterator<Item = (String, Plan)>) -> Self {
        let mut by_key: HashMap<String, Vec<Plan>> = HashMap::new();
        for (key, plan) in plans {
            by_key.entry(key).or_default().push(plan);
        }
        FakeStore {
            books: Arc::default(),
            plans: Arc::new(by_key),
            panics: Arc::default(),
            plans_by_place: None,
        }
    }

    /// A store whose uploads follow `plans[place]`, the place of their file in the batch, read
    /// from the parts' data: each file of a batch must have its parts filled with its place.
    fn by_place(plans: Vec<Plan>) -> Self {
        FakeStore { plans_by_place: Some(Arc::new(plans)), ..FakeStore::default() }
    }

    /// The same store, whose client panics at `at` for `key`.
    fn panicking(mut self, key: String, at: PanicAt) -> Self {
        self.panics = Arc::new(HashMap::from([(key, at)]));
        self
    }

    fn panics_at(&self, upload: &UploadId, at: PanicAt) -> bool {
        self.key_of(upload).is_some_and(|key| self.panics.get(&key) == Some(&at))
    }

    fn open_keys(&self) -> Vec<String> {
        self.books.lock().unwrap().open.values().cloned().collect()
    }

    fn completed(&self) -> Vec<String> {
        let mut keys = self.books.lock().unwrap().completed.clone();
        keys.sort();
        keys
    }

    /// Each completed upload as (key, how many parts it received), sorted: what a right report of
    /// the batch holds, one entry per file, whatever the files' keys.
    fn completed_uploads(&self) -> Vec<(String, u32)> {
        let books = self.books.lock().unwrap();
        let mut uploads: Vec<(String, u32)> = books
            .completed_ids
            .iter()
            .map(|(id, key)| (key.clone(), books.parts.get(id).map_or(0, |p| p.len() as u32)))
            .collect();
        uploads.sort();
        uploads
    }

    fn bad_aborts(&self) -> Vec<String> {
        self.books.lock().unwrap().bad_aborts.clone()
    }

    /// Fails if the parts of an upload were not numbered 1, 2, 3... (sent in any order), as
    /// `ObjectStore::upload_part` promises the store.
    fn parts_numbered_from_one(&self) -> Result<(), String> {
        let misnumbered = self.books.lock().unwrap().misnumbered.clone();
        if misnumbered.is_empty() {
            return Ok(());
        }
        Err(format!(
            "parts were sent with the wrong part numbers: {misnumbered:?}. `upload_part` numbers \
             the parts of an upload 1, 2, 3... (as S3 does, which refuses part number 0)"
        ))
    }

    /// The keys whose request the store refused first (more than one when refused at the same
    /// moment), and when.
    fn first_failures(&self) -> Option<(Instant, Vec<String>)> {
        let failures = self.books.lock().unwrap().failures.clone();
        let first = failures.iter().map(|&(at, _)| at).min()?;
        let keys = failures.into_iter().filter(|&(at, _)| at == first).map(|(_, key)| key);
        Some((first, keys.collect()))
    }

    fn max_open(&self) -> usize {
        self.books.lock().unwrap().max_open
    }

    fn key_of(&self, upload: &UploadId) -> Option<String> {
        self.books.lock().unwrap().open.get(&upload.0).cloned()
    }

    /// The plan `upload` follows; with plans by place, the first part sent binds it to the plan
    /// of the place its data names.
    fn plan_of(&self, upload: &UploadId, data: &[u8]) -> Plan {
        let mut books = self.books.lock().unwrap();
        if let Some(by_place) = &self.plans_by_place {
            let place = usize::from(*data.first().expect("the tests send no empty part"));
            return *books.plan_of.entry(upload.0).or_insert(by_place[place]);
        }
        books.plan_of[&upload.0]
    }
}

impl ObjectStore for FakeStore {
    fn create_multipart(&self, key: &str) -> impl Future<Output = Result<UploadId, StoreError>> {
        let books = self.books.clone();
        let plans = self.plans.clone();
        let key = key.to_owned();
        async move {
            let mut books = books.lock().unwrap();
            let id = books.next_id;
            books.next_id += 1;
            if let Some(plans) = plans.get(&key) {
                let nth = books.opened_per_key.entry(key.clone()).or_default();
                let plan = plans[(*nth).min(plans.len() - 1)];
                *nth += 1;
                books.plan_of.insert(id, plan);
            }
            books.opened_at.push((key.clone(), Instant::now()));
            books.open.insert(id, key);
            books.max_open = books.max_open.max(books.open.len());
            Ok(UploadId(id))
        }
    }

    fn upload_part(
        &self,
        upload: &UploadId,
        part: u32,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        let key = self.key_of(upload).expect("a part was sent to an upload that is not open");
        let plan = self.plan_of(upload, &data);
        if self.panics_at(upload, PanicAt::CallingPart(part)) {
            panic!("store client bug: upload_part({key}, part {part}) panicked when called");
        }
        let panics_later = self.panics_at(upload, PanicAt::AwaitingPart(part));
        {
            let mut books = self.books.lock().unwrap();
            let fresh = books.parts.entry(upload.0).or_default().insert(part);
            if part == 0 {
                books.misnumbered.push(format!("a part of {key} was numbered 0"));
            } else if !fresh {
                books.misnumbered.push(format!("part {part} of {key} was sent twice"));
            }
        }
        let books = self.books.clone();
        async move {
            sleep(plan.part_latency).await;
            if panics_later {
                panic!("store client bug: upload_part({key}, part {part}) panicked while awaited");
            }
            if plan.fail_part == Some(part) {
                books.lock().unwrap().failures.push((Instant::now(), key.clone()));
                return Err(StoreError(format!("part {part} of {key}: checksum mismatch")));
            }
            Ok(())
        }
    }

    fn complete(&self, upload: &UploadId) -> impl Future<Output = Result<(), StoreError>> {
        let books = self.books.clone();
        let id = upload.0;
        let panics = self.panics_at(upload, PanicAt::AwaitingComplete);
        async move {
            sleep(Duration::from_millis(1)).await;
            if panics {
                panic!("store client bug: complete(upload {id}) panicked while awaited");
            }
            let mut books = books.lock().unwrap();
            let key = books.open.get(&id).cloned().expect("completed an upload that is not open");
            let parts = books.parts.get(&id).cloned().unwrap_or_default();
            if parts.iter().copied().ne(1..=parts.len() as u32) {
                books.misnumbered.push(format!("{key} was completed with parts {parts:?}"));
            }
            if books.plan_of.get(&id).is_some_and(|plan| plan.fail_complete) {
                // As S3 does: a failed CompleteMultipartUpload leaves the upload and its parts.
                books.failures.push((Instant::now(), key.clone()));
                return Err(StoreError(format!("complete {key}: InvalidPart")));
            }
            books.open.remove(&id);
            books.completed_ids.insert(id, key.clone());
            books.completed.push(key);
            Ok(())
        }
    }

    fn abort(&self, upload: &UploadId) {
        let mut books = self.books.lock().unwrap();
        let id = upload.0;
        if let Some(key) = books.open.remove(&id) {
            books.aborted_ids.insert(id, key);
            return;
        }
        let wrong = if let Some(key) = books.completed_ids.get(&id) {
            format!("{key} was aborted after it completed")
        } else if let Some(key) = books.aborted_ids.get(&id) {
            format!("{key} was aborted twice")
        } else {
            format!("upload {id}, never opened, was aborted")
        };
        books.bad_aborts.push(wrong);
    }
}

fn key(n: usize) -> String {
    format!("alice/2026/photo-{n}.jpg")
}

fn file(n: usize) -> FileUpload {
    FileUpload { key: key(n), parts: vec![vec![n as u8; 8], vec![n as u8; 8]] }
}

fn ok_plan(n: usize) -> (String, Plan) {
    (
        key(n),
        Plan {
            part_latency: Duration::from_millis(10 + 5 * n as u64),
            fail_part: None,
            fail_complete: false,
        },
    )
}

/// Photo 0 fails on its first part at 10 ms; photos 1.. finish at 20, 30, 40 ms, ...
fn photo_zero_fails(count: usize) -> FakeStore {
    let mut plans: Vec<_> = (1..count).map(ok_plan).collect();
    plans.push((
        key(0),
        Plan { part_latency: Duration::from_millis(10), fail_part: Some(1), fail_complete: false },
    ));
    FakeStore::new(plans)
}

/// One file of a generated batch: its parts, their latency, and what fails.
#[derive(Debug, Clone, Copy)]
struct FileScenario {
    /// The number in its key: its place in the list, or an earlier file's when the batch names
    /// one key twice (the same photo queued again after an edit).
    name: usize,
    parts: usize,
    part_ms: u64,
    /// 0: nothing fails; 1..=parts: that part fails; above: `complete` fails.
    fails_at: usize,
}

impl FileScenario {
    fn plan(&self) -> Plan {
        Plan {
            part_latency: Duration::from_millis(self.part_ms),
            fail_part: (1..=self.parts).contains(&self.fails_at).then_some(self.fails_at as u32),
            fail_complete: self.fails_at > self.parts,
        }
    }

    fn fails(&self) -> bool {
        self.fails_at > 0
    }
}

/// Batches of one to six files, about one file in three after the first queued again: named
/// like an earlier one, with its own parts (often not as many: the photo was edited), its own
/// latency and its own failure.
fn batches() -> impl Strategy<Value = Vec<FileScenario>> {
    let file = (
        1usize..=3,
        1u64..=30,
        prop_oneof![3 => Just(0usize), 1 => 1usize..=4],
        prop::bool::weighted(0.35),
        any::<prop::sample::Index>(),
    );
    proptest::collection::vec(file, 1..=6).prop_map(|files| {
        let mut batch: Vec<FileScenario> = Vec::with_capacity(files.len());
        for (n, (parts, part_ms, fails_at, again, earlier)) in files.into_iter().enumerate() {
            let name = if again && n > 0 { batch[earlier.index(n)].name } else { n };
            batch.push(FileScenario { name, parts, part_ms, fails_at: fails_at.min(parts + 1) });
        }
        batch
    })
}

/// The keys a batch names more than once, to say so when it goes wrong.
fn repeated_keys(batch: &[FileScenario]) -> Vec<String> {
    let mut seen = BTreeMap::<usize, usize>::new();
    for f in batch {
        *seen.entry(f.name).or_default() += 1;
    }
    seen.into_iter().filter(|&(_, times)| times > 1).map(|(name, _)| key(name)).collect()
}

impl FileScenario {
    /// How long this file takes from its start (it stops at its failure), on the fake store:
    /// each part takes `part_ms`, and `complete` 1 ms.
    fn duration_ms(&self) -> u64 {
        match self.fails_at {
            n if (1..=self.parts).contains(&n) => n as u64 * self.part_ms,
            _ => self.parts as u64 * self.part_ms + 1,
        }
    }

    fn how_it_fails(&self) -> String {
        if self.fails_at > self.parts {
            "its `complete` refused".into()
        } else {
            format!("its part {}", self.fails_at)
        }
    }
}

/// The moment each failing file fails, and its place in the list, earliest first, when each file
/// sends its parts one after the other: with [`CONCURRENT_UPLOADS`] files going at once, the next
/// file starting the moment one finishes, and nothing stopped on an error. Only to generate batches
/// whose failures are apart; the test takes which failed first from the store, as it happened (a
/// right fix may also send the parts of a file at once).
fn failures_in_time(batch: &[FileScenario]) -> Vec<(u64, usize)> {
    // The moment each slot frees up.
    let mut slots = [0u64; CONCURRENT_UPLOADS];
    let mut failures = Vec::new();
    for (n, f) in batch.iter().enumerate() {
        let slot = (0..slots.len()).min_by_key(|&i| slots[i]).expect("at least one slot");
        slots[slot] += f.duration_ms();
        if f.fails() {
            failures.push((slots[slot], n));
        }
    }
    failures.sort_unstable();
    failures
}

/// Batches of two to six files of which exactly two fail (a part or `complete`), anywhere in the
/// list, the two failures at least 2 ms apart so that which came first is plain.
fn two_failures() -> impl Strategy<Value = Vec<FileScenario>> {
    let file = (1usize..=3, 1u64..=30);
    (
        proptest::collection::vec(file, 2..=6),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        1usize..=4,
        1usize..=4,
    )
        .prop_map(|(files, a, b, fail_a, fail_b)| {
            let n = files.len();
            let a = a.index(n);
            let b = (a + 1 + b.index(n - 1)) % n;
            files
                .into_iter()
                .enumerate()
                .map(|(i, (parts, part_ms))| {
                    let fails_at = if i == a {
                        fail_a.min(parts + 1)
                    } else if i == b {
                        fail_b.min(parts + 1)
                    } else {
                        0
                    };
                    FileScenario { name: i, parts, part_ms, fails_at }
                })
                .collect::<Vec<_>>()
        })
        .prop_filter("the two failures at least 2 ms apart", |batch| {
            let at = failures_in_time(batch);
            at[1].0 - at[0].0 >= 2
        })
}

/// A batch of one to six files that all upload fine, except that the store client panics on one
/// of them: when called for a part, while a part is awaited, or while `complete` is awaited.
#[derive(Debug, Clone)]
struct PanicScenario {
    /// (parts, part latency in ms) of each file.
    files: Vec<(usize, u64)>,
    /// The file whose client panics.
    panics: usize,
    at: PanicAt,
}

fn panic_scenarios() -> impl Strategy<Value = PanicScenario> {
    (
        proptest::collection::vec((1usize..=3, 1u64..=30), 1..=6),
        any::<prop::sample::Index>(),
        0usize..3,
        any::<prop::sample::Index>(),
    )
        .prop_map(|(files, panics, how, part)| {
            let panics = panics.index(files.len());
            let part = part.index(files[panics].0) as u32 + 1;
            let at = match how {
                0 => PanicAt::CallingPart(part),
                1 => PanicAt::AwaitingPart(part),
                _ => PanicAt::AwaitingComplete,
            };
            PanicScenario { files, panics, at }
        })
}

/// Checks the store after a batch ended as `outcome`.
fn check_batch(
    batch: &[FileScenario],
    store: &FakeStore,
    outcome: Outcome<Result<Vec<Uploaded>, upload_stream_drop::UploadError>>,
) -> Result<(), String> {
    let open = store.open_keys();
    if !open.is_empty() {
        let repeated = repeated_keys(batch);
        let twice = if repeated.is_empty() {
            String::new()
        } else {
            format!(
                " (the batch named {repeated:?} more than once: each of those files is a \
                 multipart upload of its own, with its own `UploadId`, to complete or abort)"
            )
        };
        return Err(format!(
            "after the batch, these multipart uploads were still open: {open:?}{twice}"
        ));
    }
    let bad = store.bad_aborts();
    if !bad.is_empty() {
        return Err(format!("aborts the store refused: {bad:?}"));
    }
    store.parts_numbered_from_one()?;
    if store.max_open() > CONCURRENT_UPLOADS {
        return Err(format!(
            "{} multipart uploads were open at once; the batch uploads at most {CONCURRENT_UPLOADS} at a time",
            store.max_open()
        ));
    }
    let failing: Vec<String> = batch.iter().filter(|f| f.fails()).map(|f| key(f.name)).collect();
    match outcome {
        Outcome::Completed(Ok(uploaded)) if !failing.is_empty() => Err(format!(
            "`upload_all` returned Ok with {} files although {failing:?} failed",
            uploaded.len()
        )),
        Outcome::Completed(Ok(uploaded)) => {
            let mut returned: Vec<(String, u32)> =
                uploaded.into_iter().map(|u| (u.key, u.parts)).collect();
            returned.sort();
            let mut expected: Vec<(String, u32)> =
                batch.iter().map(|f| (key(f.name), f.parts as u32)).collect();
            expected.sort();
            let completed = store.completed_uploads();
            if returned != expected {
                Err(format!(
                    "`upload_all` returned Ok with {returned:?} (key, parts); expected every \
                     file of the batch once, with its own part count, a key queued twice twice \
                     (the store completed {completed:?}): {expected:?}"
                ))
            } else if completed != expected {
                Err(format!(
                    "`upload_all` returned Ok, but the store completed {completed:?} (key, parts \
                     received); expected every file of the batch, a key queued twice twice: \
                     {expected:?}"
                ))
            } else {
                Ok(())
            }
        }
        Outcome::Completed(Err(error)) if !failing.contains(&error.key) => Err(format!(
            "`upload_all` returned an error for {}, which did not fail (failing: {failing:?})",
            error.key
        )),
        _ => Ok(()),
    }
}

hidden_test! {
    /// Batches of every shape: files of one to three parts, any latencies, a part or `complete`
    /// failing anywhere, and the batch cut after every poll. However it ends, no multipart upload
    /// is left open, none is aborted wrongly, and at most four are open at once.
    fn any_batch_leaves_no_multipart_upload_open() {
        check_property(24, batches(), |batch| async move {
            let report = explore(
                || FakeStore::by_place(batch.iter().map(FileScenario::plan).collect()),
                |store: FakeStore| {
                    let files: Vec<FileUpload> = batch
                        .iter()
                        .enumerate()
                        .map(|(n, f)| FileUpload {
                            key: key(f.name),
                            parts: vec![vec![n as u8; 4]; f.parts],
                        })
                        .collect();
                    async move { upload_all(&store, files).await }
                },
                |store, outcome| {
                    let batch = batch.clone();
                    async move {
                        sleep(Duration::from_secs(1)).await;
                        check_batch(&batch, &store, outcome)
                    }
                },
            )
            .await;
            report.map(|_| ()).map_err(|failure| failure.to_string())
        });
    }

    /// "However `upload_all` ends" includes a panic: the store client has a bug and panics on
    /// one file, when called or while awaited, with other uploads in flight. The panic may reach
    /// the caller (or become that file's error), but no multipart upload may be left open.
    fn a_panicking_store_client_leaves_no_upload_open() {
        check_property(48, panic_scenarios(), |scenario| async move {
            let panicking = key(scenario.panics);
            let store = FakeStore::new((0..scenario.files.len()).map(|n| {
                let plan = Plan {
                    part_latency: Duration::from_millis(scenario.files[n].1),
                    fail_part: None,
                    fail_complete: false,
                };
                (key(n), plan)
            }))
            .panicking(panicking.clone(), scenario.at);
            let files: Vec<FileUpload> = (0..scenario.files.len())
                .map(|n| FileUpload { key: key(n), parts: vec![vec![n as u8; 4]; scenario.files[n].0] })
                .collect();
            let ran = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(upload_all(
                &store, files,
            )))
            .await;
            // Long after every upload would have finished: nothing comes back to close them later.
            sleep(Duration::from_secs(1)).await;
            let how = match scenario.at {
                PanicAt::CallingPart(part) => format!("when `upload_part` was called for its part {part}"),
                PanicAt::AwaitingPart(part) => format!("while its part {part} was awaited"),
                PanicAt::AwaitingComplete => "while its `complete` was awaited".to_owned(),
            };
            let what = format!(
                "a batch of {} file(s), the store client panicking on {panicking} {how}",
                scenario.files.len()
            );
            let ended = match &ran {
                Ok(Ok(uploaded)) => format!("`upload_all` returned Ok with {} files", uploaded.len()),
                Ok(Err(error)) => format!("`upload_all` returned an error for {}", error.key),
                Err(_) => "the panic unwound out of `upload_all`".to_owned(),
            };
            let open = store.open_keys();
            if !open.is_empty() {
                return Err(format!(
                    "{what}; {ended}, and these multipart uploads were still open: {open:?}. A \
                     panic is one more way for the batch to end: whatever is dropped while the \
                     thread unwinds must still abort its upload (`abort` is a short synchronous \
                     call, safe to make while unwinding), or the store bills their parts for ever"
                ));
            }
            let bad = store.bad_aborts();
            if !bad.is_empty() {
                return Err(format!("{what}; {ended}, and the store refused these aborts: {bad:?}"));
            }
            match ran {
                Ok(Ok(_)) => Err(format!(
                    "{what}; {ended}, but {panicking} was never uploaded: the batch did not succeed"
                )),
                Ok(Err(error)) if error.key != panicking => Err(format!(
                    "{what}; {ended}, which did not fail: only {panicking} did"
                )),
                _ => Ok(()),
            }
        });
    }

    /// The store refuses to complete photo 2 (its parts do not match). The upload stays open on
    /// the store's side until the client aborts it.
    async fn a_failed_complete_is_aborted() {
        let mut plans: Vec<_> = (0..4).map(ok_plan).collect();
        plans[2].1.fail_complete = true;
        let store = FakeStore::new(plans);
        let outcome = upload_all(&store, (0..4).map(file).collect()).await;
        store.parts_numbered_from_one().unwrap_or_else(|wrong| panic!("{wrong}"));
        let error = outcome.expect_err("photo 2 cannot be completed, so the batch must fail");
        assert_eq!(error.key, key(2), "the error must name the file that failed");
        sleep(Duration::from_secs(1)).await;
        let open = store.open_keys();
        assert!(
            open.is_empty(),
            "the store refused to complete photo 2 and `upload_all` returned its error, but these \
             multipart uploads are still open: {open:?}. An upload whose `complete` failed is \
             still open and must be aborted"
        );
        assert!(store.bad_aborts().is_empty(), "uploads aborted wrongly: {:?}", store.bad_aborts());
    }

    /// The app runs each backup batch in a task of its own (`tokio::spawn`) on its multi-thread
    /// runtime, so with a store whose futures are `Send`, `upload_all`'s future must stay `Send`,
    /// as the original is.
    async fn upload_all_can_run_in_a_spawned_backup_task() {
        let store = FakeStore::new((0..2).map(ok_plan));
        let batch = upload_all(&store, (0..2).map(file).collect());
        assert!(
            kata_support::is_send!(batch),
            "the future returned by `upload_all` (with a store whose futures are `Send`) is not \
             `Send`, so the app can no longer `tokio::spawn` a backup batch on its multi-thread \
             runtime: it holds something that is not `Send` across an `.await` (a drop guard \
             holding a `Box<dyn Fn>` without `+ Send` or an `Rc`, a `Cell` or `RefCell` borrowed \
             by a guard, a `std` lock guard)"
        );
        batch.await.expect("no part fails, so the batch must succeed");
        assert!(store.open_keys().is_empty(), "uploads left open: {:?}", store.open_keys());
    }

    /// Nothing fails: every file is uploaded, four at a time, and nothing is left open.
    async fn uploads_every_file_four_at_a_time() {
        let store = FakeStore::new((0..6).map(ok_plan));
        let mut uploaded = upload_all(&store, (0..6).map(file).collect())
            .await
            .expect("no part fails, so the batch must succeed");
        store.parts_numbered_from_one().unwrap_or_else(|wrong| panic!("{wrong}"));
        uploaded.sort_by(|a, b| a.key.cmp(&b.key));
        let expected: Vec<_> = (0..6).map(|n| Uploaded { key: key(n), parts: 2 }).collect();
        assert_eq!(uploaded, expected);
        assert_eq!(store.completed(), (0..6).map(key).collect::<Vec<_>>());
        assert!(store.open_keys().is_empty(), "uploads left open: {:?}", store.open_keys());
        assert!(store.bad_aborts().is_empty(), "uploads aborted wrongly: {:?}", store.bad_aborts());
        assert_eq!(
            store.max_open(),
            CONCURRENT_UPLOADS,
            "the batch must upload {CONCURRENT_UPLOADS} files at a time; at most {} were open at once",
            store.max_open()
        );
    }

    /// One slow video among quick photos, at each place in the first window: when a photo
    /// finishes, the next file starts at once, so the photos behind the video are all uploaded
    /// long before it ends.
    async fn a_freed_slot_goes_to_the_next_file_at_once() {
        for slow in 0..CONCURRENT_UPLOADS {
            let plans = (0..10).map(|n| {
                let ms = if n == slow { 2_000 } else { 10 };
                let plan =
                    Plan { part_latency: Duration::from_millis(ms), fail_part: None, fail_complete: false };
                (key(n), plan)
            });
            let store = FakeStore::new(plans);
            let (outcome, (completed, open)) = tokio::join!(
                upload_all(&store, (0..10).map(file).collect()),
                async {
                    sleep(Duration::from_millis(500)).await;
                    (store.completed().len(), store.open_keys())
                }
            );
            outcome.expect("no part fails, so the batch must succeed");
            assert!(
                completed == 9 && open == [key(slow)],
                "photo {slow} takes 4 s and the 9 others about 20 ms each; at 500 ms only \
                 {completed} of those 9 were uploaded and the open uploads were {open:?}. The \
                 batch keeps {CONCURRENT_UPLOADS} files going: when one finishes, the next file \
                 starts at once instead of waiting for a slower one"
            );
        }
    }

    /// When one file finishes, the next one starts at once: after every finish, whichever file it
    /// is and however many others are still running, the next file of the list is opened in that
    /// same instant, not when a second file frees its slot too. Batches of five to twelve
    /// one-part files of any length (some of them slow), four at a time.
    fn after_every_finish_the_next_file_starts_at_once() {
        // The reviewer's case: slow, quick, slow, slow, quick.
        let fixed = vec![500u64, 10, 500, 500, 10];
        let lengths = prop::collection::vec(prop_oneof![1 => Just(500u64), 4 => 1u64..=40], 5..=12);
        let strategy = prop_oneof![1 => Just(fixed), 7 => lengths];
        check_property(32, strategy, |part_ms| async move {
            let store = FakeStore::new(part_ms.iter().enumerate().map(|(n, &ms)| {
                let plan = Plan {
                    part_latency: Duration::from_millis(ms),
                    fail_part: None,
                    fail_complete: false,
                };
                (key(n), plan)
            }));
            let files: Vec<FileUpload> =
                (0..part_ms.len()).map(|n| FileUpload { key: key(n), parts: vec![vec![n as u8; 4]] }).collect();
            let start = Instant::now();
            let outcome = upload_all(&store, files).await;
            let what = format!(
                "{} one-part files taking {part_ms:?} ms each (and 1 ms to complete), \
                 {CONCURRENT_UPLOADS} at a time",
                part_ms.len()
            );
            if let Err(error) = outcome {
                return Err(format!("{what}: nothing fails, yet the batch failed with {error:?}"));
            }
            // When each file should start: the first four at once, each next one the moment the
            // earliest running file finishes and frees its slot.
            let mut slots = [0u64; CONCURRENT_UPLOADS];
            let mut expected = Vec::new();
            for &ms in &part_ms {
                let slot = (0..slots.len()).min_by_key(|&i| slots[i]).expect("at least one slot");
                expected.push(slots[slot]);
                slots[slot] += ms + 1;
            }
            let opened_at = store.books.lock().unwrap().opened_at.clone();
            let seen: Vec<Option<u128>> = (0..part_ms.len())
                .map(|n| {
                    opened_at.iter().find(|(k, _)| *k == key(n)).map(|(_, at)| (*at - start).as_millis())
                })
                .collect();
            for (n, (&want, got)) in expected.iter().zip(&seen).enumerate() {
                if *got != Some(u128::from(want)) {
                    let got = got.map_or("never".to_owned(), |ms| format!("at {ms} ms"));
                    return Err(format!(
                        "{what}: photo {n} was started (its multipart upload opened) {got}, \
                         expected at {want} ms, the instant a file finished and freed a slot \
                         for it. Every start, in ms: expected {expected:?}, seen {seen:?}. When \
                         one file finishes, the next one starts at once, whichever file it is \
                         and however many others are still running"
                    ));
                }
            }
            Ok(())
        });
    }

    /// A file whose part fails has its own upload aborted.
    async fn a_failed_part_aborts_its_upload() {
        let store = photo_zero_fails(1);
        let outcome = upload_all(&store, vec![file(0)]).await;
        store.parts_numbered_from_one().unwrap_or_else(|wrong| panic!("{wrong}"));
        let error = outcome.expect_err("photo 0's first part fails");
        assert_eq!(error.key, key(0));
        assert!(store.open_keys().is_empty(), "the failed upload was left open");
    }

    /// The kata's bug: photo 0 fails at 10 ms while photos 1 to 3 are halfway through. When
    /// `upload_all` returns, none of their multipart uploads may still be open.
    async fn a_failed_file_leaves_no_multipart_upload_open() {
        let store = photo_zero_fails(4);
        let outcome = upload_all(&store, (0..4).map(file).collect()).await;
        store.parts_numbered_from_one().unwrap_or_else(|wrong| panic!("{wrong}"));
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
        assert!(store.bad_aborts().is_empty(), "uploads aborted wrongly: {:?}", store.bad_aborts());
    }

    /// Two files of a batch fail, at any places in the list and at any moments: sometimes the one
    /// listed first fails first, sometimes one listed later does. The batch returns the first
    /// error, the one of the file that failed first, whether it stops at that error or lets the
    /// other files finish before it reports.
    fn of_two_failing_files_the_first_failure_is_returned() {
        check_property(96, two_failures(), |batch| async move {
            let start = Instant::now();
            let store = FakeStore::new(batch.iter().enumerate().map(|(n, f)| (key(n), f.plan())));
            let files: Vec<FileUpload> = batch
                .iter()
                .enumerate()
                .map(|(n, f)| FileUpload { key: key(n), parts: vec![vec![n as u8; 4]; f.parts] })
                .collect();
            let outcome = upload_all(&store, files).await;
            store.parts_numbered_from_one()?;
            // The file that failed first is the one the store refused first, as it happened: a
            // right fix may send the parts of a file one after the other, or all at once.
            let Some((at, first)) = store.first_failures() else {
                return Err(format!(
                    "two files of the batch fail, yet the store refused no request; \
                     `upload_all` returned {}",
                    if outcome.is_ok() { "Ok" } else { "an error" }
                ));
            };
            let at = (at - start).as_millis();
            let failing: Vec<String> = batch
                .iter()
                .enumerate()
                .filter(|(_, f)| f.fails())
                .map(|(n, f)| format!("photo {n} ({})", f.how_it_fails()))
                .collect();
            let setting = format!(
                "in a batch of {} files, {} failed; {} failed first, at {at} ms after the \
                 batch started",
                batch.len(),
                failing.join(" and "),
                first.join(" and ")
            );
            match outcome {
                Ok(uploaded) => {
                    return Err(format!(
                        "{setting}, yet `upload_all` returned Ok with {} files",
                        uploaded.len()
                    ));
                }
                Err(error) if !first.contains(&error.key) => {
                    return Err(format!(
                        "{setting}; `upload_all` returned the error of {} ({:?}) instead of \
                         {}'s. It returns the first error: the one of the file that \
                         failed first (not the first failing file in the list), even when it \
                         lets the other files finish before it reports",
                        error.key,
                        error.error,
                        first.join(" or ")
                    ));
                }
                Err(_) => {}
            }
            sleep(Duration::from_secs(1)).await;
            let open = store.open_keys();
            if !open.is_empty() {
                return Err(format!("{setting}; uploads left open after the batch: {open:?}"));
            }
            let bad = store.bad_aborts();
            if !bad.is_empty() {
                return Err(format!("{setting}; uploads aborted wrongly: {bad:?}"));
            }
            Ok(())
        });
    }

    /// The same photo queued twice, even three times, in one batch (re-edited while the backup
    /// ran): each file is a multipart upload of its own, with its own `UploadId` and its own
    /// number of parts, and the uploads of one key end at different moments. Run to the end, with
    /// or without one of them failing, and cut after every poll: every one of them is completed or
    /// aborted, none is left open, and a batch that succeeds reports each file once, with its own
    /// part count.
    async fn a_key_queued_twice_is_two_uploads_each_closed() {
        // Photo 0 three times, photo 1 twice, photo 2 once; each file in its own number of parts
        // (an edit changes the size), so that no two files of one key are alike.
        const NAMES: [usize; 6] = [0, 1, 0, 2, 0, 1];
        const PARTS: [usize; 6] = [1, 2, 3, 1, 2, 3];
        for failing in [None, Some(2)] {
            let plans: Vec<Plan> = (0..NAMES.len())
                .map(|n| Plan {
                    part_latency: Duration::from_millis(5 + 7 * n as u64),
                    fail_part: (failing == Some(n)).then_some(1),
                    fail_complete: false,
                })
                .collect();
            let setting = match failing {
                None => "a batch naming photo 0 three times (in 1, 3 and 2 parts) and photo 1 \
                         twice (in 2 and 3 parts)"
                    .to_owned(),
                Some(n) => format!(
                    "a batch naming photo 0 three times and photo 1 twice, the upload of file {n} \
                     (photo {} again) failing on its first part",
                    NAMES[n]
                ),
            };
            let setting = &setting;
            assert_cancel_safe(
                || FakeStore::by_place(plans.clone()),
                |store: FakeStore| async move {
                    let files = (0..NAMES.len())
                        .map(|n| FileUpload {
                            key: key(NAMES[n]),
                            parts: vec![vec![n as u8; 8]; PARTS[n]],
                        })
                        .collect();
                    upload_all(&store, files).await
                },
                |store, outcome| async move {
                    sleep(Duration::from_secs(1)).await;
                    let open = store.open_keys();
                    if !open.is_empty() {
                        return Err(format!(
                            "{setting}: after the batch these multipart uploads were still open: \
                             {open:?}. Each file is a multipart upload of its own, with its own \
                             `UploadId`, even when its key is the same as another file's; each \
                             must be completed or aborted"
                        ));
                    }
                    let bad = store.bad_aborts();
                    if !bad.is_empty() {
                        return Err(format!("{setting}: aborts the store refused: {bad:?}"));
                    }
                    store.parts_numbered_from_one()?;
                    match (outcome, failing) {
                        (Outcome::Completed(Ok(uploaded)), None) => {
                            let mut returned: Vec<(String, u32)> =
                                uploaded.into_iter().map(|u| (u.key, u.parts)).collect();
                            returned.sort();
                            let mut expected: Vec<(String, u32)> =
                                (0..NAMES.len()).map(|n| (key(NAMES[n]), PARTS[n] as u32)).collect();
                            expected.sort();
                            let completed = store.completed_uploads();
                            if returned != expected || completed != expected {
                                return Err(format!(
                                    "{setting}, nothing failing: `upload_all` returned \
                                     {returned:?} (key, parts) and the store completed \
                                     {completed:?}; expected each of the six files, once each, \
                                     with its own part count: {expected:?}"
                                ));
                            }
                        }
                        (Outcome::Completed(Ok(_)), Some(_)) => {
                            return Err(format!("{setting}: `upload_all` returned Ok"));
                        }
                        (Outcome::Completed(Err(error)), None) => {
                            return Err(format!(
                                "{setting}, nothing failing: `upload_all` returned {error:?}"
                            ));
                        }
                        (Outcome::Completed(Err(error)), Some(n)) if error.key != key(NAMES[n]) => {
                            return Err(format!(
                                "{setting}: `upload_all` returned the error of {}, which did not \
                                 fail",
                                error.key
                            ));
                        }
                        _ => {}
                    }
                    Ok(())
                },
            )
            .await;
        }
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
                    return Err(format!("aborts the store refused: {bad:?}"));
                }
                store.parts_numbered_from_one()
            },
        )
        .await;
    }

    /// A batch far larger than the others: `LARGE_BATCH` files (past 256, and any small table of
    /// slots or 8-bit index a fix might keep), the first of them with hundreds of parts and so
    /// slow that it is in flight while all the others go through the other slots. Uncut, every
    /// file is uploaded, at most `CONCURRENT_UPLOADS` at a time; cut when the 17th, 65th, 257th
    /// or last file has just been opened, no multipart upload is left open and none that
    /// completed is aborted.
    async fn a_batch_of_hundreds_of_files_leaves_nothing_open() {
        let plans = (0..LARGE_BATCH).map(|n| {
            let ms = if n == 0 { 10_000 } else { 1 };
            let plan = Plan { part_latency: Duration::from_millis(ms), fail_part: None, fail_complete: false };
            (key(n), plan)
        });
        let plans: Vec<_> = plans.collect();
        let batch = || -> Vec<FileUpload> {
            (0..LARGE_BATCH)
                .map(|n| {
                    let parts = if n == 0 { FIRST_FILE_PARTS } else { 2 };
                    FileUpload { key: key(n), parts: vec![vec![7u8; 8]; parts] }
                })
                .collect()
        };
        let told = format!(
            "a batch of {LARGE_BATCH} files, the first with {FIRST_FILE_PARTS} parts of 10 s each, \
             the others with 2 parts of 1 ms"
        );
        for cut_after_opening in [17, 65, 257, LARGE_BATCH, 0] {
            let store = FakeStore::new(plans.clone());
            let mut uploading = Box::pin(upload_all(&store, batch()));
            let outcome = if cut_after_opening == 0 {
                Some((&mut uploading).await)
            } else {
                let mut outcome = None;
                while store.books.lock().unwrap().opened_at.len() < cut_after_opening {
                    tokio::select! {
                        biased;
                        ended = &mut uploading => { outcome = Some(ended); break; }
                        _ = sleep(Duration::from_micros(500)) => {}
                    }
                }
                outcome
            };
            drop(uploading);
            let what = match (cut_after_opening, &outcome) {
                (0, _) => "uploaded uncut".to_string(),
                (n, None) => format!("dropped once file {} of them had been opened", n - 1),
                (n, Some(_)) => format!("meant to be dropped once file {} had been opened, but it returned first", n - 1),
            };
            sleep(Duration::from_secs(1)).await;
            let open = store.open_keys();
            assert!(open.is_empty(), "{told}, {what}: these multipart uploads were still open: {:?}{}", &open[..open.len().min(8)], if open.len() > 8 { " …" } else { "" });
            let bad = store.bad_aborts();
            assert!(bad.is_empty(), "{told}, {what}: aborts the store refused: {bad:?}");
            if let Err(problem) = store.parts_numbered_from_one() {
                panic!("{told}, {what}: {problem}");
            }
            assert!(
                store.max_open() <= CONCURRENT_UPLOADS,
                "{told}, {what}: {} multipart uploads were open at once; the batch uploads at most \
                 {CONCURRENT_UPLOADS} at a time",
                store.max_open()
            );
            if cut_after_opening == 0 {
                let uploaded = match outcome {
                    Some(Ok(uploaded)) => uploaded,
                    other => panic!("{told}, {what}: `upload_all` returned {other:?}, expected Ok"),
                };
                let mut returned: Vec<(String, u32)> = uploaded.into_iter().map(|u| (u.key, u.parts)).collect();
                returned.sort();
                let mut expected: Vec<(String, u32)> = (0..LARGE_BATCH)
                    .map(|n| (key(n), if n == 0 { FIRST_FILE_PARTS as u32 } else { 2 }))
                    .collect();
                expected.sort();
                assert!(
                    returned == expected && store.completed().len() == LARGE_BATCH,
                    "{told}, {what}: `upload_all` returned {} files and the store completed {}; \
                     expected every one of the {LARGE_BATCH}, each once, with its own part count",
                    returned.len(),
                    store.completed().len()
                );
            }
        }
    }

    /// The largest batch the app sends, `MAX_BATCH` files (the README's ceiling), against a store
    /// that answers at once, except for the first file, whose part never answers: it is in flight
    /// while every other file goes through the other slots, so each of them is opened while it is.
    /// Dropped once the last file has been opened, no multipart upload may be
    /// left open: any table of slots, or key of fewer bits, smaller than the batch gives a later
    /// file the first file's entry.
    fn the_largest_batch_dropped_leaves_nothing_open() {
        for cut_after_opening in [MAX_BATCH] {
            let store = InstantStore::default();
            let files: Vec<FileUpload> = (0..MAX_BATCH)
                .map(|n| {
                    let key = if n == 0 { SLOW_KEY.to_string() } else { key(n) };
                    FileUpload { key, parts: vec![vec![1u8]] }
                })
                .collect();
            {
                let mut uploading = Box::pin(upload_all(&store, files));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut polls = 0usize;
                while store.opened() < cut_after_opening {
                    let ended = uploading.as_mut().poll(&mut cx);
                    assert!(
                        ended.is_pending(),
                        "a batch of {MAX_BATCH} files whose first file never finishes returned \
                         after {} files were opened: {ended:?}",
                        store.opened()
                    );
                    polls += 1;
                    assert!(polls <= 4 * MAX_BATCH, "the batch stopped opening files at {}", store.opened());
                }
                // One more poll: the last file opened is now awaiting its part.
                let _ = uploading.as_mut().poll(&mut cx);
                // The caller drops the batch here (the user cancelled the backup).
            }
            let open = store.open();
            assert!(
                open.is_empty(),
                "a batch of {MAX_BATCH} files, the first of them slow, dropped once {cut_after_opening} \
                 files had been opened: these uploads (numbered from 0 in the order they were \
                 opened) were still open: {:?}{}",
                &open[..open.len().min(8)],
                if open.len() > 8 { " …" } else { "" }
            );
            let bad = store.bad_aborts.lock().unwrap().clone();
            assert!(
                bad.is_empty(),
                "a batch of {MAX_BATCH} files dropped once {cut_after_opening} had been opened: \
                 aborts the store refused: {:?}",
                &bad[..bad.len().min(8)]
            );
        }
    }
}

/// The largest batch the app uploads, as the README states: `the_largest_batch_dropped_leaves_nothing_open`
/// sends exactly this many files.
const MAX_BATCH: usize = 131_072;

/// The key of the one file whose part never answers in `InstantStore`.
const SLOW_KEY: &str = "alice/2026/holiday-video.mp4";

/// A store whose every request answers at once, except the parts of `SLOW_KEY`, which never do:
/// a batch of `MAX_BATCH` files goes through it in a fraction of a second, with no runtime.
#[derive(Debug, Default)]
struct InstantStore {
    /// For each upload opened, in order: whether it is still open.
    open: Mutex<Vec<bool>>,
    slow: Mutex<BTreeSet<u64>>,
    bad_aborts: Mutex<Vec<String>>,
}

impl InstantStore {
    fn opened(&self) -> usize {
        self.open.lock().unwrap().len()
    }

    fn open(&self) -> Vec<usize> {
        let open = self.open.lock().unwrap();
        (0..open.len()).filter(|&n| open[n]).collect()
    }

    /// Closes an open upload; closing one that is not open is recorded as a refused request.
    fn close(&self, upload: &UploadId, how: &str) {
        let mut open = self.open.lock().unwrap();
        match open.get_mut(upload.0 as usize) {
            Some(still_open) if *still_open => *still_open = false,
            _ => self
                .bad_aborts
                .lock()
                .unwrap()
                .push(format!("{how} of upload {}, not open", upload.0)),
        }
    }
}

impl ObjectStore for InstantStore {
    fn create_multipart(&self, key: &str) -> impl Future<Output = Result<UploadId, StoreError>> {
        let mut open = self.open.lock().unwrap();
        let id = open.len() as u64;
        open.push(true);
        if key == SLOW_KEY {
            self.slow.lock().unwrap().insert(id);
        }
        std::future::ready(Ok(UploadId(id)))
    }

    fn upload_part(
        &self,
        upload: &UploadId,
        _part: u32,
        _data: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        let slow = self.slow.lock().unwrap().contains(&upload.0);
        async move {
            if slow {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    fn complete(&self, upload: &UploadId) -> impl Future<Output = Result<(), StoreError>> {
        self.close(upload, "complete");
        std::future::ready(Ok(()))
    }

    fn abort(&self, upload: &UploadId) {
        self.close(upload, "abort");
    }
}

/// How many files `a_batch_of_hundreds_of_files_leaves_nothing_open` sends, and how many parts
/// its first, slow file has: past 256 of each, and any small table a fix might keep.
const LARGE_BATCH: usize = 300;
const FIRST_FILE_PARTS: usize = 300;
