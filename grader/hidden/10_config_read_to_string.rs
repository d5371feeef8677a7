//! Hidden tests for kata 10: a config download that stalls, times out and is resumed (or is
//! cancelled by its caller and resumed) must end with every byte of the config, exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use config_read_to_string::{ConfigDownload, Fetch, PATIENCE};
use kata_support::{
    Outcome, ScriptedReader, Step, TrickleReader, assert_cancel_safe, check_property, hidden_test,
};
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// The routing table the control plane sends. The `ü` is two bytes in UTF-8; the tests split the
/// stream between them.
const CONFIG: &str = "\
# Edge routing table, region eu-central (Zürich)
[[route]]
host = \"api.example.com\"
upstream = \"10.0.4.17:8443\"

[[route]]
host = \"static.example.com\"
upstream = \"10.0.4.22:8080\"

[[route]]
host = \"auth.example.com\"
upstream = \"10.0.5.3:8443\"
";

/// Where to split the stream so that the first part ends in the middle of the `ü`.
fn inside_the_u_umlaut() -> usize {
    CONFIG.find('ü').expect("the config has an ü") + 1
}

/// The reloader's loop: resume until the config is complete, noting each stall.
async fn download<R: AsyncRead + Unpin>(
    download: &mut ConfigDownload<R>,
) -> std::io::Result<(String, Vec<usize>)> {
    let mut stalls = Vec::new();
    loop {
        match download.resume().await? {
            Fetch::Complete(text) => return Ok((text, stalls)),
            Fetch::Stalled { received } => {
                stalls.push(received);
                assert!(stalls.len() < 20, "the download stalled 20 times; it should have ended");
            }
        }
    }
}

/// Says how `got` differs from the config the server sent.
fn compare_with_config(got: &str) -> Result<(), String> {
    if got == CONFIG {
        return Ok(());
    }
    let same = got.bytes().zip(CONFIG.bytes()).take_while(|(a, b)| a == b).count();
    let from = |text: &str| {
        let rest = &text.as_bytes()[same.min(text.len())..];
        String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned()
    };
    Err(format!(
        "the downloaded config is {} bytes, the server sent {}; they differ from byte {same} on: \
         expected {:?}, got {:?}",
        got.len(),
        CONFIG.len(),
        from(CONFIG),
        from(got),
    ))
}

/// Says how the reloader's loop ([`download`]) ended, in the API's terms: the `Fetch::Complete`
/// text after the `Stalled` reports, or the error.
fn how_it_ended(result: &std::io::Result<(String, Vec<usize>)>) -> String {
    match result {
        Ok((text, stalls)) if stalls.is_empty() => format!("`Fetch::Complete({text:?})`"),
        Ok((text, stalls)) => format!(
            "`Fetch::Complete({text:?})` (after {} `Stalled` reports, of {stalls:?} bytes)",
            stalls.len()
        ),
        Err(e) => format!("an error of kind {:?} ({e})", e.kind()),
    }
}

/// After a failed download, the reloader (or a careless retry loop) calls `resume` again: the
/// download has ended with its error, so every later call must fail too. A reset stream reads
/// as its end afterwards, and an invalid config's bytes may be gone: a later `Complete` would
/// hand the proxy a truncated or empty routing table.
async fn fails_again<R: AsyncRead + Unpin>(config: &mut ConfigDownload<R>, what: &str) {
    for call in 1..=2 {
        let again = tokio::time::timeout(PATIENCE * 2, config.resume()).await;
        let shown = match &again {
            Err(_) => format!("did not return within {:?}", PATIENCE * 2),
            Ok(Ok(Fetch::Complete(text))) if text.len() <= 200 => {
                format!("returned `Fetch::Complete({text:?})`")
            }
            // A text of many MiB: its length and start, not all of it.
            Ok(Ok(Fetch::Complete(text))) => format!(
                "returned `Fetch::Complete(..)` with {} bytes, starting {:?}",
                text.len(),
                text.chars().take(60).collect::<String>()
            ),
            Ok(Ok(stalled)) => format!("returned `{stalled:?}`"),
            Ok(Err(_)) => continue,
        };
        panic!(
            "{what}, and the download failed; then the reloader called `resume` again, and call \
             {call} after the error {shown}; an error ends the download, so every later call \
             must fail too"
        );
    }
}

/// A scripted control plane that counts the bytes it has handed out, and that the test can hold:
/// while held, a read waits (the control plane stalls) until the test lets go and reads again.
struct HeldReader {
    inner: TrickleReader,
    total: usize,
    handed_out: Arc<AtomicUsize>,
    held: Arc<AtomicBool>,
}

impl AsyncRead for HeldReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.held.load(Ordering::SeqCst) {
            // Nothing arrives while held; the round's `PATIENCE` ends the wait.
            return Poll::Pending;
        }
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.handed_out.store(this.total - this.inner.remaining(), Ordering::SeqCst);
        polled
    }
}

/// A source that, if `hangs`, hangs after its first read error, as a half-open connection does:
/// every read after the error waits for ever. (Otherwise it is `inner`: `FailsAtTheEnd` reads as
/// the end of the stream after its error, as a reset socket does.)
struct HangsAfterItsError<R> {
    inner: R,
    hangs: bool,
    failed: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for HangsAfterItsError<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.hangs && self.failed {
            // Nothing more ever arrives; the round's `PATIENCE` (or the test's timeout) ends it.
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.failed |= matches!(polled, Poll::Ready(Err(_)));
        polled
    }
}

/// Rounds in a row that the silent control plane of
/// `a_control_plane_silent_for_any_number_of_rounds_still_delivers` lets stall: five and a half
/// hours of silence, far more stalls than a download could plausibly count before it took the
/// control plane for dead (and a download that gives up on a time of silence meets a million
/// years of it there).
const SILENT_ROUNDS: usize = 10_000;

/// How many reads in a row [`SignalStorm`] fails at most: far more than any bound a download
/// could put on its retries of `Interrupted` (a right fix may retry for ever), only so that a
/// download that never gives up still ends.
const STORM_CAP: usize = 1 << 20;

/// A control plane hit by a signal storm: after `first`, every read fails with `Interrupted` for
/// as long as the download retries it, until `resume` returns its error (the test sets
/// `given_up`), or after [`STORM_CAP`] reads in a row. Then the storm is over: the rest of the
/// config arrives and the stream ends, or, if `hangs` and the download gave up, nothing more
/// ever arrives (a half-open connection). So whatever bound a download sets itself, the storm
/// lasts exactly until it gives up, and what comes after tests that it gave up for good.
struct SignalStorm {
    first: Vec<u8>,
    rest: Vec<u8>,
    sent: usize,
    interrupted: Arc<AtomicUsize>,
    given_up: Arc<AtomicBool>,
    hangs: bool,
}

impl AsyncRead for SignalStorm {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // As tokio's own I/O does: a ready read spends a unit of the task's budget.
        std::task::ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
        let this = &mut *self;
        let given_up = this.given_up.load(Ordering::SeqCst);
        if this.sent >= this.first.len() && !given_up {
            if this.interrupted.load(Ordering::SeqCst) < STORM_CAP {
                this.interrupted.fetch_add(1, Ordering::SeqCst);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "a signal interrupted the read",
                )));
            }
        } else if given_up && this.hangs {
            return Poll::Pending;
        }
        let data: Vec<u8> = this.first.iter().chain(&this.rest).copied().collect();
        let n = buf.remaining().min(data.len() - this.sent);
        let end = if this.sent < this.first.len() {
            this.first.len().min(this.sent + n)
        } else {
            this.sent + n
        };
        buf.put_slice(&data[this.sent..end]);
        this.sent = end;
        Poll::Ready(Ok(()))
    }
}

/// The bytes in the routing table of a big fleet: 2 MiB, more than any buffer a download could
/// reasonably set aside in advance, so that a download that stops at the size of some buffer is
/// found. (A right fix may read 64 bytes at a time; much more would be slow in a debug build.)
const BIG_CONFIG: usize = 2 << 20;

/// A control plane that sends `data` as fast as it is read, except that it stalls for `pause`
/// once, after the first `stall_at` bytes. Unlike `tokio_test`'s mock, a small read costs the same
/// however large the rest of the data is.
struct StallingServer {
    data: Vec<u8>,
    sent: usize,
    stall_at: usize,
    pause: Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for StallingServer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.sent == this.stall_at {
            let pause = this.pause;
            let stall = this.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            if stall.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let end = if this.sent < this.stall_at { this.stall_at } else { this.data.len() };
        let n = buf.remaining().min(end - this.sent);
        buf.put_slice(&this.data[this.sent..this.sent + n]);
        this.sent += n;
        Poll::Ready(Ok(()))
    }
}

