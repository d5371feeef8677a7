//! # Kata 31: the journal whose transactions tear
//!
//! An order service keeps a write-ahead journal: every request's changes (an order and its lines)
//! are one [`Transaction`], appended to `orders.journal` before the client is told "saved". At
//! startup the service replays the journal. Replay can skip a torn transaction at the very end
//! (the power went out mid-write), but a torn transaction in the middle is corruption: replay
//! stops there, and every transaction after it is lost.
//!
//! [`Journal::append`] opens the file, writes the transaction through a tokio `BufWriter`, and
//! flushes. Requests run under a deadline, and deploys shut the runtime down, so `append` is
//! dropped part-way. The bytes it had handed over are then in one of three places: in the
//! `BufWriter`'s buffer (discarded with it), in a write the file had started on the blocking pool
//! (it lands later, whoever is waiting), or on disk. The next `append` writes after whatever
//! landed.
//!
//! The disk is an in-memory fake ([`FakeDisk`], [`FakeFile`]) that behaves as `tokio::fs::File`
//! does: its docs say exactly when a write lands. It is not what you fix. Read `README.md` for the
//! whole story.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::time::{Instant, Sleep};

/// How long a write takes on the fake disk's blocking pool, from the moment the file hands it over
/// (on a disk made with [`FakeDisk::with_write_time`], the time given there instead).
pub const WRITE_TIME: Duration = Duration::from_millis(1);

/// The most bytes one write hands to the blocking pool (`tokio::fs::File::set_max_buf_size`).
pub const MAX_WRITE: usize = 4096;

/// One transaction of the journal: an id and the keys it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: u64,
    pub puts: Vec<(String, String)>,
}

impl Transaction {
    /// The journal's lines for this transaction: `begin <id> <puts>`, then one `put` per key.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("begin {} {}\n", self.id, self.puts.len())];
        for (key, value) in &self.puts {
            lines.push(format!("put {} {key} {value}\n", self.id));
        }
        lines
    }

    /// The transaction as it is stored in the journal.
    pub fn encode(&self) -> Vec<u8> {
        self.lines().concat().into_bytes()
    }
}

/// An in-memory disk with the write path of `tokio::fs::File`. Clones share one disk.
///
/// A file's write hands at most [`MAX_WRITE`] bytes to a "blocking pool" and returns at once; the
/// write lands on the disk [`WRITE_TIME`] later (a disk made with [`FakeDisk::with_write_time`] may
/// be slower), in the order writes were handed over, whether or
/// not the file that started it still exists. While a write is in flight, the file's next write
/// waits for it. `flush` waits for it too, and returns its result. A disk made with
/// [`FakeDisk::with_capacity`] fails a write that does not fit with `StorageFull`, after writing
/// the part that fits.
#[derive(Debug, Clone, Default)]
pub struct FakeDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<String, Vec<u8>>,
    /// Writes handed to the blocking pool and not landed yet, oldest first.
    pool: Vec<PendingWrite>,
    /// The result of each landed write, until the file that started it asks.
    landed: BTreeMap<u64, Result<(), io::ErrorKind>>,
    next_id: u64,
    capacity: Option<usize>,
    /// How long a write takes on the pool; `None` means [`WRITE_TIME`].
    write_time: Option<Duration>,
}

#[derive(Debug)]
struct PendingWrite {
    id: u64,
    path: String,
    data: Vec<u8>,
    due: Instant,
}

impl DiskState {
    /// Lands every write whose time has come, oldest first.
    fn land_due(&mut self, now: Instant) {
        let due = self.pool.iter().take_while(|write| write.due <= now).count();
        let writes: Vec<PendingWrite> = self.pool.drain(..due).collect();
        for write in writes {
            self.land(write);
        }
    }

    fn land(&mut self, write: PendingWrite) {
        let used: usize = self.files.values().map(Vec::len).sum();
        let room = self.capacity.map_or(usize::MAX, |capacity| capacity.saturating_sub(used));
        let n = write.data.len().min(room);
        self.files.entry(write.path).or_default().extend_from_slice(&write.data[..n]);
        let result = if n == write.data.len() { Ok(()) } else { Err(io::ErrorKind::StorageFull) };
        self.landed.insert(write.id, result);
    }
}

