//! Hidden tests for kata 04: whatever point `send_frame` is cancelled at, the server must end up
//! reading every frame whole and once: a retry resumes the frame, and the next frame waits for
//! the interrupted one to finish. `Ok` means the frame is on the wire, also over a connection whose
//! writes only buffer and whose flush takes several polls (a `BufWriter`, a TLS stream).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use frame_writer::{Frame, FrameWriter, HEADER_LEN};
use kata_support::{
    Outcome, RecordingWriter, Wire, assert_cancel_safe, check_property, hidden_test,
};
use proptest::prelude::*;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep, interval_at, sleep, timeout};

fn frame(seq: u32, body: &str) -> Frame {
    Frame { seq, body: body.as_bytes().to_vec() }
}

/// Bytes shown for a failure message: printable ASCII as is, the rest escaped; a long run only by
/// its ends.
fn show(bytes: &[u8]) -> String {
    if bytes.len() <= 96 {
        return bytes.escape_ascii().to_string();
    }
    let (head, tail) = (&bytes[..32], &bytes[bytes.len() - 32..]);
    format!("{}...({} bytes in all)...{}", head.escape_ascii(), bytes.len(), tail.escape_ascii())
}

/// Names a position in the expected byte stream in the server's terms: "byte 3 of frame 7's
/// body".
fn locate(pos: usize, frames: &[Frame]) -> String {
    let mut start = 0;
    for f in frames {
        let len = HEADER_LEN + f.body.len();
        if pos < start + len {
            let offset = pos - start;
            return if offset < HEADER_LEN {
                format!("byte {offset} of frame {}'s header", f.seq)
            } else {
                format!("byte {} of frame {}'s body", offset - HEADER_LEN, f.seq)
            };
        }
        start += len;
    }
    "the end of the last frame".to_owned()
}

/// Says where a wrong wire parts from the expected one, and what it carries from there: bytes
/// sent again (it goes back to an earlier byte), bytes skipped (it jumps ahead), or bytes that
/// belong to no frame. Only what the wire shows, not why.
fn where_the_wire_goes_wrong(seen: &[u8], expected: &[u8], frames: &[Frame]) -> String {
    let right = seen.iter().zip(expected).take_while(|(a, b)| a == b).count();
    let rest = &seen[right..];
    if rest.is_empty() {
        return format!(
            "the first {right} bytes are right, then the wire stops: {} on never arrived",
            locate(right, frames)
        );
    }
    // The place in the expected stream that the rest of the wire follows longest, counted only
    // when it is a real landmark: the wire follows it to its end, or for a whole header's length
    // and, going back, past the bytes it would repeat. A few bytes that happen to look like an
    // earlier part of the stream (zeros, say, like the top bytes of a header) are not bytes sent
    // again.
    let matching =
        |from: usize| rest.iter().zip(&expected[from..]).take_while(|(a, b)| a == b).count();
    let landmark = |from: usize, len: usize| {
        let repeated = if from < right { right - from + 1 } else { 0 };
        len == rest.len() || len >= HEADER_LEN.max(repeated)
    };
    let best = (0..expected.len())
        .filter(|&from| from != right && expected[from] == rest[0])
        .map(|from| (matching(from), from))
        .filter(|&(len, from)| landmark(from, len))
        .max_by_key(|&(len, from)| (len, std::cmp::Reverse(from)));
    match best {
        Some((_, from)) if from < right => format!(
            "the first {right} bytes are right, then the wire starts again from {}: bytes \
             already on the wire were sent a second time",
            locate(from, frames)
        ),
        Some((_, from)) => format!(
            "the first {right} bytes are right, then the wire jumps ahead to {}: {} up to there \
             never arrived, so a frame was left cut short",
            locate(from, frames),
            locate(right, frames)
        ),
        None => format!(
            "the first {right} bytes are right, then the wire goes wrong at {}: from there on come \
             bytes that belong to no frame, \"{}\"",
            locate(right, frames),
            show(&rest[..rest.len().min(32)])
        ),
    }
}

/// Compares what reached the server with the frames it should have read, and says what went
/// wrong in the server's terms.
fn check_wire(seen: &[u8], frames: &[Frame]) -> Result<(), String> {
    let expected: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
    if seen == expected.as_slice() {
        return Ok(());
    }
    let seqs: Vec<u32> = frames.iter().map(|f| f.seq).collect();
    // Where each frame ends on the wire, to tell a frame never sent from one cut short.
    let mut ends = Vec::new();
    let mut end = 0;
    for f in frames {
        end += f.encode().len();
        ends.push((end, f.seq));
    }
    let never_sent: Vec<u32> =
        ends.iter().filter(|(end, _)| *end > seen.len()).map(|(_, seq)| *seq).collect();
    let at_a_boundary = seen.is_empty() || ends.iter().any(|(end, _)| *end == seen.len());
    let diagnosis = if seen.is_empty() {
        "nothing arrived".to_owned()
    } else if expected.starts_with(seen) && at_a_boundary {
        format!("frame(s) {never_sent:?} never reached the wire")
    } else if expected.starts_with(seen) {
        format!(
            "only {} of its {} bytes arrived: a frame was left cut short on the wire",
            seen.len(),
            expected.len()
        )
    } else {
        let count = if seen.len() == expected.len() {
            format!("as many bytes arrived ({}), yet not the same ones", seen.len())
        } else {
            format!("{} bytes arrived instead of {}", seen.len(), expected.len())
        };
        format!("{count}: {}", where_the_wire_goes_wrong(seen, &expected, frames))
    };
    Err(format!(
        "the server should read frames {seqs:?} whole and once ({} bytes: \"{}\"), but \
         {diagnosis}; it received \"{}\"",
        expected.len(),
        show(&expected),
        show(seen)
    ))
}

/// A connection with a buffer in front of the wire, like a `BufWriter` or a TLS stream: a write
/// only fills the buffer (3 bytes per write, yielding between writes), and only a flush moves the
/// bytes to the wire, 3 bytes per poll, yielding in between. What reached the wire is recorded.
///
/// It may break at the flush: once `capacity` bytes have reached the wire, its writes still fill
/// the buffer, but a flush that has bytes left to move fails with `failure`, as a TLS stream's
/// flush does when the peer has gone. The test may lower the capacity at any time (the link goes
/// down).
///
/// It may also fail once: while `fail_once` is set, the next flush step with bytes left to move
/// fails with `failure`, and the bytes it held are lost (a TLS stream whose session was reset
/// under it); the flag is then cleared and the connection carries on.
struct BufferedLink {
    chunk: usize,
    flush_chunk: usize,
    held: Vec<u8>,
    wire: Arc<Mutex<Vec<u8>>>,
    yielded: bool,
    capacity: Arc<AtomicUsize>,
    failure: io::ErrorKind,
    fail_once: Arc<AtomicBool>,
}

impl BufferedLink {
    fn new() -> (BufferedLink, Arc<Mutex<Vec<u8>>>) {
        BufferedLink::with_chunk(3)
    }

    /// The same, moving `chunk` bytes per write and per step of the flush.
    fn with_chunk(chunk: usize) -> (BufferedLink, Arc<Mutex<Vec<u8>>>) {
        BufferedLink::with_chunks(chunk, chunk)
    }

    /// The same, taking `chunk` bytes per write and moving `flush_chunk` per step of the flush:
    /// with a large `chunk`, a small frame goes into the buffer in one write, and the flush still
    /// takes several polls.
    fn with_chunks(chunk: usize, flush_chunk: usize) -> (BufferedLink, Arc<Mutex<Vec<u8>>>) {
        let wire = Arc::new(Mutex::new(Vec::new()));
        let held = Vec::new();
        let link = BufferedLink {
            chunk,
            flush_chunk,
            held,
            wire: wire.clone(),
            yielded: false,
            capacity: Arc::new(AtomicUsize::new(usize::MAX)),
            failure: io::ErrorKind::BrokenPipe,
            fail_once: Arc::new(AtomicBool::new(false)),
        };
        (link, wire)
    }

    /// The same, breaking at the flush once `capacity` bytes have reached the wire: every flush
    /// with bytes left to move then fails with `failure`.
    fn breaking_at_flush(
        chunk: usize,
        flush_chunk: usize,
        capacity: &Arc<AtomicUsize>,
        failure: io::ErrorKind,
    ) -> (BufferedLink, Arc<Mutex<Vec<u8>>>) {
        let (link, wire) = BufferedLink::with_chunks(chunk, flush_chunk);
        (BufferedLink { capacity: capacity.clone(), failure, ..link }, wire)
    }

    /// Returns `Pending` (and asks to be polled again) every other time it is called.
    fn take_turn(&mut self, cx: &mut Context<'_>) -> bool {
        self.yielded = !self.yielded;
        if self.yielded {
            cx.waker().wake_by_ref();
        }
        !self.yielded
    }
}

impl AsyncWrite for BufferedLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.take_turn(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(self.chunk);
        self.held.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            if !self.take_turn(cx) {
                return Poll::Pending;
            }
            if self.fail_once.swap(false, Ordering::SeqCst) {
                self.held.clear();
                return Poll::Ready(Err(io::Error::new(self.failure, "the link was reset")));
            }
            let on_the_wire = self.wire.lock().expect("wire lock").len();
            let capacity = self.capacity.load(Ordering::SeqCst);
            if on_the_wire >= capacity {
                return Poll::Ready(Err(io::Error::new(self.failure, "the link went down")));
            }
            let n = self.held.len().min(self.flush_chunk).min(capacity - on_the_wire);
            let moved: Vec<u8> = self.held.drain(..n).collect();
            self.wire.lock().expect("wire lock").extend_from_slice(&moved);
        }
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// What reached the server, whichever kind of connection the rig uses.
#[derive(Clone)]
enum Server {
    Direct(Wire),
    Buffered(Arc<Mutex<Vec<u8>>>),
}

impl Server {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Server::Direct(wire) => wire.bytes(),
            Server::Buffered(wire) => wire.lock().expect("wire lock").clone(),
        }
    }
}

/// The connection under a rig: boxed, so one rig type covers both kinds.
type Link = Pin<Box<dyn AsyncWrite + Send>>;

/// A frame writer over a recording connection, shared between the explored call and the check.
#[derive(Clone)]
struct Rig {
    writer: Arc<tokio::sync::Mutex<FrameWriter<Link>>>,
    wire: Server,
}

impl Rig {
    /// A connection that takes 3 bytes per write, so a 13-byte frame takes 5 writes.
    fn new() -> Rig {
        let (io, wire) = RecordingWriter::new(3);
        Rig {
            writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(Box::pin(io) as Link))),
            wire: Server::Direct(wire),
        }
    }

    /// A connection taking `chunk` bytes per write, writing straight to the wire or (`buffered`)
    /// into a buffer that its flush moves to the wire `flush_chunk` bytes per poll.
    fn with_chunk(chunk: usize, buffered: bool, flush_chunk: usize) -> Rig {
        let (io, wire): (Link, Server) = if buffered {
            let (io, wire) = BufferedLink::with_chunks(chunk, flush_chunk);
            (Box::pin(io), Server::Buffered(wire))
        } else {
            let (io, wire) = RecordingWriter::new(chunk);
            (Box::pin(io), Server::Direct(wire))
        };
        Rig { writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(io))), wire }
    }

    /// A connection whose writes only buffer and whose flush takes several polls.
    fn buffered() -> Rig {
        let (io, wire) = BufferedLink::new();
        Rig {
            writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(Box::pin(io) as Link))),
            wire: Server::Buffered(wire),
        }
    }

    /// A connection whose writes only buffer, taking a whole small frame in one write, and whose
    /// flush moves 3 bytes per poll: a cut then lands in the flush after a single write.
    fn buffered_whole_writes() -> Rig {
        let (io, wire) = BufferedLink::with_chunks(4_096, 3);
        Rig {
            writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(Box::pin(io) as Link))),
            wire: Server::Buffered(wire),
        }
    }

    /// A buffering connection that breaks at the flush once `capacity` bytes have reached the
    /// wire (see [`BufferedLink::breaking_at_flush`]).
    fn breaking_at_flush(
        chunk: usize,
        flush_chunk: usize,
        capacity: &Arc<AtomicUsize>,
        failure: io::ErrorKind,
    ) -> Rig {
        let (io, wire) = BufferedLink::breaking_at_flush(chunk, flush_chunk, capacity, failure);
        Rig {
            writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(Box::pin(io) as Link))),
            wire: Server::Buffered(wire),
        }
    }

    /// A buffering connection whose flush fails once, losing what it held, when `fail_once` is
    /// set (see [`BufferedLink`]).
    fn failing_once(
        chunk: usize,
        flush_chunk: usize,
        fail_once: &Arc<AtomicBool>,
        failure: io::ErrorKind,
    ) -> Rig {
        let (link, wire) = BufferedLink::with_chunks(chunk, flush_chunk);
        let io = BufferedLink { fail_once: fail_once.clone(), failure, ..link };
        Rig {
            writer: Arc::new(tokio::sync::Mutex::new(FrameWriter::new(Box::pin(io) as Link))),
            wire: Server::Buffered(wire),
        }
    }

    async fn send(&self, frame: &Frame) -> io::Result<()> {
        self.writer.lock().await.send_frame(frame).await
    }
}