/// The routing table of a much bigger fleet: 48 MiB, more than any size limit a download would
/// plausibly set itself (1, 16 or 32 MiB), so that a limit that ends the stream early is found.
const HUGE_CONFIG: usize = 48 << 20;

/// One route of [`HUGE_CONFIG`], repeated: the control plane makes it up as it is read, so the
/// test holds no copy of the config.
const HUGE_ROUTE: &[u8] =
    "[[route]]\nhost = \"edge.example.com\"\nregion = \"Zürich\"\n".as_bytes();

/// A control plane that sends [`HUGE_ROUTE`] over and over, `total` bytes in all (whole routes),
/// as fast as it is read, then closes the stream.
struct RepeatingServer {
    total: usize,
    sent: usize,
}

impl AsyncRead for RepeatingServer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while buf.remaining() > 0 && this.sent < this.total {
            let at = this.sent % HUGE_ROUTE.len();
            let n = buf.remaining().min(HUGE_ROUTE.len() - at).min(this.total - this.sent);
            buf.put_slice(&HUGE_ROUTE[at..at + n]);
            this.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// How many downloads [`downloads_alive_at_once_keep_their_own_bytes`] keeps alive at once.
const DOWNLOADS: usize = 48;

/// A control plane that sends `config`: all but its last [`HUGE_ROUTE`]'s worth of bytes as fast
/// as they are read, then nothing until `rest_at`, then the rest and the end of the stream.
struct HoldingServer {
    config: Arc<[u8]>,
    sent: usize,
    rest_at: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for HoldingServer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let held = this.config.len() - HUGE_ROUTE.len();
        if this.sent == held && this.rest_at.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let end = if this.sent < held { held } else { this.config.len() };
        let n = buf.remaining().min(end - this.sent);
        buf.put_slice(&this.config[this.sent..this.sent + n]);
        this.sent += n;
        Poll::Ready(Ok(()))
    }
}

/// A routing table of at least `size` bytes, one route per upstream, each with a two-byte `ü`.
fn big_config(size: usize) -> String {
    let mut text = String::from("# Edge routing table, every region\n");
    let mut route = 0u32;
    while text.len() < size {
        text.push_str(&format!(
            "\n[[route]]\nhost = \"svc-{route}.example.com\"\nupstream = \"10.{}.{}.7:8443\"\n\
             region = \"Zürich\"\n",
            route / 256 % 256,
            route % 256
        ));
        route += 1;
    }
    text
}

/// Says how `got` differs from `sent`, briefly enough for a text of many MiB.
fn compare_big(got: &str, sent: &str) -> Result<(), String> {
    if got == sent {
        return Ok(());
    }
    let same = got.bytes().zip(sent.bytes()).take_while(|(a, b)| a == b).count();
    let around = |text: &str| {
        let rest = &text.as_bytes()[same.min(text.len())..];
        String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned()
    };
    let how = if got.len() == same {
        format!("it is the first {same} bytes of it, and the rest is missing")
    } else {
        format!(
            "they differ from byte {same} on: expected {:?}, got {:?}",
            around(sent),
            around(got)
        )
    };
    Err(format!(
        "the downloaded config is {} bytes, the server sent {}; {how}",
        got.len(),
        sent.len()
    ))
}