impl FakeDisk {
    /// An empty disk with no size limit.
    pub fn new() -> Self {
        FakeDisk::default()
    }

    /// An empty disk that holds at most `bytes` bytes over all its files.
    pub fn with_capacity(bytes: usize) -> Self {
        let disk = FakeDisk::new();
        disk.lock().capacity = Some(bytes);
        disk
    }

    /// An empty disk whose writes each take `write_time` on the blocking pool instead of
    /// [`WRITE_TIME`] (a slower disk, or a busier one), holding at most `capacity` bytes if given.
    /// How long a write takes is the disk's business: only the file that started a write can
    /// tell when it has landed.
    pub fn with_write_time(write_time: Duration, capacity: Option<usize>) -> Self {
        let disk = FakeDisk::new();
        {
            let mut state = disk.lock();
            state.capacity = capacity;
            state.write_time = Some(write_time);
        }
        disk
    }

    /// Puts `data` in `path` at once, replacing what it held, as if written before the test (a
    /// journal from an earlier run).
    pub fn put(&self, path: &str, data: &[u8]) {
        self.lock().files.insert(path.to_owned(), data.to_vec());
    }

    /// What `path` holds now: the writes that have landed, not those still in flight.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().files.get(path).cloned()
    }

    /// The length of `path` now (0 if it does not exist).
    pub fn len(&self, path: &str) -> u64 {
        self.lock().files.get(path).map_or(0, |data| data.len() as u64)
    }

    /// How many writes are on the blocking pool, not landed yet.
    pub fn in_flight(&self) -> usize {
        self.lock().pool.len()
    }

    /// Lands every write in flight, now. A runtime that shuts down waits for its blocking pool
    /// to finish, so after the runtime is gone every write has landed: call this to see it.
    pub fn finish_writes(&self) {
        let mut state = self.lock();
        let writes: Vec<PendingWrite> = state.pool.drain(..).collect();
        for write in writes {
            state.land(write);
        }
    }

    /// Opens `path` for appending (every write lands at the end of the file), creating it if it
    /// does not exist.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes effect on its first poll, and a dropped file simply closes.
    pub async fn open_append(&self, path: &str) -> io::Result<FakeFile> {
        let mut state = self.lock();
        state.land_due(Instant::now());
        state.files.entry(path.to_owned()).or_default();
        Ok(FakeFile {
            disk: self.clone(),
            path: path.to_owned(),
            in_flight: None,
            timer: None,
            last_write_err: None,
        })
    }

    /// Cuts `path` down to `len` bytes, by its path: like opening the file again and calling
    /// `set_len` on the new handle, it does not wait for writes that another handle (open or
    /// dropped) still has in flight. They land after it, at the end of the file.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes effect on its first poll.
    pub async fn truncate(&self, path: &str, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.land_due(Instant::now());
        let data = state
            .files
            .get_mut(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_owned()))?;
        data.resize(len as usize, 0);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().expect("fake disk lock")
    }
}

/// A file of the [`FakeDisk`], opened for appending, with the write path of `tokio::fs::File`.
///
/// `poll_write` hands up to [`MAX_WRITE`] bytes to the blocking pool and returns `Ok(n)` at once:
/// accepted is not landed. The next write, `flush` (and `shutdown`, which is the same), `set_len`
/// and `sync_all` wait for the write in flight. A write that failed on the pool is reported by
/// the next `write` or `flush`; `set_len` and `sync_all` keep it for them. Dropped with a write
/// in flight, the file closes late: the write still lands, and its result is lost.
#[derive(Debug)]
pub struct FakeFile {
    disk: FakeDisk,
    path: String,
    /// The write on the blocking pool, and when it lands.
    in_flight: Option<(u64, Instant)>,
    timer: Option<Pin<Box<Sleep>>>,
    /// A write error seen by `set_len` or `sync_all`, kept for the next write or flush.
    last_write_err: Option<io::ErrorKind>,
}