/// Buffering connections that break at the flush, as (bytes per write, bytes per step of the
/// flush): small writes and a slow flush, and a whole frame per write and a slow flush.
const FLUSH_BREAKING_LINKS: [(usize, usize); 2] = [(3, 3), (4_096, 3)];

/// The errors such a flush fails with, taken in turn: no kind of error may be taken for harmless.
const FLUSH_FAILURES: [io::ErrorKind; 3] =
    [io::ErrorKind::BrokenPipe, io::ErrorKind::ConnectionReset, io::ErrorKind::Other];

/// Says how a buffering connection that breaks at the flush behaved, for a failure message.
fn flush_breaking_link(
    chunk: usize,
    flush_chunk: usize,
    capacity: usize,
    failure: io::ErrorKind,
) -> String {
    format!(
        "the connection's writes filled a buffer ({chunk} bytes per write) that its flush moved \
         to the wire ({flush_chunk} bytes per poll) until {capacity} bytes had reached the \
         server; from then on every flush with bytes left to move failed with {failure:?}"
    )
}

/// After the explored call ends, sends `next` (a retry, or the following frame) and checks the
/// server read exactly `expected`.
async fn finish_and_check(
    rig: Rig,
    outcome: Outcome<io::Result<()>>,
    next: Option<Frame>,
    accepted: &[&[Frame]],
) -> Result<(), String> {
    // The last accepted wire is the full one: the explored frame first, whole.
    let expected = accepted[accepted.len() - 1];
    if let Outcome::Completed(Err(err)) = &outcome {
        return Err(format!("send_frame failed on a healthy connection: {err}"));
    }
    // A completed call needs no retry; a cancelled one is retried (or followed) by the caller.
    let next = match (&outcome, next) {
        (Outcome::Completed(_), Some(f)) if f.seq == expected[0].seq => None,
        (_, next) => next,
    };
    if let Some(next) = next {
        let kind = if next.seq == expected[0].seq { "retry" } else { "next frame" };
        match timeout(Duration::from_secs(60), rig.send(&next)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("the {kind} failed: {err}")),
            Err(_) => return Err(format!("the {kind} never finished")),
        }
    }
    let seen = rig.wire.bytes();
    let whole_and_once =
        |frames: &&[Frame]| seen == frames.iter().flat_map(Frame::encode).collect::<Vec<u8>>();
    if accepted.iter().any(whole_and_once) {
        return Ok(());
    }
    check_wire(&seen, expected)
}

/// A connection that always fails, like a socket whose peer has gone.
struct BrokenPipe;

impl AsyncWrite for BrokenPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How a connection breaks: its writes fail, like a socket whose peer has gone, or they report
/// 0 bytes written, like a connection that can no longer accept bytes (the case `write_all` turns
/// into `ErrorKind::WriteZero`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaks {
    WithAnError,
    WithZeroBytes,
}

/// The errors a write fails with when its link goes away, taken in turn: each must reach the
/// caller with its own kind.
const WRITE_FAILURES: [io::ErrorKind; 5] = [
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::TimedOut,
    io::ErrorKind::NotConnected,
];

/// After a connection answered "0 bytes written", how many more writes a caller may try before the
/// test concludes it would try for ever (a retry or two is fine; a loop that ignores the answer is
/// not).
const ZERO_WRITES_TOLERATED: usize = 64;

/// A connection that takes 3 bytes per write, yielding between writes, until `capacity` bytes have
/// gone through; then it breaks the way `breaks` says. A caller that keeps writing after being
/// told "0 bytes" is stopped after [`ZERO_WRITES_TOLERATED`] more writes with an error of its own,
/// and the count of those writes is kept: such a caller never yields and would hang the test.
struct BreakingLink {
    capacity: usize,
    breaks: Breaks,
    /// The error a write fails with once the link is broken `WithAnError`.
    failure: io::ErrorKind,
    accepted: usize,
    zero_writes: Arc<Mutex<usize>>,
    yield_next: bool,
}

impl AsyncWrite for BreakingLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.accepted >= self.capacity && !buf.is_empty() {
            return Poll::Ready(match self.breaks {
                Breaks::WithAnError => Err(io::Error::new(self.failure, "the link went down")),
                Breaks::WithZeroBytes => {
                    let mut zero_writes = self.zero_writes.lock().expect("counter lock");
                    *zero_writes += 1;
                    if *zero_writes > ZERO_WRITES_TOLERATED {
                        Err(io::Error::other("the test stopped a writer that kept writing"))
                    } else {
                        Ok(0)
                    }
                }
            });
        }
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yield_next = true;
        let n = buf.len().min(3).min(self.capacity - self.accepted);
        self.accepted += n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a connection answers once, to one write or one step of its flush, before it works again.
#[derive(Debug, Clone, Copy)]
enum Hiccup {
    /// The write or the flush fails with an error of this kind.
    Fails(io::ErrorKind),
    /// The write or the flush fails with the OS error of this code (`EAGAIN`, `ETIMEDOUT`, ..),
    /// as a real socket reports it.
    FailsOs(i32),
    /// The write reports 0 bytes written (`Ok(0)`), which says the connection can no longer
    /// accept bytes.
    ZeroBytes,
}

/// The errors a connection may report once before it would work again, taken in turn with the
/// position of the byte they fall on: kinds that sound temporary (`WouldBlock`, `TimedOut`) as much as the others. The
/// connection reported them, so the caller must see them. (`Interrupted`, which std's `write_all`
/// retries, is left out: see the solution README.)
const HICCUP_FAILURES: [io::ErrorKind; 6] = [
    io::ErrorKind::WouldBlock,
    io::ErrorKind::TimedOut,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::UnexpectedEof,
    io::ErrorKind::Other,
];

/// A connection that takes 3 bytes per write, yielding between writes, straight to the wire or
/// (`buffered`) into a buffer that its flush moves on 3 bytes per poll, yielding in between. The
/// write that would take byte `at` of the stream (or, with `at_flush`, the step of the flush that
/// would move it) answers `hiccup` instead, once; after that the connection works again, as if
/// nothing had happened. `fired` says whether the hiccup has happened.
struct HiccupLink {
    buffered: bool,
    at_flush: bool,
    at: usize,
    hiccup: Hiccup,
    /// Bytes taken by writes so far, and (when buffered) moved on by the flush.
    accepted: usize,
    moved: usize,
    yield_next: bool,
    fired: Arc<AtomicBool>,
}

impl HiccupLink {
    /// Returns `Pending` (and asks to be polled again) every other time it is called.
    fn take_turn(&mut self, cx: &mut Context<'_>) -> bool {
        self.yield_next = !self.yield_next;
        if self.yield_next {
            cx.waker().wake_by_ref();
        }
        !self.yield_next
    }

    /// Whether the hiccup is due now, for bytes `from..from + n` of the stream.
    fn due(&self, at_flush: bool, from: usize, n: usize) -> bool {
        self.at_flush == at_flush
            && !self.fired.load(Ordering::SeqCst)
            && (from..from + n).contains(&self.at)
    }

    fn fire<T>(&self, zero: T) -> Poll<io::Result<T>> {
        self.fired.store(true, Ordering::SeqCst);
        Poll::Ready(match self.hiccup {
            Hiccup::Fails(kind) => Err(io::Error::new(kind, "the connection reported an error")),
            Hiccup::FailsOs(code) => Err(io::Error::from_raw_os_error(code)),
            Hiccup::ZeroBytes => Ok(zero),
        })
    }
}

impl AsyncWrite for HiccupLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.take_turn(cx) {
            return Poll::Pending;
        }
        let n = buf.len().min(3);
        if self.due(false, self.accepted, n) {
            return self.fire(0);
        }
        self.accepted += n;
        if !self.buffered {
            self.moved = self.accepted;
        }
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.moved < self.accepted {
            if !self.take_turn(cx) {
                return Poll::Pending;
            }
            let n = (self.accepted - self.moved).min(3);
            if self.due(true, self.moved, n) {
                return self.fire(());
            }
            self.moved += n;
        }
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// A (virtual) stretch of time as a person would say it: `3600s` is "1.0 h".
fn spell(d: Duration) -> String {
    const HOUR: f64 = 3_600.0;
    const YEAR: f64 = 365.25 * 24.0 * HOUR;
    let secs = d.as_secs_f64();
    if secs >= YEAR {
        format!("{:.1} years", secs / YEAR)
    } else if secs >= HOUR {
        format!("{:.1} h", secs / HOUR)
    } else {
        format!("{d:?}")
    }
}

/// A slow uplink: accepts `chunk` bytes per write, then needs `pace` of (virtual) time before it
/// accepts more. Records what it accepted.
struct PacedWriter {
    chunk: usize,
    pace: Duration,
    busy: Option<Pin<Box<Sleep>>>,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl AsyncWrite for PacedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(busy) = self.busy.as_mut() {
            ready!(busy.as_mut().poll(cx));
            self.busy = None;
        }
        let n = buf.len().min(self.chunk);
        self.wire.lock().expect("wire lock").extend_from_slice(&buf[..n]);
        // `sleep` waits at most about 30 years (tokio's far future, the longest wait every
        // platform's clock can hold): a pace of `Duration::MAX` is that far future.
        self.busy = Some(Box::pin(sleep(self.pace)));
        Poll::Ready(Ok(n))
    }
    /// The flush waits until the last write has gone out (one more `pace`).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(busy) = self.busy.as_mut() {
            ready!(busy.as_mut().poll(cx));
            self.busy = None;
        }
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One cut of a large frame: its body length, the bytes the connection takes per write, whether
/// the connection buffers (and how many bytes each step of its flush moves), where the cut falls (per mille of the polls a whole send needs), and
/// whether the caller then retries the frame or moves on to the next one.
#[derive(Debug, Clone, Copy)]
struct BigCut {
    body: usize,
    chunk: usize,
    buffered: bool,
    flush_chunk: usize,
    cut_permille: usize,
    retry: bool,
}

/// Frames from empty to a few tens of KiB (past the 8 KiB of a default `BufWriter` and other
/// common buffer sizes), over connections taking from 3 bytes to 4 KiB per write.
fn big_cuts() -> impl Strategy<Value = BigCut> {
    (
        prop_oneof![1 => 0usize..=64, 4 => 8_000usize..=24_000],
        prop_oneof![1 => Just(3usize), 4 => 64usize..=4_096],
        any::<bool>(),
        prop_oneof![1 => Just(3usize), 1 => 16usize..=64, 2 => 64usize..=4_096],
        0usize..1_000,
        any::<bool>(),
    )
        .prop_map(|(body, chunk, buffered, flush_chunk, cut_permille, retry)| BigCut {
            body,
            chunk,
            buffered,
            flush_chunk,
            cut_permille,
            retry,
        })
}

