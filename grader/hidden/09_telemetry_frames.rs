//! Hidden tests for kata 09: frames must come out intact however often a heartbeat (or the caller)
//! cancels `next_event` in the middle of one.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;

use kata_support::{
    Options, Outcome, ScriptedReader, Step, TrickleReader, assert_cancel_safe,
    assert_cancel_safe_with, check_property, hidden_test,
};
use proptest::prelude::*;
use telemetry_frames::{Event, HEARTBEAT_EVERY, MAX_FRAME, TelemetryLink};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, timeout};

/// The message a panic carries, if it is text.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => text,
        (_, Some(text)) => text,
        _ => "a panic without a message",
    }
}

/// One frame on the wire: a 4-byte big-endian length, then the payload.
fn frame(payload: &str) -> Vec<u8> {
    let mut wire = (payload.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(payload.as_bytes());
    wire
}

/// What a link produced, with the heartbeats timed on the paused clock.
#[derive(Debug, Default)]
struct Received {
    frames: Vec<String>,
    heartbeats: Vec<Duration>,
}

/// Runs the collector's loop until the sensor closes the link.
async fn collect<R: AsyncRead + Unpin>(link: &mut TelemetryLink<R>) -> Result<Received, String> {
    let start = Instant::now();
    let mut got = Received::default();
    loop {
        match link.next_event().await {
            Ok(Some(Event::Frame(payload))) => {
                got.frames.push(String::from_utf8_lossy(&payload).into_owned())
            }
            Ok(Some(Event::Heartbeat)) => got.heartbeats.push(start.elapsed()),
            Ok(None) => return Ok(got),
            Err(e) => {
                return Err(format!(
                    "`next_event` failed with \"{e}\" after the frames {:?}",
                    got.frames
                ));
            }
        }
    }
}

const DESYNC: &str = "Part of a frame was read by a future that was then dropped, so those bytes \
                      were lost and the decoder lost its place in the stream.";

/// Says how the frames delivered differ from those on the wire: missing at the end (held back
/// until the link ended), or garbled (the decoder lost its place).
fn frames_differ(got: &[String], sent: &[&str]) -> String {
    if got.len() <= sent.len() && got.iter().zip(sent).all(|(got, sent)| got == sent) {
        format!(
            "the link delivered {got:?} and then reported the end, although every byte of the \
             frames {:?} had arrived before it: a frame whose bytes are all in must come out \
             before the end is reported",
            &sent[got.len()..]
        )
    } else {
        format!("the frames delivered were {got:?}, expected {sent:?}. {DESYNC}")
    }
}

/// A sensor with a backlog (or a bridge replaying one): every read finds the next frames ready,
/// `reading=0`, `reading=1`, .., `per_read` whole frames per read (or as much of them as fits),
/// for ever. With `per_read` in the hundreds, one read brings a whole TCP segment of frames.
/// It may send one big frame first (a firmware log, say), which makes a read buffer that grows
/// to fit a frame big from then on.
struct FloodingSensor {
    per_read: usize,
    next: u64,
    unread: Vec<u8>,
}

impl FloodingSensor {
    fn new(per_read: usize) -> Self {
        FloodingSensor { per_read, next: 0, unread: Vec::new() }
    }

    /// A frame of `big` bytes (`x`s), then the flood.
    fn after_a_big_frame(per_read: usize, big: usize) -> Self {
        let unread = frame(&"x".repeat(big));
        FloodingSensor { per_read, next: 0, unread }
    }
}

impl AsyncRead for FloodingSensor {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.unread.is_empty() {
            for _ in 0..self.per_read {
                let next = frame(&format!("reading={}", self.next));
                self.unread.extend(next);
                self.next += 1;
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.drain(..n);
        Poll::Ready(Ok(()))
    }
}

/// How late a heartbeat may be reported while the collector is busy, after it fell due.
const BEAT_LATENESS: Duration = Duration::from_millis(250);

/// An error of a transport's own (a TLS layer's alert), carried inside an `io::Error`.
#[derive(Debug, PartialEq, Eq)]
struct TlsAlert(u8);

impl std::fmt::Display for TlsAlert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS alert {}", self.0)
    }
}

impl std::error::Error for TlsAlert {}

/// What the collector may look at in a read error: its kind, its OS error code, its text, and
/// the transport's own error inside it (as `TlsAlert`, if it is one).
fn error_parts(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|inner| inner.downcast_ref::<TlsAlert>());
    format!(
        "kind {:?}, OS error code {:?}, text {:?}, inner TLS error {inner:?}",
        e.kind(),
        e.raw_os_error(),
        e.to_string()
    )
}

/// A sensor that streams `frames` frames of [`LONG_PAYLOAD`] bytes each (the payload of frame `i`
/// starts with `i` as 8 big-endian bytes, then `x`s), in reads that each end two bytes into the
/// next frame's length prefix, so that no read ends on a frame boundary. The bytes are made as
/// they are read: a stream of any length costs no memory of the test's.
/// The payload of [`LongStream`]'s frames: one byte short of `MAX_FRAME`, so that a frame with its
/// prefix (65 539 bytes, odd) never divides a buffer of a power of two or of whole largest frames:
/// a read cut short by the end of such a buffer never happens to end on a frame boundary.
const LONG_PAYLOAD: usize = MAX_FRAME - 1;

struct LongStream {
    frames: u64,
    offset: u64,
    frame: Vec<u8>,
    current: u64,
}

impl LongStream {
    fn new(frames: u64) -> Self {
        let mut frame = (LONG_PAYLOAD as u32).to_be_bytes().to_vec();
        frame.resize(4 + LONG_PAYLOAD, b'x');
        frame[4..12].copy_from_slice(&0u64.to_be_bytes());
        LongStream { frames, offset: 0, frame, current: 0 }
    }
}

impl AsyncRead for LongStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let len = (4 + LONG_PAYLOAD) as u64;
        let end = this.frames * len;
        // The read ends two bytes into the next length prefix (or at the end of the stream).
        let boundary = ((this.offset + len - 2) / len * len + 2).min(end);
        let boundary = if boundary <= this.offset { (boundary + len).min(end) } else { boundary };
        let mut room = buf.remaining() as u64;
        while room > 0 && this.offset < boundary {
            let index = this.offset / len;
            if index != this.current {
                this.current = index;
                this.frame[4..12].copy_from_slice(&index.to_be_bytes());
            }
            let within = (this.offset % len) as usize;
            let n = (len - within as u64).min(boundary - this.offset).min(room) as usize;
            buf.put_slice(&this.frame[within..within + n]);
            this.offset += n as u64;
            room -= n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

/// How many links [`links_alive_at_once_keep_their_own_half_frames`] keeps alive at once.
const LINKS_AT_ONCE: usize = 2048;

/// How many bytes of its frame a [`SlowRadio`] holds back until `rest_at`.
const HELD_BACK: usize = 100;

/// A slow radio: it sends a frame of exactly `MAX_FRAME` bytes (its payload starts with the
/// link's number as 8 big-endian bytes, then `x`s) but the last [`HELD_BACK`] bytes, as fast as it
/// is read; then nothing until `rest_at`; then the rest, and the end of the stream. The bytes are
/// made as they are read.
struct SlowRadio {
    number: u64,
    sent: usize,
    rest_at: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for SlowRadio {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        const XS: [u8; 1024] = [b'x'; 1024];
        let this = &mut *self;
        let whole = 4 + MAX_FRAME;
        let held = whole - HELD_BACK;
        if this.sent == held && this.rest_at.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let end = if this.sent < held { held } else { whole };
        let mut head = (MAX_FRAME as u32).to_be_bytes().to_vec();
        head.extend(this.number.to_be_bytes());
        while buf.remaining() > 0 && this.sent < end {
            let n = if this.sent < head.len() {
                let n = buf.remaining().min(head.len() - this.sent);
                buf.put_slice(&head[this.sent..this.sent + n]);
                n
            } else {
                let n = buf.remaining().min(XS.len()).min(end - this.sent);
                buf.put_slice(&XS[..n]);
                n
            };
            this.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// A sensor link hit by a signal storm: it delivers `head`, then fails every read with the same
/// `Interrupted` error until `storm` reads have failed, then delivers `tail` and ends. The storm
/// lasts until the link gives up, whatever number of retries it allows itself: `storm` only stops
/// a link that never gives up, far past any cap a link could choose. `failed` counts the reads
/// that failed.
struct StormReader {
    head: Vec<u8>,
    storm: u64,
    failed: Arc<std::sync::atomic::AtomicU64>,
    tail: Vec<u8>,
}

/// The text of [`StormReader`]'s `Interrupted` error.
const STORM_TEXT: &str = "read interrupted by a signal (signal storm)";

impl AsyncRead for StormReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        use std::sync::atomic::Ordering;
        let this = &mut *self;
        if this.head.is_empty() && this.failed.load(Ordering::Relaxed) < this.storm {
            this.failed.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                STORM_TEXT,
            )));
        }
        let unread = if this.head.is_empty() { &mut this.tail } else { &mut this.head };
        let n = unread.len().min(buf.remaining());
        buf.put_slice(&unread[..n]);
        unread.drain(..n);
        Poll::Ready(Ok(()))
    }
}

