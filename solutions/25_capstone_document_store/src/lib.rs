//! # Kata 25 solution: one commit point, and a guard for everything before it
//!
//! `save` is now built around a single *commit point*: the rename that puts the document in
//! place, immediately followed (in the same poll, with no `.await` between them) by the index
//! entry, which takes effect on its first poll. Everything before the commit point only touches
//! the temporary file, and a drop guard deletes that file if the future is dropped (or fails)
//! before the commit. Everything after it is already done as far as a reader can tell. So a
//! drop at any `.await` leaves either the old state or the new one, never a mix.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time;

/// How long each step of the fake disk takes (one chunk of a write, a sync, a rename, an index
/// log flush).
pub const STEP: Duration = Duration::from_millis(5);

/// The fake disk writes at most this many bytes per step.
pub const WRITE_CHUNK: usize = 16;

/// An in-memory file system with a real one's timing. Clones share one disk.
#[derive(Debug, Clone, Default)]
pub struct FakeFs {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl FakeFs {
    /// An empty disk.
    pub fn new() -> Self {
        FakeFs::default()
    }

    /// A disk that already holds `files` (a snapshot to start from).
    pub fn preloaded<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let files =
            files.into_iter().map(|(path, data)| (path.to_owned(), data.to_vec())).collect();
        FakeFs { files: Arc::new(Mutex::new(files)) }
    }

    /// True if `path` exists.
    pub fn exists(&self, path: &str) -> bool {
        self.lock().contains_key(path)
    }

    /// The content of `path`, if it exists.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().get(path).cloned()
    }

    /// Every path on the disk, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Creates `path` (or empties it) at once, then writes `data` to it, [`WRITE_CHUNK`] bytes per
    /// [`STEP`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropped part-way, it leaves `path` holding the first chunks only.
    pub async fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.lock().insert(path.to_owned(), Vec::new());
        for chunk in data.chunks(WRITE_CHUNK) {
            time::sleep(STEP).await;
            self.lock()
                .get_mut(path)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_owned()))?
                .extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Waits until `path` is durable on disk. (The fake keeps no separate durable state.)
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing that a reader could see.
    pub async fn sync(&self, path: &str) -> io::Result<()> {
        time::sleep(STEP).await;
        if self.exists(path) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, path.to_owned()))
        }
    }

    /// Moves `from` to `to`, replacing `to`, in one atomic step once the metadata journal is
    /// written ([`STEP`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped before it completes, nothing has moved; once it completes, the move
    /// has happened.
    pub async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        time::sleep(STEP).await;
        let mut files = self.lock();
        let data = files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_owned()))?;
        files.insert(to.to_owned(), data);
        Ok(())
    }

    /// Deletes `path` at once, and says whether it existed. Synchronous, so a `Drop` can call
    /// it.
    pub fn remove(&self, path: &str) -> bool {
        self.lock().remove(path).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().expect("fake disk lock")
    }
}

/// The document index: document id to file path. Clones share one index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// An index that already lists `entries` (`(id, path)` pairs).
    pub fn preloaded<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let entries =
            entries.into_iter().map(|(id, path)| (id.to_owned(), path.to_owned())).collect();
        Index { entries: Arc::new(Mutex::new(entries)) }
    }

    /// True if the index lists `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Where the index says `id` is stored.
    pub fn path_of(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    /// Records `id -> path`. The entry is applied to the in-memory index at once (readers see it
    /// straight away); then the call waits for the index's write-ahead log to be flushed
    /// ([`STEP`]).
    ///
    /// # Cancel safety
    ///
    /// The entry takes effect on the first poll. A call dropped after that has still inserted
    /// it: cancelled does not mean "did not happen".
    pub async fn insert(&self, id: &str, path: &str) {
        self.lock().insert(id.to_owned(), path.to_owned());
        time::sleep(STEP).await;
    }

    /// Removes `id` at once, and says whether it was listed.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.entries.lock().expect("index lock")
    }
}

/// The document store. Clones share the disk and the index.
#[derive(Debug, Clone)]
pub struct DocStore {
    fs: FakeFs,
    index: Index,
}

impl DocStore {
    /// A store keeping its documents on `fs` and finding them through `index`.
    pub fn new(fs: FakeFs, index: Index) -> Self {
        DocStore { fs, index }
    }

    /// Where document `id` lives once saved.
    pub fn final_path(id: &str) -> String {
        format!("docs/{id}.json")
    }

    /// The stem of the temporary files of document `id`: each save writes its own,
    /// `docs/<id>.json.tmp.<n>`, before it is renamed into place.
    pub fn temp_path(id: &str) -> String {
        format!("docs/{id}.json.tmp")
    }

    /// The document `id`, found through the index.
    pub fn load(&self, id: &str) -> Option<Vec<u8>> {
        let path = self.index.path_of(id)?;
        self.fs.read(&path)
    }

    /// Saves document `id`, replacing any previous version. A reader sees either the previous
    /// version or the new one in full, never a partial file.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before the rename completes, it leaves the store as it was (the
    /// temporary file is deleted). Dropped after that, the document is saved and indexed; only
    /// the wait for the index's log flush is cut short.
    pub async fn save(&self, id: &str, body: &[u8]) -> io::Result<()> {
        // A temporary file of this save's own: two saves of one document may overlap (a client's
        // retry racing the request it retries), and two saves writing one temporary file would
        // mix their chunks, or one would rename or delete the other's file.
        let temp =
            format!("{}.{}", DocStore::temp_path(id), NEXT_TEMP.fetch_add(1, Ordering::Relaxed));
        let path = DocStore::final_path(id);

        // Before the commit point, the temporary file is ours to clean up. The guard exists
        // before the first `.await`, so there is no moment at which the file exists unguarded.
        let uncommitted = TempFile { fs: &self.fs, path: Some(temp.clone()) };
        self.fs.write(&temp, body).await?;
        self.fs.sync(&temp).await?;
        self.fs.rename(&temp, &path).await?;

        // The commit point. The rename has just completed, and from here to the index entry
        // there is no `.await`: `insert` applies the entry on its first poll, which is this same
        // poll of `save`. No drop can land between "the file is in place" and "the index lists
        // it".
        uncommitted.disarm();
        self.index.insert(id, &path).await;
        Ok(())
    }
}

/// Numbers the temporary files, so that no two saves in this process share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Deletes an uncommitted temporary file when dropped, unless disarmed at the commit point.
struct TempFile<'a> {
    fs: &'a FakeFs,
    path: Option<String>,
}

impl TempFile<'_> {
    /// The file has been renamed into place: it is the document now, not ours to delete.
    fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        // Runs when `save` is dropped (or returns an error) before the commit point. Deleting is
        // synchronous, because a destructor cannot `.await`.
        if let Some(path) = self.path.take() {
            self.fs.remove(&path);
        }
    }
}