/// A frame whose body is `len` bytes that do not repeat within 251 bytes, so that bytes sent
/// twice show on the wire.
fn big_frame(seq: u32, len: usize) -> Frame {
    Frame { seq, body: (0..len).map(|i| (i % 251) as u8).collect() }
}

/// The body lengths of the huge frames: 32 MiB, the floor the README states (retried after a
/// cut, and cut inside its header and followed by the next frame), and 4 MiB and a few bytes
/// (followed by the next frame after a cut). Both are more than any buffer a writer
/// can reasonably keep for each connection, so a guarantee that holds only for frames smaller than
/// some buffer, or up to some bound on what the writer will keep, is found. (Much larger frames
/// would make a right fix that copies byte by byte too slow in a debug build.)
const HUGE_BODY: usize = 32 << 20;
const LARGE_BODY: usize = (4 << 20) + 5;

/// A body of `len` bytes that repeat only every 251 bytes (byte `i` is `i % 251`), like
/// [`big_frame`]'s, built by doubling (a byte at a time would take too long in a debug build).
fn huge_body(len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..251u8).collect();
    body.reserve(len);
    while body.len() < len {
        let more = body.len().min(len - body.len());
        body.extend_from_within(..more);
    }
    body.truncate(len);
    body
}

/// A part of the byte stream the server should read: bytes as they are, or a body made by
/// [`huge_body`], known by its length alone.
enum Expected {
    Bytes(Vec<u8>),
    HugeBody(usize),
}

impl Expected {
    fn len(&self) -> usize {
        match self {
            Expected::Bytes(bytes) => bytes.len(),
            Expected::HugeBody(len) => *len,
        }
    }
}

/// What a [`CheckingLink`] saw: how many bytes arrived, and where they first parted from the
/// expected stream, with the bytes that arrived there.
#[derive(Default)]
struct Checked {
    bytes: usize,
    wrong: Option<(usize, Vec<u8>)>,
}

/// A connection for huge frames: it takes `chunk` bytes per write and yields between writes, as
/// a `RecordingWriter` does, but keeps none of the many MiB it is given. It compares every write
/// with the stream the server should read as it arrives, and keeps only how many bytes came and
/// where they first went wrong.
struct CheckingLink {
    chunk: usize,
    /// Until this many bytes have arrived, a write takes at most 3 bytes (a frame's header then
    /// arrives in pieces, as over a link that starts slow).
    small_until: usize,
    yield_next: bool,
    expected: Vec<Expected>,
    /// Byte `j` is `j % 251`, for `chunk + 251` bytes: any run of a huge body of up to `chunk`
    /// bytes is a slice of it.
    pattern: Vec<u8>,
    seen: Arc<Mutex<Checked>>,
}

impl CheckingLink {
    /// A link that expects `frames`, whole and once, in order; a body longer than 4 KiB must have
    /// been made by [`huge_body`].
    fn new(chunk: usize, frames: &[&Frame]) -> (CheckingLink, Arc<Mutex<Checked>>) {
        let mut expected = Vec::new();
        for f in frames {
            expected.push(Expected::Bytes(f.header().to_vec()));
            expected.push(if f.body.len() > 4_096 {
                Expected::HugeBody(f.body.len())
            } else {
                Expected::Bytes(f.body.clone())
            });
        }
        let pattern = (0..chunk + 251).map(|j| (j % 251) as u8).collect();
        let seen = Arc::new(Mutex::new(Checked::default()));
        let link = CheckingLink {
            chunk,
            small_until: 0,
            yield_next: false,
            expected,
            pattern,
            seen: seen.clone(),
        };
        (link, seen)
    }

    /// Where `got`, arriving at byte `at` of the stream, first differs from what the server
    /// should read there (a byte past the end of the stream differs too).
    fn first_difference(&self, at: usize, got: &[u8]) -> Option<usize> {
        let (mut start, mut done) = (0, 0);
        for part in &self.expected {
            let end = start + part.len();
            if done < got.len() && at + done < end {
                let from = at + done - start;
                let n = (end - at - done).min(got.len() - done);
                let want = match part {
                    Expected::Bytes(bytes) => &bytes[from..from + n],
                    Expected::HugeBody(_) => &self.pattern[from % 251..from % 251 + n],
                };
                let piece = &got[done..done + n];
                if piece != want {
                    return piece.iter().zip(want).position(|(a, b)| a != b).map(|i| done + i);
                }
                done += n;
            }
            start = end;
        }
        (done < got.len()).then_some(done)
    }
}