hidden_test! {
    /// The collector reads each sensor link in a task of its own (`tokio::spawn`) on a
    /// multi-thread runtime, so over a reader that is `Send`, `next_event`'s future must stay
    /// `Send`, as the original is.
    async fn next_event_can_run_in_a_spawned_link_task() {
        let mut link = TelemetryLink::new(TrickleReader::new([frame("temp=21.5")]));
        let next = link.next_event();
        assert!(
            kata_support::is_send!(next),
            "the future returned by `next_event` (over a reader that is `Send`) is not `Send`, so \
             the collector can no longer `tokio::spawn` a task per sensor link on its \
             multi-thread runtime: it holds something that is not `Send` across an `.await` (an \
             `Rc`, a `RefCell` borrow, a drop guard holding a `Box<dyn FnOnce()>` without \
             `+ Send`, a `std` lock guard)"
        );
        let event = next.await.unwrap_or_else(|e| panic!("a healthy link failed: {e}"));
        match event {
            Some(Event::Frame(payload)) => assert_eq!(&payload[..], b"temp=21.5"),
            other => panic!("expected the frame `temp=21.5`, got {other:?}"),
        }
    }

    /// Nothing cancelled: whole frames arriving back to back are decoded in order.
    async fn decodes_frames_that_arrive_whole() {
        let mut link = TelemetryLink::new(TrickleReader::new([
            frame("temp=21.5"),
            frame("hum=40"),
            frame(""),
            frame("soil=0.31"),
        ]));
        let got = collect(&mut link).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.frames, ["temp=21.5", "hum=40", "", "soil=0.31"]);
    }

    /// The bridge resets the connection at any byte of the stream (between frames, in a length
    /// prefix, in a payload), or the read fails with another kind of error (`UnexpectedEof`
    /// included): the frames that arrived whole come out, and then the read error as the reader
    /// reported it (the same kind), not `Ok(None)`. The sensor did not close the link: it failed,
    /// perhaps half way through a frame, and a collector told "closed" would count that frame as
    /// never sent. Nor did the sensor send garbage: the collector reconnects on a transport error
    /// and quarantines a sensor whose stream is corrupt (`InvalidData`), so it goes by the kind.
    async fn a_connection_reset_is_an_error_not_the_end() {
        let sent = ["temp=21.5", "hum=40", "soil=0.31"];
        let wire: Vec<u8> = sent.iter().flat_map(|payload| frame(payload)).collect();
        // Whatever its kind: a TLS layer reports a peer gone without `close_notify` as
        // `UnexpectedEof`, and that is a failed link too, not a sensor closing it.
        // `TimedOut` and `WouldBlock` too: a bridge socket that gives up on a silent radio reports
        // one of them once and then reads as the end of the stream, so retrying such a read
        // takes that end for the sensor closing the link. Only `Interrupted` may be retried.
        let kinds = [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::WouldBlock,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::Other,
        ];
        for (cut, kind) in (0..=wire.len()).flat_map(|cut| kinds.map(|kind| (cut, kind))) {
            let mut bridge = tokio_test::io::Builder::new();
            // The bytes before the reset, in two reads, then the reset, then (as a reset socket
            // does) the end of the stream.
            let (first, second) = wire[..cut].split_at(cut / 2);
            for part in [first, second] {
                if !part.is_empty() {
                    bridge.read(part);
                }
            }
            let mock = kata_support::FailsAtTheEnd::new(
                bridge.build(),
                std::io::Error::new(kind, "the link to the bridge failed"),
            );
            let mut link = TelemetryLink::new(mock);
            let whole = sent.iter().scan(0, |end, p| {
                *end += 4 + p.len();
                Some(*end)
            });
            let expected: Vec<&str> =
                sent.iter().zip(whole).filter(|(_, end)| *end <= cut).map(|(p, _)| *p).collect();
            let mut frames = Vec::new();
            let mut heartbeats = 0;
            let outcome = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(payload))) => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    Ok(Some(Event::Heartbeat)) if heartbeats == 3 => {
                        break "only heartbeats for 3 s, as if waiting for more".to_string();
                    }
                    Ok(Some(Event::Heartbeat)) => heartbeats += 1,
                    Ok(None) => break "`Ok(None)`, the sensor closing the link".to_string(),
                    Err(e) => break format!("an error of kind {:?} ({e})", e.kind()),
                }
                assert!(frames.len() <= sent.len(), "the link delivered frames {frames:?}");
            };
            assert!(
                frames == expected && outcome.starts_with("an error"),
                "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                 the read failed with an error of kind {kind:?}: the link delivered {frames:?}, \
                 then {outcome}; expected {expected:?}, then the read error. A link that fails \
                 has not been closed, whatever the error's kind",
                wire.len()
            );
            assert!(
                outcome.starts_with(&format!("an error of kind {kind:?} ")),
                "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                 the read failed with an error of kind {kind:?}: the link delivered {frames:?}, \
                 then {outcome}; expected the read error as the reader reported it, of kind \
                 {kind:?}. The collector tells a failed transport (reconnect) from a corrupt \
                 stream (`InvalidData`, quarantine the sensor) by the kind: a read error comes \
                 out with its own kind, not re-wrapped as another",
                wire.len()
            );
        }
    }

    /// A read error comes out as the reader reported it, not only of the same kind: with its OS
    /// error code (ECONNRESET, ETIMEDOUT, EPIPE, as a socket reports them), its text, and the
    /// transport's own error inside it (a TLS alert), after the frames that arrived whole,
    /// whether it came between two frames or in the middle of one. The collector logs the code
    /// and matches on it.
    async fn a_read_error_comes_out_as_the_reader_reported_it() {
        use std::io::{Error, ErrorKind};
        let errors: [fn() -> Error; 6] = [
            || Error::from_raw_os_error(104),
            || Error::from_raw_os_error(110),
            || Error::from_raw_os_error(32),
            || Error::new(ErrorKind::ConnectionAborted, TlsAlert(40)),
            || Error::other(TlsAlert(80)),
            || Error::new(ErrorKind::UnexpectedEof, "peer closed without close_notify"),
        ];
        let sent = ["temp=21.5", "hum=40", "soil=0.31"];
        let wire: Vec<u8> = sent.iter().flat_map(|payload| frame(payload)).collect();
        let two = frame(sent[0]).len() + frame(sent[1]).len();
        for (cut, error) in [two, two + 6].into_iter().flat_map(|cut| errors.map(|e| (cut, e))) {
            let reported = error_parts(&error());
            let mock = kata_support::FailsAtTheEnd::new(
                tokio_test::io::Builder::new().read(&wire[..cut]).build(),
                error(),
            );
            let mut link = TelemetryLink::new(mock);
            let mut frames = Vec::new();
            let outcome = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(payload))) if frames.len() < sent.len() => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    Ok(Some(Event::Frame(_))) => break "one frame too many".to_string(),
                    Ok(Some(Event::Heartbeat)) => break "a heartbeat, as if waiting for more".to_string(),
                    Ok(None) => break "`Ok(None)`, the sensor closing the link".to_string(),
                    Err(e) => break format!("an error of {}", error_parts(&e)),
                }
            };
            assert!(
                frames == sent[..2] && outcome == format!("an error of {reported}"),
                "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then the \
                 read failed with an error of {reported}: the link delivered {frames:?}, then \
                 {outcome}; expected {:?}, then that error as the reader reported it (its kind, \
                 its OS error code, its text and the error inside it: the collector logs and \
                 matches on them), not rebuilt from its kind or wrapped in another",
                wire.len(),
                &sent[..2]
            );
        }
    }

    /// A read fails with `Interrupted` at any byte of the stream (between frames, in a length
    /// prefix, in a payload), once or in a run of 2 to 1 000 in a row (a signal storm), right away
    /// or after a pause longer than a heartbeat, and then the rest of the stream arrives. By std's convention that kind means
    /// "try again": the link may retry the read itself, and then every frame comes out intact,
    /// then the end, or it may return the error (the frames that arrived whole, then
    /// `Interrupted`), which ends the link. Never the end of the stream with frames missing, an
    /// error of another kind, or a frame pieced together from what was read before and after.
    /// Either way it happens the moment the rest of the stream is in (a retried read does not
    /// wait for a heartbeat to wake the link), and the heartbeats keep their schedule: a failed
    /// read is not reported as one.
    async fn an_interrupted_read_is_retried_or_returned() {
        let sent = ["temp=21.5", "hum=40", "soil=0.31"];
        let wire: Vec<u8> = sent.iter().flat_map(|payload| frame(payload)).collect();
        let kind = std::io::ErrorKind::Interrupted;
        for cut in 0..=wire.len() {
            let runs = [(1, false), (2, false), (3, false), (4, false), (64, false), (1_000, false)];
            for (times, paused) in runs.into_iter().chain([(1, true), (3, true)]) {
                let mut script = Vec::new();
                let (first, second) = wire[..cut].split_at(cut / 2);
                for part in [first, second] {
                    if !part.is_empty() {
                        script.push(Step::Bytes(part.to_vec()));
                    }
                }
                if paused {
                    script.push(Step::Pause(HEARTBEAT_EVERY + HEARTBEAT_EVERY / 2));
                }
                script.extend((0..times).map(|_| Step::Fails(kind)));
                if cut < wire.len() {
                    script.push(Step::Bytes(wire[cut..].to_vec()));
                }
                // When the last byte of the script has arrived: the link has all it needs then.
                let script_ends = if paused { HEARTBEAT_EVERY + HEARTBEAT_EVERY / 2 } else { Duration::ZERO };
                let start = Instant::now();
                let mut link = TelemetryLink::new(ScriptedReader::new(script));
                let whole = sent.iter().scan(0, |end, p| {
                    *end += 4 + p.len();
                    Some(*end)
                });
                let before: Vec<&str> = sent
                    .iter()
                    .zip(whole)
                    .filter(|(_, end)| *end <= cut)
                    .map(|(p, _)| *p)
                    .collect();
                let mut frames = Vec::new();
                let mut heartbeats = Vec::new();
                let outcome = loop {
                    match link.next_event().await {
                        Ok(Some(Event::Frame(payload))) => {
                            frames.push(String::from_utf8_lossy(&payload).into_owned())
                        }
                        Ok(Some(Event::Heartbeat)) if heartbeats.len() == 4 => {
                            break Err("only heartbeats for 4 s, as if waiting for more".to_string());
                        }
                        Ok(Some(Event::Heartbeat)) => heartbeats.push(start.elapsed()),
                        Ok(None) => break Ok(None),
                        Err(e) if e.kind() == kind => break Ok(Some(e)),
                        Err(e) => break Err(format!("an error of kind {:?} ({e})", e.kind())),
                    }
                    if frames.len() > sent.len() {
                        break Err("more frames than were sent".to_string());
                    }
                };
                let ok = match &outcome {
                    // Retried: every frame, then the end.
                    Ok(None) => frames == sent,
                    // Returned: the frames that arrived whole before the failed read, then it.
                    Ok(Some(_)) => frames == before,
                    Err(_) => false,
                };
                let seen = match &outcome {
                    Ok(None) => "`Ok(None)`, the sensor closing the link".to_string(),
                    Ok(Some(e)) => format!("the `Interrupted` error ({e})"),
                    Err(seen) => seen.clone(),
                };
                let pause = if paused { " after a pause of 1.5 s" } else { "" };
                assert!(
                    ok,
                    "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                     {times} read(s) failed with `Interrupted`{pause}, then the rest of the stream \
                     arrived: the link delivered {frames:?}, then {seen}; expected either every \
                     frame, {sent:?}, then the end (a link that retries `Interrupted` carries on \
                     with the frame where the failed read stopped, and never ends on it), or \
                     {before:?}, then the `Interrupted` error (a link that returns it ends)",
                    wire.len()
                );
                // The heartbeat timer is the only source of heartbeats: the n-th is due n periods
                // after `new`, and a failed read is no beat.
                let early = heartbeats.iter().zip(1u32..).find(|&(&at, n)| at < HEARTBEAT_EVERY * n);
                assert!(
                    early.is_none(),
                    "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                     {times} read(s) failed with `Interrupted`{pause}, then the rest of the stream \
                     arrived: the link reported heartbeats at {heartbeats:?}, expected one a period \
                     ({HEARTBEAT_EVERY:?}) after the link was created, then one per period, never \
                     sooner. A failed read is not a heartbeat: retry it or return the error",
                    wire.len()
                );
                // Everything the link needed had arrived when the script ended: the frames, then the
                // end or the error, come then, not when something else (a heartbeat) wakes the link.
                let ended = start.elapsed();
                assert!(
                    ended == script_ends,
                    "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                     {times} read(s) failed with `Interrupted`{pause}, then the rest of the stream \
                     arrived at once, at {script_ends:?}: the link delivered {frames:?}, then {seen}, \
                     but only at {ended:?} (heartbeats at {heartbeats:?}). A link that retries \
                     `Interrupted` carries on with the frame as soon as the read can be retried, not \
                     at the next heartbeat or later",
                    wire.len()
                );
            }
        }
    }

    /// A storm of `Interrupted` in the middle of a frame that lasts until the link gives up (2^20
    /// reads in a row at most, then the rest of the stream). A link may retry `Interrupted` for
    /// as long as the storm lasts, and then every frame comes out, then the end; or it may return
    /// the error, then or after any number of retries, and then it is the very error the reader
    /// reported, after the frames that arrived whole. Whatever cap a link sets itself on retries,
    /// when it gives up it reports neither another error nor the end of the stream.
    /// One runtime (one `select!` seed), not one per seed: a link that retries the whole storm
    /// makes 2^20 reads, which is cheap once and too dear eight times.
    fn a_storm_of_interrupted_reads_of_any_length_is_retried_or_returned() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            const STORM: u64 = 1 << 20;
            use std::sync::atomic::{AtomicU64, Ordering};
            let sent = ["temp=21.5", "hum=40", "soil=0.31"];
            let wire: Vec<u8> = sent.iter().flat_map(|payload| frame(payload)).collect();
            let cut = wire.len() - 4;
            let failed = Arc::new(AtomicU64::new(0));
            let reader = StormReader {
                head: wire[..cut].to_vec(),
                storm: STORM,
                failed: failed.clone(),
                tail: wire[cut..].to_vec(),
            };
            let mut link = TelemetryLink::new(reader);
            let mut frames = Vec::new();
            let outcome = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(payload))) => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned());
                        if frames.len() > sent.len() {
                            break Err("more frames than were sent".to_string());
                        }
                    }
                    Ok(Some(Event::Heartbeat)) => {
                        break Err("a heartbeat, as if the link waited for the clock".to_string());
                    }
                    Ok(None) => break Ok(None),
                    Err(e) => break Ok(Some(e)),
                }
            };
            let failed = failed.load(Ordering::Relaxed);
            let ok = match &outcome {
                Ok(None) => frames == sent,
                Ok(Some(e)) => {
                    e.kind() == std::io::ErrorKind::Interrupted
                        && e.to_string() == STORM_TEXT
                        && frames == sent[..2]
                }
                Err(_) => false,
            };
            let seen = match &outcome {
                Ok(None) => "`Ok(None)`, the sensor closing the link".to_string(),
                Ok(Some(e)) => format!("an error of {}", error_parts(e)),
                Err(seen) => seen.clone(),
            };
            let storm = if failed < STORM {
                format!("{failed} read(s) in a row failed with `Interrupted` (the storm lasting until the link gave up)")
            } else {
                format!("{failed} reads in a row failed with `Interrupted`, then the rest of the stream arrived")
            };
            assert!(
                ok,
                "the bridge sent the first {cut} of the {} bytes of the frames {sent:?}, then \
                 {storm}: the link delivered {frames:?}, then {seen}; expected either every frame, \
                 then the end (a link that retries `Interrupted` for as long as it lasts), or {:?}, \
                 then the `Interrupted` error as the reader reported it (text {STORM_TEXT:?}), \
                 whenever the link gives up on retrying: never another error, nor the end of the \
                 stream",
                wire.len(),
                &sent[..2]
            );
        });
    }

    /// The same far past any buffer a link could set aside and fill without making room again:
    /// 4 096 frames of [`LONG_PAYLOAD`] bytes, 256 MiB in all, in reads that never end on a frame
    /// boundary. Every frame comes out, in order, then the end. (On one seed's runtime: 256 MiB
    /// is cheap once, dear eight times.)
    fn a_stream_of_256_mib_read_across_frame_boundaries_comes_out_whole() {
        const FRAMES: u64 = 4_096;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let mut link = TelemetryLink::new(LongStream::new(FRAMES));
            let mut frames = 0u64;
            let ended = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(got)))
                        if frames < FRAMES
                            && got.len() == LONG_PAYLOAD
                            && got[..8] == frames.to_be_bytes()
                            && got[8..16] == *b"xxxxxxxx"
                            && got[LONG_PAYLOAD - 1] == b'x' =>
                    {
                        frames += 1
                    }
                    Ok(Some(Event::Frame(got))) => {
                        break format!(
                            "then a frame of {} bytes starting {:?}, not frame {frames} of \
                             {LONG_PAYLOAD} bytes starting {:?}. {DESYNC}",
                            got.len(),
                            &got[..got.len().min(16)],
                            frames.to_be_bytes()
                        );
                    }
                    Ok(Some(Event::Heartbeat)) => {}
                    Ok(None) if frames == FRAMES => return,
                    Ok(None) => {
                        break format!(
                            "then reported the end (`Ok(None)`), although {} more frames were \
                             still to come. Only the end of the stream ends the link: a read that \
                             returns 0 bytes because the link's own buffer has no room left is \
                             not the sensor closing it, however much has gone through it",
                            FRAMES - frames
                        );
                    }
                    Err(e) => break format!("then failed with \"{e}\" ({:?})", e.kind()),
                }
            };
            panic!(
                "the sensor sent {FRAMES} frames of {LONG_PAYLOAD} bytes (256 MiB in all) in reads \
                 that each ended two bytes into the next frame's length prefix, then closed the \
                 link; the link delivered the first {frames} frames intact, {ended}"
            );
        });
    }

    /// A collector holds thousands of links, and on slow radios many of them hold most of a big
    /// frame at once: [`LINKS_AT_ONCE`] links each receive all but the last [`HELD_BACK`] bytes of
    /// a legal frame of `MAX_FRAME` bytes (128 MiB between them), then the rest. No link fails or
    /// delivers anything before its rest comes, and each then delivers its frame intact: a link's
    /// buffer and limit are its own, and what other links hold never fails it nor holds it back,
    /// so a memory budget shared by the links of the process (a `static`) of any size below what
    /// they hold in all fails. (On one seed's runtime, as above. A `static` starts afresh: each
    /// hidden test runs in a process of its own.)
    fn links_alive_at_once_keep_their_own_half_frames() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let start = Instant::now();
            // Each link is polled for 1 ms; the rest of every frame comes once all have been.
            let rest_at = start + Duration::from_millis(LINKS_AT_ONCE as u64 + 100);
            let story = format!(
                "{LINKS_AT_ONCE} links were alive at once, each of a slow radio that sent all but \
                 the last {HELD_BACK} bytes of a legal frame of exactly {MAX_FRAME} bytes ({} MiB \
                 held by the links in all)",
                LINKS_AT_ONCE * (4 + MAX_FRAME - HELD_BACK) >> 20
            );
            // The `x`s of a payload, to compare with at memory speed.
            let xs = vec![b'x'; MAX_FRAME - 8];
            let mut links = Vec::with_capacity(LINKS_AT_ONCE);
            for number in 0..LINKS_AT_ONCE as u64 {
                let rest_at = Box::pin(tokio::time::sleep_until(rest_at));
                let mut link = TelemetryLink::new(SlowRadio { number, sent: 0, rest_at });
                let got = timeout(Duration::from_millis(1), link.next_event()).await;
                if let Ok(got) = got {
                    panic!(
                        "{story}: link {number}, polled as soon as its bytes were in, returned \
                         {got:?}, expected nothing yet (the rest of its frame had not come, and no \
                         heartbeat was due). A link's buffer and limit are its own: what other \
                         links hold never fails it nor holds it back"
                    );
                }
                links.push(link);
            }
            tokio::time::sleep_until(rest_at).await;
            for (number, link) in (0u64..).zip(&mut links) {
                let mut heartbeats = 0;
                let got = loop {
                    match link.next_event().await {
                        Ok(Some(Event::Heartbeat)) if heartbeats < 8 => heartbeats += 1,
                        other => break other,
                    }
                };
                let whole = match &got {
                    Ok(Some(Event::Frame(payload))) => {
                        payload.len() == MAX_FRAME
                            && payload[..8] == number.to_be_bytes()
                            && payload[8..] == xs[..]
                    }
                    _ => false,
                };
                if !whole {
                    let got = match got {
                        Ok(Some(Event::Frame(payload))) => format!(
                            "a frame of {} bytes starting {:?}",
                            payload.len(),
                            &payload[..payload.len().min(16)]
                        ),
                        Ok(Some(Event::Heartbeat)) => "only heartbeats".to_owned(),
                        other => format!("{other:?}"),
                    };
                    panic!(
                        "{story}, then the rest of every frame: link {number} then delivered \
                         {got}, expected its frame of {MAX_FRAME} bytes, starting with its number \
                         {:?}. A link's buffer and limit are its own: what other links hold never \
                         fails it nor holds it back",
                        number.to_be_bytes()
                    );
                }
            }
        });
    }

    /// A long stream (1 MiB, sixteen times `MAX_FRAME`) whose reads never end on a frame
    /// boundary: each read ends two bytes into the next frame's length prefix, so the link never
    /// holds only whole frames between reads. Every frame comes out, in order, and the link
    /// reports the end only when the stream ends: however much has gone through it, a link has
    /// room for the next frame.
    async fn a_long_stream_read_across_frame_boundaries_comes_out_whole() {
        const FRAMES: usize = 1024;
        const PAYLOAD: usize = 1_020;
        let payload = |i: usize| -> Vec<u8> {
            let tag = format!("reading={i:06};");
            tag.bytes().chain((tag.len()..PAYLOAD).map(|b| b'a' + (b % 26) as u8)).collect()
        };
        let mut wire = Vec::with_capacity(FRAMES * (4 + PAYLOAD));
        for i in 0..FRAMES {
            wire.extend_from_slice(&(PAYLOAD as u32).to_be_bytes());
            wire.extend(payload(i));
        }
        let frame_len = 4 + PAYLOAD;
        let mut bounds: Vec<usize> = (1..FRAMES).map(|i| i * frame_len + 2).collect();
        bounds.insert(0, 0);
        bounds.push(wire.len());
        let chunks = bounds.windows(2).map(|pair| wire[pair[0]..pair[1]].to_vec());
        let mut link = TelemetryLink::new(TrickleReader::new(chunks));
        let mut frames = 0;
        let ended = loop {
            match link.next_event().await {
                Ok(Some(Event::Frame(got))) if frames < FRAMES && got[..] == payload(frames)[..] => {
                    frames += 1
                }
                Ok(Some(Event::Frame(got))) => {
                    break format!(
                        "then a frame of {} bytes starting {:?}, not the frame {} sent next. \
                         {DESYNC}",
                        got.len(),
                        String::from_utf8_lossy(&got[..got.len().min(16)]),
                        if frames < FRAMES { format!("{:?}", format!("reading={frames:06};")) }
                        else { "(none: every frame had come out)".to_string() }
                    );
                }
                Ok(Some(Event::Heartbeat)) => {}
                Ok(None) if frames == FRAMES => return,
                Ok(None) => {
                    break format!(
                        "then reported the end (`Ok(None)`), although {} more frames ({} bytes) \
                         were still to come. Only the end of the stream ends the link: a read \
                         that returns 0 bytes because the link's own buffer has no room left \
                         is not the sensor closing it",
                        FRAMES - frames,
                        (FRAMES - frames) * frame_len
                    );
                }
                Err(e) => break format!("then failed with \"{e}\" ({:?})", e.kind()),
            }
        };
        panic!(
            "the sensor sent {FRAMES} frames of {PAYLOAD} bytes ({} bytes in all) in reads that \
             each ended two bytes into the next frame's length prefix, then closed the link; the \
             link delivered the first {frames} frames intact, {ended}",
            wire.len()
        );
    }

    /// A quiet sensor: a heartbeat every second in between frames.
    async fn heartbeats_while_the_sensor_is_quiet() {
        let wire = tokio_test::io::Builder::new()
            .read(&frame("temp=21.5"))
            .wait(Duration::from_millis(3_500))
            .read(&frame("temp=21.7"))
            .build();
        let mut link = TelemetryLink::new(wire);
        let got = collect(&mut link).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.frames, ["temp=21.5", "temp=21.7"]);
        assert_eq!(
            got.heartbeats,
            [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3)],
            "while the sensor was silent for 3.5 s, the link should report a heartbeat every \
             second (at 1 s, 2 s and 3 s)"
        );
    }

    /// A sensor that sends a frame every 0.9 s: the frames do not move the heartbeat, which keeps
    /// its own schedule (1 s, 2 s, 3 s) with the frames in between.
    async fn heartbeats_keep_their_schedule_while_frames_arrive() {
        let readings = ["temp=21.5", "temp=21.6", "temp=21.7"];
        let mut wire = tokio_test::io::Builder::new();
        for reading in readings {
            wire.wait(Duration::from_millis(900)).read(&frame(reading));
        }
        // The sensor closes the link at 3.2 s.
        wire.wait(Duration::from_millis(500));
        let mut link = TelemetryLink::new(wire.build());
        let got = collect(&mut link).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.frames, readings, "frames arriving whole, 0.9 s apart, came out differently");
        let expected: Vec<Duration> = (1..=3).map(|i| HEARTBEAT_EVERY * i).collect();
        assert_eq!(
            got.heartbeats, expected,
            "the sensor sent a frame at 0.9 s, 1.8 s and 2.7 s and closed the link at 3.2 s, and \
             the collector called `next_event` again as soon as each call returned; the \
             heartbeats keep their own schedule, so the link should report them at 1 s, 2 s and \
             3 s, in between the frames, but reported {}. The next heartbeat is due one period \
             after the last one was due, whatever happens in between: neither a frame arriving \
             nor a call that returns (or is dropped) may push it later",
            if got.heartbeats.is_empty() {
                "none at all".to_string()
            } else {
                format!("them at {:?}", got.heartbeats)
            }
        );
    }

    /// Heartbeats that fire in the middle of a length prefix and in the middle of a payload.
    async fn frames_survive_a_heartbeat_in_the_middle() {
        let first = frame("temp=21.5");
        let wire = tokio_test::io::Builder::new()
            // Half of the length prefix, then a pause longer than a heartbeat period.
            .read(&first[..2])
            .wait(Duration::from_millis(1_500))
            // The rest of the prefix and half of the payload, then another pause.
            .read(&first[2..8])
            .wait(Duration::from_millis(1_200))
            .read(&first[8..])
            .read(&frame("hum=40"))
            .build();
        let mut link = TelemetryLink::new(wire);
        let got = collect(&mut link).await.unwrap_or_else(|e| {
            panic!(
                "the first frame arrived in three parts, with a heartbeat at 1 s (during the \
                 length prefix) and at 2 s (during the payload); then {e}. {DESYNC}"
            )
        });
        let sent = ["temp=21.5", "hum=40"];
        if got.frames != sent {
            panic!(
                "heartbeats fired in the middle of the length prefix and of the payload; {}",
                frames_differ(&got.frames, &sent)
            );
        }
        assert_eq!(
            got.heartbeats,
            [Duration::from_secs(1), Duration::from_secs(2)],
            "the link must keep reporting heartbeats while a slow frame trickles in"
        );
    }

    /// Cancel `next_event` at every point of a collector loop; resuming must yield every frame.
    async fn next_event_is_cancel_safe_at_every_byte_boundary() {
        let payloads = ["temp=21.5", "hum=40", "soil=0.31"];
        let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        // Three bytes per read: every length prefix and payload is split somewhere.
        let chunks: Vec<Vec<u8>> = wire.chunks(3).map(<[u8]>::to_vec).collect();
        type Shared = (
            Arc<tokio::sync::Mutex<TelemetryLink<TrickleReader>>>,
            Arc<std::sync::Mutex<Vec<String>>>,
        );
        assert_cancel_safe(
            || -> Shared {
                let link = TelemetryLink::new(TrickleReader::new(chunks.clone()));
                (Arc::new(tokio::sync::Mutex::new(link)), Arc::default())
            },
            // The collector's loop: hand each frame on as soon as it is decoded.
            |(link, delivered): Shared| async move {
                let mut link = link.lock().await;
                while let Some(event) = link.next_event().await? {
                    if let Event::Frame(payload) = event {
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        delivered.lock().unwrap().push(text);
                    }
                }
                Ok::<(), std::io::Error>(())
            },
            // After the cut, a fresh loop on the same link must deliver the rest, intact.
            |(link, delivered): Shared, outcome| async move {
                let mut frames = delivered.lock().unwrap().clone();
                let how = if matches!(outcome, Outcome::Cancelled { .. }) {
                    "the loop was cancelled, then resumed on the same link"
                } else {
                    "the loop ran to the end without being cut"
                };
                if let Outcome::Completed(Err(e)) = outcome {
                    return Err(format!(
                        "the wire held the frames {payloads:?} in 3-byte reads, the loop delivered {frames:?}, then `next_event` failed with \
                         \"{e}\". A frame must take exactly the bytes its length prefix names, \
                         no fewer and no more: the bytes after it belong to the next frame"
                    ));
                }
                let mut link = link.lock().await;
                let rest = collect(&mut link).await.map_err(|e| {
                    format!(
                        "the loop was cancelled in the middle of a frame after delivering \
                         {frames:?}; resuming, {e}. {DESYNC}"
                    )
                })?;
                frames.extend(rest.frames);
                if frames == payloads {
                    Ok(())
                } else {
                    Err(format!("{how}; {}", frames_differ(&frames, &payloads)))
                }
            },
        )
        .await;
    }

    /// The collector's loop over a link whose every ready read spends a unit of the task's
    /// cooperative budget, as a socket's does, cut after every poll, and polled as on a busy
    /// task whose budget is spent or nearly spent: there every tokio resource answers "not ready",
    /// even one that would be ready, after any number of the poll's earlier steps. The frames come
    /// two to a read, some split across reads, with pauses between. Wherever a call was dropped,
    /// a fresh loop on the same link delivers the rest, every frame once, in order.
    async fn next_event_is_cancel_safe_on_a_busy_task() {
        let payloads = ["temp=21.5", "hum=40", "soil=0.31", "lux=812", "co2=415"];
        let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        // Reads of 23 bytes, 1 ms apart: two frames in some reads, a frame split in others.
        let script = || {
            wire.chunks(23).flat_map(|chunk| {
                [Step::Pause(Duration::from_millis(1)), Step::Bytes(chunk.to_vec())]
            })
        };
        type Shared = (
            Arc<tokio::sync::Mutex<TelemetryLink<ScriptedReader>>>,
            Arc<std::sync::Mutex<Vec<String>>>,
        );
        assert_cancel_safe(
            || -> Shared {
                let link = TelemetryLink::new(ScriptedReader::new(script()));
                (Arc::new(tokio::sync::Mutex::new(link)), Arc::default())
            },
            |(link, delivered): Shared| async move {
                let mut link = link.lock().await;
                while let Some(event) = link.next_event().await? {
                    if let Event::Frame(payload) = event {
                        let text = String::from_utf8_lossy(&payload).into_owned();
                        delivered.lock().unwrap().push(text);
                    }
                }
                Ok::<(), std::io::Error>(())
            },
            |(link, delivered): Shared, outcome| async move {
                let mut frames = delivered.lock().unwrap().clone();
                if let Outcome::Completed(Err(e)) = outcome {
                    return Err(format!(
                        "the loop delivered {frames:?}, then `next_event` failed with \"{e}\""
                    ));
                }
                let mut link = link.lock().await;
                let rest = collect(&mut link).await.map_err(|e| {
                    format!("the loop was cancelled after delivering {frames:?}; resuming, {e}")
                })?;
                frames.extend(rest.frames);
                // The frames sent but not delivered, if what was delivered is the rest in order.
                let mut kept = frames.iter().peekable();
                let mut missing = Vec::new();
                for &sent in &payloads {
                    match kept.peek() {
                        Some(got) if *got == sent => {
                            kept.next();
                        }
                        _ => missing.push(sent),
                    }
                }
                if frames == payloads {
                    Ok(())
                } else if kept.peek().is_none()
                    && !frames.iter().zip(payloads).all(|(got, sent)| got == sent)
                {
                    Err(format!(
                        "the loop was cancelled, then resumed on the same link: it delivered \
                         {frames:?}, so the frame(s) {missing:?} were lost with a dropped call \
                         (expected {payloads:?})"
                    ))
                } else {
                    Err(format!(
                        "the loop was cancelled, then resumed on the same link; {}",
                        frames_differ(&frames, &payloads)
                    ))
                }
            },
        )
        .await;
    }

    /// Whole frames arriving back to back, several in one read and split across reads anywhere:
    /// every frame comes out, in order, before the link reports the end. A decoder must use up
    /// what it has already buffered before it reads again.
    fn decodes_several_frames_per_read_in_any_chunking() {
        let payload = proptest::collection::vec(b'a'..=b'z', 0..12)
            .prop_map(|bytes| String::from_utf8(bytes).expect("ASCII"));
        let scenario = proptest::collection::vec(payload, 2..7).prop_flat_map(|payloads| {
            let len: usize = payloads.iter().map(|p| 4 + p.len()).sum();
            // Where the wire is cut into reads: often nowhere inside several frames at once.
            let cuts = proptest::collection::btree_set(1..len, 0..4);
            (Just(payloads), cuts)
        });
        check_property(64, scenario, |(payloads, cuts)| async move {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
            let mut bounds = vec![0];
            bounds.extend(cuts.iter().copied());
            bounds.push(wire.len());
            let chunks: Vec<Vec<u8>> =
                bounds.windows(2).map(|pair| wire[pair[0]..pair[1]].to_vec()).collect();
            let lengths: Vec<usize> = chunks.iter().map(Vec::len).collect();
            let mut link = TelemetryLink::new(TrickleReader::new(chunks));
            let mut frames = Vec::new();
            let ended = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(payload))) => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    Ok(Some(Event::Heartbeat)) => {}
                    Ok(None) => break "then reported the end".to_owned(),
                    Err(e) => break format!("then failed with \"{e}\""),
                }
            };
            if frames == payloads {
                return Ok(());
            }
            let advice = if payloads.starts_with(&frames) {
                "Frames already in the link's buffer must be decoded before it reads again or \
                 reports the end"
            } else {
                "A frame must take exactly the bytes its length prefix names, no fewer and no \
                 more: the bytes after it belong to the next frame"
            };
            Err(format!(
                "the frames {payloads:?} arrived back to back in reads of {lengths:?} bytes (one read \
                 may hold several frames); the link delivered {frames:?}, {ended}. \
                 {advice}"
            ))
        });
    }

    /// Frames of any legal size, small, medium and up to `MAX_FRAME`, one after another, in reads
    /// of any size: every frame comes out, in order, before the link reports the end. However far
    /// into its buffer the frames before it ended, a link has room for a frame of `MAX_FRAME`
    /// bytes next (a read into a full buffer returns 0 bytes, and that is not the sensor closing
    /// the link).
    fn a_frame_of_any_legal_size_comes_out_whatever_came_before_it() {
        let size = prop_oneof![0usize..64, 1_000..MAX_FRAME / 2, MAX_FRAME / 2..=MAX_FRAME];
        let read = prop_oneof![Just(usize::MAX), 1usize..=2 * MAX_FRAME];
        // The sizes the fixed cases put first: a medium frame, then one too big for the rest of a
        // buffer of `4 + MAX_FRAME` behind it.
        let fixed = prop_oneof![
            Just(vec![20_000, 50_000]),
            Just(vec![1, MAX_FRAME]),
            Just(vec![MAX_FRAME / 2 - 8, MAX_FRAME]),
        ];
        let sizes = prop_oneof![fixed, proptest::collection::vec(size, 2..5)];
        check_property(24, (sizes, read), |(sizes, read)| async move {
            let payload = |i: usize, len: usize| vec![b'a' + (i % 26) as u8; len];
            let mut wire = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                wire.extend_from_slice(&(len as u32).to_be_bytes());
                wire.extend(payload(i, len));
            }
            let chunks: Vec<Vec<u8>> = wire.chunks(read.min(wire.len())).map(<[u8]>::to_vec).collect();
            let mut link = TelemetryLink::new(TrickleReader::new(chunks));
            let mut got: Vec<usize> = Vec::new();
            let ended = loop {
                match link.next_event().await {
                    Ok(Some(Event::Frame(frame))) => {
                        let i = got.len();
                        if i >= sizes.len() || frame[..] != payload(i, sizes[i])[..] {
                            break format!(
                                "then a frame of {} bytes that is not the frame sent next. \
                                 {DESYNC}",
                                frame.len()
                            );
                        }
                        got.push(frame.len());
                    }
                    Ok(Some(Event::Heartbeat)) => {}
                    Ok(None) if got.len() == sizes.len() => return Ok(()),
                    Ok(None) => {
                        break "then reported the end (`Ok(None)`), although the frames after \
                               them had all arrived: a frame of up to MAX_FRAME bytes must \
                               come out whatever frames came before it"
                            .to_owned();
                    }
                    Err(e) => break format!("then failed with \"{e}\" ({:?})", e.kind()),
                }
            };
            let reads = if read >= wire.len() {
                "in one read".to_owned()
            } else {
                format!("in reads of {read} bytes")
            };
            Err(format!(
                "the sensor sent frames of {sizes:?} bytes (MAX_FRAME is {MAX_FRAME}) {reads}, \
                 then closed the link; the link delivered the frames of {got:?} bytes, {ended}"
            ))
        });
    }

    /// The README's limit: a frame of exactly `MAX_FRAME` bytes is delivered; a length prefix of
    /// `MAX_FRAME + 1` is an `InvalidData` error.
    async fn keeps_the_max_frame_limit() {
        let biggest = "x".repeat(MAX_FRAME);
        let mut link = TelemetryLink::new(TrickleReader::new([frame(&biggest), frame("hum=40")]));
        match collect(&mut link).await {
            Ok(got) => assert!(
                got.frames.len() == 2 && got.frames[0].len() == MAX_FRAME,
                "a frame of exactly MAX_FRAME ({MAX_FRAME}) bytes and a small one should come \
                 out whole; frames of {:?} bytes came out",
                got.frames.iter().map(String::len).collect::<Vec<_>>()
            ),
            Err(seen) => panic!(
                "a frame of exactly MAX_FRAME ({MAX_FRAME}) bytes is within the limit, but {seen}"
            ),
        }

        let mut too_big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        too_big.extend_from_slice(b"garbage");
        let mut link = TelemetryLink::new(TrickleReader::new([too_big]));
        match link.next_event().await {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
            other => panic!(
                "a length prefix of MAX_FRAME + 1 ({}) bytes means a corrupt stream and must be \
                 an `InvalidData` error, but `next_event` returned {other:?}",
                MAX_FRAME + 1
            ),
        }
    }

    /// Every kind of corrupt length prefix, up to the largest a `u32` holds: just above the
    /// limit, a top bit set (negative as an `i32`), and all ones or within a few bytes of it
    /// (where the length plus the 4 bytes of the prefix no longer fits a `u32`). After a whole
    /// frame, on a link that stays open and silent: the frame, then an `InvalidData` error at
    /// once, not a panic, not a wait for a payload that is not coming.
    async fn every_corrupt_prefix_up_to_all_ones_is_invalid_data() {
        let limit = MAX_FRAME as u32;
        let corrupt = [limit + 1, limit + 4, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFB]
            .into_iter()
            .chain(u32::MAX - 3..=u32::MAX);
        for prefix in corrupt {
            let script = [
                Step::Bytes(frame("temp=21.5")),
                Step::Bytes(prefix.to_be_bytes().to_vec()),
                // The sensor keeps the link open and says nothing more for a week.
                Step::Pause(Duration::from_secs(7 * 24 * 3600)),
            ];
            let start = Instant::now();
            let mut link = TelemetryLink::new(ScriptedReader::new(script));
            let mut frames = Vec::new();
            let seen = loop {
                match AssertUnwindSafe(link.next_event()).catch_unwind().await {
                    Ok(Ok(Some(Event::Frame(payload)))) if frames.is_empty() => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        if frames == ["temp=21.5"] && start.elapsed().is_zero() {
                            break None;
                        }
                        break Some(format!("an `InvalidData` error at {:?}", start.elapsed()));
                    }
                    Ok(other) => break Some(format!("{other:?} at {:?}", start.elapsed())),
                    Err(panic) => {
                        break Some(format!(
                            "a panic in `next_event`: \"{}\"",
                            panic_message(panic.as_ref())
                        ));
                    }
                }
            };
            if let Some(seen) = seen {
                panic!(
                    "the sensor sent the frame \"temp=21.5\", then a corrupt length prefix of \
                     {prefix} ({prefix:#010X}, above MAX_FRAME, {MAX_FRAME}) and kept the link \
                     open: the link delivered {frames:?}, then {seen}; expected the frame, then \
                     an `InvalidData` error at once (0 s). Every length above the limit is \
                     corrupt, up to the largest the 4 bytes of the prefix can hold"
                );
            }
        }
    }

    /// A corrupt length prefix (above `MAX_FRAME`) on a link that stays open, after some whole
    /// frames and followed by more bytes, all cut into reads anywhere and arriving with pauses:
    /// the frames before it come out, then the `InvalidData` error at the moment the prefix's last
    /// byte arrives. Waiting for the corrupt frame's payload would swallow the frames after it and
    /// report heartbeats instead of the error for as long as the link stays open.
    fn reports_a_corrupt_prefix_as_soon_as_it_arrives() {
        let payload = proptest::collection::vec(b'a'..=b'z', 0..12)
            .prop_map(|bytes| String::from_utf8(bytes).expect("ASCII"));
        // Just above the limit (where a too generous limit fails), or anywhere above it.
        let corrupt_len = prop_oneof![
            (MAX_FRAME + 1)..=(MAX_FRAME + 64),
            (MAX_FRAME + 1)..=(u32::MAX as usize),
        ];
        // Where the wire is cut into writes (a position taken modulo its length, so that the
        // scenario shrinks well), and the pause before each write: none, less than a heartbeat
        // period, or more.
        let pause = prop_oneof![Just(0u64), Just(300), Just(1_300)];
        let scenario = (
            proptest::collection::vec(payload.clone(), 0..3),
            corrupt_len,
            proptest::collection::vec(payload, 0..3),
            proptest::collection::vec(any::<u16>(), 0..4),
            proptest::collection::vec(pause, 5),
        );
        check_property(64, scenario, |(before, corrupt_len, after, cuts, pauses)| async move {
            let mut wire: Vec<u8> = before.iter().flat_map(|p| frame(p)).collect();
            wire.extend_from_slice(&(corrupt_len as u32).to_be_bytes());
            let prefix_end = wire.len();
            wire.extend(after.iter().flat_map(|p| frame(p)));
            let mut bounds: Vec<usize> =
                cuts.iter().map(|&cut| 1 + usize::from(cut) % (wire.len() - 1)).collect();
            bounds.extend([0, wire.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            // Each write with the moment it happens, counted from the start.
            let mut at = Duration::ZERO;
            let mut writes = Vec::new();
            for (pair, pause) in bounds.windows(2).zip(&pauses) {
                at += Duration::from_millis(*pause);
                writes.push((at, wire[pair[0]..pair[1]].to_vec()));
            }
            let prefix_arrives = bounds
                .windows(2)
                .zip(&writes)
                .find(|(pair, _)| pair[1] >= prefix_end)
                .map(|(_, (at, _))| *at)
                .expect("the prefix is on the wire");
            let script: Vec<(u128, usize)> =
                writes.iter().map(|(at, bytes)| (at.as_millis(), bytes.len())).collect();

            let (mut sensor, collector) = tokio::io::duplex(1 << 16);
            let start = Instant::now();
            tokio::spawn(async move {
                for (at, bytes) in writes {
                    tokio::time::sleep_until(start + at).await;
                    sensor.write_all(&bytes).await.expect("the collector's end is open");
                }
                // The sensor keeps its end of the link open.
                std::future::pending::<()>().await;
                drop(sensor);
            });

            let mut link = TelemetryLink::new(collector);
            let give_up = start + prefix_arrives + Duration::from_secs(2);
            let mut frames = Vec::new();
            let mut heartbeats = Vec::new();
            let seen = loop {
                // A panic in `next_event` (an allocation sized by the corrupt prefix, say) is
                // reported with the scenario that caused it, not as a bare panic message.
                let event = AssertUnwindSafe(link.next_event()).catch_unwind();
                let event = match tokio::time::timeout_at(give_up, event).await {
                    Ok(Ok(event)) => Ok(event),
                    Ok(Err(panic)) => {
                        break format!(
                            "then `next_event` panicked at {:?} with \"{}\"",
                            start.elapsed(),
                            panic_message(panic.as_ref())
                        );
                    }
                    Err(elapsed) => Err(elapsed),
                };
                match event {
                    Ok(Ok(Some(Event::Frame(payload)))) => {
                        frames.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    Ok(Ok(Some(Event::Heartbeat))) => heartbeats.push(start.elapsed()),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        let when = start.elapsed();
                        if frames == before && when == prefix_arrives {
                            return Ok(());
                        }
                        break format!("then an `InvalidData` error at {when:?}");
                    }
                    Ok(Err(e)) => break format!("then failed with \"{e}\" ({:?})", e.kind()),
                    Ok(Ok(None)) => {
                        break "then reported the end, although the sensor kept the link open"
                            .to_owned();
                    }
                    Err(_) => break format!("and no error by {:?}", give_up - start),
                }
            };
            Err(format!(
                "the sensor sent the frames {before:?}, a corrupt length prefix of {corrupt_len} \
                 bytes (above MAX_FRAME, {MAX_FRAME}) and the frames {after:?}, in writes of \
                 (ms, bytes) {script:?}, and kept the link open; the prefix was complete at \
                 {prefix_arrives:?}. The link delivered the frames {frames:?}, heartbeats at \
                 {heartbeats:?}, {seen}. Expected the frames before the prefix, then an \
                 `InvalidData` error at {prefix_arrives:?}: a length prefix above the limit is \
                 reported as soon as its 4 bytes are in, without waiting for a payload that may \
                 never come"
            ))
        });
    }

    /// A sensor with a backlog floods the link: frames are ready at every read (one per read, or
    /// a whole segment of 256 in one read), and the collector spends 10 ms forwarding each one
    /// upstream. The heartbeats keep their schedule all the same (1 s, 2 s, 3 s): a busy link is
    /// reported alive once a second too, not only a quiet one, and frames already read and
    /// waiting in a buffer do not hold a beat back either. Also after one big frame (60,000
    /// bytes, under `MAX_FRAME`) first: whatever size the link's buffer started at, it then holds
    /// a whole read of small frames.
    async fn heartbeats_keep_their_schedule_while_the_sensor_floods_the_link() {
        const BIG: usize = 60_000;
        for (per_read, big_first) in [(1, false), (256, false), (256, true)] {
            let sensor = if big_first {
                FloodingSensor::after_a_big_frame(per_read, BIG)
            } else {
                FloodingSensor::new(per_read)
            };
            let mut link = TelemetryLink::new(sensor);
            let start = Instant::now();
            let mut heartbeats = Vec::new();
            let mut frames = 0u64;
            let mut big_pending = big_first;
            let first = if big_first {
                format!("one frame of {BIG} bytes, then ")
            } else {
                String::new()
            };
            // Time passes only while the collector forwards a frame; the cap on events stops a
            // link that would report nothing but heartbeats.
            for _ in 0..2_000 {
                if start.elapsed() >= Duration::from_millis(3_500) {
                    break;
                }
                match link.next_event().await {
                    Ok(Some(Event::Frame(payload))) if big_pending => {
                        assert!(
                            payload.len() == BIG && payload.iter().all(|&b| b == b'x'),
                            "the sensor sent one frame of {BIG} `x`s first, and the link \
                             delivered a frame of {} bytes instead. {DESYNC}",
                            payload.len()
                        );
                        big_pending = false;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(Some(Event::Frame(payload))) => {
                        let expected = format!("reading={frames}");
                        assert!(
                            payload == expected.as_bytes(),
                            "the sensor flooded the link with {first}the frames reading=0, \
                             reading=1, .., {per_read} per read; after {frames} of them the link \
                             delivered {:?}, expected {expected:?}. {DESYNC}",
                            String::from_utf8_lossy(&payload)
                        );
                        frames += 1;
                        // Forwarding the frame upstream.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(Some(Event::Heartbeat)) => heartbeats.push(start.elapsed()),
                    other => panic!(
                        "the sensor flooded the link with {first}frames, {per_read} per read, and \
                         after {frames} of them `next_event` returned {other:?}"
                    ),
                }
            }
            let on_time = heartbeats.len() == 3
                && heartbeats.iter().zip(1..).all(|(&at, i)| {
                    let due = HEARTBEAT_EVERY * i;
                    at >= due && at <= due + BEAT_LATENESS
                });
            let buffered = if per_read > 1 {
                " Frames that one read brought into the link's buffer are waiting too: handing \
                 them out one call after another without looking at the heartbeat holds it back \
                 for as long as they last"
            } else {
                ""
            };
            assert!(
                on_time,
                "the sensor flooded the link for 3.5 s ({first}{per_read} frame(s) ready at every \
                 read) while the collector spent 10 ms forwarding each frame and called `next_event` \
                 again at once; the link delivered {frames} frames and reported heartbeats {}, \
                 expected one at 1 s, 2 s and 3 s (each at most {BEAT_LATENESS:?} late). The \
                 heartbeat falls due once a second whether or not frames are waiting: a link busy \
                 with frames must still report it, not only a quiet one.{buffered}",
                if heartbeats.is_empty() {
                    "at no time".to_owned()
                } else {
                    format!("at {heartbeats:?}")
                }
            );
        }
    }

    /// A slow collector (100 ms forwarding each frame) on a sensor with a backlog: every read
    /// brings 64 frames, so from the first read on the link's buffer always holds frames. When
    /// the first beat falls due (1 s after `new`), a frame is waiting too; a call may hand out
    /// either (an unbiased `select!` picks at random), but the frames already waiting must not
    /// hold the beat back for a run of calls. The collector starts its loop at 10 different
    /// moments after `new` (37 ms, 137 ms, .. 937 ms), so the beat falls due at every point of
    /// whatever run of frames a link might hand out before it looks at the heartbeat; at each
    /// of them, over 32 fresh links, the beat comes out after at most 2.5 frames on average (an
    /// unbiased pick averages one: a mean above 2.5 over 32 fair picks has odds of about one in
    /// a million). A link that looks at the heartbeat only every few frames holds it back by the
    /// same run on every link at the moment that suits it worst: two frames for every third
    /// frame (within the promise, "at most two on average"), three for every fourth (not).
    async fn frames_waiting_in_the_buffer_hold_a_due_beat_back_a_frame_or_two_at_most() {
        const STARTS: u64 = 10;
        const LINKS: usize = 32;
        const PER_FRAME: Duration = Duration::from_millis(100);
        const MEAN: f64 = 2.5;
        for start_after in (0..STARTS).map(|i| Duration::from_millis(37 + 100 * i)) {
            let mut late = Vec::new();
            for _ in 0..LINKS {
                let mut link = TelemetryLink::new(FloodingSensor::new(64));
                let start = Instant::now();
                tokio::time::sleep(start_after).await;
                let mut frames_after_due = 0usize;
                loop {
                    match link.next_event().await {
                        Ok(Some(Event::Frame(_))) => {
                            if start.elapsed() >= HEARTBEAT_EVERY {
                                frames_after_due += 1;
                            }
                            assert!(
                                frames_after_due < 200,
                                "a sensor with a backlog (64 frames in every read), a collector \
                                 starting its loop {start_after:?} after `new` and spending \
                                 {PER_FRAME:?} on each frame: the beat due at 1 s was not \
                                 reported by {:?}, {frames_after_due} frames after it fell due",
                                start.elapsed()
                            );
                            tokio::time::sleep(PER_FRAME).await;
                        }
                        Ok(Some(Event::Heartbeat)) => break,
                        other => panic!(
                            "a sensor with a backlog (64 frames in every read): `next_event` \
                             returned {other:?} before the first heartbeat"
                        ),
                    }
                }
                late.push(frames_after_due);
            }
            let mean = late.iter().sum::<usize>() as f64 / LINKS as f64;
            let worst = late.iter().max().copied().unwrap_or(0);
            assert!(
                mean <= MEAN,
                "a sensor with a backlog (64 frames in every read, so frames always wait in the \
                 link's buffer) and a collector starting its loop {start_after:?} after `new` and \
                 spending {PER_FRAME:?} on each frame, on {LINKS} fresh links: the beat due at 1 s \
                 came out after {late:?} frames handed out once it was due ({mean:.1} on average, \
                 {worst} at worst); expected a frame or two (at most {MEAN} on average at every \
                 moment the collector may start: a random pick averages one, a look every third \
                 frame two at worst): when a beat is due and frames \
                 are waiting, a call may hand out either, but the buffered frames must not hold \
                 the beat back for a run of calls"
            );
        }
    }

    /// The collector creates the link, then starts reading it half a period later (it was busy
    /// registering the sensor upstream). The heartbeat schedule starts at `new`, as its doc says
    /// ("the first heartbeat is due one period from now"), not at the first call.
    async fn the_heartbeat_schedule_starts_when_the_link_is_created() {
        let (_sensor, wire) = tokio::io::duplex(64);
        let start = Instant::now();
        let mut link = TelemetryLink::new(wire);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut heartbeats = Vec::new();
        while heartbeats.len() < 3 {
            match link.next_event().await {
                Ok(Some(Event::Heartbeat)) => heartbeats.push(start.elapsed()),
                other => panic!("a silent link returned {other:?}"),
            }
        }
        let expected: Vec<Duration> = (1..=3).map(|i| HEARTBEAT_EVERY * i).collect();
        assert_eq!(
            heartbeats, expected,
            "the link was created at 0 s and first read at 0.5 s, on a silent sensor: the first \
             heartbeat is due one period after the link was created, so the link should report \
             heartbeats at 1 s, 2 s and 3 s, but reported them at {heartbeats:?}"
        );
    }

    /// The collector wraps each call in a `timeout` shorter than the heartbeat period. On a silent
    /// link the heartbeats must still come once a second: a dropped call does not restart them.
    async fn heartbeats_keep_their_schedule_under_a_callers_timeout() {
        // The sensor's end stays open and silent for the whole test.
        let (_sensor, wire) = tokio::io::duplex(64);
        let mut link = TelemetryLink::new(wire);
        let start = Instant::now();
        let mut heartbeats = Vec::new();
        while start.elapsed() < Duration::from_millis(10_500) {
            match timeout(Duration::from_millis(300), link.next_event()).await {
                Err(_) => {}
                Ok(Ok(Some(Event::Heartbeat))) => heartbeats.push(start.elapsed()),
                Ok(other) => panic!("a silent link returned {other:?}"),
            }
        }
        let expected: Vec<Duration> = (1..=10).map(|i| HEARTBEAT_EVERY * i).collect();
        assert_eq!(
            heartbeats, expected,
            "the sensor was silent for 10.5 s and the collector called `next_event` under a \
             300 ms timeout, again and again: the link should report a heartbeat every second \
             (at 1 s, 2 s, .. 10 s), but reported them at {heartbeats:?}. A call dropped by the \
             timeout must not take the heartbeat's progress with it"
        );
    }

    /// The collector drops a link that failed (or that it gave up on) and reconnects, again and
    /// again on a flaky bridge: a dropped link leaves nothing of it running, at once. A link
    /// dropped before any call, one dropped by the collector's loop being cut after any poll
    /// (between frames, in the middle of one, while a heartbeat is due), and one read to its
    /// end: once every task that could run has run, no task the link started is still alive.
    async fn a_dropped_link_leaves_nothing_running() {
        let alive = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let before = alive();
        for _ in 0..3 {
            drop(TelemetryLink::new(TrickleReader::new([frame("temp=21.5")])));
        }
        // Every task that is ready runs; the clock does not move.
        kata_support::settle().await;
        let left = alive().saturating_sub(before);
        assert!(
            left == 0,
            "three links were created and dropped before any call to `next_event`; once every \
             task that could run had run, with no virtual time passing, {left} task(s) they \
             started were still running. A dropped link must leave nothing running: the \
             collector reconnects a flaky bridge again and again, and whatever a dropped link \
             leaves behind piles up"
        );
        let script = || {
            let mut hum = frame("hum=40");
            let rest = hum.split_off(3);
            vec![
                Step::Bytes(frame("temp=21.5")),
                Step::Pause(Duration::from_millis(1500)),
                Step::Bytes(hum),
                Step::Pause(Duration::from_millis(700)),
                Step::Bytes(rest),
            ]
        };
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            || (),
            // The collector's loop owns its link: cut, it drops the link with it.
            |()| async move {
                let mut link = TelemetryLink::new(ScriptedReader::new(script()));
                while link.next_event().await?.is_some() {}
                Ok::<(), std::io::Error>(())
            },
            |(), outcome| async move {
                match outcome {
                    Outcome::Completed(Err(e)) => Err(format!(
                        "a healthy link that sent two frames and closed failed with \"{e}\""
                    )),
                    _ => Ok(()),
                }
            },
        )
        .await;
    }
}