impl FakeFile {
    /// The path this file was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits for the write in flight, if any, and returns its result.
    fn poll_in_flight(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::ErrorKind>> {
        loop {
            let Some((id, due)) = self.in_flight else {
                return Poll::Ready(Ok(()));
            };
            {
                let mut state = self.disk.lock();
                state.land_due(Instant::now());
                if let Some(result) = state.landed.remove(&id) {
                    self.in_flight = None;
                    self.timer = None;
                    return Poll::Ready(result);
                }
            }
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            ready!(timer.as_mut().poll(cx));
            self.timer = None;
        }
    }

    /// Waits for the write in flight and keeps its error for the next write or flush, as
    /// `tokio::fs::File` does before `set_len` and `sync_all`.
    async fn complete_in_flight(&mut self) {
        if let Err(kind) = std::future::poll_fn(|cx| self.poll_in_flight(cx)).await {
            self.last_write_err = Some(kind);
        }
    }

    /// Cuts the file down to `len` bytes (or extends it with zeros), once the write in flight
    /// has landed (its error, if any, is kept for the next write or flush).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits for the write in flight, it has changed nothing.
    pub async fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.complete_in_flight().await;
        let mut state = self.disk.lock();
        state.land_due(Instant::now());
        let data = state
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, self.path.clone()))?;
        data.resize(len as usize, 0);
        Ok(())
    }

    /// Waits for the write in flight, then for the disk to make the file durable. Like
    /// `tokio::fs::File::sync_all`, it does not report the error of the write it waited for: it
    /// keeps it for the next write or flush.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing that a reader could see.
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.complete_in_flight().await;
        Ok(())
    }
}

impl AsyncWrite for FakeFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if let Some(kind) = me.last_write_err.take() {
            return Poll::Ready(Err(kind.into()));
        }
        if let Err(kind) = ready!(me.poll_in_flight(cx)) {
            return Poll::Ready(Err(kind.into()));
        }
        let n = buf.len().min(MAX_WRITE);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut state = me.disk.lock();
        let id = state.next_id;
        state.next_id += 1;
        let due = Instant::now() + state.write_time.unwrap_or(WRITE_TIME);
        state.pool.push(PendingWrite { id, path: me.path.clone(), data: buf[..n].to_vec(), due });
        me.in_flight = Some((id, due));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if let Some(kind) = me.last_write_err.take() {
            return Poll::Ready(Err(kind.into()));
        }
        ready!(me.poll_in_flight(cx)).map_err(io::Error::from).into()
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// The order service's write-ahead journal: one file, transactions appended one after the other.
#[derive(Debug)]
pub struct Journal {
    disk: FakeDisk,
    path: String,
}

impl Journal {
    /// The journal kept in `path` on `disk` (the file may already hold earlier transactions).
    pub fn new(disk: FakeDisk, path: &str) -> Self {
        Journal { disk, path: path.to_owned() }
    }

    /// The journal's file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Appends `txn` to the journal. `Ok` means the transaction is in the file, whole: the
    /// service tells the client "saved" after it.
    ///
    /// # Errors
    ///
    /// What the disk refused (a full disk).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe. Dropped part-way, the lines still in the `BufWriter` are discarded, and a
    /// write the file had handed to the blocking pool lands later: the journal ends in a torn
    /// transaction, and the next `append` writes its own after it.
    pub async fn append(&mut self, txn: &Transaction) -> io::Result<()> {
        let file = self.disk.open_append(&self.path).await?;
        let mut out = BufWriter::new(file);
        // TODO: if this future is dropped at one of these awaits, part of `txn` is in the file
        // (or on its way there), and the rest is gone with `out`. The next call appends after
        // that torn transaction, and replay stops at it. The next call has to know that the
        // journal's tail is not whole, and cut it off before writing; and it cannot cut off what
        // has not landed yet.
        for line in txn.lines() {
            out.write_all(line.as_bytes()).await?;
        }
        out.flush().await
    }
}