impl AsyncWrite for CheckingLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yield_next = true;
        let at = self.seen.lock().expect("seen lock").bytes;
        let n = buf.len().min(if at < self.small_until { 3 } else { self.chunk });
        let wrong = self.first_difference(at, &buf[..n]);
        let mut seen = self.seen.lock().expect("seen lock");
        if let (None, Some(i)) = (&seen.wrong, wrong) {
            seen.wrong = Some((at + i, buf[i..n.min(i + 32)].to_vec()));
        }
        seen.bytes += n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What reached the server over a [`CheckingLink`] after huge frames (given as sequence number
/// and body length), told in the server's terms.
fn check_huge_wire(seen: &Checked, frames: &[(u32, usize)]) -> Result<(), String> {
    let total: usize = frames.iter().map(|(_, len)| HEADER_LEN + len).sum();
    if seen.wrong.is_none() && seen.bytes == total {
        return Ok(());
    }
    let locate = |pos: usize| {
        let mut start = 0;
        for &(seq, len) in frames {
            if pos < start + HEADER_LEN {
                return format!("byte {} of frame {seq}'s header", pos - start);
            }
            if pos < start + HEADER_LEN + len {
                return format!("byte {} of frame {seq}'s body", pos - start - HEADER_LEN);
            }
            start += HEADER_LEN + len;
        }
        "the end of the last frame".to_owned()
    };
    let seqs: Vec<u32> = frames.iter().map(|(seq, _)| *seq).collect();
    let diagnosis = match &seen.wrong {
        None => format!(
            "the wire stops after {} bytes: {} on never arrived, so a frame was left cut short",
            seen.bytes,
            locate(seen.bytes)
        ),
        Some((at, _)) if *at >= total => format!(
            "all {total} bytes of the frames arrived, and after them {} more: bytes already on \
             the wire were sent a second time",
            seen.bytes - total
        ),
        Some((at, got)) => {
            // A frame started over shows as its header arriving again.
            let mut start = 0;
            let mut again = None;
            for &(seq, len) in frames {
                let header = Frame { seq, body: Vec::new() }.header();
                if start < *at && got.starts_with(&header[..4]) {
                    again = Some(start);
                }
                start += HEADER_LEN + len;
            }
            match again {
                Some(from) => format!(
                    "the first {at} bytes are right, then the wire starts again from {}: bytes \
                     already on the wire were sent a second time",
                    locate(from)
                ),
                None => format!(
                    "the first {at} bytes are right, then the wire goes wrong at {}: \"{}\"",
                    locate(*at),
                    show(got)
                ),
            }
        }
    };
    Err(format!(
        "the server should read frames {seqs:?} whole and once ({total} bytes), but {} bytes \
         arrived: {diagnosis}",
        seen.bytes
    ))
}

/// Two cuts in a row: a frame cut part way, then a different frame (with any sequence number,
/// lower ones too: an upload that starts again at 0) cut while it may still be finishing the
/// first, then a retry of the second or a third frame.
#[derive(Debug, Clone)]
struct TwoCuts {
    seqs: Vec<u32>,
    bodies: Vec<usize>,
    chunk: usize,
    buffered: bool,
    flush_chunk: usize,
    first_cut_permille: usize,
    second_cut_permille: usize,
    retry: bool,
}

fn two_cuts() -> impl Strategy<Value = TwoCuts> {
    (
        Just(vec![0u32, 1, 7, 8, 41, u32::MAX]).prop_shuffle(),
        prop::collection::vec(0usize..=40, 3),
        prop_oneof![2 => Just(3usize), 1 => Just(4_096)],
        any::<bool>(),
        prop_oneof![Just(3usize), Just(16)],
        0usize..1_000,
        0usize..1_000,
        any::<bool>(),
    )
        .prop_map(|(seqs, bodies, chunk, buffered, flush_chunk, first, second, retry)| {
            TwoCuts {
                seqs: seqs[..3].to_vec(),
                bodies,
                chunk,
                buffered,
                flush_chunk,
                first_cut_permille: first,
                second_cut_permille: second,
                retry,
            }
        })
}

/// A link that accepts only the bytes the test lets through, 1 byte per write: with no credit
/// left, a write waits (the link stalls, as a phone link does in a tunnel) until the test gives
/// it more. What it accepted is recorded.
struct CreditLink {
    credit: Arc<AtomicUsize>,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl AsyncWrite for CreditLink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // The test polls by hand and gives credit only between calls, so nothing needs waking.
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.credit.load(Ordering::SeqCst) == 0 {
            return Poll::Pending;
        }
        self.credit.fetch_sub(1, Ordering::SeqCst);
        self.wire.lock().expect("wire lock").push(buf[0]);
        Poll::Ready(Ok(1))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How many times in a row [`a_frame_cut_over_and_over_is_still_finished`] cuts a call while no
/// byte goes out: 2^17, the floor the README states under which a writer keeps no budget of cuts,
/// retries or calls without progress (a `u16` counter, a budget of 100 000, fail), at a cost of a
/// poll each.
const CUTS_IN_A_ROW: usize = 1 << 17;

/// Polls `send_frame(frame)` on the rig's writer at most `stop` times, then drops the call:
/// `Some(result)` if it returned before that.
fn send_and_cut(rig: &Rig, frame: &Frame, stop: usize) -> Option<io::Result<()>> {
    let sending = rig.clone();
    let frame = frame.clone();
    let mut call = tokio_test::task::spawn(async move { sending.send(&frame).await });
    for _ in 0..stop {
        if let Poll::Ready(result) = call.poll() {
            return Some(result);
        }
    }
    None
}

hidden_test! {
    /// The upload loop is a task of its own (`tokio::spawn`) on the app's multi-thread runtime,
    /// so over a connection that is `Send`, `send_frame`'s future must stay `Send`, as the
    /// original is.
    async fn send_frame_can_run_in_a_spawned_upload() {
        let (io, wire) = RecordingWriter::new(3);
        let mut writer = FrameWriter::new(io);
        let first = frame(1, "hello");
        let send = writer.send_frame(&first);
        assert!(
            kata_support::is_send!(send),
            "the future returned by `send_frame` (over a connection that is `Send`) is not \
             `Send`, so the app can no longer `tokio::spawn` its upload loop on a multi-thread \
             runtime: it holds something that is not `Send` across an `.await` (a drop guard \
             holding a `Box<dyn FnOnce()>` without `+ Send`, an `Rc`, a `Cell` or `RefCell` \
             borrowed by a guard, a `std` lock guard)"
        );
        send.await.expect("a healthy connection accepts every frame");
        if let Err(problem) = check_wire(&wire.bytes(), &[first]) {
            panic!("send_frame(1) returned Ok, so the frame must be on the wire already: {problem}");
        }
    }

    /// Nothing cancelled: frames arrive whole, in order, and are on the wire when `send_frame`
    /// returns.
    async fn sends_whole_frames() {
        let (io, wire) = RecordingWriter::new(3);
        let mut writer = FrameWriter::new(io);
        let frames = [frame(1, "hello"), frame(2, ""), frame(3, "world!")];
        let mut sent = Vec::new();
        for f in &frames {
            writer
                .send_frame(f)
                .await
                .expect("a healthy connection accepts every frame");
            sent.push(f.clone());
            if let Err(problem) = check_wire(&wire.bytes(), &sent) {
                panic!(
                    "send_frame({}) returned Ok, so the frame must be on the wire already: \
                     {problem}",
                    f.seq
                );
            }
        }
    }

    /// A broken connection is reported to the caller, not swallowed.
    async fn reports_a_broken_connection() {
        let mut writer = FrameWriter::new(BrokenPipe);
        let result = writer.send_frame(&frame(1, "hello")).await;
        assert!(
            result.is_err(),
            "the connection is broken, but send_frame returned Ok: the upload would carry on \
             into the void (was the write detached into a task whose error nobody reads?)"
        );
        let kind = result.err().map(|err| err.kind());
        assert!(
            kind == Some(io::ErrorKind::BrokenPipe),
            "every write failed with BrokenPipe, and send_frame returned an error of kind \
             {kind:?}: the caller must get the connection's own error, of its own kind (an \
             upload loop that reconnects on BrokenPipe or ConnectionReset has to see them)"
        );
    }

    /// A connection that breaks part way through an upload, at any byte, with a failing write or
    /// with writes that report 0 bytes written: the call whose frame no longer fits is told, and
    /// the calls before it succeed.
    async fn reports_a_connection_that_breaks_part_way() {
        let frames = [frame(1, "hello"), frame(2, "world!")];
        let total: usize = frames.iter().map(|f| HEADER_LEN + f.body.len()).sum();
        for breaks in [Breaks::WithAnError, Breaks::WithZeroBytes] {
            for capacity in 0..total {
                let failure = WRITE_FAILURES[capacity % WRITE_FAILURES.len()];
                // The kind of error the caller must get: the connection's own, or the
                // `WriteZero` that `write_all` makes of a write of 0 bytes.
                let (how, expected) = match breaks {
                    Breaks::WithAnError => {
                        (format!("then failed every write with {failure:?}"), failure)
                    }
                    Breaks::WithZeroBytes => (
                        "then answered every write with Ok(0), 0 bytes written".to_owned(),
                        io::ErrorKind::WriteZero,
                    ),
                };
                let zero_writes = Arc::new(Mutex::new(0));
                let mut writer = FrameWriter::new(BreakingLink {
                    capacity,
                    breaks,
                    failure,
                    accepted: 0,
                    zero_writes: zero_writes.clone(),
                    yield_next: false,
                });
                let mut end = 0;
                for f in &frames {
                    end += HEADER_LEN + f.body.len();
                    let result = writer.send_frame(f).await;
                    let zero_writes = *zero_writes.lock().expect("counter lock");
                    assert!(
                        zero_writes <= ZERO_WRITES_TOLERATED,
                        "the connection accepted {capacity} bytes and {how}; send_frame({}) \
                         wrote to it {zero_writes} times in a row without getting a byte \
                         through, until the test stopped it: without the test it would loop \
                         there for ever, and the caller would never hear that the connection is \
                         broken",
                        f.seq
                    );
                    match result {
                        Ok(()) if end > capacity => panic!(
                            "the connection accepted {capacity} bytes and {how}, but \
                             send_frame({}) returned Ok: frame {} never reached the server \
                             whole, and the caller was not told the connection is broken",
                            f.seq, f.seq
                        ),
                        Ok(()) => {}
                        Err(err) if end > capacity && err.kind() == expected => break,
                        Err(err) if end > capacity => panic!(
                            "the connection accepted {capacity} bytes and {how}; send_frame({}) \
                             failed with an error of kind {:?} (\"{err}\"), expected {expected:?}: \
                             the caller must get the connection's error with its own kind (and a \
                             write of 0 bytes is WriteZero, as `write_all` reports it), so that \
                             it can tell a reset link from a timeout",
                            f.seq,
                            err.kind()
                        ),
                        Err(err) => panic!(
                            "the connection had room for all {end} bytes up to frame {}, but \
                             send_frame({}) failed: {err}",
                            f.seq, f.seq
                        ),
                    }
                }
            }
        }
    }

    /// A connection whose writes only fill a buffer and whose flush breaks, at once, part way
    /// through a frame or after some frames went out whole, with one error or another: the call
    /// whose frame did not reach the server whole is told, and the calls before it succeed.
    async fn reports_a_flush_that_fails() {
        let frames = [frame(1, "hello"), frame(2, "world!")];
        let total: usize = frames.iter().map(|f| HEADER_LEN + f.body.len()).sum();
        for (chunk, flush_chunk) in FLUSH_BREAKING_LINKS {
            for capacity in 0..total {
                let failure = FLUSH_FAILURES[capacity % FLUSH_FAILURES.len()];
                let link = flush_breaking_link(chunk, flush_chunk, capacity, failure);
                let limit = Arc::new(AtomicUsize::new(capacity));
                let (io, wire) = BufferedLink::breaking_at_flush(chunk, flush_chunk, &limit, failure);
                let mut writer = FrameWriter::new(io);
                let mut end = 0;
                for f in &frames {
                    end += HEADER_LEN + f.body.len();
                    match writer.send_frame(f).await {
                        Ok(()) if end > capacity => {
                            let seen = wire.lock().expect("wire lock").clone();
                            let sent: Vec<Frame> =
                                frames.iter().take_while(|g| g.seq <= f.seq).cloned().collect();
                            let problem = check_wire(&seen, &sent)
                                .err()
                                .unwrap_or_else(|| "the wire is not whole frames".to_owned());
                            panic!(
                                "{link}. send_frame({}) returned Ok; {problem}. Ok must mean \
                                 the frame is on the wire, and the connection's error never \
                                 reached the caller",
                                f.seq
                            );
                        }
                        Ok(()) => {}
                        Err(err) if end > capacity && err.kind() == failure => break,
                        Err(err) if end > capacity => panic!(
                            "{link}. send_frame({}) failed with an error of kind {:?} \
                             (\"{err}\"), expected the connection's own {failure:?}: the \
                             caller must get the connection's error with its own kind",
                            f.seq,
                            err.kind()
                        ),
                        Err(err) => panic!(
                            "{link}, so all {end} bytes up to frame {} had room, but \
                             send_frame({}) failed: {err}",
                            f.seq, f.seq
                        ),
                    }
                }
            }
        }
    }

    /// A connection that reports an error once, to one write or one step of its flush, at any
    /// byte of the upload, and would then work again: an error that sounds temporary
    /// (`WouldBlock`, `TimedOut`) as much as any other, or a write that reports 0 bytes written
    /// (`WriteZero` to the caller). The call whose write or flush got that answer returns it, with
    /// its kind, and the calls before it succeed: the connection said it failed, and only the
    /// caller decides whether to try again (the writer does not retry on its behalf).
    async fn an_error_the_connection_reports_once_reaches_the_caller() {
        let frames = [frame(1, "hello"), frame(2, "world!")];
        let total: usize = frames.iter().map(|f| HEADER_LEN + f.body.len()).sum();
        let links = [(false, false), (true, false), (true, true)];
        // The OS's code for each kind that has one (`EAGAIN` for `WouldBlock`, whatever the OS):
        // a real socket's error carries it.
        let os_codes = HICCUP_FAILURES.map(|kind| {
            (1..20_000).find(|&code| io::Error::from_raw_os_error(code).kind() == kind)
        });
        for (buffered, at_flush) in links {
            for at in 0..total {
                // Every kind of error comes at several positions of each link.
                let kind = HICCUP_FAILURES[at % HICCUP_FAILURES.len()];
                let os = os_codes[at % HICCUP_FAILURES.len()].map(Hiccup::FailsOs);
                for hiccup in [Some(Hiccup::Fails(kind)), os, Some(Hiccup::ZeroBytes)] {
                    let Some(hiccup) = hiccup else { continue };
                    let (answer, expected) = match hiccup {
                        Hiccup::ZeroBytes if at_flush => continue,
                        Hiccup::ZeroBytes => {
                            ("reported 0 bytes written (Ok(0))".to_owned(), io::ErrorKind::WriteZero)
                        }
                        Hiccup::Fails(kind) => (format!("failed with {kind:?}"), kind),
                        Hiccup::FailsOs(code) => {
                            let err = io::Error::from_raw_os_error(code);
                            (format!("failed with OS error {code} (\"{err}\")"), err.kind())
                        }
                    };
                    let fired = Arc::new(AtomicBool::new(false));
                    let mut writer = FrameWriter::new(HiccupLink {
                        buffered,
                        at_flush,
                        at,
                        hiccup,
                        accepted: 0,
                        moved: 0,
                        yield_next: false,
                        fired: fired.clone(),
                    });
                    let link = match (buffered, at_flush) {
                        (false, _) => "a connection taking 3 bytes per write",
                        (true, false) => {
                            "a connection whose writes (3 bytes each) fill a buffer that its \
                             flush moves to the wire"
                        }
                        (true, true) => {
                            "a connection whose flush moves what its writes buffered to the \
                             wire, 3 bytes per poll"
                        }
                    };
                    let what = if at_flush { "the step of its flush" } else { "the write" };
                    let story = format!(
                        "over {link}, {what} that would have taken byte {at} of the upload \
                         {answer}, once, and the connection would then have worked again"
                    );
                    for f in &frames {
                        let before = fired.load(Ordering::SeqCst);
                        let result = timeout(Duration::from_secs(60), writer.send_frame(f)).await;
                        let hit = !before && fired.load(Ordering::SeqCst);
                        match result {
                            Err(_) => panic!("{story}; send_frame({}) never returned", f.seq),
                            Ok(Err(err)) if hit && err.kind() == expected => break,
                            Ok(Ok(())) if !hit => {}
                            Ok(Ok(())) => panic!(
                                "{story}; it was send_frame({})'s, and the call returned Ok(()), \
                                 expected an error of kind {expected:?}: the connection reported \
                                 a failure, and the caller must hear of it (the writer does not \
                                 retry on the connection's behalf, even an error that sounds \
                                 temporary, or a write of 0 bytes)",
                                f.seq
                            ),
                            Ok(Err(err)) if hit => panic!(
                                "{story}; it was send_frame({})'s, and the call failed with an \
                                 error of kind {:?} (\"{err}\"), expected {expected:?}: the \
                                 caller must get the connection's error with its own kind (and a \
                                 write of 0 bytes is WriteZero, as `write_all` reports it)",
                                f.seq,
                                err.kind()
                            ),
                            Ok(Err(err)) => panic!(
                                "{story}; send_frame({}) failed although the connection had \
                                 reported nothing to it: {err}",
                                f.seq
                            ),
                        }
                    }
                }
            }
        }
    }

    /// The same connections, with `send_frame` cut after every poll, and the link going down
    /// right then: the retry, or the next frame's call, cannot get its bytes through the flush and
    /// must say so. (A call that ran to the end is followed by the next frame, on a link that
    /// goes down after it: the flush that fails is a later frame's.)
    async fn a_flush_that_fails_after_a_cut_is_reported() {
        let first = frame(7, "hello");
        let second = frame(8, "world");
        let combinations = FLUSH_BREAKING_LINKS.iter().flat_map(|&l| [(l, true), (l, false)]);
        for (i, ((chunk, flush_chunk), retry)) in combinations.enumerate() {
            let failure = FLUSH_FAILURES[i % FLUSH_FAILURES.len()];
            let (first, second) = (first.clone(), second.clone());
            assert_cancel_safe(
                move || {
                    let capacity = Arc::new(AtomicUsize::new(usize::MAX));
                    (Rig::breaking_at_flush(chunk, flush_chunk, &capacity, failure), capacity)
                },
                |(rig, _): (Rig, Arc<AtomicUsize>)| async move {
                    rig.send(&frame(7, "hello")).await
                },
                move |(rig, capacity), outcome| {
                    let (first, second) = (first.clone(), second.clone());
                    async move {
                        let cut = match outcome {
                            Outcome::Completed(Err(err)) => {
                                return Err(format!(
                                    "send_frame failed on a healthy connection: {err}"
                                ));
                            }
                            Outcome::Completed(Ok(())) if retry => return Ok(()),
                            Outcome::Completed(Ok(())) => false,
                            Outcome::Cancelled { .. } => true,
                        };
                        // The link goes down: nothing more reaches the server.
                        let on_the_wire = rig.wire.bytes().len();
                        capacity.store(on_the_wire, Ordering::SeqCst);
                        let (next, kind) = if retry {
                            (&first, "the retry")
                        } else {
                            (&second, "the next frame's call")
                        };
                        let result = timeout(Duration::from_secs(60), rig.send(next)).await;
                        let seen = rig.wire.bytes();
                        let full = if retry { vec![first.clone()] } else { vec![first.clone(), second.clone()] };
                        let problem = match result {
                            Ok(Err(err)) if err.kind() == failure => return Ok(()),
                            Ok(Err(err)) => format!(
                                "{kind} (send_frame({})) failed with an error of kind {:?} \
                                 (\"{err}\"), expected the connection's own {failure:?}: the \
                                 caller must get the connection's error with its own kind",
                                next.seq,
                                err.kind()
                            ),
                            Err(_) => format!("{kind} never finished"),
                            Ok(Ok(())) => {
                                let problem = check_wire(&seen, &full)
                                    .err()
                                    .unwrap_or_else(|| "the wire is not whole frames".to_owned());
                                format!(
                                    "{kind} (send_frame({})) returned Ok; {problem}. Ok \
                                     must mean the frame is on the wire: the connection's \
                                     error has to reach the caller",
                                    next.seq
                                )
                            }
                        };
                        let when = if cut { "right after the cut" } else { "after frame 7 went out" };
                        Err(format!(
                            "over a connection whose writes filled a buffer ({chunk} bytes per \
                             write) that its flush moved to the wire ({flush_chunk} bytes per \
                             poll), the link went down {when}, with {on_the_wire} bytes on the \
                             wire: from then on every flush with bytes left to move failed with \
                             {failure:?}. {problem}"
                        ))
                    }
                },
            )
            .await;
        }
    }

    /// The same connections, with `send_frame` cut after every poll, and the flush failing only
    /// once right then (the buffered bytes lost) before the link recovers: the retry, or the next
    /// frame's call, which finishes the cut frame first, must return that error, since the cut
    /// frame did not reach the server. A later frame's own flush going through does not make the
    /// earlier frame's failure harmless.
    async fn a_flush_that_fails_once_after_a_cut_is_reported() {
        let first = frame(7, "hello");
        let second = frame(8, "world");
        let combinations = FLUSH_BREAKING_LINKS.iter().flat_map(|&l| [(l, true), (l, false)]);
        for (i, ((chunk, flush_chunk), retry)) in combinations.enumerate() {
            let failure = FLUSH_FAILURES[i % FLUSH_FAILURES.len()];
            let (first, second) = (first.clone(), second.clone());
            assert_cancel_safe(
                move || {
                    let fail_once = Arc::new(AtomicBool::new(false));
                    (Rig::failing_once(chunk, flush_chunk, &fail_once, failure), fail_once)
                },
                |(rig, _): (Rig, Arc<AtomicBool>)| async move { rig.send(&frame(7, "hello")).await },
                move |(rig, fail_once), outcome| {
                    let (first, second) = (first.clone(), second.clone());
                    async move {
                        match outcome {
                            Outcome::Completed(Err(err)) => {
                                return Err(format!(
                                    "send_frame failed on a healthy connection: {err}"
                                ));
                            }
                            Outcome::Completed(Ok(())) => return Ok(()),
                            Outcome::Cancelled { .. } => {}
                        }
                        let on_the_wire = rig.wire.bytes().len();
                        fail_once.store(true, Ordering::SeqCst);
                        let (next, kind) = if retry {
                            (&first, "the retry")
                        } else {
                            (&second, "the next frame's call")
                        };
                        let result = timeout(Duration::from_secs(60), rig.send(next)).await;
                        let seen = rig.wire.bytes();
                        let full: Vec<Frame> =
                            if retry { vec![first.clone()] } else { vec![first.clone(), second.clone()] };
                        let problem = match result {
                            Ok(Err(err)) if err.kind() == failure => return Ok(()),
                            Ok(Err(err)) => format!(
                                "{kind} (send_frame({})) failed with an error of kind {:?} \
                                 (\"{err}\"), expected the connection's own {failure:?}: the \
                                 caller must get the connection's error with its own kind",
                                next.seq,
                                err.kind()
                            ),
                            Err(_) => format!("{kind} never finished"),
                            Ok(Ok(())) => {
                                if check_wire(&seen, &full).is_ok() {
                                    return Ok(());
                                }
                                let problem = check_wire(&seen, &full)
                                    .err()
                                    .unwrap_or_default();
                                format!(
                                    "{kind} (send_frame({})) returned Ok although the flush \
                                     failed under it and frame 7 never reached the server \
                                     whole; {problem}. Expected the connection's {failure:?}: \
                                     Ok must mean the frames are on the wire, and the call that \
                                     finishes a cut frame owns that frame's errors",
                                    next.seq
                                )
                            }
                        };
                        Err(format!(
                            "over a connection whose writes filled a buffer ({chunk} bytes per \
                             write) that its flush moved to the wire ({flush_chunk} bytes per \
                             poll), frame 7 was cut with {on_the_wire} bytes on the wire; the \
                             next flush step with bytes to move then failed once with \
                             {failure:?}, losing what the buffer held, and the connection \
                             recovered. {problem}"
                        ))
                    }
                },
            )
            .await;
        }
    }

    /// A healthy uplink may be very slow: a 256 KiB frame that takes minutes, hours, or
    /// decades to go out (the paused clock makes that free: one jump per write) is still sent,
    /// and `send_frame` answers `Ok(())`. Only the connection says that it failed; a deadline
    /// belongs to the caller, whose `select!` or `timeout` cancels the call (and then retries or
    /// moves on). No stall limit on a write or on the flush, however generous, survives this.
    async fn a_slow_healthy_uplink_is_never_given_up_on() {
        // 256 KiB: 64 writes of a second each (over a minute for the frame), then 4 writes of a
        // quarter of an hour each (an hour with no byte out for 15 minutes at a time), then 4
        // writes and a flush of about 30 years each (the longest a tokio `sleep` waits). The
        // flush waits for the last write to go out (one more pace).
        const SLOW_BODY: usize = 256 * 1024;
        let frame = Frame { seq: 7, body: huge_body(SLOW_BODY) };
        // (bytes per write, time each write takes): many short writes, and a few very long ones.
        for (chunk, pace, each) in [
            (4_096, Duration::from_secs(1), "a second"),
            (64 * 1024, Duration::from_secs(900), "a quarter of an hour"),
            (64 * 1024, Duration::MAX, "about 30 years"),
        ] {
            let wire = Arc::new(Mutex::new(Vec::new()));
            let io = PacedWriter { chunk, pace, busy: None, wire: wire.clone() };
            let mut writer = FrameWriter::new(io);
            let started = Instant::now();
            let result = writer.send_frame(&frame).await;
            let took = started.elapsed();
            let seen = wire.lock().expect("wire lock").len();
            let total = HEADER_LEN + SLOW_BODY;
            match result {
                Ok(()) => {}
                Err(err) => panic!(
                    "over a healthy but slow uplink ({chunk} bytes per write, each write and the flush \
                     taking {each}), sending a {SLOW_BODY}-byte frame failed after {} with \
                     `{err}` ({err:?}), when {seen} of its {total} bytes had gone out; expected \
                     Ok(()) once the frame was on the wire: the connection never failed, and \
                     `send_frame` must not give up on a slow link, however slow (a deadline is \
                     the caller's, who cancels the call)",
                    spell(took)
                ),
            }
            let bytes = wire.lock().expect("wire lock");
            assert!(
                bytes.len() == total && bytes[..HEADER_LEN] == frame.header() && bytes[HEADER_LEN..] == frame.body[..],
                "over a slow uplink ({chunk} bytes per write, each taking {each}), send_frame \
                 returned Ok, but the server read {} bytes that are not the frame sent once \
                 ({total} bytes)",
                bytes.len()
            );
        }
    }

    /// Time passes between a cut and the caller's next call: a second, an hour, a day, a week,
    /// decades, 146 million years, or as far as the paused clock can go (one jump each, free).
    /// However long the wait, the next call owes exactly what it owed right after the cut: a retry
    /// finishes the interrupted frame, and the next frame's call finishes it first, so the server
    /// reads every frame whole and once. A frame is never "abandoned" because time went by: the
    /// server is still reading it from where the wire left off.
    fn the_next_call_owes_the_same_however_long_after_the_cut() {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let first = frame(7, "hello");
            let second = frame(8, "world");
            let links: [(fn() -> Rig, &str); 3] = [
                (Rig::new, "a connection taking 3 bytes per write"),
                (Rig::buffered, "a connection whose 3-byte writes fill a buffer that its flush moves on 3 bytes per poll"),
                (Rig::buffered_whole_writes, "a connection taking the whole frame into a buffer that its flush moves on 3 bytes per poll"),
            ];
            let mut gaps = vec![
                Duration::from_secs(1),
                Duration::from_secs(3_601),
                Duration::from_secs(25 * 3600),
                Duration::from_secs(8 * 24 * 3600),
                21 * YEAR,
                31 * YEAR,
                kata_support::time::FAR_END,
            ];
            // The last gap reaches the far end of what the clock can hold, keeping room for
            // tokio's own far future (about 30 years past now), which its timers count on.
            gaps.push(Duration::MAX);
            for gap in gaps {
                let gap = if gap == Duration::MAX {
                    let fits = |d: Duration| {
                        tokio::time::Instant::now()
                            .checked_add(d)
                            .and_then(|t| t.checked_add(40 * YEAR))
                            .is_some()
                    };
                    let (mut low, mut high) = (0u64, u64::MAX);
                    while low < high {
                        let mid = low + (high - low).div_ceil(2);
                        if fits(Duration::from_secs(mid)) { low = mid } else { high = mid - 1 }
                    }
                    Duration::from_secs(low)
                } else {
                    gap
                };
                // Every cut of every link is made first, then the clock jumps once, then every
                // caller comes back.
                let mut calls = Vec::new();
                for (link, what) in links {
                    for stop in 1..=28 {
                        for retry in [true, false] {
                            // A fresh turn of the runtime, and with it a fresh budget for
                            // the rig's lock (polled by hand, it would run dry).
                            tokio::task::yield_now().await;
                            let rig = link();
                            let ended = send_and_cut(&rig, &first, stop);
                            calls.push((rig, what, stop, retry, ended));
                        }
                    }
                }
                tokio::time::advance(gap).await;
                for (rig, what, stop, retry, ended) in calls {
                    let on_the_wire = rig.wire.bytes().len();
                    let next = if retry { &first } else { &second };
                    let story = format!(
                        "over {what}, frame 7 was sent and {}, with {on_the_wire} bytes on the \
                         wire; {} came {} later",
                        if ended.is_some() { "returned before its cut".to_owned() } else { format!("cut after poll {stop}") },
                        if retry { "the retry of frame 7" } else { "the call of frame 8" },
                        kata_support::time::spoken(gap)
                    );
                    if let Some(Err(err)) = &ended {
                        panic!("{story}: the first call failed on a healthy connection: {err}");
                    }
                    tokio::task::yield_now().await;
                    if ended.is_none() || !retry {
                        // Polled by hand: no timer of the test's own across the far end.
                        match send_and_cut(&rig, next, 100_000) {
                            Some(Ok(())) => {}
                            Some(Err(err)) => panic!(
                                "{story}: that call failed with `{err}` ({:?}) on a healthy \
                                 connection: however long after a cut the next call comes, it \
                                 finishes what the cut left",
                                err.kind()
                            ),
                            None => panic!("{story}: that call never finished"),
                        }
                    }
                    let seen = rig.wire.bytes();
                    let accepted: Vec<Vec<Frame>> = match (retry, ended.is_some()) {
                        (true, _) => vec![vec![first.clone()]],
                        (false, true) => vec![vec![first.clone(), second.clone()]],
                        (false, false) => vec![vec![second.clone()], vec![first.clone(), second.clone()]],
                    };
                    if accepted
                        .iter()
                        .any(|frames| seen == frames.iter().flat_map(Frame::encode).collect::<Vec<u8>>())
                    {
                        continue;
                    }
                    let full = accepted.last().expect("one accepted wire at least");
                    let problem = check_wire(&seen, full)
                        .err()
                        .unwrap_or_else(|| "the wire is not whole frames".to_owned());
                    panic!(
                        "{story}: {problem}. However long after a cut the next call comes, it \
                         owes what the cut left: the interrupted frame's unsent bytes, from the \
                         first one not yet on the wire (the server is still reading that frame)"
                    );
                }
            }
        });
    }

    /// The progress bar cuts `send_frame` as often as it ticks, and over a link that stalls for
    /// a long time no byte goes out between the cuts: a frame cut part way, then cut tens of
    /// thousands of times in a row with no byte getting through, then cut after every byte as
    /// the link crawls, then followed by the next frame, cut as often while it is still finishing
    /// the first: the last call finishes both frames, whole and once, and no call fails. The
    /// link never failed; a writer that counts cuts (in a row without progress, per frame, or in
    /// all) and gives up after some number of them makes up a failure, however large its budget.
    fn a_frame_cut_over_and_over_is_still_finished() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let credit = Arc::new(AtomicUsize::new(0));
            let wire = Arc::new(Mutex::new(Vec::new()));
            let mut writer =
                FrameWriter::new(CreditLink { credit: credit.clone(), wire: wire.clone() });
            let first = frame(7, "a chunk of the file, over a link that keeps stalling");
            let second = frame(8, "the next chunk");
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut cuts = 0usize;
            // One call, polled once and then dropped (the progress bar ticked): its outcome if it
            // returned, and the story so far if it failed.
            let mut cut_once = |writer: &mut FrameWriter<CreditLink>, f: &Frame, story: &str| {
                let mut call = std::pin::pin!(writer.send_frame(f));
                let polled = call.as_mut().poll(&mut cx);
                cuts += 1;
                match polled {
                    Poll::Ready(Err(err)) => panic!(
                        "{story}, then the call after {cuts} cuts of frame {}'s calls failed with \
                         `{err}` ({:?}), with {} bytes on the wire: the link never failed, it \
                         only stalled and crawled; send_frame must not give up on a frame \
                         because its calls were cut, however many times in a row and whether or \
                         not a byte went out in between (the caller's loop decides when to stop)",
                        f.seq,
                        err.kind(),
                        wire.lock().expect("wire lock").len()
                    ),
                    Poll::Ready(Ok(())) => true,
                    Poll::Pending => false,
                }
            };
            // Frame 7 is cut after its first byte; the link then stalls.
            credit.store(1, Ordering::SeqCst);
            let story = "frame 7 was cut after its first byte, over a link that then stalled";
            cut_once(&mut writer, &first, story);
            let story = format!(
                "frame 7 was cut after its first byte, then {CUTS_IN_A_ROW} times in a row with \
                 no byte going out (the link stalled)"
            );
            for _ in 0..CUTS_IN_A_ROW {
                cut_once(&mut writer, &first, &story);
            }
            // The link crawls: one byte per call, each call cut after it, to the frame's
            // second-to-last byte.
            let story = format!("{story}, then once after each byte as the link crawled");
            for _ in 2..first.encode().len() {
                credit.store(1, Ordering::SeqCst);
                cut_once(&mut writer, &first, &story);
            }
            // The caller moves on to frame 8, whose calls are cut as often while frame 7's last
            // byte is still owed.
            let story = format!(
                "{story}, then the caller moved on to frame 8, whose call was cut {CUTS_IN_A_ROW} \
                 times in a row with frame 7's last byte still owed (the link stalled again)"
            );
            for _ in 0..CUTS_IN_A_ROW {
                cut_once(&mut writer, &second, &story);
            }
            credit.store(usize::MAX, Ordering::SeqCst);
            match timeout(Duration::from_secs(60), writer.send_frame(&second)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!(
                    "{story}; then the link recovered, and the next call of frame 8 failed with \
                     `{err}` ({:?}): the link never failed; send_frame must not give up on a \
                     frame because its calls were cut, however many times",
                    err.kind()
                ),
                Err(_) => {
                    panic!("{story}; then the link recovered, but the next call never finished")
                }
            }
            let seen = wire.lock().expect("wire lock").clone();
            if let Err(problem) = check_wire(&seen, &[first.clone(), second.clone()]) {
                panic!(
                    "{story}; then the link recovered and frame 8's call returned Ok, but {problem}"
                );
            }
        });
    }

    /// The explorer cuts `send_frame` after every poll (mid-header, mid-body, after the last
    /// byte); the caller then retries the same frame. The server must read it exactly once.
    async fn a_retry_after_any_cut_sends_the_frame_once() {
        for rig in [Rig::new as fn() -> Rig, Rig::buffered, Rig::buffered_whole_writes] {
        let first = frame(7, "hello");
        assert_cancel_safe(
            rig,
            |rig: Rig| async move { rig.send(&frame(7, "hello")).await },
            |rig, outcome| {
                let first = first.clone();
                async move {
                    let accepted = [first.clone()];
                    finish_and_check(rig, outcome, Some(first), &[&accepted]).await
                }
            },
        )
        .await;
        }
    }

    /// After a cut, the caller calls again with the same sequence number but another body (it
    /// read the file's chunk again, and the file had changed meanwhile): a retry is known by its
    /// `seq`, so the call finishes the interrupted frame and sends nothing more. The server never
    /// reads two frames with one sequence number, nor a frame made of two bodies.
    async fn a_retry_is_known_by_its_seq_not_its_body() {
        for rig in [Rig::new as fn() -> Rig, Rig::buffered, Rig::buffered_whole_writes] {
            assert_cancel_safe(
                rig,
                |rig: Rig| async move { rig.send(&frame(7, "version-1")).await },
                |rig, outcome| async move {
                    let first = frame(7, "version-1");
                    let changed = frame(7, "version-2, longer");
                    match outcome {
                        Outcome::Completed(Err(err)) => {
                            return Err(format!("send_frame failed on a healthy connection: {err}"));
                        }
                        // A frame that went out whole is done with: a later call with its `seq`
                        // is a new frame (`a_new_upload_reusing_a_finished_frames_seq_is_sent`).
                        Outcome::Completed(Ok(())) => return Ok(()),
                        Outcome::Cancelled { .. } => {}
                    }
                    match timeout(Duration::from_secs(60), rig.send(&changed)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => return Err(format!("the retry failed: {err}")),
                        Err(_) => return Err("the retry never finished".into()),
                    }
                    let seen = rig.wire.bytes();
                    // The interrupted frame, finished; or, if none of it had reached the
                    // connection, the retry's own.
                    let (once, other) = (first.encode(), changed.encode());
                    if seen == once || seen == other {
                        return Ok(());
                    }
                    let problem = if seen.len() > once.len() && seen[once.len()..] == other {
                        format!(
                            "the server read the interrupted frame 7 whole, and then a second \
                             frame 7 with the new body ({} bytes instead of {}): two frames with \
                             one sequence number, which the server takes for a replay",
                            seen.len(),
                            once.len()
                        )
                    } else if seen.len() > once.len() && seen.starts_with(&once) {
                        format!(
                            "the server read the interrupted frame 7 whole, and after it {} more \
                             bytes, \"{}\"",
                            seen.len() - once.len(),
                            show(&seen[once.len()..])
                        )
                    } else {
                        check_wire(&seen, &[first.clone()])
                            .err()
                            .unwrap_or_else(|| "the wire is not one whole frame".to_owned())
                    };
                    Err(format!(
                        "frame 7 (\"version-1\") was cut, then the caller called again with \
                         sequence number 7 and another body (\"version-2, longer\"): a call with \
                         the same seq after a cut is a retry, which finishes the interrupted frame \
                         and sends nothing more; {problem}"
                    ))
                },
            )
            .await;
        }
    }

    /// After a cut, the caller moves on to the next frame instead: the interrupted frame must be
    /// finished first, so the server reads both frames whole.
    async fn the_next_frame_after_a_cut_keeps_the_framing() {
        for rig in [Rig::new as fn() -> Rig, Rig::buffered, Rig::buffered_whole_writes] {
        let first = frame(7, "hello");
        let second = frame(8, "world");
        assert_cancel_safe(
            rig,
            |rig: Rig| async move { rig.send(&frame(7, "hello")).await },
            |rig, outcome| {
                // Frame 7 may be missing altogether if the cut came before its first byte;
                // what must never happen is a part of it.
                let alone = [second.clone()];
                let both = [first.clone(), second.clone()];
                let second = second.clone();
                async move { finish_and_check(rig, outcome, Some(second), &[&alone, &both]).await }
            },
        )
        .await;
        }
    }

    /// One file's upload ends with a frame that went out whole (at once, or after a cut and a
    /// retry), and the next file's upload numbers its frames again: its first frame has the same
    /// sequence number as the frame just finished, and another body. Only a call after a
    /// cancelled one is a retry; this is a new frame, and it must reach the wire too.
    async fn a_new_upload_reusing_a_finished_frames_seq_is_sent() {
        for (rig, seq) in [(Rig::new as fn() -> Rig, 0), (Rig::buffered_whole_writes, 7)] {
            let first = frame(seq, "end of file one");
            let second = frame(seq, "file two");
            let sending = first.clone();
            assert_cancel_safe(
                rig,
                move |rig: Rig| {
                    let sending = sending.clone();
                    async move { rig.send(&sending).await }
                },
                |rig, outcome| {
                    let (first, second) = (first.clone(), second.clone());
                    async move {
                        let how = match outcome {
                            Outcome::Completed(Err(err)) => {
                                return Err(format!(
                                    "send_frame failed on a healthy connection: {err}"
                                ));
                            }
                            Outcome::Completed(Ok(())) => "went out whole",
                            Outcome::Cancelled { .. } => {
                                match timeout(Duration::from_secs(60), rig.send(&first)).await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(err)) => {
                                        return Err(format!("the retry failed: {err}"));
                                    }
                                    Err(_) => return Err("the retry never finished".into()),
                                }
                                "was cut and then retried"
                            }
                        };
                        match timeout(Duration::from_secs(60), rig.send(&second)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => {
                                return Err(format!("the next upload's first frame failed: {err}"));
                            }
                            Err(_) => {
                                let never = "the next upload's first frame never finished";
                                return Err(never.to_owned());
                            }
                        }
                        let seen = rig.wire.bytes();
                        let first_whole = seen.starts_with(&first.encode());
                        check_wire(&seen, &[first, second]).map_err(|problem| {
                            // Said only when the first frame did arrive whole: then the new
                            // one was taken for a retry.
                            let why = if first_whole {
                                ". Once a frame has gone out whole, a frame with the same \
                                 sequence number is a new frame, not a retry"
                            } else {
                                ""
                            };
                            format!(
                                "the last frame of one upload (sequence number {seq}) {how}, \
                                 and the next upload began again at sequence number {seq}, \
                                 with another body; send_frame returned Ok for it, but \
                                 {problem}{why}"
                            )
                        })
                    }
                },
            )
            .await;
        }
    }

    /// The story end to end: an upload over a slow uplink, with a progress bar ticking every
    /// 10 ms in the same `select!` loop, must deliver every frame whole and once.
    async fn upload_with_a_progress_bar_delivers_every_frame_once() {
        let wire = Arc::new(Mutex::new(Vec::new()));
        let io = PacedWriter {
            chunk: 3,
            pace: Duration::from_millis(4),
            busy: None,
            wire: wire.clone(),
        };
        let mut writer = FrameWriter::new(io);
        let frames = [
            frame(1, "the quick brown fox"),
            frame(2, "jumps over"),
            frame(3, "the lazy dog"),
        ];
        let total: usize = frames.iter().map(|f| HEADER_LEN + f.body.len()).sum();
        let mut ticks = 0;
        let mut done = 0;
        let upload = async {
            let period = Duration::from_millis(10);
            let mut progress = interval_at(Instant::now() + period, period);
            for f in &frames {
                loop {
                    tokio::select! {
                        biased;
                        sent = writer.send_frame(f) => { sent?; done += 1; break; }
                        _ = progress.tick() => ticks += 1,
                    }
                }
            }
            io::Result::Ok(())
        };
        let finished = timeout(Duration::from_secs(10), upload).await;
        let seen = wire.lock().expect("wire lock").clone();
        match finished {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("the upload failed on a healthy connection: {err}"),
            Err(_) => panic!(
                "the upload of {total} bytes never finished: after 10 s and {ticks} progress \
                 ticks the server had received {} bytes, and send_frame had returned for only \
                 {done} of the {} frames. Every tick cancelled send_frame, and no call after a \
                 tick finished frame {} before the next tick",
                seen.len(),
                frames.len(),
                frames[done.min(frames.len() - 1)].seq
            ),
        }
        if let Err(problem) = check_wire(&seen, &frames) {
            panic!("{ticks} progress ticks interrupted the upload, and {problem}");
        }
        assert!(
            ticks > 0,
            "the progress bar never ticked: the test itself is broken"
        );
    }

    /// Over a connection whose writes only buffer (a `BufWriter`, a TLS stream), `Ok` must still
    /// mean the frame reached the wire: `send_frame` has to flush, and wait for the flush.
    async fn ok_means_on_the_wire_over_a_buffered_connection() {
        let (io, wire) = BufferedLink::new();
        let mut writer = FrameWriter::new(io);
        let frames = [frame(1, "hello"), frame(2, ""), frame(3, "world!")];
        let mut sent = Vec::new();
        for f in &frames {
            writer
                .send_frame(f)
                .await
                .expect("a healthy connection accepts every frame");
            sent.push(f.clone());
            let seen = wire.lock().expect("wire lock").clone();
            if let Err(problem) = check_wire(&seen, &sent) {
                panic!(
                    "over a connection whose writes only fill a buffer, send_frame({}) returned \
                     Ok, so the frame must have been flushed to the wire: {problem}",
                    f.seq
                );
            }
        }
    }

    /// A frame of 32 MiB (a chunk of a large file), over a connection taking 256 KiB per write,
    /// cut a third of the way and retried, and one of 4 MiB cut two thirds of the way and followed
    /// by the next frame: the server reads every frame whole and once. The guarantee must not end
    /// at the size of some buffer, nor at a bound on what the writer is willing to keep.
    fn a_huge_frame_cut_and_resumed_is_sent_once() {
        const CHUNK: usize = 256 << 10;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            for (len, retry) in [(HUGE_BODY, true), (LARGE_BODY, false)] {
                let writes = (HEADER_LEN + len).div_ceil(CHUNK);
                let stop = if retry { writes / 3 } else { 2 * writes / 3 };
                let first = Frame { seq: 7, body: huge_body(len) };
                let second = frame(8, "the next chunk");
                let expected: Vec<&Frame> = if retry { vec![&first] } else { vec![&first, &second] };
                let (io, seen) = CheckingLink::new(CHUNK, &expected);
                let mut writer = FrameWriter::new(io);
                let mut ended = None;
                {
                    let mut call = tokio_test::task::spawn(writer.send_frame(&first));
                    for _ in 0..stop {
                        if let Poll::Ready(result) = call.poll() {
                            ended = Some(result);
                            break;
                        }
                    }
                }
                let how = if retry { "retried" } else { "followed by the next frame" };
                let what = match (&ended, retry) {
                    (None, _) => format!("cut after poll {stop} and {how}"),
                    (Some(_), true) => format!("returned within {stop} polls, before the cut"),
                    (Some(_), false) => {
                        format!("returned within {stop} polls, before the cut, and {how}")
                    }
                };
                let context = format!(
                    "a frame with a {len}-byte body, sent over a connection taking {CHUNK} bytes \
                     per write, {what}"
                );
                if let Some(Err(err)) = ended {
                    panic!("{context}: send_frame failed on a healthy connection: {err}");
                }
                let next = if retry { &first } else { &second };
                let kind = if retry { "retry" } else { "next frame" };
                if ended.is_none() || !retry {
                    match timeout(Duration::from_secs(60), writer.send_frame(next)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => panic!("{context}: the {kind} failed: {err}"),
                        Err(_) => panic!("{context}: the {kind} never finished"),
                    }
                }
                let shapes: Vec<(u32, usize)> =
                    expected.iter().map(|f| (f.seq, f.body.len())).collect();
                if let Err(problem) = check_huge_wire(&seen.lock().expect("seen lock"), &shapes) {
                    panic!("{context}: {problem}");
                }
            }
        });
    }

    /// A large frame (1 MiB, past any size at which a writer might stop encoding header and body
    /// into one buffer) cut while its header is only part way on the wire, over a link that takes
    /// 3 bytes per write for its first 16 bytes and 256 KiB after, then retried or followed by the
    /// next frame: the header is resumed like any other byte, so the server reads it whole and
    /// once, whatever the frame's size. (On one seed.)
    fn a_large_frame_cut_inside_its_header_is_resumed() {
        const CHUNK: usize = 256 << 10;
        const BODY: usize = (1 << 20) + 5;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            for (stop, retry) in [(1, true), (2, true), (1, false), (2, false)] {
                let first = Frame { seq: 7, body: huge_body(BODY) };
                let second = frame(8, "the next chunk");
                let expected: Vec<&Frame> = if retry { vec![&first] } else { vec![&first, &second] };
                let (mut io, seen) = CheckingLink::new(CHUNK, &expected);
                io.small_until = 16;
                let mut writer = FrameWriter::new(io);
                let mut ended = None;
                {
                    let mut call = tokio_test::task::spawn(writer.send_frame(&first));
                    for _ in 0..stop {
                        if let Poll::Ready(result) = call.poll() {
                            ended = Some(result);
                            break;
                        }
                    }
                }
                let arrived = seen.lock().expect("seen lock").bytes;
                let how = if retry { "retried" } else { "followed by the next frame" };
                let context = format!(
                    "a frame with a {BODY}-byte body, sent over a connection taking 3 bytes \
                     per write for its first 16 bytes and {CHUNK} after, cut after poll {stop} \
                     ({arrived} of the header's {HEADER_LEN} bytes on the wire) and {how}"
                );
                if let Some(result) = ended {
                    panic!("{context}: send_frame returned {result:?} before the cut");
                }
                let next = if retry { &first } else { &second };
                let kind = if retry { "retry" } else { "next frame" };
                match timeout(Duration::from_secs(60), writer.send_frame(next)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => panic!("{context}: the {kind} failed: {err}"),
                    Err(_) => panic!("{context}: the {kind} never finished"),
                }
                let shapes: Vec<(u32, usize)> =
                    expected.iter().map(|f| (f.seq, f.body.len())).collect();
                if let Err(problem) = check_huge_wire(&seen.lock().expect("seen lock"), &shapes) {
                    panic!("{context}: {problem}");
                }
            }
        });
    }

    /// The floor on a frame's size, 32 MiB of body, cut while its header is only part way on
    /// the wire (a link taking 3 bytes per write for its first 16 bytes and 256 KiB after), then
    /// followed by the next frame: the header is resumed like any other byte, and both frames
    /// reach the server whole and once. A writer that handles frames over some threshold apart
    /// (header written on its own, body kept as it is) at any figure under the floor fails here.
    /// (On one seed, once: it costs a copy of 32 MiB.)
    fn a_frame_as_large_as_the_floor_cut_inside_its_header_keeps_the_framing() {
        const CHUNK: usize = 256 << 10;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let first = Frame { seq: 7, body: huge_body(HUGE_BODY) };
            let second = frame(8, "the next chunk");
            let expected = vec![&first, &second];
            let (mut io, seen) = CheckingLink::new(CHUNK, &expected);
            io.small_until = 16;
            let mut writer = FrameWriter::new(io);
            let ended = {
                let mut call = tokio_test::task::spawn(writer.send_frame(&first));
                match call.poll() {
                    Poll::Ready(result) => Some(result),
                    Poll::Pending => None,
                }
            };
            let arrived = seen.lock().expect("seen lock").bytes;
            let context = format!(
                "a frame with a {HUGE_BODY}-byte body (32 MiB, the floor under which the writer \
                 may not bound the frames it resumes), sent over a connection taking 3 bytes per \
                 write for its first 16 bytes and {CHUNK} after, cut after its first poll \
                 ({arrived} of the header's {HEADER_LEN} bytes on the wire) and followed by the \
                 next frame"
            );
            if let Some(result) = ended {
                panic!("{context}: send_frame returned {result:?} before the cut");
            }
            match timeout(Duration::from_secs(60), writer.send_frame(&second)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!("{context}: the next frame failed: {err}"),
                Err(_) => panic!("{context}: the next frame never finished"),
            }
            let shapes: Vec<(u32, usize)> =
                expected.iter().map(|f| (f.seq, f.body.len())).collect();
            if let Err(problem) = check_huge_wire(&seen.lock().expect("seen lock"), &shapes) {
                panic!("{context}: {problem}");
            }
        });
    }

    /// Frames of any size up to a few tens of KiB, cut anywhere (header, body, flush), then
    /// retried or followed by the next frame: the server reads every frame whole and once,
    /// however large the frame is compared with any buffer the writer or the connection keeps.
    fn large_frames_cut_anywhere_are_resumed() {
        check_property(32, big_cuts(), |cut| async move {
            let rig = Rig::with_chunk(cut.chunk, cut.buffered, cut.flush_chunk);
            let first = big_frame(7, cut.body);
            let second = big_frame(8, 300);
            // Writes and flush steps each take two polls; a send needs about this many.
            let writes = (HEADER_LEN + cut.body).div_ceil(cut.chunk);
            let flushes =
                if cut.buffered { (HEADER_LEN + cut.body).div_ceil(cut.flush_chunk) } else { 0 };
            let polls = 2 * (writes + flushes) + 4;
            let stop = cut.cut_permille * polls / 1_000;
            let outcome = {
                let sending = rig.clone();
                let frame = first.clone();
                let mut call =
                    tokio_test::task::spawn(async move { sending.send(&frame).await });
                let mut ended = None;
                for _ in 0..stop {
                    if let Poll::Ready(result) = call.poll() {
                        ended = Some(result);
                        break;
                    }
                }
                match ended {
                    Some(result) => Outcome::Completed(result),
                    None => Outcome::Cancelled { polls: stop },
                }
            };
            let how = if cut.retry { "retried" } else { "followed by the next frame" };
            let cancelled = matches!(outcome, Outcome::Cancelled { .. });
            let result = if cut.retry {
                finish_and_check(rig, outcome, Some(first.clone()), &[&[first]]).await
            } else {
                let alone = [second.clone()];
                let both = [first, second.clone()];
                finish_and_check(rig, outcome, Some(second), &[&alone, &both]).await
            };
            result.map_err(|problem| {
                let what = if cancelled {
                    format!("cut after poll {stop} and {how}")
                } else {
                    format!("finished before the cut and {how}")
                };
                let buffer = if cut.buffered {
                    format!(" into a buffer that a flush moves to the wire {} bytes per poll", cut.flush_chunk)
                } else {
                    String::new()
                };
                format!(
                    "a frame with a {}-byte body, sent over a connection taking {} bytes per \
                     write{buffer}, {what}: {problem}",
                    cut.body, cut.chunk,
                )
            })
        });
    }

    /// A frame cut part way, then a different frame (its sequence number higher or lower: a
    /// lower one is a different frame too, not a retry) cut in turn, perhaps while it is still
    /// finishing the first, then the second retried or a third frame sent: the server reads whole
    /// frames in order, and every frame whose call returned `Ok`, and the last one, among them.
    fn a_second_cut_while_finishing_a_cut_frame_keeps_the_framing() {
        check_property(128, two_cuts(), |cut| async move {
            let rig = Rig::with_chunk(cut.chunk, cut.buffered, cut.flush_chunk);
            let frames: Vec<Frame> = cut
                .seqs
                .iter()
                .zip(&cut.bodies)
                .enumerate()
                .map(|(i, (&seq, &len))| Frame {
                    seq,
                    body: (0..len).map(|b| ((b + 83 * i) % 251) as u8).collect(),
                })
                .collect();
            // Each poll moves one write (or one step of the flush) and then waits.
            let polls = |bytes: usize| {
                let flushes = if cut.buffered { bytes.div_ceil(cut.flush_chunk) } else { 0 };
                bytes.div_ceil(cut.chunk) + flushes + 2
            };
            let (a, b, c) = (&frames[0], &frames[1], &frames[2]);
            let (a_len, b_len) = (a.encode().len(), b.encode().len());
            let first_stop = cut.first_cut_permille * polls(a_len) / 1_000;
            // Half the time the second call is cut within its first few polls, while it may still
            // be finishing the first frame.
            let second_stop = match cut.second_cut_permille {
                early @ 0..500 => 1 + early % 6,
                late => (late - 500) * 2 * polls(a_len + b_len) / 1_000,
            };
            let first = send_and_cut(&rig, a, first_stop);
            let second = send_and_cut(&rig, b, second_stop);
            let tell = |ended: &Option<io::Result<()>>, stop: usize| match ended {
                None => format!("cut after poll {stop}"),
                Some(_) => format!("returned within {stop} polls, before its cut"),
            };
            let last = if cut.retry { b } else { c };
            let story = format!(
                "over a connection taking {} bytes per write{}, frame {} was sent and {}, then \
                 frame {} was sent and {}, then {}",
                cut.chunk,
                if cut.buffered {
                    format!(" into a buffer that a flush moves {} bytes per poll", cut.flush_chunk)
                } else {
                    String::new()
                },
                a.seq,
                tell(&first, first_stop),
                b.seq,
                tell(&second, second_stop),
                if cut.retry {
                    format!("frame {} was sent again (a retry)", b.seq)
                } else {
                    format!("the caller moved on to frame {}", c.seq)
                }
            );
            for ended in [&first, &second] {
                if let Some(Err(err)) = ended {
                    return Err(format!("{story}: a call failed on a healthy connection: {err}"));
                }
            }
            if !(cut.retry && second.is_some()) {
                match timeout(Duration::from_secs(60), rig.send(last)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return Err(format!("{story}: the last call failed: {err}")),
                    Err(_) => return Err(format!("{story}: the last call never finished")),
                }
            }
            // Whole frames in order; a frame may be missing only if its call was cut before any
            // of its bytes went out (and never if its call returned `Ok`, or it is the last).
            let candidates: Vec<&Frame> = if cut.retry { vec![a, b] } else { vec![a, b, c] };
            let required = |i: usize| {
                let frame = candidates[i];
                frame.seq == last.seq
                    || (frame.seq == a.seq && first.is_some())
                    || (frame.seq == b.seq && second.is_some())
            };
            let seen = rig.wire.bytes();
            let mut closest: Option<(usize, Vec<Frame>)> = None;
            for mask in 0..(1usize << candidates.len()) {
                if (0..candidates.len()).any(|i| required(i) && mask & (1 << i) == 0) {
                    continue;
                }
                let subset: Vec<Frame> = (0..candidates.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| candidates[i].clone())
                    .collect();
                let expected: Vec<u8> = subset.iter().flat_map(Frame::encode).collect();
                if seen == expected {
                    return Ok(());
                }
                let common = seen.iter().zip(&expected).take_while(|(x, y)| x == y).count();
                if closest.as_ref().is_none_or(|(best, _)| common > *best) {
                    closest = Some((common, subset));
                }
            }
            let (_, subset) = closest.expect("the last frame alone is always a candidate");
            let problem = check_wire(&seen, &subset)
                .err()
                .unwrap_or_else(|| "the wire is not whole frames in order".to_owned());
            Err(format!(
                "{story}: {problem}. A frame cut part way is finished before any other, even \
                 when that other call is itself cut while finishing it, and a frame with another \
                 sequence number, lower or higher, is a different frame, not a retry"
            ))
        });
    }

    /// A healthy link that crawls: a frame whose `WRITES_FLOOR` (2^17) bytes of body each take a
    /// write of their own, every write answered `Pending` first, and whose flush answers
    /// `Pending` as many times before it is done, is sent, and so is the next frame on the same
    /// connection. A budget of writes, of `Pending` answers or of flush polls, per frame or over
    /// the connection's life, at any figure under the floor, makes up a failure the connection
    /// never reported. (On one seed's runtime, polled by hand: a poll per answer.)
    fn a_frame_of_the_floor_of_writes_and_flush_polls_is_sent() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let wire = Arc::new(Mutex::new(Vec::new()));
            let link = CrawlingLink { waited: false, flush_waits: 0, wire: wire.clone() };
            let mut writer = FrameWriter::new(link);
            let frames =
                [Frame { seq: 7, body: huge_body(WRITES_FLOOR) }, frame(8, "the next chunk")];
            let mut cx = Context::from_waker(std::task::Waker::noop());
            for (i, f) in frames.iter().enumerate() {
                let story = format!(
                    "over a healthy link that takes one byte per write, answers `Pending` before \
                     each write, and answers `Pending` {WRITES_FLOOR} times before each flush is \
                     done (2^17, the floor under which no budget of writes or polls may give up), \
                     {}",
                    if i == 0 {
                        format!("frame 7 ({} bytes) was sent", f.encode().len())
                    } else {
                        "frame 7 went out whole, then frame 8 was sent".to_owned()
                    }
                );
                let limit = 4 * (f.encode().len() + WRITES_FLOOR) + 100;
                let mut call = std::pin::pin!(writer.send_frame(f));
                let mut answer = None;
                for _ in 0..limit {
                    if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
                        answer = Some(result);
                        break;
                    }
                }
                let on_the_wire = wire.lock().expect("wire lock").len();
                match answer {
                    Some(Ok(())) => {}
                    Some(Err(err)) => panic!(
                        "{story}: the call failed with `{err}` ({:?}) with {on_the_wire} bytes on \
                         the wire: the link never failed, it only crawled; only the connection \
                         says it failed, and a deadline is the caller's",
                        err.kind()
                    ),
                    None => panic!(
                        "{story}: after {limit} polls the call had not returned, with \
                         {on_the_wire} bytes on the wire"
                    ),
                }
            }
            let seen = wire.lock().expect("wire lock").clone();
            if let Err(problem) = check_wire(&seen, &frames) {
                panic!("over a link that crawls, both calls returned Ok, but {problem}");
            }
        });
    }

    /// The upload loop over a connection's whole life: each of `RESUMED_FLOOR` (2^15) frames has
    /// its call cut once after its first byte went out, and is then finished, by its retry (every
    /// other frame) or by the next frame's call (the others). Every frame reaches the server whole
    /// and once, and no call fails. A budget of cut or resumed frames per connection, at any
    /// figure under the floor, makes up a failure. (On one seed's runtime,
    /// polled by hand.)
    fn every_frame_of_a_long_upload_cut_once_is_delivered() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let credit = Arc::new(AtomicUsize::new(0));
            let wire = Arc::new(Mutex::new(Vec::new()));
            let mut writer =
                FrameWriter::new(CreditLink { credit: credit.clone(), wire: wire.clone() });
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let frames: Vec<Frame> = (0..RESUMED_FLOOR)
                .map(|k| {
                    let seq = u32::try_from(k).expect("a few frames");
                    Frame { seq, body: vec![(k % 251) as u8] }
                })
                .collect();
            let told = |k: usize| {
                format!(
                    "over a healthy connection, the upload loop sent {RESUMED_FLOOR} frames \
                     (2^15, the floor under which no budget of cut or resumed frames may give \
                     up), each cut once after its first byte went out, then finished by its retry \
                     (even frames) or by the next frame's call (odd ones); the call of frame {k}"
                )
            };
            // Polls a call of `f` until it returns or `polls` run out.
            let mut call = |writer: &mut FrameWriter<CreditLink>, f: &Frame, polls: usize| {
                let mut call = std::pin::pin!(writer.send_frame(f));
                for _ in 0..polls {
                    if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
                        return Some(result);
                    }
                }
                None
            };
            let frame_len = HEADER_LEN + 1;
            let mut owed = 0;
            for (k, f) in frames.iter().enumerate() {
                // Enough for what the previous frame still owes, and the first byte of this one.
                credit.store(owed + 1, Ordering::SeqCst);
                match call(&mut writer, f, 1) {
                    None => {}
                    Some(Ok(())) => panic!(
                        "{} returned Ok(()) with only {} byte(s) of it let through",
                        told(k),
                        owed + 1
                    ),
                    Some(Err(err)) => panic!(
                        "{} failed with `{err}` ({:?}) when it was cut: the connection never \
                         failed; send_frame must not give up on a connection because its calls \
                         were cut, however many frames were",
                        told(k),
                        err.kind()
                    ),
                }
                owed = frame_len - 1;
                if k % 2 == 0 || k + 1 == frames.len() {
                    credit.store(owed, Ordering::SeqCst);
                    match call(&mut writer, f, 8) {
                        Some(Ok(())) => owed = 0,
                        Some(Err(err)) => panic!(
                            "{}'s retry failed with `{err}` ({:?}): the connection never failed; \
                             send_frame must not give up on a connection because its calls were \
                             cut, however many frames were",
                            told(k),
                            err.kind()
                        ),
                        None => panic!(
                            "{}'s retry had not returned when every byte the frame still owed \
                             had been let through",
                            told(k)
                        ),
                    }
                }
            }
            let seen = wire.lock().expect("wire lock").clone();
            let expected: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
            if seen != expected {
                let right = seen.iter().zip(&expected).take_while(|(a, b)| a == b).count();
                panic!(
                    "over a healthy connection, the upload loop sent {RESUMED_FLOOR} frames, each \
                     cut once after its first byte went out, then finished by its retry (even \
                     frames) or by the next frame's call (odd ones); every call returned Ok, but \
                     the server read {} bytes instead of {}, and the first {right} are right: the \
                     wire goes wrong at {}",
                    seen.len(),
                    expected.len(),
                    locate(right, &frames)
                );
            }
        });
    }
}

/// A healthy link that crawls: it takes one byte per write, answers `Pending` before each write,
/// and answers `Pending` `WRITES_FLOOR` times before each flush is done. The test polls by hand,
/// so nothing needs waking. What it accepted is recorded.
struct CrawlingLink {
    waited: bool,
    flush_waits: usize,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl AsyncWrite for CrawlingLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.waited {
            self.waited = true;
            return Poll::Pending;
        }
        self.waited = false;
        self.wire.lock().expect("wire lock").push(buf[0]);
        Poll::Ready(Ok(1))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.flush_waits < WRITES_FLOOR {
            self.flush_waits += 1;
            return Poll::Pending;
        }
        self.flush_waits = 0;
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How many writes (and `Pending` answers, and flush polls) one frame may take before a writer
/// may give up on a healthy link: none, but the tests stop at 2^17.
const WRITES_FLOOR: usize = 1 << 17;

/// How many frames of one connection the tests cut once each and resume: 2^15, the floor under
/// which a writer keeps no budget of cut or resumed frames. (No higher: each frame costs the test
/// two calls, about 3 µs in the grader's debug build.)
const RESUMED_FLOOR: usize = 1 << 15;