hidden_test! {
    /// Each proxy runs its reloader as a task of its own (`tokio::spawn`) on its multi-thread
    /// runtime, so over a source that is `Send`, `resume`'s future must stay `Send`, as the
    /// original is.
    async fn resume_can_run_in_a_spawned_reloader() {
        let chunks: Vec<&[u8]> = CONFIG.as_bytes().chunks(64).collect();
        let mut config = ConfigDownload::new(TrickleReader::new(chunks));
        let round = config.resume();
        assert!(
            kata_support::is_send!(round),
            "the future returned by `resume` (over a source that is `Send`) is not `Send`, so the \
             proxy can no longer `tokio::spawn` its reloader on its multi-thread runtime: it \
             holds something that is not `Send` across an `.await` (an `Rc`, a `RefCell` borrow, \
             a drop guard holding a `Box<dyn FnOnce()>` without `+ Send`, a `std` lock guard)"
        );
        match round.await {
            Ok(Fetch::Complete(text)) => compare_with_config(&text).unwrap_or_else(|e| panic!("{e}")),
            other => panic!("nothing stalled, so the first round must complete; got {other:?}"),
        }
    }

    /// Nothing stalls and nothing is cancelled: the config arrives in one round.
    async fn downloads_a_config_that_arrives_in_time() {
        let chunks: Vec<&[u8]> = CONFIG.as_bytes().chunks(64).collect();
        let mut config = ConfigDownload::new(TrickleReader::new(chunks));
        let (text, stalls) = download(&mut config).await.expect("the download failed");
        compare_with_config(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stalls, Vec::<usize>::new(), "nothing stalled, so no round should time out");
    }

    /// The routing table of a big fleet, 2 MiB, sent as fast as it is read but for one stall
    /// longer than `PATIENCE` in the middle of an `ü`: one `Stalled` with every byte received,
    /// then the exact config. A download has no size limit of its own. (One runtime, not one per
    /// seed: the download is long, and nothing in it races.)
    fn downloads_a_config_of_several_mib() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let config = big_config(BIG_CONFIG);
            let bytes = config.as_bytes();
            // The stall falls inside the `ü` of a route about two thirds of the way in.
            let from = bytes.len() * 2 / 3;
            let u_umlaut = "ü".as_bytes();
            let to_the_next = bytes[from..].windows(2).position(|w| w == u_umlaut);
            let split = from + to_the_next.expect("every route has an ü") + 1;
            let server = StallingServer {
                data: bytes.to_vec(),
                sent: 0,
                stall_at: split,
                pause: PATIENCE + Duration::from_millis(500),
                stall: None,
            };
            let mut download_big = ConfigDownload::new(server);
            let (text, stalls) = match download(&mut download_big).await {
                Ok(done) => done,
                Err(e) => panic!(
                    "the server sent a valid config of {} bytes, stalling once after {split}, and \
                     the download failed: {e}",
                    bytes.len()
                ),
            };
            if let Err(problem) = compare_big(&text, &config) {
                panic!(
                    "the server sent a config of {} bytes, stalling once after {split}, then \
                     closed the stream: {problem}. The whole config is the exact text the control \
                     plane sent, however large",
                    bytes.len()
                );
            }
            assert!(
                stalls == [split],
                "the server sent {split} bytes of a {}-byte config, then stalled for longer than \
                 `PATIENCE`: expected one `Stalled` reporting {split} bytes, but the reports said \
                 {stalls:?}",
                bytes.len()
            );
        });
    }

    /// The routing table of a much bigger fleet, 48 MiB, sent as fast as it is read: the exact
    /// text, or an error if the download refuses a config that big, but never `Complete` with a
    /// part of it, not even on a retry after that error. Only the end of the stream ends the
    /// config. And never a `Stalled` on the way: the bytes never stop, so no round waits a full
    /// `PATIENCE`, however much it has read. (One runtime, as above.)
    fn a_config_too_big_to_keep_is_never_cut_short() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let total = HUGE_CONFIG / HUGE_ROUTE.len() * HUGE_ROUTE.len();
            let mut download_huge = ConfigDownload::new(RepeatingServer { total, sent: 0 });
            let start = tokio::time::Instant::now();
            let text = match download(&mut download_huge).await {
                Ok((text, stalls)) => {
                    assert!(
                        stalls.is_empty(),
                        "the control plane sent a valid config of {total} bytes ({} MiB) as fast \
                         as it was read, never pausing, and the rounds returned `Stalled` reports \
                         of {stalls:?} bytes before `Complete`, {:?} after the first round began; \
                         expected no `Stalled` at all: a round reports `Stalled` only after \
                         waiting a full `PATIENCE` ({PATIENCE:?}) with no byte arriving, however \
                         much it has read (progress is not a stall)",
                        total >> 20,
                        start.elapsed()
                    );
                    text
                }
                // A limit of the download's own may refuse a config this big, with an error;
                // the error ends the download, so a retry must fail too, never complete with
                // the rest of the stream (a config cut at its start).
                Err(_) => {
                    let what = format!(
                        "the control plane sent a valid config of {total} bytes ({} MiB), as fast \
                         as it was read",
                        total >> 20
                    );
                    fails_again(&mut download_huge, &what).await;
                    return;
                }
            };
            let same = text
                .as_bytes()
                .chunks(HUGE_ROUTE.len())
                .take_while(|route| *route == HUGE_ROUTE)
                .count()
                * HUGE_ROUTE.len();
            assert!(
                text.len() == total && same == total,
                "the control plane sent a valid config of {total} bytes ({} MiB) and closed the \
                 stream, and the download returned `Fetch::Complete` with {} bytes, the first \
                 {same} of them the config's; `Complete` means the exact text the control plane \
                 sent, all of it: only the end of the stream ends the config (a download that \
                 will not keep a config this big must fail, not complete with part of it)",
                total >> 20,
                text.len()
            );
        });
    }

    /// A proxy runs a reloader per upstream, and a new download may start while an old one is
    /// still alive: [`DOWNLOADS`] downloads of a config of nearly 2 MiB (below any limit a
    /// download may set itself) stall at once, all but the last route of each received, so that
    /// they hold about 96 MiB between them; then the rest of each comes. Each reports its own
    /// bytes, then its exact config: a download's limit is its own, and what the others hold
    /// never fails it nor holds it back, so a budget shared by the downloads of the process
    /// (a `static`) of any size below what they hold in all fails. (One runtime, as above: the
    /// bytes cost every run. A `static` starts afresh: each hidden test runs in a process of its
    /// own.)
    fn downloads_alive_at_once_keep_their_own_bytes() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let routes = BIG_CONFIG / HUGE_ROUTE.len();
            let config: Arc<[u8]> = HUGE_ROUTE.repeat(routes).into();
            let (total, held) = (config.len(), config.len() - HUGE_ROUTE.len());
            let sent = std::str::from_utf8(&config).expect("the routes are text");
            let rest_at = Instant::now() + PATIENCE + Duration::from_secs(1);
            let mut downloads: Vec<_> = (0..DOWNLOADS)
                .map(|_| {
                    let rest_at = Box::pin(tokio::time::sleep_until(rest_at));
                    ConfigDownload::new(HoldingServer { config: config.clone(), sent: 0, rest_at })
                })
                .collect();
            let story = format!(
                "{DOWNLOADS} downloads were alive at once, each of a valid config of {total} \
                 bytes, and each control plane sent all of it but the last {} bytes and went \
                 silent ({} MiB held by the downloads in all)",
                HUGE_ROUTE.len(),
                DOWNLOADS * held >> 20
            );
            let rounds = futures::future::join_all(downloads.iter_mut().map(|d| d.resume())).await;
            for (i, round) in rounds.into_iter().enumerate() {
                let round = round.map_err(|e| format!("{e:?}"));
                assert!(
                    round == Ok(Fetch::Stalled { received: held }),
                    "{story}: download {i}'s first round returned {round:?}, expected \
                     `Stalled {{ received: {held} }}`. A download's limit is its own: what other \
                     downloads alive in the process hold never fails it nor holds it back"
                );
            }
            let rounds = futures::future::join_all(downloads.iter_mut().map(|d| d.resume())).await;
            for (i, round) in rounds.into_iter().enumerate() {
                let text = match round {
                    Ok(Fetch::Complete(text)) => text,
                    other => panic!(
                        "{story}, then, {} s after the first rounds began, sent the rest and \
                         closed the stream: download {i}'s second round returned {:?}, expected `Complete` with the exact \
                         config. A download's limit is its own: what other downloads alive in \
                         the process hold never fails it nor holds it back",
                        (PATIENCE + Duration::from_secs(1)).as_secs(),
                        other.map_err(|e| format!("{e:?}"))
                    ),
                };
                if let Err(problem) = compare_big(&text, sent) {
                    panic!(
                        "{story}, then sent the rest and closed the stream: download {i} returned \
                         `Complete`, but {problem}"
                    );
                }
            }
        });
    }

    /// `Complete` holds the exact text the control plane sent, byte for byte, whatever it holds:
    /// a leading byte-order mark (U+FEFF, which some editors write), Windows line endings, a NUL,
    /// trailing blanks, blank lines at the end, no final newline, and any control character
    /// first or last (a NUL, a DOS end-of-file Ctrl-Z) are part of the config, not noise to clean
    /// up (a checksum or a signature over the text must still match). Sent in chunks that split
    /// the byte-order mark itself, and with a stall in the middle of it.
    async fn the_config_comes_back_byte_for_byte() {
        let mut configs: Vec<String> = [
            "\u{feff}listen = \"0.0.0.0:443\"\nroute /a -> 10.0.0.1\n",
            "\u{feff}\u{feff}# twice\r\nroute /a -> 10.0.0.1\r\n",
            "route /a -> 10.0.0.1 \t\r\nnote = \"a\u{0}b\"\n\n  ",
            "\u{feff}",
            "route /a -> 10.0.0.1\n\n",
            "route /a -> 10.0.0.1\r\n\r\n\r\n",
        ]
        .map(String::from)
        .into();
        // Every control character and the space, as the config's last byte and as its first.
        for c in (0u8..=0x20).chain([0x7f]).map(char::from) {
            configs.push(format!("route /a -> 10.0.0.1\n{c}"));
            configs.push(format!("{c}route /a -> 10.0.0.1\n"));
        }
        for sent in &configs {
            let bytes = sent.as_bytes();
            for split in [1, 2, 4.min(bytes.len())] {
                for stall in [false, true] {
                    let mut server = tokio_test::io::Builder::new();
                    server.read(&bytes[..split]);
                    if stall {
                        server.wait(PATIENCE + Duration::from_millis(500));
                    }
                    if split < bytes.len() {
                        server.read(&bytes[split..]);
                    }
                    let mut config = ConfigDownload::new(server.build());
                    let result = download(&mut config).await;
                    let stalled = if stall { ", with a stall longer than `PATIENCE` there" } else { "" };
                    match &result {
                        Ok((text, _)) if text.as_bytes() == bytes => {}
                        _ => panic!(
                            "the control plane sent the config {sent:?} ({} bytes, split after \
                             byte {split}{stalled}) and closed the stream, and the download \
                             returned {}; `Complete` must hold the exact text the control plane \
                             sent, byte for byte: a byte-order mark, line endings, blanks and \
                             control characters are part of it, not something to strip or \
                             normalise",
                            bytes.len(),
                            how_it_ended(&result)
                        ),
                    }
                }
            }
        }
    }

    /// Configs of the edge sizes: empty (a proxy being drained publishes no routes), one and two
    /// bytes, and one byte short of, exactly, and one byte over every buffer size a download
    /// might read with (16 bytes to 64 KiB), sent as fast as they are read, then the end of the
    /// stream; also with a stall longer than `PATIENCE` before the end, and, one byte over a
    /// buffer, with the stall right after the buffer's worth. Each round returns within
    /// `PATIENCE`, a `Stalled` comes only after a full one and counts every byte, and the config
    /// comes back exactly, the empty one as `Complete("")`: only the end of the stream ends a
    /// config, whatever its size. (One runtime, not one per seed: nothing in it races.)
    fn configs_of_edge_sizes_come_back_exactly() {
        const ROUTE: &[u8] = b"[[route]]\nhost = \"edge.example.com\"\nupstream = \"10.0.4.17:8443\"\n";
        let buffers = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
        let mut sizes = vec![0, 1, 2];
        sizes.extend(buffers.iter().flat_map(|&b: &usize| [b - 1, b, b + 1]));
        let stall = PATIENCE + Duration::from_millis(500);
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            for size in sizes {
                let sent: Vec<u8> = ROUTE.iter().copied().cycle().take(size).collect();
                let text = String::from_utf8(sent.clone()).expect("the routes are ASCII");
                // (how it is sent, the script, the `Stalled` reports expected before `Complete`)
                let mut deliveries: Vec<(String, Vec<Step>, Vec<usize>)> = Vec::new();
                let all = || if size == 0 { vec![] } else { vec![Step::Bytes(sent.clone())] };
                deliveries.push(("as fast as it was read".into(), all(), vec![]));
                let mut stalled = all();
                stalled.push(Step::Pause(stall));
                deliveries.push((
                    "as fast as it was read, then a stall longer than `PATIENCE` before the end"
                        .into(),
                    stalled,
                    vec![size],
                ));
                if size > 2 && buffers.contains(&(size - 1)) {
                    let at = size - 1;
                    deliveries.push((
                        format!(
                            "{at} bytes, then a stall longer than `PATIENCE`, then the last byte"
                        ),
                        vec![
                            Step::Bytes(sent[..at].to_vec()),
                            Step::Pause(stall),
                            Step::Bytes(sent[at..].to_vec()),
                        ],
                        vec![at],
                    ));
                }
                for (how, script, stalls_expected) in deliveries {
                    let what = format!(
                        "the control plane sent a valid config of {size} bytes, {how}, and closed \
                         the stream"
                    );
                    let mut config = ConfigDownload::new(ScriptedReader::new(script));
                    let mut stalls = Vec::new();
                    let got = loop {
                        let began = Instant::now();
                        let round = tokio::time::timeout(PATIENCE * 2, config.resume()).await;
                        let took = began.elapsed();
                        match round {
                            Err(_) => panic!(
                                "{what}; after the `Stalled` reports {stalls:?}, a round did not \
                                 return within {:?}: each round returns within `PATIENCE`",
                                PATIENCE * 2
                            ),
                            Ok(Err(e)) => panic!(
                                "{what}; after the `Stalled` reports {stalls:?}, the download \
                                 failed with an error of kind {:?} ({e}), expected \
                                 `Fetch::Complete` with the {size} bytes sent: only a failed \
                                 read, or a config that is not UTF-8, is an error, whatever the \
                                 config's size",
                                e.kind()
                            ),
                            Ok(Ok(Fetch::Stalled { received })) => {
                                assert!(
                                    took == PATIENCE,
                                    "{what}; a round returned `Stalled {{ received: {received} \
                                     }}` {took:?} after it began: a round reports `Stalled` \
                                     after waiting a full `PATIENCE` ({PATIENCE:?}), and no \
                                     longer"
                                );
                                stalls.push(received);
                                assert!(
                                    stalls.len() <= stalls_expected.len(),
                                    "{what}; the rounds returned the `Stalled` reports \
                                     {stalls:?}, expected {stalls_expected:?} and then \
                                     `Fetch::Complete` with the {size} bytes sent"
                                );
                            }
                            Ok(Ok(Fetch::Complete(got))) => break got,
                        }
                    };
                    assert!(
                        stalls == stalls_expected,
                        "{what}; the rounds returned the `Stalled` reports {stalls:?} before \
                         `Complete`, expected {stalls_expected:?}: a `Stalled` counts every byte \
                         received since the download started"
                    );
                    if let Err(problem) = compare_big(&got, &text) {
                        panic!(
                            "{what}, and the download returned `Fetch::Complete` with {} bytes: \
                             {problem}. `Complete` holds the exact text the control plane sent, \
                             whatever its size",
                            got.len()
                        );
                    }
                }
            }
        });
    }

    /// The control plane stops twice for longer than `PATIENCE`; the reloader resumes each time.
    async fn resumes_after_the_control_plane_stalls() {
        let split_u = inside_the_u_umlaut();
        let second = split_u + 100;
        let bytes = CONFIG.as_bytes();
        let pause = PATIENCE + Duration::from_millis(500);
        let server = tokio_test::io::Builder::new()
            .read(&bytes[..split_u])
            .wait(pause)
            .read(&bytes[split_u..second])
            .wait(pause)
            .read(&bytes[second..])
            .build();
        let mut config = ConfigDownload::new(server);
        let (text, stalls) = download(&mut config).await.expect("the download failed");
        let expected = [split_u, second];
        let intact = compare_with_config(&text);
        if stalls != expected {
            let off: Vec<String> = stalls
                .iter()
                .zip(&expected)
                .map(|(&got, &sent)| format!("{:+}", got as i64 - sent as i64))
                .collect();
            let why = match (&intact, stalls.iter().zip(&expected).any(|(got, sent)| got < sent)) {
                (Err(_), true) => {
                    ", and the config came out damaged: bytes received before the `PATIENCE` \
                     timeout ended the round were lost with the dropped read"
                }
                (Err(_), false) => ", and the config came out damaged",
                (Ok(()), _) => {
                    ". The config itself came out intact, so no bytes were lost: the count was \
                     wrong. `received` counts bytes, not characters, and includes the bytes of \
                     a character whose other half has not arrived yet"
                }
            };
            panic!(
                "the server sent {split_u} bytes, then stalled; later {second} bytes in all, then \
                 stalled again. Each `Fetch::Stalled` must report every byte received since the \
                 download started, {expected:?}, but the reports said {stalls:?} (off by \
                 {off}){why}",
                off = off.join(", ")
            );
        }
        intact.unwrap_or_else(|e| {
            panic!("after two stalls, each cut short by the `PATIENCE` timeout: {e}")
        });
    }

    /// Cancel the reloader at every point; the next round, while the control plane stalls, must
    /// report every byte handed out so far, and resuming on the same download must give the config.
    async fn resume_is_cancel_safe_at_every_chunk() {
        let split_u = inside_the_u_umlaut();
        let bytes = CONFIG.as_bytes();
        let chunks: Vec<Vec<u8>> = bytes[..split_u]
            .chunks(24)
            .chain(bytes[split_u..].chunks(24))
            .map(<[u8]>::to_vec)
            .collect();
        type Shared = (
            Arc<tokio::sync::Mutex<ConfigDownload<HeldReader>>>,
            Arc<AtomicUsize>,
            Arc<AtomicBool>,
        );
        assert_cancel_safe(
            || -> Shared {
                let handed_out = Arc::new(AtomicUsize::new(0));
                let held = Arc::new(AtomicBool::new(false));
                let reader = HeldReader {
                    inner: TrickleReader::new(chunks.clone()),
                    total: bytes.len(),
                    handed_out: handed_out.clone(),
                    held: held.clone(),
                };
                (Arc::new(tokio::sync::Mutex::new(ConfigDownload::new(reader))), handed_out, held)
            },
            |(config, _, _): Shared| async move { download(&mut *config.lock().await).await },
            |(config, handed_out, held): Shared, outcome| async move {
                match outcome {
                    Outcome::Completed(Ok((text, _))) => compare_with_config(&text),
                    Outcome::Completed(Err(e)) => Err(format!("the download failed: {e}")),
                    Outcome::Cancelled { .. } => {
                        let mut config = config.lock().await;
                        // The control plane stalls: one round must time out and count every byte
                        // received so far, those of the round the caller dropped included.
                        held.store(true, Ordering::SeqCst);
                        let sent = handed_out.load(Ordering::SeqCst);
                        match config.resume().await {
                            Ok(Fetch::Stalled { received }) if received != sent => {
                                return Err(format!(
                                    "the reloader was cancelled after the control plane had \
                                     handed out {sent} bytes; the next round stalled (nothing \
                                     more arrived) and reported `Stalled {{ received: \
                                     {received} }}` (off by {:+}). `received` counts every byte \
                                     received since the download started, also those read in \
                                     a round that the caller dropped",
                                    received as i64 - sent as i64
                                ));
                            }
                            Ok(Fetch::Stalled { .. }) => {}
                            Ok(Fetch::Complete(text)) => {
                                return compare_with_config(&text).map_err(|e| {
                                    format!("the reloader was cancelled, then resumed: {e}")
                                });
                            }
                            Err(e) => {
                                return Err(format!(
                                    "the reloader was cancelled after {sent} bytes had arrived; \
                                     the next round, while the control plane stalled, failed: {e}"
                                ));
                            }
                        }
                        held.store(false, Ordering::SeqCst);
                        let resumed = download(&mut *config).await;
                        let (text, _) = resumed.map_err(|e| {
                            format!("the reloader was cancelled, and resuming failed: {e}")
                        })?;
                        compare_with_config(&text).map_err(|e| {
                            format!(
                                "the reloader was cancelled mid-download and then resumed on the \
                                 same `ConfigDownload`: {e}. The bytes read before the cut were \
                                 held by the dropped future, not by the download."
                            )
                        })
                    }
                }
            },
        )
        .await;
    }

    /// A config whose last bytes start a character that never ends (a Latin-1 `é` as the very
    /// last byte, a UTF-8 `é` cut after its first byte, or a four-byte `😀` cut after its third)
    /// is not valid UTF-8 either: an `InvalidData` error, not a config without its last character
    /// (nor with a replacement character of the same length in its place).
    async fn a_config_ending_inside_a_character_is_an_error() {
        for (sent, shown) in [
            (&b"city = caf\xe9"[..], "city = caf\\xe9"),
            (&b"city = caf\xc3"[..], "city = caf\\xc3"),
            (&b"mood = \xf0\x9f\x98"[..], "mood = \\xf0\\x9f\\x98"),
        ] {
            let chunks = [sent[..7].to_vec(), sent[7..].to_vec()];
            let mut config = ConfigDownload::new(TrickleReader::new(chunks));
            match download(&mut config).await {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
                other => panic!(
                    "the control plane sent `{shown}` and closed the stream: the last byte \
                     starts a character whose other bytes never came, so the config is not \
                     valid UTF-8, and the download returned {}; it must be an `InvalidData` \
                     error",
                    how_it_ended(&other)
                ),
            }
            fails_again(&mut config, &format!("the control plane sent `{shown}`")).await;
        }
    }

    /// A config that is not valid UTF-8 is an `InvalidData` error, not a text with replacement
    /// characters: a Latin-1 `ü` (one byte), the first two bytes of a three-byte `€`, or the first
    /// three bytes of a four-byte `😀` (which a lossy decoding turns into one U+FFFD, three bytes
    /// too), each in the middle of the config.
    async fn invalid_utf8_is_an_error() {
        for (bytes, shown) in [
            (&b"region = \"Z\xfcrich\"\n"[..], "region = \"Z\\xfcrich\""),
            (&b"price = \"10 \xe2\x82\"\n"[..], "price = \"10 \\xe2\\x82\""),
            (&b"mood = \"\xf0\x9f\x98\"\nroute = a\n"[..], "mood = \"\\xf0\\x9f\\x98\"\\nroute = a"),
        ] {
            let mut config =
                ConfigDownload::new(TrickleReader::new([bytes[..11].to_vec(), bytes[11..].to_vec()]));
            match download(&mut config).await {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
                other => panic!(
                    "the control plane sent `{shown}` (bytes that are not UTF-8), and the download \
                     returned {}; a config that is not valid UTF-8 must be an `InvalidData` error",
                    how_it_ended(&other)
                ),
            }
            fails_again(&mut config, &format!("the control plane sent `{shown}`")).await;
        }
    }

    /// The control plane's connection is reset part way through the config (after any chunk, and
    /// before or after a stall longer than `PATIENCE`): the bytes so far, then an error, then the
    /// end of the stream, as a reset socket does, or nothing more at all, as a half-open
    /// connection does. The download must fail with that read's error, of the kind the source
    /// reported: what arrived is not the config (a `Complete` would hand the proxy a truncated
    /// routing table), and the reloader reconnects on a broken stream but alerts on a corrupt
    /// config (`InvalidData`), so it goes by the kind. The same for a read error of any other
    /// kind, `UnexpectedEof` included (a TLS layer reports a peer gone without `close_notify`
    /// that way): only the end of the stream ends the config. Every later call fails too,
    /// whatever the stream does after its error.
    async fn a_connection_reset_mid_download_is_an_error() {
        let chunks: Vec<&[u8]> = CONFIG.as_bytes().chunks(48).collect();
        // `TimedOut` and `WouldBlock` too: a transport that gives up on a silent peer reports
        // one of them once and then reads as the end of the stream, so a retry of such a read
        // would take that end for the end of the config. Only `Interrupted` may be retried.
        let kinds = [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::WouldBlock,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::Other,
        ];
        // Each kind also as a socket reports it, with the OS's error code (`EAGAIN` for
        // `WouldBlock`, `ECONNRESET`, ...) where the platform has one: the kind decides, not
        // whether the code reads as "try again".
        let os_code = |kind| {
            (1..20_000).find(|&code| std::io::Error::from_raw_os_error(code).kind() == kind)
        };
        let failures: Vec<(std::io::ErrorKind, Option<i32>)> = kinds
            .iter()
            .map(|&kind| (kind, None))
            .chain(kinds.iter().filter_map(|&kind| os_code(kind).map(|code| (kind, Some(code)))))
            .collect();
        let failures = &failures;
        for (cut, (kind, code)) in
            (0..=chunks.len()).flat_map(|cut| failures.iter().map(move |&failure| (cut, failure)))
        {
            for (stall_before_reset, hangs_after) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut server = tokio_test::io::Builder::new();
                for chunk in &chunks[..cut] {
                    server.read(chunk);
                }
                if stall_before_reset {
                    server.wait(PATIENCE + Duration::from_millis(500));
                }
                let error = match code {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(kind, "the control plane's link failed"),
                };
                let mock = kata_support::FailsAtTheEnd::new(server.build(), error);
                let mock = HangsAfterItsError { inner: mock, hangs: hangs_after, failed: false };
                let mut config = ConfigDownload::new(mock);
                let result = download(&mut config).await;
                let stalled = if stall_before_reset { ", after a stall of 2.5 s" } else { "" };
                let then = if hangs_after {
                    " (after which the stream hung, as a half-open connection does)"
                } else {
                    " (after which the stream read as its end, as a reset socket does)"
                };
                let sent = format!(
                    "the control plane sent the first {} of the config's {} bytes, then a read \
                     failed with an error of kind {kind:?}{os}{stalled}{then}",
                    chunks[..cut].iter().map(|c| c.len()).sum::<usize>(),
                    CONFIG.len(),
                    os = code.map(|code| format!(" (OS error code {code})")).unwrap_or_default(),
                );
                assert!(
                    result.is_err(),
                    "{sent}, and the download returned {}; a stream that fails before it ends \
                     must make `resume` fail, whatever the error's kind: `Complete` means the \
                     control plane sent everything and closed the stream",
                    how_it_ended(&result)
                );
                assert!(
                    matches!(&result, Err(e) if e.kind() == kind),
                    "{sent}, and the download returned {}; expected the read's error as the \
                     source reported it, of kind {kind:?}. The reloader reconnects on a broken \
                     stream and alerts on a corrupt config (`InvalidData`) by the kind: a read \
                     error comes out with its own kind, not re-wrapped as another",
                    how_it_ended(&result)
                );
                fails_again(&mut config, &sent).await;
            }
        }
    }

    /// A read fails with `Interrupted` after each chunk of the config in turn (after all of it
    /// too, before the end of the stream), once, twice, three, 64, 101, 1 000 or 4 096 times in a
    /// row (a signal storm), with a stall longer than `PATIENCE` before it, after it, a shorter one before it
    /// and a longer one after it, or none, and then the rest of the config arrives. By std's
    /// convention that kind means "try again": the download may retry the read itself, and then
    /// the config comes back exact, or it may return the error, which ends the download (every
    /// later call fails too), however many `Interrupted` reads it retried before. Never a
    /// `Stalled` before the round has waited a full `PATIENCE`, a round longer than `PATIENCE`,
    /// an error of another kind, or a config that lost or repeated bytes.
    async fn an_interrupted_read_is_retried_or_returned() {
        let chunks: Vec<&[u8]> = CONFIG.as_bytes().chunks(48).collect();
        let kind = std::io::ErrorKind::Interrupted;
        let stall = PATIENCE + Duration::from_millis(500);
        // Shorter than `PATIENCE`, so that the round in which the read fails is still waiting when
        // the stall after it begins.
        let short = Duration::from_millis(1_200);
        for cut in 0..=chunks.len() {
            for (times, stall_before, stall_after) in [
                (1, None, false),
                (2, None, false),
                (3, None, false),
                (64, None, false),
                (101, None, false),
                (1_000, None, false),
                (4_096, None, false),
                (1, Some(stall), false),
                (1, None, true),
                (1, Some(short), true),
                (3, Some(short), true),
            ] {
                let mut script: Vec<Step> =
                    chunks[..cut].iter().map(|chunk| Step::Bytes(chunk.to_vec())).collect();
                if let Some(pause) = stall_before {
                    script.push(Step::Pause(pause));
                }
                script.extend((0..times).map(|_| Step::Fails(kind)));
                if stall_after {
                    script.push(Step::Pause(stall));
                }
                script.extend(chunks[cut..].iter().map(|chunk| Step::Bytes(chunk.to_vec())));
                let before: usize = chunks[..cut].iter().map(|c| c.len()).sum();
                let stalled = match (stall_before, stall_after) {
                    (Some(pause), true) => {
                        format!(", after a stall of {pause:?} and followed by one of {stall:?}")
                    }
                    (Some(pause), false) => format!(", after a stall of {pause:?}"),
                    (None, true) => format!(", followed by a stall of {stall:?}"),
                    (None, false) => String::new(),
                };
                let sent = format!(
                    "the control plane sent the first {before} of the config's {} bytes, then \
                     {times} read(s) failed with `Interrupted`{stalled}, then the rest of the \
                     config arrived",
                    CONFIG.len()
                );
                let mut config = ConfigDownload::new(ScriptedReader::new(script));
                let mut rounds = 0;
                loop {
                    rounds += 1;
                    assert!(rounds <= 6, "{sent}, and the download had not ended after 6 rounds");
                    let started = Instant::now();
                    let round = tokio::time::timeout(PATIENCE * 2, config.resume()).await;
                    let took = started.elapsed();
                    if let Ok(returned) = &round {
                        assert!(
                            took <= PATIENCE,
                            "{sent}, and round {rounds} returned {returned:?} after {took:?}; \
                             patience is per round: each call to `resume` returns within \
                             `PATIENCE` ({PATIENCE:?}) of its start, also when a read fails with \
                             `Interrupted` part way (a retried read does not start the round's \
                             patience over)"
                        );
                    }
                    match round {
                        Err(_) => panic!(
                            "{sent}, and round {rounds} did not return within {:?}",
                            PATIENCE * 2
                        ),
                        Ok(Ok(Fetch::Stalled { received })) => {
                            assert!(
                                took >= PATIENCE && received == before,
                                "{sent}, and round {rounds} returned `Stalled {{ received: \
                                 {received} }}` after {took:?}; a round reports `Stalled` only \
                                 after waiting a full `PATIENCE` ({PATIENCE:?}) of its own, with \
                                 every byte received ({before}). An `Interrupted` read is not a \
                                 stall: retry it, or return the error"
                            );
                        }
                        Ok(Ok(Fetch::Complete(text))) => {
                            if let Err(diff) = compare_with_config(&text) {
                                panic!(
                                    "{sent}, and the download retried the read and returned \
                                     `Complete`, but {diff}: a retried read carries on with the \
                                     bytes received so far"
                                );
                            }
                            break;
                        }
                        Ok(Err(e)) if e.kind() == kind => {
                            fails_again(&mut config, &sent).await;
                            break;
                        }
                        Ok(Err(e)) => panic!(
                            "{sent}, and round {rounds} failed with an error of kind {:?} ({e}); \
                             expected either the config (the download retries the read) or the \
                             `Interrupted` error as the source reported it",
                            e.kind()
                        ),
                    }
                }
            }
        }
    }

    /// A signal storm: after each of a few points of the config, every read fails with
    /// `Interrupted`, for as long as the download retries it. A download may retry for ever (the
    /// storm then ends after [`STORM_CAP`] reads and the config comes back exact), or give up
    /// after any number of retries and return the error; then, the moment it has, the storm is
    /// over and the rest of the config arrives (or the stream hangs), and every later call must
    /// still fail: the error ended the download, however many retries came before it. Whatever
    /// bound a download puts on its retries, the storm lasts until it gives up. (One runtime, not
    /// one per seed: a download that retries for ever reads three million times here.)
    fn a_signal_storm_until_the_download_gives_up_ends_it_for_good() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let bytes = CONFIG.as_bytes();
            for (cut, hangs) in
                [(0, false), (inside_the_u_umlaut(), true), (bytes.len(), false)]
            {
                let interrupted = Arc::new(AtomicUsize::new(0));
                let given_up = Arc::new(AtomicBool::new(false));
                let mut config = ConfigDownload::new(SignalStorm {
                    first: bytes[..cut].to_vec(),
                    rest: bytes[cut..].to_vec(),
                    sent: 0,
                    interrupted: interrupted.clone(),
                    given_up: given_up.clone(),
                    hangs,
                });
                let storm = format!(
                    "the control plane sent the first {cut} of the config's {} bytes, then every \
                     read failed with `Interrupted` (a signal storm) until the download gave up \
                     (or for {STORM_CAP} reads in a row)",
                    bytes.len()
                );
                let mut rounds = 0;
                loop {
                    rounds += 1;
                    assert!(rounds <= 6, "{storm}, and the download had not ended after 6 rounds");
                    let started = Instant::now();
                    let round = tokio::time::timeout(PATIENCE * 2, config.resume()).await;
                    let took = started.elapsed();
                    let Ok(returned) = round else {
                        panic!("{storm}, and round {rounds} did not return within {:?}", PATIENCE * 2)
                    };
                    assert!(
                        took <= PATIENCE,
                        "{storm}, and round {rounds} returned {returned:?} after {took:?}; each \
                         call to `resume` returns within `PATIENCE` ({PATIENCE:?}) of its start"
                    );
                    match returned {
                        Ok(Fetch::Stalled { received }) => assert!(
                            took >= PATIENCE && received == cut,
                            "{storm}, and round {rounds} returned `Stalled {{ received: \
                             {received} }}` after {took:?}; a round reports `Stalled` only after \
                             waiting a full `PATIENCE` ({PATIENCE:?}) of its own, with every byte \
                             received ({cut}). An `Interrupted` read is not a stall: retry it, or \
                             return the error"
                        ),
                        Ok(Fetch::Complete(text)) => {
                            compare_with_config(&text).unwrap_or_else(|diff| {
                                panic!(
                                    "{storm}, then sent the rest, and the download returned \
                                     `Complete`, but {diff}"
                                )
                            });
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            given_up.store(true, Ordering::SeqCst);
                            let then = if hangs {
                                "nothing more arrived (a half-open connection)"
                            } else {
                                "the rest of the config arrived and the stream ended"
                            };
                            let what = format!(
                                "{storm}: round {rounds} gave up after {} of them in a row and \
                                 returned the `Interrupted` error; then the storm was over and \
                                 {then}",
                                interrupted.load(Ordering::SeqCst)
                            );
                            fails_again(&mut config, &what).await;
                            break;
                        }
                        Err(e) => panic!(
                            "{storm}, and round {rounds} failed with an error of kind {:?} ({e}); \
                             expected either the config (the download retries the read) or the \
                             `Interrupted` error as the source reported it",
                            e.kind()
                        ),
                    }
                }
            }
        });
    }

    /// The control plane sends half the config and then stays silent, for many rounds in a row and
    /// across long gaps between them (the reloader waiting before it calls again: an hour, a year,
    /// a million years, in one jump of the paused clock), and then sends the rest. The download never gives up by itself: each round that
    /// waited its `PATIENCE` without the end of the config is `Stalled`, counting every byte,
    /// however many came before it and however long the silence; whether to give up is the
    /// reloader's call. Then the rest arrives, and the config comes back exact. (One runtime, not
    /// one per seed: the rounds are many, and nothing in them races.)
    fn a_control_plane_silent_for_any_number_of_rounds_still_delivers() {
        use tokio::io::AsyncWriteExt;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let first = &CONFIG.as_bytes()[..inside_the_u_umlaut()];
            let rest = &CONFIG.as_bytes()[inside_the_u_umlaut()..];
            let (mut control_plane, wire) = tokio::io::duplex(4096);
            control_plane.write_all(first).await.expect("the pipe has room for the config");
            let mut config = ConfigDownload::new(wire);
            let began = Instant::now();
            let year = Duration::from_secs(365 * 24 * 3600);
            // Rounds in a row, then a gap before the next call, over and over.
            let mut rounds = 0;
            for (in_a_row, gap_after) in [
                (SILENT_ROUNDS, Duration::from_secs(3_600)),
                (3, year),
                (3, year * 1_000_000),
                (3, Duration::ZERO),
            ] {
                for _ in 0..in_a_row {
                    rounds += 1;
                    let start = Instant::now();
                    let fetched = config.resume().await;
                    let took = start.elapsed();
                    let silent = began.elapsed();
                    match fetched {
                        Ok(Fetch::Stalled { received }) if received == first.len() && took == PATIENCE => {}
                        other => panic!(
                            "the control plane sent {} bytes and then stayed silent; round \
                             {rounds} of the silence, {silent:?} after it began, returned \
                             {other:?} after {took:?}; expected `Stalled {{ received: {} }}` \
                             after a full `PATIENCE` ({PATIENCE:?}), as every round before it: \
                             the download never gives up by itself, however many rounds stall \
                             and however long the silence (the reloader decides when to)",
                            first.len(),
                            first.len()
                        ),
                    }
                }
                tokio::time::advance(gap_after).await;
            }
            control_plane.write_all(rest).await.expect("the pipe has room for the config");
            drop(control_plane);
            let (text, _) = download(&mut config).await.expect("the download failed");
            compare_with_config(&text).unwrap_or_else(|e| {
                panic!("after {rounds} silent rounds over {:?}, the rest arrived: {e}", began.elapsed())
            });
        });
    }

    /// Patience is per round: a control plane that sends a little every 1.5 s never lets a round
    /// time out between two chunks, but each `resume` must still return after `PATIENCE`.
    async fn a_round_lasts_at_most_patience_even_while_bytes_trickle() {
        let mut server = tokio_test::io::Builder::new();
        for chunk in CONFIG.as_bytes().chunks(40) {
            server.read(chunk).wait(Duration::from_millis(1_500));
        }
        let mut config = ConfigDownload::new(server.build());
        let mut rounds = Vec::new();
        let text = loop {
            let start = Instant::now();
            let fetched = config.resume().await.expect("the download failed");
            rounds.push(start.elapsed());
            if let Fetch::Complete(text) = fetched {
                break text;
            }
            assert!(rounds.len() < 20, "the download took 20 rounds; it should have ended");
        };
        assert!(
            rounds.iter().all(|took| *took <= PATIENCE),
            "the control plane sent 40 bytes every 1.5 s; each `resume` must return within \
             `PATIENCE` ({PATIENCE:?}) of its start, whether or not bytes keep coming, but the \
             rounds took {rounds:?}"
        );
        compare_with_config(&text).unwrap_or_else(|e| panic!("after rounds of {rounds:?}: {e}"));
    }

    /// A round the caller drops part way through a stall (a shutdown race, say) leaves nothing
    /// behind that shortens the next one: whenever the next call to `resume` comes, at once or a
    /// while later, its `Stalled` comes a full `PATIENCE` after that call began.
    async fn a_dropped_round_does_not_shorten_the_next() {
        use tokio::io::AsyncWriteExt;
        let first = &CONFIG.as_bytes()[..inside_the_u_umlaut()];
        let rest = &CONFIG.as_bytes()[inside_the_u_umlaut()..];
        for (dropped_after, gap) in [
            (Duration::from_millis(100), Duration::ZERO),
            (Duration::from_millis(1_900), Duration::ZERO),
            (Duration::from_millis(1_000), Duration::from_millis(500)),
            (Duration::from_millis(1_900), Duration::from_secs(3)),
        ] {
            let (mut control_plane, wire) = tokio::io::duplex(4096);
            control_plane.write_all(first).await.expect("the pipe has room for the config");
            let mut config = ConfigDownload::new(wire);
            let scenario = format!(
                "the control plane sent {} bytes and went quiet; the reloader dropped a round \
                 {dropped_after:?} into it and called `resume` again {}",
                first.len(),
                if gap.is_zero() { "at once".to_string() } else { format!("{gap:?} later") }
            );
            if let Ok(fetched) = tokio::time::timeout(dropped_after, config.resume()).await {
                panic!(
                    "the control plane sent {} bytes and went quiet, and a round returned \
                     {fetched:?} after {dropped_after:?} or less, before `PATIENCE` \
                     ({PATIENCE:?}) had passed",
                    first.len()
                );
            }
            tokio::time::sleep(gap).await;
            let start = Instant::now();
            let fetched = config.resume().await;
            let waited = start.elapsed();
            match fetched {
                Ok(Fetch::Stalled { received }) if waited >= PATIENCE => assert_eq!(
                    received,
                    first.len(),
                    "{scenario}; that round's `Stalled` must count every byte received"
                ),
                Ok(Fetch::Stalled { .. }) => panic!(
                    "{scenario}: that round reported `Stalled` after {waited:?}, although \
                     `PATIENCE` ({PATIENCE:?}) had not passed since it began. Patience is per \
                     round: a round reports a stall only after waiting a full `PATIENCE` of its \
                     own, whatever a dropped round before it had used up"
                ),
                other => panic!("{scenario}: that round returned {other:?} after {waited:?}"),
            }
            control_plane.write_all(rest).await.expect("the pipe has room for the config");
            drop(control_plane);
            let (text, _) = download(&mut config).await.expect("the download failed");
            compare_with_config(&text).unwrap_or_else(|e| panic!("{scenario}, then sent the rest: {e}"));
        }
    }

    /// The proxy creates the download, then calls `resume` for the first time a while later (it
    /// was busy applying the previous table, or waiting for an operator): a moment, most of a
    /// `PATIENCE`, exactly one, more, a week or a million years. The first round has a full
    /// `PATIENCE` of its own as every other does: its `Stalled` comes `PATIENCE` after the call
    /// began, counting the bytes that had arrived in the meantime, not at once because the
    /// download is old.
    async fn the_first_round_has_a_full_patience_however_late_it_starts() {
        use tokio::io::AsyncWriteExt;
        let first = &CONFIG.as_bytes()[..inside_the_u_umlaut()];
        let rest = &CONFIG.as_bytes()[inside_the_u_umlaut()..];
        for gap in [
            Duration::from_millis(500),
            Duration::from_millis(1_500),
            Duration::from_millis(1_900),
            PATIENCE,
            Duration::from_secs(3),
            Duration::from_secs(7 * 24 * 3600),
            // A million years, in one jump of the paused clock.
            Duration::from_secs(1_000_000 * 365 * 24 * 3600),
        ] {
            let (mut control_plane, wire) = tokio::io::duplex(4096);
            let mut config = ConfigDownload::new(wire);
            control_plane.write_all(first).await.expect("the pipe has room for the config");
            tokio::time::advance(gap).await;
            let scenario = format!(
                "the proxy created the download, the control plane sent {} bytes and went quiet, \
                 and the proxy called `resume` for the first time {gap:?} after creating it",
                first.len()
            );
            let start = Instant::now();
            let fetched = config.resume().await;
            let waited = start.elapsed();
            match fetched {
                Ok(Fetch::Stalled { received }) if waited >= PATIENCE => assert_eq!(
                    received,
                    first.len(),
                    "{scenario}; that round's `Stalled` must count every byte received"
                ),
                Ok(Fetch::Stalled { .. }) => panic!(
                    "{scenario}: that round reported `Stalled` after {waited:?}, although \
                     `PATIENCE` ({PATIENCE:?}) had not passed since it began. Patience is per \
                     round, the first one too: a round reports a stall only after waiting a full \
                     `PATIENCE` of its own, however long ago the download was created"
                ),
                other => panic!("{scenario}: that round returned {other:?} after {waited:?}"),
            }
            control_plane.write_all(rest).await.expect("the pipe has room for the config");
            drop(control_plane);
            let (text, _) = download(&mut config).await.expect("the download failed");
            compare_with_config(&text)
                .unwrap_or_else(|e| panic!("{scenario}, then sent the rest: {e}"));
        }
    }

    /// The reloader makes a round's future (`let round = config.resume();`), finishes applying the
    /// previous table, and awaits the round a while later: a moment, most of a `PATIENCE`,
    /// exactly one, more, a week or a million years. A round's patience starts when it first
    /// runs, not when `resume` is called: its `Stalled` comes a full `PATIENCE` after it was first
    /// awaited, as the first round's and a later round's.
    async fn a_round_awaited_a_while_after_the_call_has_a_full_patience() {
        use tokio::io::AsyncWriteExt;
        let first = &CONFIG.as_bytes()[..inside_the_u_umlaut()];
        let rest = &CONFIG.as_bytes()[inside_the_u_umlaut()..];
        for later_round in [false, true] {
            for gap in [
                Duration::from_millis(500),
                Duration::from_millis(1_500),
                PATIENCE,
                Duration::from_secs(3),
                Duration::from_secs(7 * 24 * 3600),
                // A million years, in one jump of the paused clock.
                Duration::from_secs(1_000_000 * 365 * 24 * 3600),
            ] {
                let (mut control_plane, wire) = tokio::io::duplex(4096);
                let mut config = ConfigDownload::new(wire);
                control_plane.write_all(first).await.expect("the pipe has room for the config");
                if later_round {
                    match config.resume().await {
                        Ok(Fetch::Stalled { .. }) => {}
                        other => panic!(
                            "the control plane sent {} bytes and went quiet; the first round \
                             returned {other:?}, expected `Stalled`",
                            first.len()
                        ),
                    }
                }
                let scenario = format!(
                    "the control plane sent {} bytes and went quiet; the reloader called \
                     `resume`{} and awaited the round it returned {gap:?} later",
                    first.len(),
                    if later_round { " again after a `Stalled` round" } else { "" }
                );
                let round = config.resume();
                tokio::time::advance(gap).await;
                let start = Instant::now();
                let fetched = round.await;
                let waited = start.elapsed();
                match fetched {
                    Ok(Fetch::Stalled { received }) if waited >= PATIENCE => assert_eq!(
                        received,
                        first.len(),
                        "{scenario}; that round's `Stalled` must count every byte received"
                    ),
                    Ok(Fetch::Stalled { .. }) => panic!(
                        "{scenario}: that round reported `Stalled` after {waited:?} of being \
                         awaited, although `PATIENCE` ({PATIENCE:?}) had not passed since it \
                         began. A round's patience starts when it first runs, not when \
                         `resume` is called"
                    ),
                    other => panic!("{scenario}: that round returned {other:?} after {waited:?}"),
                }
                control_plane.write_all(rest).await.expect("the pipe has room for the config");
                drop(control_plane);
                let (text, _) = download(&mut config).await.expect("the download failed");
                compare_with_config(&text)
                    .unwrap_or_else(|e| panic!("{scenario}, then sent the rest: {e}"));
            }
        }
    }

    /// Every event landing exactly on a round's deadline: the first byte, a chunk (ending inside
    /// the `ü`), the last bytes, or only the end of the stream arriving in the very instant a
    /// round's `PATIENCE` runs out, once or in two rounds in a row. What arrives in that instant
    /// may count in that round or the next (neither came first), but nothing is lost or held
    /// back: each `Stalled` counts the bytes that had arrived, with or without the ones arriving
    /// at that instant, each round returns within `PATIENCE`, and the download ends, with the
    /// exact text, in the instant the stream does.
    async fn what_arrives_as_a_round_runs_out_counts_in_that_round_or_the_next() {
        let bytes = CONFIG.as_bytes();
        let split_u = inside_the_u_umlaut();
        let second = split_u + 100;
        // Each scenario: the chunks, each sent `PATIENCE` after the one before it (the first at
        // once), and whether the end of the stream too comes `PATIENCE` after the last chunk.
        let scenarios: [(&str, Vec<&[u8]>, bool); 6] = [
            ("the first byte", vec![&[], bytes], false),
            ("the rest of the config", vec![&bytes[..split_u], &bytes[split_u..]], false),
            ("only the end of the stream", vec![bytes], true),
            (
                "two chunks in a row",
                vec![&bytes[..split_u], &bytes[split_u..second], &bytes[second..]],
                false,
            ),
            ("a chunk, then the end of the stream", vec![&bytes[..split_u], &bytes[split_u..]], true),
            ("every chunk and the end", vec![&[], &bytes[..split_u], &bytes[split_u..]], true),
        ];
        for (what, chunks, late_end) in scenarios {
            let mut builder = tokio_test::io::Builder::new();
            // (when, bytes sent by then), for every instant something arrives.
            let mut arrivals = Vec::new();
            let mut sent = 0;
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 {
                    builder.wait(PATIENCE);
                }
                if !chunk.is_empty() {
                    builder.read(chunk);
                }
                sent += chunk.len();
                arrivals.push((PATIENCE * i as u32, sent));
            }
            let mut ends_at = PATIENCE * (chunks.len() as u32 - 1);
            if late_end {
                builder.wait(PATIENCE);
                ends_at += PATIENCE;
            }
            let scenario = format!(
                "{what} arriving exactly as a round's `PATIENCE` ran out (chunks of {:?} bytes, \
                 {PATIENCE:?} apart{})",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
                if late_end { ", then the end of the stream as long after" } else { "" }
            );
            let mut config = ConfigDownload::new(builder.build());
            let start = Instant::now();
            let mut stalls = Vec::new();
            let text = loop {
                let round_began = Instant::now();
                let fetched = config.resume().await;
                let round = round_began.elapsed();
                let now = start.elapsed();
                assert!(
                    round <= PATIENCE,
                    "{scenario}: a round lasted {round:?}, more than `PATIENCE` ({PATIENCE:?})"
                );
                match fetched {
                    Ok(Fetch::Complete(text)) => break text,
                    Ok(Fetch::Stalled { received }) => {
                        stalls.push(received);
                        let before = arrivals.iter().filter(|(at, _)| *at < now).map(|a| a.1);
                        let by_now = arrivals.iter().filter(|(at, _)| *at <= now).map(|a| a.1);
                        let (before, by_now) = (before.max().unwrap_or(0), by_now.max().unwrap_or(0));
                        assert!(
                            received == before || received == by_now,
                            "{scenario}: a round ended {now:?} into the download with \
                             `Stalled {{ received: {received} }}`; {before} bytes had arrived \
                             before that instant and {by_now} by it, so it must report one of \
                             those (reports so far: {stalls:?})"
                        );
                        assert!(stalls.len() < 8, "{scenario}: the download stalled 8 times");
                    }
                    Err(e) => panic!("{scenario}: the download failed: {e} ({:?})", e.kind()),
                }
            };
            compare_with_config(&text).unwrap_or_else(|e| panic!("{scenario}: {e}"));
            let took = start.elapsed();
            assert_eq!(
                took, ends_at,
                "{scenario}: the stream ended {ends_at:?} into the download, but the download \
                 returned `Complete` only {took:?} into it (after `Stalled` reports of \
                 {stalls:?} bytes): bytes that had arrived were held back for another round"
            );
        }
    }

    /// Any way of cutting the config into chunks (inside multi-byte characters too), with any
    /// pauses between them: each round returns within `PATIENCE`, each `Stalled` reports exactly
    /// the bytes that had arrived, and the text is the config, byte for byte. The config holds a
    /// U+FFFD (an old admin panel wrote it into a label): valid UTF-8, a character like any other.
    fn any_chunking_and_pauses_give_the_exact_config() {
        let text = "# Zürich → Zoë 🚦 Łódź\nhost = \"api.example.com\"\nnote = \"日本語のメモ\"\n\
                    label = \"caf\u{FFFD}\"\n";
        let len = text.len();
        let cuts = proptest::collection::btree_set(1..len, 0..10);
        let pauses = proptest::collection::vec(
            prop_oneof![2 => Just(0u64), 1 => 1u64..19, 1 => 21u64..30],
            11,
        );
        check_property(64, (cuts, pauses), move |(cuts, pauses)| async move {
            let bytes = text.as_bytes();
            let mut bounds: Vec<usize> = vec![0];
            bounds.extend(cuts.iter().copied());
            bounds.push(bytes.len());
            let mut server = tokio_test::io::Builder::new();
            // Arrival time (ms) and the bytes in all by then, per chunk. Pauses are odd multiples
            // of 100 ms plus 7, so no chunk arrives exactly when a round ends.
            let mut arrivals = Vec::new();
            let mut at = 0;
            for (i, pair) in bounds.windows(2).enumerate() {
                let pause = if pauses[i] == 0 { 0 } else { pauses[i] * 100 + 7 };
                if pause > 0 {
                    server.wait(Duration::from_millis(pause));
                }
                at += pause;
                server.read(&bytes[pair[0]..pair[1]]);
                arrivals.push((at, pair[1]));
            }
            let scenario = format!("chunks ending at bytes {:?}, arriving at ms {:?}", &bounds[1..],
                arrivals.iter().map(|(at, _)| *at).collect::<Vec<_>>());
            let mut config = ConfigDownload::new(server.build());
            let verdict = async {
                let begin = Instant::now();
                for _ in 0..40 {
                    let start = Instant::now();
                    let fetched = config
                        .resume()
                        .await
                        .map_err(|e| {
                            format!(
                                "{scenario}: the download failed: {e}. The config sent is valid \
                                 UTF-8 (its `label` holds a U+FFFD, the replacement character, \
                                 sent as its own bytes EF BF BD, a character like any other)"
                            )
                        })?;
                    let took = start.elapsed();
                    if took > PATIENCE {
                        return Err(format!("{scenario}: a round took {took:?}, longer than PATIENCE"));
                    }
                    match fetched {
                        Fetch::Complete(got) if got == text => return Ok(()),
                        Fetch::Complete(got) => {
                            return Err(format!("{scenario}: the config came out as {got:?}"));
                        }
                        Fetch::Stalled { received } => {
                            let now = begin.elapsed().as_millis() as u64;
                            let arrived = arrivals
                                .iter()
                                .filter(|(at, _)| *at < now)
                                .map(|(_, total)| *total)
                                .max()
                                .unwrap_or(0);
                            if received != arrived {
                                return Err(format!(
                                    "{scenario}: at {now} ms a round stalled reporting {received} \
                                     bytes received, but {arrived} had arrived (off by {:+}): \
                                     either bytes that arrived were lost with a read that the \
                                     round's timeout dropped, or the count is wrong (`received` \
                                     counts bytes, not characters: every byte in so far, \
                                     including those of a character still split across reads)",
                                    received as i64 - arrived as i64
                                ));
                            }
                        }
                    }
                }
                Err(format!("{scenario}: 40 rounds and the download had not ended"))
            }
            .await;
            // A scripted server panics when dropped with bytes still unsent; a verdict that
            // stopped the download early must reach the learner instead of that panic.
            if verdict.is_err() {
                std::mem::forget(config);
            }
            verdict
        });
    }
}
