//! Scripted peers for I/O katas: a reader that trickles its script in chunks and a writer that
//! records what reached the wire.
//!
//! Both return `Pending` (and wake themselves) between chunks, so every chunk boundary is a point
//! where the explorer or a `select!` can cancel the operation under test. Neither touches a socket
//! or the clock; the recording survives the writer being dropped, so a test can inspect what a
//! cancelled operation left on the wire.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An `AsyncRead` that hands out its script one chunk per read, yielding between chunks.
#[derive(Debug)]
pub struct TrickleReader {
    chunks: Vec<Vec<u8>>,
    next: usize,
    offset: usize,
    yield_next: bool,
}

impl TrickleReader {
    /// A reader that returns each chunk from a separate read and then end-of-file.
    pub fn new<C: AsRef<[u8]>>(chunks: impl IntoIterator<Item = C>) -> Self {
        let chunks = chunks.into_iter().map(|c| c.as_ref().to_vec()).collect();
        TrickleReader { chunks, next: 0, offset: 0, yield_next: false }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        let rest: usize = self.chunks.iter().skip(self.next).map(Vec::len).sum();
        rest - self.offset
    }
}

impl AsyncRead for TrickleReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.yield_next {
            this.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(chunk) = this.chunks.get(this.next) else {
            return Poll::Ready(Ok(()));
        };
        let n = buf.remaining().min(chunk.len() - this.offset);
        buf.put_slice(&chunk[this.offset..this.offset + n]);
        this.offset += n;
        if this.offset == chunk.len() {
            this.next += 1;
            this.offset = 0;
            this.yield_next = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// What a [`RecordingWriter`] saw, shared with the test.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Wire {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().expect("wire lock").clone()
    }

    /// Everything written so far, lossily as text (for failure messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// An `AsyncWrite` that accepts at most `chunk` bytes per write and yields between writes.
#[derive(Debug)]
pub struct RecordingWriter {
    wire: Wire,
    chunk: usize,
    yield_next: bool,
}

impl RecordingWriter {
    /// A writer taking at most `chunk` bytes per write; the returned [`Wire`] records them.
    pub fn new(chunk: usize) -> (Self, Wire) {
        assert!(chunk > 0, "a writer must accept at least one byte per write");
        let wire = Wire::default();
        (RecordingWriter { wire: wire.clone(), chunk, yield_next: false }, wire)
    }
}

impl AsyncWrite for RecordingWriter {
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
        let n = buf.len().min(self.chunk);
        self.wire.bytes.lock().expect("wire lock").extend_from_slice(&buf[..n]);
        self.yield_next = true;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reader_yields_between_chunks_and_delivers_everything() {
        let mut reader = TrickleReader::new(["ab", "cd"]);
        let mut task = tokio_test::task::spawn(async move {
            let mut out = String::new();
            reader.read_to_string(&mut out).await.map(|_| out)
        });
        for _ in 0..2 {
            tokio_test::assert_pending!(task.poll());
            assert!(task.is_woken(), "a trickling reader must wake itself");
        }
        assert_eq!(tokio_test::assert_ready_ok!(task.poll()), "abcd");
    }

    #[tokio::test]
    async fn writer_records_what_reached_the_wire_before_a_drop() {
        let (mut writer, wire) = RecordingWriter::new(3);
        let mut task =
            tokio_test::task::spawn(async move { writer.write_all(b"HELLOWORLD").await });
        tokio_test::assert_pending!(task.poll());
        drop(task);
        assert_eq!(wire.text(), "HEL");
    }

    #[tokio::test]
    async fn a_scripted_read_spends_budget_like_a_socket() {
        let mut reader = ScriptedReader::new([Step::Bytes(b"ab".to_vec())]);
        tokio::task::yield_now().await;
        // Spend the whole budget of this task poll: the ready read must then be `Pending`.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while tokio::task::coop::has_budget_remaining() {
            let unit = std::pin::pin!(tokio::task::coop::consume_budget());
            assert!(unit.poll(&mut cx).is_ready());
        }
        let mut bytes = [0; 2];
        let mut buf = ReadBuf::new(&mut bytes);
        let read = Pin::new(&mut reader).poll_read(&mut cx, &mut buf);
        assert!(read.is_pending(), "a read on a spent budget must be `Pending`");
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("a scripted read");
        assert_eq!(out, b"ab");
    }
}

/// A scripted stream that fails once its script has run out: the first read that finds `inner`
/// at its end returns `error` as a ready error, whatever its kind (`WouldBlock` included, which
/// `tokio_test`'s mock would take for "not ready yet"), and every read after it is the end of the
/// stream, as from a socket that gave up.
#[derive(Debug)]
pub struct FailsAtTheEnd<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R> FailsAtTheEnd<R> {
    /// `inner`'s bytes, then `error` once, then the end of the stream.
    pub fn new(inner: R, error: io::Error) -> Self {
        FailsAtTheEnd { inner, error: Some(error) }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FailsAtTheEnd<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                match this.error.take() {
                    Some(error) => Poll::Ready(Err(error)),
                    None => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

/// One step of a [`ScriptedReader`]'s script.
#[derive(Debug)]
pub enum Step {
    /// Bytes for the next reads: as many per read as the caller's buffer takes.
    Bytes(Vec<u8>),
    /// One read that fails with an error of this kind (a ready error, `WouldBlock` included).
    Fails(io::ErrorKind),
    /// A pause on tokio's clock before the next step: reads in between are `Pending`.
    Pause(std::time::Duration),
}

/// A peer that follows a script of [`Step`]s, then reads as the end of the stream. Unlike
/// `tokio_test`'s mock it does not mind a reader that stops before the script is over, and its
/// pauses are tokio sleeps, so a paused clock runs through them. A read cut during a pause resumes
/// the same pause. Like a socket's, every read that finds bytes, an error or the end spends a unit
/// of the task's cooperative budget (`tokio::task::coop`), and is `Pending` once it is spent: on a
/// busy task, a read can be where a poll runs out of budget.
#[derive(Debug)]
pub struct ScriptedReader {
    steps: std::collections::VecDeque<Step>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ScriptedReader {
    /// A reader that plays `steps` in order.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        ScriptedReader { steps: steps.into_iter().collect(), pause: None }
    }
}

impl AsyncRead for ScriptedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !matches!(this.steps.front(), Some(Step::Pause(_))) {
                // As tokio's own I/O does: a ready read spends a unit; with none left it is `Pending`.
                std::task::ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
            }
            match this.steps.front_mut() {
                None => return Poll::Ready(Ok(())),
                Some(Step::Pause(pause)) => {
                    let pause = *pause;
                    let sleep =
                        this.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.pause = None;
                    this.steps.pop_front();
                }
                Some(Step::Fails(kind)) => {
                    let kind = *kind;
                    this.steps.pop_front();
                    return Poll::Ready(Err(io::Error::new(kind, "scripted read error")));
                }
                Some(Step::Bytes(bytes)) => {
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    bytes.drain(..n);
                    if bytes.is_empty() {
                        this.steps.pop_front();
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
