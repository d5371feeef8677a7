//! Hidden tests for kata 03: a ping that fires in the middle of a line must not cost any of the
//! line's bytes (not even half a character), pings must keep coming while the client is quiet,
//! lines end in `\n` or `\r\n` (and every line, empty, long or left unended at the close, is a
//! command exactly as sent minus that ending), and a line that is not UTF-8 ends the session with
//! `InvalidData`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use irc_line_reader::{Event, serve};
use kata_support::runtime::{self, SEEDS};
use kata_support::{
    Options, Outcome, TrickleReader, assert_cancel_safe_with, check_property, hidden_test,
};
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Sleep, sleep, timeout};
use tokio_test::io::{Builder, Mock};

const PING_EVERY: Duration = Duration::from_secs(1);

/// What one session produced: the commands in order, and how many pings it asked for.
struct Session {
    commands: Vec<String>,
    pings: usize,
}

/// Runs `serve` over `reader` to the end of its script and collects the events.
async fn run(reader: impl tokio::io::AsyncRead + Unpin) -> Session {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ended = timeout(Duration::from_secs(600), serve(reader, PING_EVERY, tx)).await;
    let Ok(result) = ended else {
        panic!("the session did not end within 10 minutes after the client closed the connection");
    };
    if let Err(err) = result {
        panic!("the session failed with an I/O error: {err}");
    }
    let mut session = Session { commands: Vec::new(), pings: 0 };
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::Command(c) => session.commands.push(c),
            Event::Ping => session.pings += 1,
        }
    }
    if let Some(late) = pings_after_the_end(&mut rx).await {
        panic!("the session returned Ok(()) when the client closed the connection, but {late}");
    }
    session
}

/// After a session ended (returned or was dropped), waits five ping periods and says what arrived
/// on its events channel in that time, if anything did: a session's pings end with it.
async fn pings_after_the_end(rx: &mut mpsc::UnboundedReceiver<Event>) -> Option<String> {
    while rx.try_recv().is_ok() {}
    sleep(PING_EVERY * 5).await;
    let mut late = Vec::new();
    while let Ok(event) = rx.try_recv() {
        late.push(event);
    }
    (!late.is_empty()).then(|| {
        format!(
            "in the {:?} after it ended these events still arrived: {late:?}; the pings of a \
             session that is over must stop with it (a ping from a task of the session that was \
             still running, or woke, after `serve` returned)",
            PING_EVERY * 5
        )
    })
}

/// A client that sends each packet after its pause and then closes the connection, without
/// minding being dropped half way (unlike a `tokio_test` mock, which insists on its whole script).
/// Its connection may fail instead of closing: after a last pause, every read fails with an error
/// of the given kind, as a read on a socket whose link was reset does; or it may report the
/// failure once and then carry on with a script of its own. A dead link answers no more than
/// `DEAD_LINK_READS` reads: a session that reads on after them waits for ever (and a test's
/// timeout ends it in a moment of paused time) instead of spinning on failures.
struct PausingClient {
    script: VecDeque<(Duration, Vec<u8>)>,
    pause: Option<Pin<Box<Sleep>>>,
    /// The packet being handed out, and how much of it has been (a read takes what fits).
    packet: Vec<u8>,
    at: usize,
    failure: Option<(Duration, std::io::ErrorKind)>,
    /// What the connection sends after reporting its failure once, before closing; `None`: every
    /// read after the failure fails too.
    after_failure: Option<VecDeque<(Duration, Vec<u8>)>>,
    /// How many reads have failed so far.
    failed_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// Makes the error a failed read reports (of the failure's kind); `None`: a bare error of
    /// that kind.
    error: Option<Arc<dyn Fn() -> std::io::Error + Send + Sync>>,
}

/// How many reads a connection that failed answers with its error before it goes silent.
const DEAD_LINK_READS: usize = 100;

impl PausingClient {
    fn new(script: &[(u64, &str)]) -> Self {
        let script = script
            .iter()
            .map(|&(ms, text)| (Duration::from_millis(ms), text.as_bytes().to_vec()))
            .collect();
        PausingClient::from_bytes(script)
    }

    /// The same, with packets of raw bytes (not necessarily UTF-8).
    fn from_bytes(script: Vec<(Duration, Vec<u8>)>) -> Self {
        let script = script.into();
        PausingClient {
            script,
            pause: None,
            packet: Vec::new(),
            at: 0,
            failure: None,
            after_failure: None,
            failed_reads: Arc::default(),
            error: None,
        }
    }

    /// The same, with the failed reads reporting the errors `error` makes (an OS error, an error
    /// with an error of its own inside) instead of bare errors of the failure's kind.
    fn reporting(self, error: Arc<dyn Fn() -> std::io::Error + Send + Sync>) -> Self {
        PausingClient { error: Some(error), ..self }
    }

    /// The same, with a connection that fails after `pause` instead of closing once the script
    /// is done: every read from then on fails with an error of kind `kind`.
    fn failing(
        script: Vec<(Duration, Vec<u8>)>,
        pause: Duration,
        kind: std::io::ErrorKind,
    ) -> Self {
        PausingClient { failure: Some((pause, kind)), ..PausingClient::from_bytes(script) }
    }

    /// The same, with a connection that fails only once, after `pause`: the read after the failed
    /// one gets `after` (each packet after its pause), and then the connection closes.
    fn failing_once(
        script: Vec<(Duration, Vec<u8>)>,
        pause: Duration,
        kind: std::io::ErrorKind,
        after: Vec<(Duration, Vec<u8>)>,
    ) -> Self {
        PausingClient {
            after_failure: Some(after.into()),
            ..PausingClient::failing(script, pause, kind)
        }
    }

    /// Counts the reads that failed, also once the client has been handed to the session.
    fn failed_reads(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.failed_reads.clone()
    }
}

/// What a session that did not end on a failing connection did meanwhile, from the number of
/// reads that failed: it read on after the first failure.
fn read_on_after(failed_reads: usize, kind: std::io::ErrorKind) -> String {
    if failed_reads <= 1 {
        String::new()
    } else if failed_reads > DEAD_LINK_READS {
        format!(
            ": it read on after the first failed read, {DEAD_LINK_READS} reads failed with \
             {kind:?}, and it was still reading when the link went silent (the first failed read \
             ends the session with its error)"
        )
    } else {
        format!(
            ": it read on after the first failed read ({failed_reads} reads failed with {kind:?}; \
             the first one ends the session with its error)"
        )
    }
}

impl AsyncRead for PausingClient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.at < this.packet.len() {
                let n = buf.remaining().min(this.packet.len() - this.at);
                buf.put_slice(&this.packet[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(pause) = this.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
                let Some((_, packet)) = this.script.pop_front() else {
                    let Some((_, kind)) = this.failure else {
                        return Poll::Ready(Ok(()));
                    };
                    let failed =
                        this.failed_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if failed >= DEAD_LINK_READS {
                        // A dead link: nothing more will come, and nothing will wake the reader.
                        return Poll::Pending;
                    }
                    if let Some(after) = this.after_failure.take() {
                        (this.script, this.failure) = (after, None);
                    }
                    return Poll::Ready(Err(match &this.error {
                        Some(error) => error(),
                        None => kind.into(),
                    }));
                };
                if packet.is_empty() {
                    // An empty packet reads as the end of the stream.
                    return Poll::Ready(Ok(()));
                }
                (this.packet, this.at) = (packet, 0);
                continue;
            }
            let wait = match (this.script.front(), this.failure) {
                (Some(&(wait, _)), _) | (None, Some((wait, _))) => wait,
                (None, None) => return Poll::Ready(Ok(())),
            };
            this.pause = Some(Box::pin(sleep(wait)));
        }
    }
}

/// One explored session: where its events go, and what the test has taken out of them so far.
#[derive(Clone)]
struct Rig {
    events: mpsc::UnboundedSender<Event>,
    seen: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>>,
}

impl Rig {
    fn new() -> Rig {
        let (events, seen) = mpsc::unbounded_channel();
        Rig { events, seen: Arc::new(tokio::sync::Mutex::new(seen)) }
    }
}

/// A client that sends `parts`, pausing `pause` between consecutive parts.
fn client(parts: &[&str], pause: Duration) -> Mock {
    let mut script = Builder::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            script.wait(pause);
        }
        script.read(part.as_bytes());
    }
    script.build()
}

/// A session's input: commands with non-ASCII text, ended by either line ending. The spaces at
/// the end of a line are part of its command (an IRC trailing parameter keeps them).
const CHATTY: &str = "/join #café\r\n/nick zoë\n/privmsg #café :ça va? 日本語もOK 🦀\r\n\
                      /privmsg #café :à plus  \r\n/part #café\n";
const CHATTY_COMMANDS: [&str; 5] = [
    "/join #café",
    "/nick zoë",
    "/privmsg #café :ça va? 日本語もOK 🦀",
    "/privmsg #café :à plus  ",
    "/part #café",
];

/// Lines a client may send, valid UTF-8 (the first, ending in spaces, is a whole command too).
const GOOD_LINES: [&str; 4] =
    ["/privmsg #café :à plus  ", "/join #rust", "/nick zoë", "/privmsg #rust :日本語 🦀"];

/// Valid lines whose text a "tidying" reader would change: leading blanks (pasted code), a byte
/// order mark, NUL and other control characters (CTCP's `\x01`, IRC's colour and formatting
/// codes, an ANSI escape, DEL, vertical tab, form feed), Unicode spaces and separators, a
/// combining accent, runs of spaces, mixed case, a line of only blanks. Each is a command exactly
/// as sent: what it means is for the rest of the server to decide, not for the reader.
const UNTIDY_LINES: [&str; 14] = [
    "    fn main() {}",
    "\t/privmsg #rust :tabbed",
    "\u{feff}/privmsg #rust :hi",
    "/privmsg #rust :a\0b",
    "/privmsg #rust :\x01ACTION waves\x01",
    "/privmsg #rust :\x0304red\x03 \x02bold\x02 \x1funder\x1f \x16rev\x16 \x0fplain",
    "/privmsg #rust :\x1b[31mansi\x1b[0m del\x7f",
    "/privmsg #rust :tab at the end\t\x0b\x0c",
    "/privmsg #rust :nbsp\u{a0}zwsp\u{200b}ls\u{2028}nel\u{85}ideo\u{3000}end",
    "/privmsg #rust :cafe\u{301} is not caf\u{e9}",
    "/privmsg  #rust   :double  spaces",
    "/PRIVMSG #Rust :MiXeD CaSe",
    " \t ",
    "\0",
];

/// Lines that are not UTF-8: stray bytes, a character cut short, an overlong encoding, a
/// surrogate.
const BAD_LINES: [&[u8]; 4] = [
    b"/nick \xff\xfe",
    b"/privmsg #caf\xc3 :oops",
    b"/join #\xe6\x97",
    b"/topic \xc0\xaf\xed\xa0\x80",
];

/// One line of a session: good or bad (an index into `GOOD_LINES` or `BAD_LINES`), ended by
/// `\r\n` or a bare `\n`.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Good(usize, bool),
    Bad(usize, bool),
}

/// A session with at least one bad line (good lines before it, any lines after), cut into packets
/// at any bytes (a cut is taken modulo the session's length), each followed by a pause, and
/// whether the client closes the connection before ending its last line, and its pause between its
/// last packet and closing (long enough for a ping to fall due, or none).
fn sessions_with_a_bad_line() -> impl Strategy<Value = (Vec<Sent>, Vec<(usize, u64)>, bool, u64)> {
    let good = (0..GOOD_LINES.len(), any::<bool>()).prop_map(|(i, crlf)| Sent::Good(i, crlf));
    let bad = (0..BAD_LINES.len(), any::<bool>()).prop_map(|(i, crlf)| Sent::Bad(i, crlf));
    let any_line = prop_oneof![good.clone(), bad.clone()];
    let lines = (prop::collection::vec(good, 0..4), bad, prop::collection::vec(any_line, 0..3))
        .prop_map(|(mut before, bad, after)| {
            before.push(bad);
            before.extend(after);
            before
        });
    let cuts = prop::collection::vec(
        (1usize..1000, prop_oneof![Just(0u64), Just(0), Just(300), Just(1500)]),
        0..6,
    );
    (lines, cuts, any::<bool>(), prop_oneof![Just(0u64), Just(1500)])
}

/// One line a client may send: what it holds, and how it ends.
#[derive(Debug, Clone)]
enum Said {
    /// One of `GOOD_LINES`.
    Usual(usize),
    /// An empty line: an empty command.
    Empty,
    /// A command with a `\r` in it, or at its end (sent with `\r\n` after it, so that the `\r`
    /// is the command's own and not part of the line ending).
    CarriageReturn(bool),
    /// A command that is a lone `\r` (sent as `\r\r\n`).
    OnlyCarriageReturn,
    /// A long message, about this many bytes, multi-byte characters included.
    Long(usize),
    /// One of `UNTIDY_LINES`.
    Untidy(usize),
}

impl Said {
    fn text(&self) -> String {
        match *self {
            Said::Usual(i) => GOOD_LINES[i].to_string(),
            Said::Empty => String::new(),
            Said::CarriageReturn(false) => "/privmsg #rust :ascii\rart".to_string(),
            Said::CarriageReturn(true) => "/privmsg #rust :ascii art\r".to_string(),
            Said::OnlyCarriageReturn => "\r".to_string(),
            Said::Untidy(i) => UNTIDY_LINES[i].to_string(),
            Said::Long(len) => {
                let mut text = "/privmsg #rust :".to_string();
                let words = ["a long paste, ", "café ", "日本語 ", "🦀 "];
                let mut i = 0;
                while text.len() < len {
                    text.push_str(words[i % words.len()]);
                    i += 1;
                }
                text
            }
        }
    }
}

/// How the client ends the last line of a session before it closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastLine {
    /// With its line ending, as every other line.
    Ended,
    /// Without any of its line ending.
    Unended,
    /// With only the `\r` of a `\r\n` line ending (as `Unended` when it ends in a bare `\n`).
    UnendedAfterItsCr,
}

/// A session of good lines, each ended by `\r\n` or a bare `\n` (the last one perhaps not, or not
/// whole: the client closes the connection instead), cut into packets at any bytes (a cut is
/// taken modulo the session's length), each followed by a pause; and the client's pause between
/// its last packet and closing the connection (long enough for a ping to fall due, or none).
fn sessions_of_good_lines()
-> impl Strategy<Value = (Vec<(Said, bool)>, LastLine, Vec<(usize, u64)>, u64)> {
    let said = prop_oneof![
        1 => (0..GOOD_LINES.len()).prop_map(Said::Usual),
        1 => Just(Said::Empty),
        1 => any::<bool>().prop_map(Said::CarriageReturn),
        1 => Just(Said::OnlyCarriageReturn),
        1 => (600usize..6000).prop_map(Said::Long),
        2 => (0..UNTIDY_LINES.len()).prop_map(Said::Untidy),
    ];
    let lines = prop::collection::vec((said, any::<bool>()), 1..6);
    let last = prop_oneof![
        2 => Just(LastLine::Ended),
        1 => Just(LastLine::Unended),
        1 => Just(LastLine::UnendedAfterItsCr),
    ];
    let cuts = prop::collection::vec(
        (1usize..100_000, prop_oneof![Just(0u64), Just(0), Just(300), Just(1500)]),
        0..6,
    );
    (lines, last, cuts, prop_oneof![Just(0u64), Just(1500)])
}

/// Splits `bytes` into a `PausingClient` script at `cuts` (taken modulo its length), each packet
/// followed by its pause, and describes the script for a failure message.
fn cut_into_packets(bytes: &[u8], cuts: &[(usize, u64)]) -> (Vec<(Duration, Vec<u8>)>, String) {
    let mut at: Vec<(usize, u64)> = cuts
        .iter()
        .map(|&(cut, pause)| (cut % bytes.len(), pause))
        .filter(|&(cut, _)| cut > 0)
        .collect();
    at.sort();
    at.dedup_by_key(|cut| cut.0);
    let mut script = Vec::new();
    let mut shown = Vec::new();
    let (mut from, mut pause) = (0, 0);
    for &(cut, next_pause) in at.iter().chain([(bytes.len(), 0)].iter()) {
        if pause > 0 {
            shown.push(format!("pause {pause} ms"));
        }
        script.push((Duration::from_millis(pause), bytes[from..cut].to_vec()));
        let packet = String::from_utf8_lossy(&bytes[from..cut]);
        shown.push(if packet.len() > 80 {
            let start: String = packet.chars().take(24).collect();
            format!("{start:?}… ({} bytes)", cut - from)
        } else {
            format!("{packet:?}")
        });
        (from, pause) = (cut, next_pause);
    }
    (script, shown.join(", "))
}

/// How a connection may fail under a session: the errors a read on a socket (or a TLS stream over
/// one, or any other reader `serve` is given) reports, every kind but `Interrupted` (which only
/// says "try the read again", and which the tests never send). `UnexpectedEof` is among them:
/// rustls reports a peer that dropped TCP without `close_notify` with it, and a reader that returns
/// it has failed, not closed (a clean close is a read of 0 bytes; `read_u8` and `read_exact` only
/// *turn* that into `UnexpectedEof`, so a fix built on them cannot tell the two apart). So are the
/// kinds that sound temporary: `WouldBlock` (a socket whose receive timeout ran out reports it on
/// Unix) and `TimedOut` end the session as any other failure does.
const FAILURES: [std::io::ErrorKind; 17] = [
    std::io::ErrorKind::ConnectionReset,
    std::io::ErrorKind::ConnectionAborted,
    std::io::ErrorKind::BrokenPipe,
    std::io::ErrorKind::TimedOut,
    std::io::ErrorKind::Other,
    std::io::ErrorKind::UnexpectedEof,
    std::io::ErrorKind::NotConnected,
    std::io::ErrorKind::WouldBlock,
    std::io::ErrorKind::ConnectionRefused,
    std::io::ErrorKind::HostUnreachable,
    std::io::ErrorKind::NetworkUnreachable,
    std::io::ErrorKind::NetworkDown,
    std::io::ErrorKind::PermissionDenied,
    std::io::ErrorKind::InvalidData,
    std::io::ErrorKind::InvalidInput,
    std::io::ErrorKind::OutOfMemory,
    std::io::ErrorKind::Unsupported,
];

/// A client that sends lines cut into packets anywhere (a packet may end one line and begin the
/// next), each packet after a pause of its own (a line may take several pings to arrive, or begin
/// between two pings and end after them), then closes after a last pause; and the ping period.
fn lines_arriving_in_fragments() -> impl Strategy<Value = (u64, Vec<usize>, Vec<(usize, u64)>, u64)>
{
    (
        prop_oneof![Just(1000u64), Just(700)],
        prop::collection::vec(0..GOOD_LINES.len(), 1..5),
        prop::collection::vec((1usize..1000, 1u64..2300), 0..8),
        1u64..2300,
    )
}

/// What follows a bad line that has not ended (its first bytes arrived, its `\n` has not): the
/// connection fails, the client sends the rest of the line (perhaps more lines after it in the
/// same packet), or the client closes the connection; each after a pause, perhaps long enough for
/// pings to fall due.
#[derive(Debug, Clone, Copy)]
enum AfterBadStart {
    Fails(usize),
    RestOfLine,
    RestOfLineAndMore,
    Closes,
}

/// Good lines, then the start of a bad line (an index into `BAD_LINES`, and how many of its bytes
/// past its first invalid one, taken modulo what is left: perhaps all, but never its ending), what
/// follows it and the pause before that.
fn bad_lines_left_unended() -> impl Strategy<Value = (Vec<usize>, usize, usize, AfterBadStart, u64)>
{
    let after = prop_oneof![
        (0..FAILURES.len()).prop_map(AfterBadStart::Fails),
        Just(AfterBadStart::RestOfLine),
        Just(AfterBadStart::RestOfLineAndMore),
        Just(AfterBadStart::Closes),
    ];
    (
        prop::collection::vec(0..GOOD_LINES.len(), 0..3),
        0..BAD_LINES.len(),
        0usize..64,
        after,
        prop_oneof![Just(0u64), Just(1500), Just(3500)],
    )
}

/// How many short and empty lines `a_burst_of_thousands_of_lines_comes_out_at_once` sends in one
/// packet, and how many more within the same second: far more per read and per second than any
/// budget or flood limit a reader might keep.
const BURST_LINES: usize = 12_000;
const FLOOD_LINES: usize = 8_000;

/// How `CHATTY` reaches the server: cut at any bytes (inside a character too), with a pause after
/// each packet: none, shorter than a ping, or long enough for one or two pings to fall due.
fn packetisations() -> impl Strategy<Value = Vec<(usize, u64)>> {
    prop::collection::vec(
        (1..CHATTY.len(), prop_oneof![Just(0u64), Just(300), Just(1500), Just(2100)]),
        1..6,
    )
}

/// Serves a client that is quiet for `quiet`, then sends "/quit" and closes: the moments (from
/// the start) the session asked for pings, or how the session ended when it did not end cleanly.
async fn quiet_then_quit(ping_every: Duration, quiet: Duration) -> Result<Vec<Duration>, String> {
    let mut script = Builder::new();
    script.wait(quiet).read(b"/quit\r\n");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    let mut session = tokio::spawn(serve(script.build(), ping_every, tx));
    let mut pings = Vec::new();
    let record = |event: Event, pings: &mut Vec<Duration>| {
        if event == Event::Ping {
            pings.push(start.elapsed());
        }
    };
    let ended = loop {
        tokio::select! {
            biased;
            Some(event) = rx.recv() => record(event, &mut pings),
            ended = &mut session => break ended,
        }
    };
    while let Ok(event) = rx.try_recv() {
        record(event, &mut pings);
    }
    match ended {
        Ok(Ok(())) => Ok(pings),
        ended => Err(format!("{ended:?}")),
    }
}

hidden_test! {
    /// Nothing cancelled: whole lines, several in one packet, come out as commands in order.
    async fn reads_whole_lines() {
        let reader =
            TrickleReader::new(["/join #rust\r\n/nick alice\r\n", "/topic cancel safety\r\n"]);
        let session = run(reader).await;
        let expected = ["/join #rust", "/nick alice", "/topic cancel safety"];
        let seen = &session.commands;
        let what = if seen.len() > expected.len() && seen.iter().zip(expected).all(|(s, e)| s == e) {
            format!(
                "after the three commands the session handed out {:?} as well, although the \
                 client sent nothing after its last line ending: when the client closes the \
                 connection with nothing left unread there is no last command (`read_line` reads \
                 0 bytes there, `next_line` returns `None`)",
                &seen[expected.len()..]
            )
        } else if seen.len() < expected.len() {
            "some commands are missing: bytes a reader has buffered are lost if the `BufReader` \
             or `Lines` is created anew on every iteration"
                .to_string()
        } else {
            "each must come out exactly as sent, without its line ending".to_string()
        };
        assert!(
            seen == &expected,
            "three commands arrived in two packets, \"/join #rust\\r\\n/nick alice\\r\\n\" and \
             \"/topic cancel safety\\r\\n\", then the client closed the connection; the session \
             produced {seen:?}, expected {expected:?}: {what}"
        );
    }

    /// Every command comes out exactly as sent minus its line ending, whatever its text: leading
    /// blanks, a byte order mark, NUL, control and formatting characters, Unicode spaces, a
    /// combining accent, case and runs of spaces are all the command's own. The reader removes the
    /// `\n` and one `\r` before it, and changes nothing else.
    async fn a_command_is_handed_out_untouched() {
        let sent: Vec<String> = UNTIDY_LINES
            .iter()
            .enumerate()
            .map(|(i, line)| format!("{line}{}", if i % 2 == 0 { "\r\n" } else { "\n" }))
            .collect();
        let parts: Vec<&str> = sent.iter().map(String::as_str).collect();
        let session = run(client(&parts, Duration::from_millis(700))).await;
        let seen = &session.commands;
        let changed: Vec<String> = UNTIDY_LINES
            .iter()
            .zip(seen)
            .filter(|(sent, seen)| sent != seen)
            .map(|(sent, seen)| format!("{sent:?} came out as {seen:?}"))
            .collect();
        assert!(
            seen.len() == UNTIDY_LINES.len() && changed.is_empty(),
            "the client sent {} lines, one per packet, then closed the connection; the session \
             handed out {} command(s){}{}: expected every command exactly as sent minus its line \
             ending (the `\\n` and one `\\r` before it), nothing trimmed, stripped, decoded, \
             folded or skipped; what a command means is for the rest of the server to decide",
            UNTIDY_LINES.len(),
            seen.len(),
            if changed.is_empty() { String::new() } else { format!(", and {}", changed.join(", ")) },
            if seen.len() == UNTIDY_LINES.len() {
                String::new()
            } else {
                format!(" ({seen:?}, expected {UNTIDY_LINES:?})")
            }
        );
    }

    /// A quiet client still gets pinged: that is how the server notices dead connections.
    async fn pings_while_the_client_is_quiet() {
        let session = run(client(
            &["/join #rust\r\n", "/quit\r\n"],
            Duration::from_millis(3500),
        ))
        .await;
        assert_eq!(session.commands, ["/join #rust", "/quit"]);
        assert!(
            session.pings == 3,
            "the client was quiet for 3.5 s with a ping every {PING_EVERY:?}, but the session \
             asked for {} ping(s) (expected 3, after 1 s, 2 s and 3 s of quiet): the reader must \
             keep pinging while it waits for a line, and a ping is due only once the client has \
             been quiet for {PING_EVERY:?}, not the moment it connects",
            session.pings
        );
    }

    /// The heart of the kata: a ping due while half a line has arrived must not lose that half.
    async fn a_ping_does_not_split_a_command() {
        let session = run(client(
            &["/nick al", "ice\r\n"],
            Duration::from_millis(2500),
        ))
        .await;
        assert_eq!(
            session.commands,
            ["/nick alice"],
            "the client sent \"/nick al\", paused 2.5 s (two pings were due) and sent \
             \"ice\\r\\n\". When a ping won the `select!`, the half line already read was \
             dropped with the cancelled read (or with a reader recreated on the next iteration)"
        );
        assert!(
            session.pings >= 2,
            "two pings were due while the client paused, but the session asked for {}",
            session.pings
        );
    }

    /// A command trickling in over several pings, after whole commands that arrived together.
    async fn a_slow_command_survives_several_pings() {
        let parts = [
            "/join #rust\r\n/pri",
            "vmsg #rust :hel",
            "lo\r\n/part #rust\r\n",
        ];
        let session = run(client(&parts, Duration::from_millis(1250))).await;
        assert_eq!(
            session.commands,
            ["/join #rust", "/privmsg #rust :hello", "/part #rust"],
            "a command arrived in three pieces, 1.25 s apart, with pings due in between; every \
             piece must end up in the command"
        );
        assert!(
            session.pings >= 2,
            "pings were due while the command trickled in"
        );
    }

    /// Lines ended by a bare `\n` are whole lines: each must come out as soon as it arrives, not
    /// when the client finally sends a `\r\n` or disconnects.
    async fn a_bare_newline_ends_a_line() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = client(&["/nick alice\n/join #rust\n", "/quit\r\n"], Duration::from_secs(5));
        let session = tokio::spawn(serve(reader, PING_EVERY, tx));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut commands = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Command(c) = event {
                commands.push(c);
            }
        }
        assert_eq!(
            commands,
            ["/nick alice", "/join #rust"],
            "the client sent two lines ended by a bare `\\n` in one packet, \
             \"/nick alice\\n/join #rust\\n\", and stayed connected; 2.5 s later the session had \
             produced the commands above (left) instead of both (right). Every complete line in a \
             packet is a command at once, whether it ends in `\\n` or `\\r\\n`"
        );
        let ended = timeout(Duration::from_secs(600), session).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "the session must end cleanly when the client closes the connection"
        );
    }

    /// A line that is not UTF-8 cannot be a command: the session ends with an `InvalidData`
    /// error, after the commands that came before it and without inventing text for it.
    async fn invalid_utf8_ends_the_session() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = TrickleReader::new([
            &b"/join #rust\r\n/nick "[..],
            &b"\xff\xfe\r\n"[..],
            &b"/quit\r\n"[..],
        ]);
        let ended = timeout(Duration::from_secs(600), serve(reader, PING_EVERY, tx)).await;
        let Ok(result) = ended else {
            panic!("the session did not end although the client closed the connection");
        };
        let mut commands = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Command(c) = event {
                commands.push(c);
            }
        }
        match result {
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {}
            Err(err) => panic!(
                "a line of invalid UTF-8 ended the session with an error of kind {:?} ({err}); \
                 expected InvalidData",
                err.kind()
            ),
            Ok(()) => panic!(
                "the client sent a line of invalid UTF-8 (\"/nick \\xff\\xfe\"), yet the session \
                 ended cleanly with commands {commands:?}; it must end with an InvalidData error"
            ),
        }
        assert_eq!(
            commands,
            ["/join #rust"],
            "the command before the invalid line must come out, and nothing from the invalid line"
        );
        if let Some(late) = pings_after_the_end(&mut rx).await {
            panic!("the session ended with InvalidData, but {late}");
        }
    }

    /// The server drops a session (the connection is being torn down) at every point it can be
    /// dropped: nothing of the session may go on, neither a task it spawned nor its pings.
    async fn a_dropped_session_stops_pinging() {
        let script = [(0, "/join #rust\r\n"), (2500, "/nick al"), (1500, "ice\r\n")];
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            Rig::new,
            |rig: Rig| async move {
                serve(PausingClient::new(&script), PING_EVERY, rig.events.clone()).await
            },
            |rig, outcome| async move {
                let mut seen = rig.seen.lock().await;
                match (&outcome, pings_after_the_end(&mut seen).await) {
                    (_, None) => Ok(()),
                    (Outcome::Cancelled { polls }, Some(late)) => Err(format!(
                        "the server dropped the session after poll {polls}, but {late}"
                    )),
                    (Outcome::Completed(_), Some(late)) => {
                        Err(format!("the session returned, but {late}"))
                    }
                }
            },
        )
        .await;
    }

    /// Whatever bytes the packets are cut at (inside a multi-byte character too), and whatever
    /// pings fall due between them, every command comes out whole and in order.
    fn any_packet_boundaries_and_pings_keep_every_command_whole() {
        check_property(64, packetisations(), |cuts| async move {
            let bytes = CHATTY.as_bytes();
            let mut cuts = cuts;
            cuts.sort();
            cuts.dedup_by_key(|cut| cut.0);
            let mut script = Builder::new();
            let mut from = 0;
            let mut shown = Vec::new();
            for &(at, pause_ms) in &cuts {
                script.read(&bytes[from..at]);
                shown.push(format!("{:?}", String::from_utf8_lossy(&bytes[from..at])));
                if pause_ms > 0 {
                    script.wait(Duration::from_millis(pause_ms));
                    shown.push(format!("pause {pause_ms} ms"));
                }
                from = at;
            }
            script.read(&bytes[from..]);
            shown.push(format!("{:?}", String::from_utf8_lossy(&bytes[from..])));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = timeout(Duration::from_secs(600), serve(script.build(), PING_EVERY, tx)).await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            match ended {
                Err(_) => return Err("the session did not end after the client closed".into()),
                Ok(Err(err)) => {
                    return Err(format!(
                        "the client sent valid UTF-8 as [{}] and the session failed: {err}",
                        shown.join(", ")
                    ));
                }
                Ok(Ok(())) => {}
            }
            if commands != CHATTY_COMMANDS {
                return Err(format!(
                    "the client sent [{}] (a character may be split between packets, shown as \
                     U+FFFD here), and the session produced {commands:?}; expected \
                     {CHATTY_COMMANDS:?}, each command exactly as sent, without its line ending",
                    shown.join(", ")
                ));
            }
            Ok(())
        });
    }

    /// "Any length of time" includes hours: a client that stays quiet on an open connection for
    /// many minutes (a ping every second) or hours (a ping every minute) is still pinged
    /// after each full period, and its session is still there to hand out its next command. Only
    /// the client closing the connection, or the connection failing, ends `serve`: deciding that a
    /// quiet client is dead is for whatever watches its PONGs, not for the reader.
    async fn a_client_quiet_for_hours_is_still_pinged_and_served() {
        for (ping_every, periods) in [(PING_EVERY, 400u32), (Duration::from_secs(60), 150)] {
            let quiet = ping_every * periods + ping_every / 2;
            let mut script = Builder::new();
            script.wait(quiet).read(b"/quit\r\n");
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = tokio::time::Instant::now();
            let mut session = tokio::spawn(serve(script.build(), ping_every, tx));
            let (mut pings, mut commands, mut off_beat) = (0u32, Vec::new(), None);
            let mut record = |event: Event| match event {
                Event::Ping => {
                    pings += 1;
                    let at = start.elapsed();
                    if at != ping_every * pings && off_beat.is_none() {
                        off_beat = Some((pings, at));
                    }
                }
                Event::Command(c) => commands.push(c),
            };
            let ended = loop {
                tokio::select! {
                    biased;
                    Some(event) = rx.recv() => record(event),
                    ended = &mut session => break ended,
                }
            };
            let ended_at = start.elapsed();
            while let Ok(event) = rx.try_recv() {
                record(event);
            }
            let ended = ended.expect("the session's task panicked");
            assert!(
                ended.is_ok() && ended_at >= quiet,
                "the client connected and stayed quiet for {quiet:?} on an open connection (a \
                 ping every {ping_every:?}), then sent \"/quit\" and closed it; but the session \
                 ended on its own after {ended_at:?}, with {ended:?}, having asked for {pings} \
                 ping(s): expected it to keep pinging ({periods} pings) and to return Ok(()) only \
                 when the client closed. A quiet client is not a failed connection, however long \
                 it is quiet"
            );
            assert!(
                pings == periods && off_beat.is_none() && commands == ["/quit"],
                "the client stayed quiet for {quiet:?} (a ping every {ping_every:?}), then sent \
                 \"/quit\" and closed the connection: the session asked for {pings} ping(s) \
                 (expected {periods}, one after each full period of quiet){} and handed out \
                 {commands:?} (expected [\"/quit\"])",
                match off_beat {
                    Some((n, at)) => format!(", ping {n} at {at:?} instead of {:?}", ping_every * n),
                    None => String::new(),
                }
            );
        }
    }

    /// The far end of "any length of time": a client quiet for 20 000 periods (a ping a second
    /// for five and a half hours), or for 25 periods of a year each, is still pinged after every
    /// period and then served its next command. No cut-off, counted in pings or in time, however
    /// generous, may end a session over an open connection. (On one seed's runtime: the order of
    /// `select!`'s branches is not what this is about, and every fix pays a wake per ping.)
    fn a_client_quiet_for_years_is_still_pinged_and_served() {
        for (ping_every, periods, span) in [
            (Duration::from_secs(1), 20_000u32, "20 000 s (five and a half hours)"),
            (Duration::from_secs(365 * 24 * 3600), 25, "25 years"),
        ] {
            let quiet = ping_every * periods + ping_every / 2;
            runtime::current_thread(SEEDS[0]).block_on(async move {
                let client = PausingClient::from_bytes(vec![(quiet, b"/quit\r\n".to_vec())]);
                let (tx, mut rx) = mpsc::unbounded_channel();
                let start = tokio::time::Instant::now();
                let ended = serve(client, ping_every, tx).await;
                let ended_at = start.elapsed();
                let (mut pings, mut commands) = (0u32, Vec::new());
                while let Ok(event) = rx.try_recv() {
                    match event {
                        Event::Ping => pings += 1,
                        Event::Command(c) => commands.push(c),
                    }
                }
                assert!(
                    ended.is_ok() && ended_at >= quiet,
                    "the client connected and stayed quiet for {span} on an open connection (a \
                     ping every {ping_every:?}), then sent \"/quit\" and closed it; but the \
                     session ended on its own after {ended_at:?} ({} of the quiet), with \
                     {ended:?}, having asked for {pings} ping(s): expected it to keep pinging \
                     ({periods} pings) and to return Ok(()) only when the client closed. A quiet \
                     client is not a failed connection, however long it is quiet and however \
                     many pings it leaves unanswered: `serve` has no idle timeout of its own",
                    format_args!("{:.1}%", 100.0 * ended_at.as_secs_f64() / quiet.as_secs_f64())
                );
                assert!(
                    pings == periods && commands == ["/quit"],
                    "the client stayed quiet for {span} (a ping every {ping_every:?}), then sent \
                     \"/quit\" and closed the connection: the session asked for {pings} ping(s) \
                     (expected {periods}, one after each full period of quiet) and handed out \
                     {commands:?} (expected [\"/quit\"])"
                );
            });
        }
    }

    /// A client that connects and says nothing for any length of time is pinged after each full
    /// `ping_every` of quiet, the first one a whole period after it connected, and not before.
    fn a_quiet_client_is_pinged_once_a_period() {
        check_property(32, 0u64..6000, |quiet_ms| async move {
            // Never at the very moment a ping falls due, where either order would be fair.
            let quiet_ms = if quiet_ms % 1000 == 0 { quiet_ms + 1 } else { quiet_ms };
            let quiet = Duration::from_millis(quiet_ms);
            let pings = match quiet_then_quit(PING_EVERY, quiet).await {
                Ok(pings) => pings,
                Err(ended) => {
                    return Err(format!(
                        "the client was quiet for {quiet:?}, then sent \"/quit\" and closed the \
                         connection, but the session did not end cleanly: {ended}"
                    ));
                }
            };
            let expected: Vec<Duration> =
                (1..=quiet_ms / 1000).map(|k| PING_EVERY * k as u32).collect();
            if pings != expected {
                return Err(format!(
                    "the client connected and was quiet for {quiet:?}; the session asked for \
                     pings at {pings:?} after it started, expected {expected:?}: one after each \
                     full {PING_EVERY:?} of quiet, none the moment the client connects"
                ));
            }
            Ok(())
        });
    }

    /// Any mix of good lines and lines that are not UTF-8, cut into packets anywhere (a good line
    /// and a bad one in the same packet too), with pings in between: the session hands out
    /// exactly the commands before the first bad line, then ends with `InvalidData`.
    fn a_bad_line_ends_the_session_after_the_commands_before_it() {
        let sessions = sessions_with_a_bad_line();
        check_property(96, sessions, |(lines, cuts, open_end, last_pause)| async move {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            let mut bad_seen = false;
            for &sent in &lines {
                let (text, crlf) = match sent {
                    Sent::Good(i, crlf) => {
                        if !bad_seen {
                            expected.push(GOOD_LINES[i].to_string());
                        }
                        (GOOD_LINES[i].as_bytes(), crlf)
                    }
                    Sent::Bad(i, crlf) => {
                        bad_seen = true;
                        (BAD_LINES[i], crlf)
                    }
                };
                bytes.extend_from_slice(text);
                bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            if open_end {
                // The client closes the connection without ending its last line.
                let ending = if bytes.ends_with(b"\r\n") { 2 } else { 1 };
                bytes.truncate(bytes.len() - ending);
            }
            let (mut script, mut shown) = cut_into_packets(&bytes, &cuts);
            if last_pause > 0 {
                // An empty packet reads as the end of the stream: the client closes after it.
                script.push((Duration::from_millis(last_pause), Vec::new()));
                shown.push_str(&format!(", pause {last_pause} ms"));
            }
            let closing = if open_end {
                "and closed the connection without ending its last line"
            } else {
                "and closed the connection"
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let client = PausingClient::from_bytes(script);
            let ended = timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            match ended {
                Err(_) => {
                    return Err(format!(
                        "the client sent [{shown}] (bytes that are not UTF-8 shown as U+FFFD) \
                         {closing}, but the session did not end"
                    ));
                }
                Ok(Ok(())) => {
                    return Err(format!(
                        "the client sent [{shown}] (bytes that are not UTF-8 shown as U+FFFD) \
                         {closing}, and the session ended cleanly with commands {commands:?}; a \
                         line that is not UTF-8 must end it with an InvalidData error (a last \
                         line the client did not end too)"
                    ));
                }
                Ok(Err(err)) if err.kind() != std::io::ErrorKind::InvalidData => {
                    return Err(format!(
                        "the client sent [{shown}] (bytes that are not UTF-8 shown as U+FFFD) \
                         {closing}, and the session ended with an error of kind {:?} ({err}); \
                         expected InvalidData",
                        err.kind()
                    ));
                }
                Ok(Err(_)) => {}
            }
            if commands != expected {
                return Err(format!(
                    "the client sent [{shown}] (bytes that are not UTF-8 shown as U+FFFD) \
                     {closing}; the session produced the commands {commands:?} before ending \
                     with InvalidData, expected {expected:?}: every good line before the first \
                     bad one is a command, whole and in order, even when the bad line arrived in \
                     the same packet, and nothing of the bad line or after it is"
                ));
            }
            if let Some(late) = pings_after_the_end(&mut rx).await {
                return Err(format!("the session ended with InvalidData, but {late}"));
            }
            Ok(())
        });
    }

    /// A paste far longer than the lines of the other tests, 64 KiB with multi-byte characters,
    /// sent in 16 KiB packets: it comes out whole (`serve` sets no limit on a line's length, so
    /// no bound, however generous, is right), and so does the line after it.
    async fn a_pasted_64_kib_line_comes_out_whole() {
        let paste = Said::Long(64 * 1024).text();
        let after = "/privmsg #rust :sorry, wrong window";
        let bytes = format!("{paste}\r\n{after}\r\n").into_bytes();
        let script = bytes.chunks(16 * 1024).map(|chunk| (Duration::ZERO, chunk.to_vec())).collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ended = timeout(Duration::from_secs(600), serve(PausingClient::from_bytes(script), PING_EVERY, tx)).await;
        let mut commands = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Command(c) = event {
                commands.push(c);
            }
        }
        let lengths: Vec<usize> = commands.iter().map(String::len).collect();
        match ended {
            Err(_) => panic!("the client pasted a {}-byte line and closed the connection, but the session did not end", paste.len()),
            Ok(Err(err)) => panic!(
                "the client pasted a {}-byte line, all valid UTF-8, then one short line, and closed the connection; the session ended with an error ({err}) after commands of {lengths:?} bytes: `serve` sets no limit on a line's length",
                paste.len()
            ),
            Ok(Ok(())) => {}
        }
        assert!(
            commands.len() == 2 && commands[0] == paste && commands[1] == after,
            "the client pasted a {}-byte line, then a {}-byte one; the session produced commands of {lengths:?} bytes (expected the paste whole, then the short line)",
            paste.len(),
            after.len()
        );
    }

    /// A paste of over half a MiB, past a bound a server might think generous ("a thousand times
    /// IRC's 512 bytes"): it comes out whole, and so does the line after it, with a ping falling
    /// due half way through the paste. `serve` sets no limit on a line's length. (On one seed's
    /// runtime, and no longer: a reader that scans its whole buffer after each small read pays
    /// for the square of the line's length.)
    fn a_pasted_line_of_over_half_a_mib_comes_out_whole() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let paste = Said::Long(512 * 1024 + 1000).text();
            let after = "/privmsg #rust :sorry, wrong window";
            let bytes = format!("{paste}\r\n{after}\r\n").into_bytes();
            let packets = bytes.chunks(64 * 1024).count();
            let script = bytes
                .chunks(64 * 1024)
                .enumerate()
                .map(|(i, chunk)| {
                    let pause = if i == packets / 2 { 1_500 } else { 0 };
                    (Duration::from_millis(pause), chunk.to_vec())
                })
                .collect();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = timeout(
                Duration::from_secs(600),
                serve(PausingClient::from_bytes(script), PING_EVERY, tx),
            )
            .await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let lengths: Vec<usize> = commands.iter().map(String::len).collect();
            let told = format!(
                "the client pasted a {}-byte line (all valid UTF-8, in 64 KiB packets, pausing \
                 1.5 s half way through, so that a ping fell due), then one short line, and closed \
                 the connection",
                paste.len()
            );
            match ended {
                Err(_) => panic!("{told}, but the session did not end"),
                Ok(Err(err)) => panic!(
                    "{told}; the session ended with an error of kind {:?} ({err}) after commands \
                     of {lengths:?} bytes: `serve` sets no limit on a line's length, however \
                     generous",
                    err.kind()
                ),
                Ok(Ok(())) => {}
            }
            assert!(
                commands.len() == 2 && commands[0] == paste && commands[1] == after,
                "{told}; the session produced commands of {lengths:?} bytes (expected the paste \
                 whole, then the {}-byte line)",
                after.len()
            );
        });
    }

    /// A burst far larger than the other tests': a 16 KiB paste (it grows any buffer the reader
    /// keeps), then thousands of short and empty lines in one packet, with the client waiting on
    /// an open connection: every command comes out at once, not when the client next sends
    /// something. Then thousands more lines within the same second, and a close: all of them come
    /// out, in order, and the session ends with `Ok(())`. `serve` has no budget of lines per read
    /// and no flood limit (per second, or in all): a burst is neither a close nor a failure. (On
    /// two seeds' runtimes: each pays for tens of thousands of commands.)
    fn a_burst_of_thousands_of_lines_comes_out_at_once() {
        for seed in &SEEDS[..2] {
            runtime::current_thread(*seed).block_on(async {
                let paste = Said::Long(16 * 1024).text();
                // Lines of 0 to 2 bytes: as many lines in one read as any reader's buffer holds.
                let burst: Vec<&str> =
                    (0..BURST_LINES).map(|i| ["", "a", "", "/w"][i % 4]).collect();
                let flood: Vec<String> = (0..FLOOD_LINES).map(|i| format!("/l {i}")).collect();
                let burst_bytes: String = burst.iter().flat_map(|&l| [l, "\n"]).collect();
                let mut script = vec![
                    (Duration::ZERO, format!("{paste}\r\n").into_bytes()),
                    (Duration::ZERO, burst_bytes.into_bytes()),
                ];
                // The flood: packets of 400 lines every 40 ms, from 200 ms to 960 ms.
                for (i, packet) in flood.chunks(400).enumerate() {
                    let pause = Duration::from_millis(if i == 0 { 200 } else { 40 });
                    let bytes: String = packet.iter().flat_map(|l| [l.as_str(), "\r\n"]).collect();
                    script.push((pause, bytes.into_bytes()));
                }
                // Quiet for 2.5 s (pings fall due), then the client closes the connection.
                script.push((Duration::from_millis(2_500), Vec::new()));
                let (tx, mut rx) = mpsc::unbounded_channel();
                let client = PausingClient::from_bytes(script);
                let session = tokio::spawn(serve(client, PING_EVERY, tx));
                let commands = |rx: &mut mpsc::UnboundedReceiver<Event>, into: &mut Vec<String>| {
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Command(c) = event {
                            into.push(c);
                        }
                    }
                };
                let burst_told = format!(
                    "the client pasted a {}-byte line, then sent {BURST_LINES} short and empty \
                     lines in one packet ({}), and waited with the connection open",
                    paste.len(),
                    burst[..6].iter().map(|l| format!("{l:?}, ")).collect::<String>() + "…"
                );
                sleep(Duration::from_millis(100)).await;
                let mut seen = Vec::new();
                commands(&mut rx, &mut seen);
                if session.is_finished() {
                    let ended = session.await.expect("the session's task panicked");
                    panic!(
                        "{burst_told}; the session ended on its own with {ended:?}, after {} \
                         commands: `serve` ends only when the client closes the connection or it \
                         fails, and a burst of lines, however large, is neither (flood control is \
                         not the reader's)",
                        seen.len()
                    );
                }
                let expected_now: Vec<&str> =
                    std::iter::once(paste.as_str()).chain(burst.iter().copied()).collect();
                assert!(
                    seen == expected_now,
                    "{burst_told}; 100 ms later the session had handed out {} commands, expected \
                     all {} (the paste and every line of the burst, in order): every complete line \
                     is a command as soon as it has arrived, however many arrive at once, not \
                     when the client sends more or disconnects",
                    seen.len(),
                    expected_now.len()
                );
                let ended = timeout(Duration::from_secs(600), session).await;
                commands(&mut rx, &mut seen);
                let flood_told = format!(
                    "{burst_told}; then it sent {FLOOD_LINES} more lines (\"/l 0\" to \"/l {}\") \
                     within the same second, 400 per packet, was quiet for 2.5 s and closed the \
                     connection",
                    FLOOD_LINES - 1
                );
                let flood_seen = seen.len().saturating_sub(expected_now.len());
                match ended {
                    Err(_) => panic!("{flood_told}, but the session did not end"),
                    Ok(Err(err)) => panic!("the session's task panicked: {err}"),
                    Ok(Ok(Err(err))) => panic!(
                        "{flood_told}; the session ended with an error of kind {:?} ({err}) after \
                         {flood_seen} of those {FLOOD_LINES} commands: `serve` ends only when the \
                         client closes the connection or it fails, and a client that sends \
                         thousands of commands a second has done neither (flood control is for \
                         the rest of the server)",
                        err.kind()
                    ),
                    Ok(Ok(Ok(()))) => {}
                }
                assert!(
                    seen[expected_now.len()..] == flood[..],
                    "{flood_told}; the session ended cleanly, but handed out {flood_seen} commands \
                     after the burst, expected all {FLOOD_LINES}, in order, each exactly as sent"
                );
            });
        }
    }

    /// Any session of good lines, cut into packets anywhere, with pings in between: every line
    /// comes out as one command, exactly as sent minus its line ending (`\n`, or `\r\n`: one
    /// `\r`, no more). Empty lines, a `\r` that belongs to the command, messages of several
    /// kilobytes, and a last line the client did not end before closing the connection included.
    fn every_line_comes_out_exactly_as_sent() {
        let sessions = sessions_of_good_lines();
        check_property(96, sessions, |(lines, last, cuts, last_pause)| async move {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (said, crlf) in &lines {
                let text = said.text();
                bytes.extend_from_slice(text.as_bytes());
                // A command that ends in `\r` is followed by `\r\n`: after it, a bare `\n`
                // would make the two one `\r\n` line ending.
                let crlf = *crlf || text.ends_with('\r');
                bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                expected.push(text);
            }
            // A last line left without its line ending (or with only the `\r` of it) is a
            // command as the client sent it; if what was sent ends in a `\r`, the README accepts
            // that `\r` kept (as `next_line` keeps it) or dropped (as `LinesCodec` drops it),
            // since the client never sent the line's ending. A last line of which nothing at all
            // was sent is not there: the session then ends after a line ending.
            let mut last_either = None;
            let ending = match last {
                LastLine::Ended => 0,
                LastLine::Unended if bytes.ends_with(b"\r\n") => 2,
                LastLine::Unended | LastLine::UnendedAfterItsCr => 1,
            };
            let last_start = bytes.len() - expected.last().map_or(0, |t| t.len() + 1)
                - usize::from(bytes.ends_with(b"\r\n"));
            let sent = &bytes[last_start..bytes.len() - ending];
            let open_end = ending > 0 && !sent.is_empty();
            if open_end {
                let sent = String::from_utf8(sent.to_vec()).expect("good lines are UTF-8");
                last_either = sent.strip_suffix('\r').map(str::to_owned);
                expected.pop();
                expected.push(sent);
                bytes.truncate(bytes.len() - ending);
            }
            let (mut script, mut shown) = cut_into_packets(&bytes, &cuts);
            if last_pause > 0 {
                // An empty packet reads as the end of the stream: the client closes after it.
                script.push((Duration::from_millis(last_pause), Vec::new()));
                shown.push_str(&format!(", pause {last_pause} ms"));
            }
            let closing = if open_end {
                "and closed the connection without ending its last line"
            } else {
                "and closed the connection"
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let client = PausingClient::from_bytes(script);
            let ended = timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let shorten = |texts: &[String]| -> Vec<String> {
                texts
                    .iter()
                    .map(|t| {
                        if t.len() > 80 {
                            let start: String = t.chars().take(24).collect();
                            format!("{start:?}… ({} bytes)", t.len())
                        } else {
                            format!("{t:?}")
                        }
                    })
                    .collect()
            };
            match ended {
                Err(_) => {
                    return Err(format!(
                        "the client sent [{shown}] {closing}, but the session did not end"
                    ));
                }
                Ok(Err(err)) => {
                    return Err(format!(
                        "the client sent [{shown}], all valid UTF-8, {closing}; the session \
                         ended with an error ({err}) after the commands [{}], expected it to \
                         end cleanly after [{}]",
                        shorten(&commands).join(", "),
                        shorten(&expected).join(", ")
                    ));
                }
                Ok(Ok(())) => {}
            }
            // Dropping the `\r` of an unended last line that is only a `\r` leaves an empty
            // command, or none at all (as `LinesCodec` has it).
            let without_its_cr = last_either.map(|either| {
                let mut expected = expected.clone();
                expected.pop();
                if either.is_empty() && commands.len() == expected.len() {
                    return expected;
                }
                expected.push(either);
                expected
            });
            if commands != expected && without_its_cr.as_ref() != Some(&commands) {
                let or = match &without_its_cr {
                    Some(other) => format!(
                        " (or, with the unended last line's `\\r` dropped, [{}], where an empty \
                         last command may be left out)",
                        shorten(other).join(", ")
                    ),
                    None => String::new(),
                };
                return Err(format!(
                    "the client sent [{shown}] {closing}; the session produced the commands [{}], \
                     expected [{}]{or}: every line is one command, exactly as sent minus its line \
                     ending (an empty line is an empty command, a `\\r` before the `\\r\\n` \
                     belongs to the command, a long line is whole, and a last line the client \
                     did not end is a command too)",
                    shorten(&commands).join(", "),
                    shorten(&expected).join(", ")
                ));
            }
            if let Some(late) = pings_after_the_end(&mut rx).await {
                return Err(format!("the session returned Ok(()), but {late}"));
            }
            Ok(())
        });
    }

    /// A last line that is a lone `\r` the client did not end (`"/nick a\r\n\r"`, then the
    /// client closes the connection), whether it arrived with the line before it or alone, and
    /// whether a ping fell due before the close: `"\r"` as `next_line` hands it out, or, with the
    /// `\r` dropped, `""` or no command at all (as `LinesCodec` has it); nothing else, and the
    /// session ends cleanly.
    async fn an_unended_last_line_of_a_lone_cr_is_kept_or_dropped() {
        let scripts: [&[(u64, &str)]; 3] = [
            &[(0, "/nick a\r\n\r"), (0, "")],
            &[(0, "/nick a\r\n"), (1500, "\r"), (0, "")],
            &[(0, "/nick a\r\n\r"), (1500, "")],
        ];
        for script in scripts {
            let shown: Vec<String> = script
                .iter()
                .filter(|(_, text)| !text.is_empty())
                .map(|&(pause, text)| {
                    let pause = if pause > 0 { format!("pause {pause} ms, ") } else { String::new() };
                    format!("{pause}{text:?}")
                })
                .collect();
            let last_pause = script.last().map_or(0, |&(pause, _)| pause);
            let closing = if last_pause > 0 {
                format!("paused {last_pause} ms (a ping fell due) and closed the connection")
            } else {
                "closed the connection".to_owned()
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let client = PausingClient::new(script);
            let ended = timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let what = format!("the client sent [{}] and {closing}", shown.join(", "));
            match ended {
                Err(_) => panic!("{what}, but the session did not end"),
                Ok(Err(err)) => panic!(
                    "{what}; the session ended with an error ({err}) after the commands \
                     {commands:?}, expected it to end cleanly"
                ),
                Ok(Ok(())) => {}
            }
            assert!(
                commands == ["/nick a", "\r"] || commands == ["/nick a", ""] || commands == ["/nick a"],
                "{what}; the session produced the commands {commands:?}, expected [\"/nick a\", \
                 \"\\r\"] as `next_line` hands them out, or, with the unended line's `\\r` dropped \
                 (the client never sent the line's ending), [\"/nick a\", \"\"] or [\"/nick a\"] \
                 as `LinesCodec` has it"
            );
        }
    }

    /// The connection fails instead of closing (a read fails with `ConnectionReset`,
    /// `BrokenPipe`, `TimedOut` or another error), between lines or in the middle of one, with a
    /// ping due before it or not: the session ends with that error, after exactly the commands
    /// whose lines arrived whole; the line the failure cut off is not a command.
    fn a_failing_connection_ends_the_session_with_its_error() {
        let sessions = (
            prop::collection::vec((0..GOOD_LINES.len(), any::<bool>()), 0..4),
            prop_oneof![Just(None), (0..GOOD_LINES.len(), 1usize..1000).prop_map(Some)],
            prop::collection::vec(
                (1usize..1000, prop_oneof![Just(0u64), Just(0), Just(1500)]),
                0..4,
            ),
            prop_oneof![Just(0u64), Just(1500)],
            0..FAILURES.len(),
        );
        check_property(48, sessions, |(lines, cut_off, cuts, pause, failure)| async move {
            let kind = FAILURES[failure];
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for &(i, crlf) in &lines {
                bytes.extend_from_slice(GOOD_LINES[i].as_bytes());
                bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                expected.push(GOOD_LINES[i].to_string());
            }
            // The start of a line, perhaps with the `\r` of its ending but never its `\n`.
            if let Some((i, len)) = cut_off {
                let line = format!("{}\r", GOOD_LINES[i]);
                bytes.extend_from_slice(&line.as_bytes()[..1 + len % line.len()]);
            }
            let (script, mut shown) = if bytes.is_empty() {
                (Vec::new(), String::new())
            } else {
                cut_into_packets(&bytes, &cuts)
            };
            if pause > 0 {
                shown.push_str(&format!(", pause {pause} ms"));
            }
            let cut = if cut_off.is_some() { "in the middle of a line" } else { "between lines" };
            let shown = shown.trim_start_matches(", ");
            let sent = match (bytes.is_empty(), pause) {
                (true, 0) => "nothing".to_owned(),
                (true, pause) => format!("nothing for {pause} ms"),
                (false, _) => format!("[{shown}]"),
            };
            let story = format!(
                "the client sent {sent}, then its connection failed {cut}: every read from then \
                 on failed with {kind:?} (a failed link, not a close)"
            );
            let (tx, mut rx) = mpsc::unbounded_channel();
            let client = PausingClient::failing(script, Duration::from_millis(pause), kind);
            let failed_reads = client.failed_reads();
            let ended = timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let rule = "an I/O error is not the client closing the connection: it ends the \
                        session with that error, and a line it cuts off is not a command";
            match ended {
                Err(_) => {
                    let failed = failed_reads.load(std::sync::atomic::Ordering::SeqCst);
                    return Err(format!(
                        "{story}; the session did not end{}",
                        read_on_after(failed, kind)
                    ));
                }
                Ok(Ok(())) => {
                    return Err(format!(
                        "{story}; the session ended cleanly, with Ok(()), after the commands \
                         {commands:?}, expected it to end with the {kind:?} error after \
                         {expected:?}: {rule}"
                    ));
                }
                Ok(Err(err)) if err.kind() != kind => {
                    return Err(format!(
                        "{story}; the session ended with an error of kind {:?} ({err}), \
                         expected the connection's own {kind:?} error",
                        err.kind()
                    ));
                }
                Ok(Err(_)) => {}
            }
            if commands != expected {
                let why = if commands.len() > expected.len() && commands.starts_with(&expected) {
                    rule
                } else {
                    "every line that arrived whole is one command, exactly as sent minus its line \
                     ending, even when pings fell due while it arrived"
                };
                return Err(format!(
                    "{story}; the session ended with {kind:?} after the commands {commands:?}, \
                     expected {expected:?}, the lines that arrived whole: {why}"
                ));
            }
            if let Some(late) = pings_after_the_end(&mut rx).await {
                return Err(format!("the session ended with {kind:?}, but {late}"));
            }
            Ok(())
        });
    }
    /// Every kind of failure, each the same way, whatever its name suggests: a read that fails
    /// with `UnexpectedEof` or `NotConnected` (what a TLS stream or a socket reports when the
    /// peer vanished) is a failed connection like `ConnectionReset`, not a close. Between lines
    /// and in the middle of one, with a ping due before the failure or not, the session ends with
    /// that error after exactly the whole lines, and never with `Ok(())`.
    async fn a_failure_of_any_kind_is_not_a_close() {
        for kind in FAILURES {
            for (sent, whole) in [
                ("/join #rust\r\n", vec!["/join #rust"]),
                ("/join #rust\r\n/privmsg #rust :deploy", vec!["/join #rust"]),
            ] {
                for pause in [0u64, 1500] {
                    let script = vec![(Duration::ZERO, sent.as_bytes().to_vec())];
                    let client = PausingClient::failing(script, Duration::from_millis(pause), kind);
                    let failed_reads = client.failed_reads();
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let ended =
                        timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
                    let mut commands = Vec::new();
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Command(c) = event {
                            commands.push(c);
                        }
                    }
                    let story = format!(
                        "the client sent {sent:?}, then after {pause} ms its connection failed: \
                         every read from then on failed with {kind:?} (a failed link, not a \
                         close: a closed connection reads 0 bytes)"
                    );
                    match &ended {
                        Ok(Err(err)) if err.kind() == kind => {}
                        Ok(Ok(())) => panic!(
                            "{story}; the session ended cleanly, with Ok(()), after the commands \
                             {commands:?}: expected it to end with the {kind:?} error after \
                             {whole:?}. An error of any kind is not the client closing the \
                             connection, and the server must hear of it"
                        ),
                        Err(_) => panic!(
                            "{story}; the session did not end{}, after the commands \
                             {commands:?}: expected it to end with the {kind:?} error after \
                             {whole:?}",
                            read_on_after(
                                failed_reads.load(std::sync::atomic::Ordering::SeqCst),
                                kind
                            )
                        ),
                        other => panic!(
                            "{story}; the session ended with {other:?}, expected the \
                             connection's own {kind:?} error after {whole:?}"
                        ),
                    }
                    assert_eq!(
                        commands, whole,
                        "{story}; the session handed out {commands:?}, expected {whole:?}: only \
                         the lines that arrived whole are commands, and a line the failure cut \
                         off is not one"
                    );
                }
            }
        }
    }

    /// A connection that reports its failure once, whatever the kind (`WouldBlock` and
    /// `TimedOut`, which sound temporary, as much as `ConnectionReset`), and would then carry on
    /// (another line arrives) or read as closed: the failed read ends the session with its error,
    /// after exactly the lines that arrived whole. Nothing after the failure is a command, and the
    /// half line it cut off is not one either.
    async fn a_failure_reported_once_ends_the_session() {
        for kind in FAILURES {
            for (sent, whole, carry_on) in [
                ("/join #rust\r\n", vec!["/join #rust"], "/part #rust\r\n"),
                ("/join #rust\r\n/privmsg #ops :deploy", vec!["/join #rust"], " to prod\r\n"),
            ] {
                for (pause, after) in [(0u64, carry_on), (1500, carry_on), (0, ""), (1500, "")] {
                    let script = vec![(Duration::ZERO, sent.as_bytes().to_vec())];
                    let after_failure = if after.is_empty() {
                        Vec::new()
                    } else {
                        vec![(Duration::ZERO, after.as_bytes().to_vec())]
                    };
                    let client = PausingClient::failing_once(
                        script,
                        Duration::from_millis(pause),
                        kind,
                        after_failure,
                    );
                    let failed_reads = client.failed_reads();
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let ended =
                        timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
                    let mut commands = Vec::new();
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Command(c) = event {
                            commands.push(c);
                        }
                    }
                    let then = if after.is_empty() {
                        "then read as closed".to_owned()
                    } else {
                        format!(
                            "then, had it been read again, would have sent {after:?} and closed"
                        )
                    };
                    let story = format!(
                        "the client sent {sent:?}, then after {pause} ms a read failed once with \
                         {kind:?}, and the connection {then}"
                    );
                    let failed = failed_reads.load(std::sync::atomic::Ordering::SeqCst);
                    let read_on = if failed > 0 && commands.len() > whole.len() {
                        ", so it read on after the failed read"
                    } else {
                        ""
                    };
                    match &ended {
                        Ok(Err(err)) if err.kind() == kind => {}
                        Ok(Ok(())) => panic!(
                            "{story}; the session ended cleanly, with Ok(()), after the commands \
                             {commands:?}{read_on}: expected it to end with the {kind:?} error \
                             after {whole:?}. A read that fails, with an error of any kind but \
                             `Interrupted`, ends the session with that error, even if the \
                             connection would have carried on"
                        ),
                        Err(_) => panic!(
                            "{story}; the session did not end, after the commands {commands:?}: \
                             expected it to end with the {kind:?} error after {whole:?}"
                        ),
                        Ok(Err(err)) => panic!(
                            "{story}; the session ended with an error of kind {:?} ({err}) after \
                             the commands {commands:?}, expected the connection's own {kind:?} \
                             error after {whole:?}",
                            err.kind()
                        ),
                    }
                    assert!(
                        commands == whole,
                        "{story}; the session ended with the {kind:?} error, but handed out \
                         {commands:?}{read_on}, expected {whole:?}: only the lines that arrived \
                         whole before the failure are commands"
                    );
                }
            }
        }
    }

    /// `serve` ends only when the client closes the connection or it fails: the rest of the server
    /// dropping its end of the events channel (swapping consumers, shutting a room down) while the
    /// client is connected does not end the session, whether a command or a ping is the first
    /// event nobody receives. The session goes on reading the client until it closes (and then
    /// returns `Ok(())`) or its connection fails (and then returns that error).
    async fn a_dropped_events_receiver_does_not_end_the_session() {
        for (first, failure) in [
            ("/join #rust\r\n", None),
            ("", None),
            ("/join #rust\r\n", Some(std::io::ErrorKind::ConnectionReset)),
        ] {
            let script = vec![
                (Duration::ZERO, first.as_bytes().to_vec()),
                (Duration::from_millis(3500), b"/privmsg #rust :still here\r\n".to_vec()),
                (Duration::from_millis(500), b"/quit\r\n".to_vec()),
            ];
            let script = script.into_iter().filter(|(_, p)| !p.is_empty()).collect();
            let client = match failure {
                Some(kind) => PausingClient::failing(script, Duration::from_millis(1500), kind),
                None => PausingClient::from_bytes(script),
            };
            let (last, expected) = match failure {
                Some(kind) => (Duration::from_millis(5500), format!("Err({kind:?})")),
                None => (Duration::from_millis(4000), "Ok(())".to_owned()),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            drop(rx);
            let start = tokio::time::Instant::now();
            let ended = timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
            let ended_at = start.elapsed();
            let ok = match (&ended, failure) {
                (Ok(Ok(())), None) => true,
                (Ok(Err(err)), Some(kind)) => err.kind() == kind,
                _ => false,
            };
            assert!(
                ok && ended_at >= last,
                "nobody was receiving the session's events (the rest of the server dropped the \
                 receiver at the start), and the client sent {first:?}, then \
                 \"/privmsg #rust :still here\" after 3.5 s and \"/quit\" 0.5 s later, then \
                 its connection {} at {last:?}; the session ended after {ended_at:?} with \
                 {ended:?}, expected {expected} at {last:?}: `serve` ends only when the client \
                 closes the connection or it fails, not when nobody listens to its events (a \
                 session that stops reading a connected client leaves its socket unread)",
                if failure.is_some() { "failed" } else { "closed" }
            );
        }
    }

    /// `ping_every` is whatever the server configures, not only whole seconds: a period under a
    /// second (a few ms, 250 ms) or a fractional one (333 ms, 1.5 s, 2.75 s) is kept as given, a
    /// ping after each full period of quiet, the first a period after the client connected.
    fn pings_keep_to_any_period_under_a_second_or_fractional() {
        const PERIODS_MS: [u64; 6] = [3, 40, 250, 333, 1500, 2750];
        let cases = (0..PERIODS_MS.len(), 0u64..6500);
        check_property(32, cases, |(period, per_mille)| async move {
            let period_ms = PERIODS_MS[period];
            let ping_every = Duration::from_millis(period_ms);
            let mut quiet_ms = period_ms * per_mille / 1000;
            // Never at the very moment a ping falls due, where either order would be fair.
            if quiet_ms % period_ms == 0 {
                quiet_ms += period_ms / 2;
            }
            let quiet = Duration::from_millis(quiet_ms);
            let pings = match quiet_then_quit(ping_every, quiet).await {
                Ok(pings) => pings,
                Err(ended) => {
                    return Err(format!(
                        "with a ping every {ping_every:?}, the client was quiet for {quiet:?}, \
                         then sent \"/quit\" and closed the connection, but the session did not \
                         end cleanly: {ended}"
                    ));
                }
            };
            let expected: Vec<Duration> =
                (1..=quiet_ms / period_ms).map(|k| ping_every * k as u32).collect();
            if pings != expected {
                let shown = if pings.len() > 12 {
                    format!("{} pings, the first at {:?}", pings.len(), pings.first())
                } else {
                    format!("{pings:?}")
                };
                return Err(format!(
                    "the session was given a ping every {ping_every:?}, and the client connected \
                     and was quiet for {quiet:?}; the session asked for pings at {shown} after it \
                     started, expected {} ping(s), at {ping_every:?} and each {ping_every:?} \
                     after: `ping_every` is the period as given, under a second or not a whole \
                     number of seconds too",
                    expected.len()
                ));
            }
            Ok(())
        });
    }

    /// A client whose line trickles in, a byte now and then, without ever ending, has sent no
    /// command: it is quiet, and is pinged on schedule (from connect, as it has no last line) as
    /// a client sending nothing is. A half-dead link that delivers a byte now and then is the
    /// kind of connection the pings exist to check.
    async fn a_line_trickling_in_without_its_end_is_still_pinged() {
        // (ping_every, gap between bytes): bytes come faster than the pings.
        for (period_ms, gap_ms) in [(1000u64, 900u64), (300, 250), (500, 7)] {
            let ping_every = Duration::from_millis(period_ms);
            let start_of_line = "/privmsg #ops :still ";
            let trickle = "typing...";
            let mut script = vec![(Duration::ZERO, start_of_line.as_bytes().to_vec())];
            let mut at = 0;
            for byte in trickle.bytes() {
                script.push((Duration::from_millis(gap_ms), vec![byte]));
                at += gap_ms;
            }
            // Keep trickling for at least nine periods.
            let mut extra = 0;
            while at < 9 * period_ms {
                script.push((Duration::from_millis(gap_ms), b".".to_vec()));
                at += gap_ms;
                extra += 1;
            }
            // The line ends a gap later, never at the very moment a ping falls due.
            let mut end_at = at + gap_ms;
            if end_at % period_ms == 0 {
                end_at += 1;
            }
            script.push((Duration::from_millis(end_at - at), b"\r\n".to_vec()));
            let ended_line = Duration::from_millis(end_at);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = tokio::time::Instant::now();
            let client = PausingClient::from_bytes(script);
            let mut session = tokio::spawn(serve(client, ping_every, tx));
            let (mut pings, mut commands) = (0u64, Vec::new());
            let mut record = |event: Event| match event {
                Event::Ping if start.elapsed() < ended_line => pings += 1,
                Event::Ping => {}
                Event::Command(c) => commands.push(c),
            };
            let ended = loop {
                tokio::select! {
                    biased;
                    Some(event) = rx.recv() => record(event),
                    ended = &mut session => break ended,
                }
            };
            while let Ok(event) = rx.try_recv() {
                record(event);
            }
            let expected_pings = (ended_line.as_millis() as u64) / period_ms;
            let line = format!("{start_of_line}{trickle}{}", ".".repeat(extra));
            assert!(
                matches!(ended, Ok(Ok(()))) && commands == [line.clone()],
                "the client sent {start_of_line:?} and then the rest of the line a byte every \
                 {gap_ms} ms, ended it at {ended_line:?} and closed the connection; the session \
                 ended with {ended:?} and handed out {commands:?}, expected Ok(()) and \
                 [{line:?}]"
            );
            assert!(
                pings == expected_pings,
                "with a ping every {ping_every:?}, the client sent {start_of_line:?} and then \
                 trickled the rest of that line a byte every {gap_ms} ms, without ending it \
                 until {ended_line:?}: the session asked for {pings} ping(s) before the line \
                 ended, expected {expected_pings} (one each {ping_every:?} since connect). Bytes \
                 of a line that has not ended are not a command: until its line ends the client \
                 is quiet, and a client that delivers a byte now and then is the kind the pings \
                 exist to check"
            );
        }
    }

    /// Lines arrive in fragments at any moments between pings (a line begun and not yet ended, a
    /// packet that ends one line and begins the next): the pings keep to a schedule from connect
    /// or a period after the last line that ended, never put off by the bytes of a line that has
    /// not ended, whenever they arrive and however many fragments a line comes in.
    fn fragments_of_a_line_never_put_off_a_ping() {
        let sessions = lines_arriving_in_fragments();
        check_property(48, sessions, |(period, lines, cuts, close)| async move {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for &i in &lines {
                bytes.extend_from_slice(GOOD_LINES[i].as_bytes());
                bytes.extend_from_slice(b"\r\n");
                expected.push(GOOD_LINES[i].to_string());
            }
            let (mut script, shown) = cut_into_packets(&bytes, &cuts);
            // When each packet arrives, and when the lines end.
            let (mut at, mut arrivals, mut line_ends) = (0u64, Vec::new(), Vec::new());
            for (pause, packet) in &script {
                at += pause.as_millis() as u64;
                arrivals.push(at);
                if packet.contains(&b'\n') {
                    line_ends.push(at);
                }
            }
            let close_at = at + close;
            arrivals.push(close_at);
            // A moment at which a ping may fall due under one schedule or the other, and a packet
            // arrives too, would make the order of the two a matter of luck: leave that case out.
            let mut moments = arrivals.clone();
            moments.push(0);
            moments.dedup();
            for (k, &a) in moments.iter().enumerate() {
                if moments[k + 1..].iter().any(|&b| b > a && (b - a) % period == 0) {
                    return Ok(());
                }
            }
            script.push((Duration::from_millis(close), Vec::new()));
            let from_connect: Vec<u64> =
                (1..).map(|k| k * period).take_while(|&t| t < close_at).collect();
            let mut after_last_line = Vec::new();
            let mut next = period;
            for &end in line_ends.iter().chain([close_at].iter()) {
                while next < end {
                    after_last_line.push(next);
                    next += period;
                }
                next = end + period;
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = tokio::time::Instant::now();
            let ping_every = Duration::from_millis(period);
            let client = PausingClient::from_bytes(script);
            let mut session = tokio::spawn(serve(client, ping_every, tx));
            let (mut pings, mut commands) = (Vec::new(), Vec::new());
            let mut record = |event: Event| match event {
                Event::Ping => pings.push(start.elapsed().as_millis() as u64),
                Event::Command(c) => commands.push(c),
            };
            let ended = loop {
                tokio::select! {
                    biased;
                    Some(event) = rx.recv() => record(event),
                    ended = &mut session => break ended,
                }
            };
            while let Ok(event) = rx.try_recv() {
                record(event);
            }
            let story = format!(
                "with a ping every {period} ms, the client sent [{shown}] (lines ended at \
                 {line_ends:?} ms) and closed the connection at {close_at} ms"
            );
            if !matches!(ended, Ok(Ok(()))) || commands != expected {
                return Err(format!(
                    "{story}; the session ended with {ended:?} after the commands {commands:?}, \
                     expected Ok(()) after {expected:?}"
                ));
            }
            if pings != from_connect && pings != after_last_line {
                return Err(format!(
                    "{story}; the session asked for pings at {pings:?} ms, expected \
                     {from_connect:?} (a period apart from connect) or {after_last_line:?} (a \
                     period after the last line that ended): until its line ends the client is \
                     quiet, and the bytes of a line that has not ended put off no ping, whenever \
                     they arrive"
                ));
            }
            Ok(())
        });
    }

    /// A bad line (not UTF-8) that has not ended is not yet a line: until the next event the
    /// session goes on (and pings a client that pauses), and then ends with what that event
    /// means: the connection's own error if it fails, `InvalidData` once the line ends or the
    /// client closes, after exactly the commands before the bad line, and never earlier.
    fn a_bad_line_not_yet_ended_waits_for_what_comes_next() {
        let sessions = bad_lines_left_unended();
        check_property(64, sessions, |(before, bad, cut, after, pause)| async move {
            let line = BAD_LINES[bad];
            // At least the first byte that makes the line invalid, perhaps the whole line.
            let valid = std::str::from_utf8(line).map_or_else(|e| e.valid_up_to(), str::len);
            let sent = valid + 1 + cut % (line.len() - valid);
            let mut first = Vec::new();
            let mut expected = Vec::new();
            for &i in &before {
                first.extend_from_slice(GOOD_LINES[i].as_bytes());
                first.extend_from_slice(b"\r\n");
                expected.push(GOOD_LINES[i].to_string());
            }
            first.extend_from_slice(&line[..sent]);
            let mut rest = line[sent..].to_vec();
            rest.extend_from_slice(b"\r\n");
            if let AfterBadStart::RestOfLineAndMore = after {
                rest.extend_from_slice(b"/join #rust\r\n/nick zo\xc3\xab\r\n");
            }
            let wait = Duration::from_millis(pause);
            let script = vec![(Duration::ZERO, first.clone())];
            let (client, want, next) = match after {
                AfterBadStart::Fails(kind) => (
                    PausingClient::failing(script, wait, FAILURES[kind]),
                    FAILURES[kind],
                    format!("its connection failed with {:?}", FAILURES[kind]),
                ),
                AfterBadStart::RestOfLine | AfterBadStart::RestOfLineAndMore => (
                    PausingClient::from_bytes(vec![
                        (Duration::ZERO, first.clone()),
                        (wait, rest.clone()),
                    ]),
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "it sent the rest of that line and closed ({:?})",
                        String::from_utf8_lossy(&rest)
                    ),
                ),
                AfterBadStart::Closes => (
                    PausingClient::from_bytes(vec![
                        (Duration::ZERO, first.clone()),
                        (wait, Vec::new()),
                    ]),
                    std::io::ErrorKind::InvalidData,
                    "it closed the connection".to_string(),
                ),
            };
            let story = format!(
                "the client sent {:?} (good lines, then the start of a line that is not UTF-8, \
                 not yet ended), and {pause} ms later {next}",
                String::from_utf8_lossy(&first)
            );
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = tokio::time::Instant::now();
            let mut session = tokio::spawn(serve(client, PING_EVERY, tx));
            let mut commands = Vec::new();
            if pause > 0 {
                sleep(wait - Duration::from_millis(1)).await;
                if session.is_finished() {
                    let ended = (&mut session).await;
                    return Err(format!(
                        "{story}; the session ended with {ended:?} before that, at \
                         {:?} or earlier: the client neither closed the connection nor failed, \
                         and the line had not ended, so the session must go on (and ping) until \
                         the next thing the client or its connection does",
                        start.elapsed()
                    ));
                }
                let mut pings = 0u64;
                while let Ok(event) = rx.try_recv() {
                    match event {
                        Event::Ping => pings += 1,
                        Event::Command(c) => commands.push(c),
                    }
                }
                let due = (pause - 1) / PING_EVERY.as_millis() as u64;
                if pings != due {
                    return Err(format!(
                        "{story}; in the {} ms before that the session asked for {pings} \
                         ping(s), expected {due}: a client whose line has not ended is quiet",
                        pause - 1
                    ));
                }
            }
            let ended = timeout(Duration::from_secs(600), &mut session).await;
            let ended_at = start.elapsed();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let ended = match ended {
                Ok(Ok(ended)) => ended,
                Ok(Err(panicked)) => {
                    return Err(format!("{story}; the session panicked: {panicked}"));
                }
                Err(_) => return Err(format!("{story}; the session did not end")),
            };
            match &ended {
                Err(err) if err.kind() == want && ended_at == wait => {}
                _ => {
                    return Err(format!(
                        "{story}; the session ended with {ended:?} at {ended_at:?}, expected an \
                         error of kind {want:?} at {wait:?}, the moment {next}: a line is judged \
                         once it has ended or the client closed, a failed connection ends the \
                         session with its own error, and nothing ends it before then"
                    ));
                }
            }
            if commands != expected {
                return Err(format!(
                    "{story}; the session handed out the commands {commands:?}, expected \
                     {expected:?}: exactly the commands before the bad line"
                ));
            }
            Ok(())
        });
    }

    /// A last line the client did not end is a command whatever it holds, also when it is only
    /// blanks (spaces, tabs, a Unicode space): the reader hands it out exactly as sent, as
    /// `next_line` does, with or without a pause (and a ping) before the close, in the packet of
    /// the line before it or in one of its own.
    async fn an_unended_last_line_of_blanks_is_a_command() {
        for last in [" ", "  ", "\t", "\t  ", " \t ", "\u{a0}", " \u{3000}"] {
            for own_packet in [false, true] {
                for pause in [0u64, 1500] {
                    let mut script = if own_packet {
                        vec![
                            (Duration::ZERO, b"/nick al\n".to_vec()),
                            (Duration::from_millis(300), last.as_bytes().to_vec()),
                        ]
                    } else {
                        vec![(Duration::ZERO, format!("/nick al\n{last}").into_bytes())]
                    };
                    if pause > 0 {
                        // An empty packet reads as the end of the stream: the client closes.
                        script.push((Duration::from_millis(pause), Vec::new()));
                    }
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let ended = timeout(
                        Duration::from_secs(600),
                        serve(PausingClient::from_bytes(script), PING_EVERY, tx),
                    )
                    .await;
                    let mut commands = Vec::new();
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Command(c) = event {
                            commands.push(c);
                        }
                    }
                    let expected = ["/nick al".to_string(), last.to_string()];
                    let ended = match ended {
                        Ok(result) => result,
                        Err(_) => Err(std::io::Error::other("no end: the session went on")),
                    };
                    assert!(
                        matches!(ended, Ok(())) && commands == expected,
                        "the client sent \"/nick al\\n\" and then {last:?}{} without a line \
                         ending, {}and closed the connection; the session ended with {ended:?} \
                         and handed out {commands:?}, expected Ok(()) and {expected:?}: an \
                         unended last line is a command exactly as sent, also when it is only \
                         blanks (what it means is for the rest of the server to decide)",
                        if own_packet { " in a packet of its own" } else { " in the same packet" },
                        if pause > 0 { format!("paused {pause} ms (a ping fell due) ") } else { String::new() }
                    );
                }
            }
        }
    }

    /// The session ends with the connection's own error, as the read reported it: an error
    /// carrying an OS code (`EAGAIN`/`EWOULDBLOCK`, kind `WouldBlock`, however temporary it
    /// sounds; `ECONNRESET`; `ETIMEDOUT`) keeps that code, and an error with an error inside it
    /// (a TLS alert under `ConnectionReset`) keeps that inner error, for the caller to log or
    /// downcast. Reported once (the connection would then carry on) or on every read, between
    /// lines or in the middle of one, with a ping due before it or not.
    async fn the_session_ends_with_the_connections_own_error() {
        #[derive(Debug, PartialEq)]
        struct TlsAlert(u8);
        impl std::fmt::Display for TlsAlert {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the peer sent TLS alert {}", self.0)
            }
        }
        impl std::error::Error for TlsAlert {}
        /// The OS's code for errors of `kind` (`EAGAIN` for `WouldBlock`, whatever the OS).
        fn os_code(kind: std::io::ErrorKind) -> i32 {
            (1..20_000)
                .find(|&code| std::io::Error::from_raw_os_error(code).kind() == kind)
                .expect("the OS has a code for this kind")
        }
        type MakeError = Arc<dyn Fn() -> std::io::Error + Send + Sync>;
        let mut errors: Vec<(String, MakeError)> = Vec::new();
        for kind in [
            std::io::ErrorKind::WouldBlock,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::TimedOut,
        ] {
            let code = os_code(kind);
            errors.push((
                format!("OS error {code} (kind {kind:?})"),
                Arc::new(move || std::io::Error::from_raw_os_error(code)),
            ));
        }
        errors.push((
            "ConnectionReset with a TlsAlert(42) inside".to_owned(),
            Arc::new(|| std::io::Error::new(std::io::ErrorKind::ConnectionReset, TlsAlert(42))),
        ));
        errors.push((
            "WouldBlock with a TlsAlert(7) inside".to_owned(),
            Arc::new(|| std::io::Error::new(std::io::ErrorKind::WouldBlock, TlsAlert(7))),
        ));
        for (name, error) in &errors {
            let reported = error();
            let kind = reported.kind();
            for (sent, whole) in [
                ("/join #rust\r\n", vec!["/join #rust"]),
                ("/join #rust\r\n/privmsg #ops :deploy", vec!["/join #rust"]),
            ] {
                for (pause, once) in [(0u64, true), (1500, true), (0, false), (1500, false)] {
                    let script = vec![(Duration::ZERO, sent.as_bytes().to_vec())];
                    let pause_d = Duration::from_millis(pause);
                    let client = if once {
                        let after = vec![(Duration::ZERO, b"/part #rust\r\n".to_vec())];
                        PausingClient::failing_once(script, pause_d, kind, after)
                    } else {
                        PausingClient::failing(script, pause_d, kind)
                    }
                    .reporting(error.clone());
                    let failed_reads = client.failed_reads();
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let ended =
                        timeout(Duration::from_secs(600), serve(client, PING_EVERY, tx)).await;
                    let mut commands = Vec::new();
                    while let Ok(event) = rx.try_recv() {
                        if let Event::Command(c) = event {
                            commands.push(c);
                        }
                    }
                    let story = format!(
                        "the client sent {sent:?}, then after {pause} ms a read failed with \
                         {name} (\"{reported}\"){}",
                        if once {
                            ", once: the connection would then have sent \"/part #rust\" and closed"
                        } else {
                            ", and so did every read after it"
                        }
                    );
                    let err = match ended {
                        Ok(Err(err)) => err,
                        Ok(Ok(())) => panic!(
                            "{story}; the session ended cleanly, with Ok(()), after the commands \
                             {commands:?}: expected it to end with that error after {whole:?} \
                             (a read that fails, with any error but `Interrupted`, ends the \
                             session with it, however temporary it sounds)"
                        ),
                        Err(_) => panic!(
                            "{story}; the session did not end{}, after the commands \
                             {commands:?}: expected it to end with that error after {whole:?}",
                            read_on_after(
                                failed_reads.load(std::sync::atomic::Ordering::SeqCst),
                                kind
                            )
                        ),
                    };
                    let inner = |e: &std::io::Error| {
                        e.get_ref().and_then(|e| e.downcast_ref::<TlsAlert>()).map(|a| a.0)
                    };
                    assert!(
                        err.kind() == kind
                            && err.raw_os_error() == reported.raw_os_error()
                            && inner(&err) == inner(&reported),
                        "{story}; the session ended with \"{err}\" (kind {:?}, OS code {:?}, \
                         inner TLS alert {:?}), expected the connection's own error: kind \
                         {kind:?}, OS code {:?}, inner TLS alert {:?}. The caller gets the error \
                         as the connection reported it, not a new one of the same kind",
                        err.kind(),
                        err.raw_os_error(),
                        inner(&err),
                        reported.raw_os_error(),
                        inner(&reported)
                    );
                    assert!(
                        commands == whole,
                        "{story}; the session ended with that error, but handed out \
                         {commands:?}, expected {whole:?}: only the lines that arrived whole \
                         before the failure are commands"
                    );
                }
            }
        }
    }

    /// The floor on a line's length: `serve` may refuse a line only when it is longer than
    /// `LINE_FLOOR` (640 KiB): a paste of exactly that many bytes, sent in 64 KiB packets with a
    /// ping falling due half way, comes out whole, and the line after it too. A cap at any
    /// figure under the floor (600 000 bytes, 640 KiB counting the line ending) fails here; what
    /// a fix does past the floor is its own. (On one seed's runtime, and no larger: an accepted
    /// reader that scans its whole buffer after each small read pays for the square of the
    /// line's length, over half a second here.)
    fn a_line_as_long_as_the_floor_comes_out_whole() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let words = "a long paste, café 日本語 🦀 ";
            let mut paste = "/privmsg #rust :".to_string() + &words.repeat((LINE_FLOOR - 16) / words.len());
            paste.push_str(&".".repeat(LINE_FLOOR - paste.len()));
            let after = "/privmsg #rust :sorry, wrong window";
            let bytes = format!("{paste}\r\n{after}\r\n").into_bytes();
            let packets = bytes.chunks(64 * 1024).count();
            let script = bytes
                .chunks(64 * 1024)
                .enumerate()
                .map(|(i, chunk)| {
                    let pause = if i == packets / 2 { 1_500 } else { 0 };
                    (Duration::from_millis(pause), chunk.to_vec())
                })
                .collect();
            drop(bytes);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = timeout(
                Duration::from_secs(600),
                serve(PausingClient::from_bytes(script), PING_EVERY, tx),
            )
            .await;
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let lengths: Vec<usize> = commands.iter().map(String::len).collect();
            let told = format!(
                "the client pasted a line of {LINE_FLOOR} bytes before its \"\\r\\n\" (640 KiB, the \
                 floor under which `serve` may not limit a line's length; all valid UTF-8, in \
                 64 KiB packets, pausing 1.5 s half way through, so that a ping fell due), then \
                 one short line, and closed the connection"
            );
            match ended {
                Err(_) => panic!("{told}, but the session did not end"),
                Ok(Err(err)) => panic!(
                    "{told}; the session ended with an error of kind {:?} ({err}) after commands \
                     of {lengths:?} bytes: a line of up to 640 KiB comes out whole",
                    err.kind()
                ),
                Ok(Ok(())) => {}
            }
            assert!(
                commands.len() == 2 && commands[0] == paste && commands[1] == after,
                "{told}; the session produced commands of {lengths:?} bytes (expected the paste \
                 whole, then the {}-byte line)",
                after.len()
            );
        });
    }

    /// The floor on how many commands a client sends: `FLOOD_FLOOR` (2^17) lines in one packet,
    /// empty and short ones, while the client waits on the open connection: every one comes out
    /// at once, in order, and the session goes on (then ends with `Ok(())` when the client
    /// closes). A budget of commands per read, per second or in all, or a counter that saturates
    /// or wraps (a `u16`), at any figure under the floor, fails here. The packet is two runs of
    /// `RUN_FLOOR` (2^16) lines each: empty lines in a row (ended by `\n` and `\r\n` in turn),
    /// then one short command over and over, so that a limit on blank lines, or on one line
    /// repeated, in a row, under that floor fails here too.
    fn the_floor_of_commands_in_one_packet_comes_out_at_once() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let line = |i: usize| if i < RUN_FLOOR { "" } else { "/w" };
            let ending = |i: usize| if i % 2 == 0 { "\n" } else { "\r\n" };
            let burst: String = (0..FLOOD_FLOOR).flat_map(|i| [line(i), ending(i)]).collect();
            let script = vec![
                (Duration::ZERO, burst.into_bytes()),
                (Duration::from_millis(2_500), b"/quit\r\n".to_vec()),
            ];
            let (tx, mut rx) = mpsc::unbounded_channel();
            let session = tokio::spawn(serve(PausingClient::from_bytes(script), PING_EVERY, tx));
            sleep(Duration::from_millis(100)).await;
            let told = format!(
                "the client sent {FLOOD_FLOOR} lines in one packet ({RUN_FLOOR} empty lines in \
                 a row, then \"/w\" {RUN_FLOOR} times in a row; 2^17 lines, the floor under which \
                 `serve` may not limit how many commands a client sends, per read, per second or \
                 in all, and 2^16 in a row, under which it may not limit a run of empty or \
                 repeated lines) and waited with the connection open"
            );
            let mut seen = 0usize;
            let mut wrong = None;
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    if wrong.is_none() && c != line(seen) {
                        wrong = Some((seen, c));
                    }
                    seen += 1;
                }
            }
            if session.is_finished() {
                let ended = session.await.expect("the session's task panicked");
                panic!(
                    "{told}; the session ended on its own with {ended:?}, after {seen} commands: \
                     a burst of lines is neither a close nor a failure"
                );
            }
            assert!(
                seen == FLOOD_FLOOR && wrong.is_none(),
                "{told}; 100 ms later the session had handed out {seen} commands{}, expected all \
                 {FLOOD_FLOOR}, in order, at once",
                match &wrong {
                    Some((i, c)) => format!(" (command {i} was {c:?}, expected {:?})", line(*i)),
                    None => String::new(),
                }
            );
            let ended = timeout(Duration::from_secs(600), session).await;
            let mut rest = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    rest.push(c);
                }
            }
            assert!(
                matches!(ended, Ok(Ok(Ok(())))) && rest == ["/quit"],
                "{told}; then 2.5 s later it sent \"/quit\" and closed the connection: the \
                 session ended with {ended:?} and handed out {rest:?} after the burst, expected \
                 Ok(()) and [\"/quit\"]"
            );
        });
    }

    /// The floor on unanswered pings: a client quiet for `PINGS_FLOOR` (2^16) periods of 2 ms is
    /// pinged after each of them, and then served its next command. A cut-off counted in pings
    /// at any figure under the floor fails here. (On one seed's runtime: a wake per ping.)
    fn the_floor_of_unanswered_pings_ends_nothing() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let ping_every = Duration::from_millis(2);
            let quiet = ping_every * PINGS_FLOOR + Duration::from_millis(1);
            let client = PausingClient::from_bytes(vec![(quiet, b"/quit\r\n".to_vec())]);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = tokio::time::Instant::now();
            let ended = serve(client, ping_every, tx).await;
            let ended_at = start.elapsed();
            let (mut pings, mut commands) = (0u32, Vec::new());
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Ping => pings += 1,
                    Event::Command(c) => commands.push(c),
                }
            }
            assert!(
                ended.is_ok() && ended_at >= quiet && pings == PINGS_FLOOR && commands == ["/quit"],
                "the client connected and stayed quiet for {quiet:?} on an open connection (a \
                 ping every 2 ms: {PINGS_FLOOR} pings, 2^16, the floor under which no cut-off \
                 counted in unanswered pings may end a session), then sent \"/quit\" and closed \
                 it; the session ended after {ended_at:?} with {ended:?}, having asked for \
                 {pings} ping(s) and handed out {commands:?}: expected {PINGS_FLOOR} pings, \
                 [\"/quit\"] and Ok(()) when the client closed"
            );
        });
    }

    /// The far end of "years": a client quiet for `FAR_QUIET_YEARS` (ten thousand years, pinged
    /// every 20 years; tokio caps any one wait at about 30 years, so the client waits in steps)
    /// is still pinged after every period and then served its next command. No idle timeout,
    /// counted in time or in pings, however long, may end a session over an open connection.
    fn a_client_quiet_for_ten_thousand_years_is_still_served() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let year = Duration::from_secs(365 * 24 * 3600);
            let ping_every = year * 20;
            let periods = FAR_QUIET_YEARS / 20;
            let quiet = year * FAR_QUIET_YEARS + year / 2;
            let start = tokio::time::Instant::now();
            let client = FarQuietClient::new(start + quiet, b"", b"/quit\r\n");
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = serve(client, ping_every, tx).await;
            let ended_at = start.elapsed();
            let (mut pings, mut commands) = (0u32, Vec::new());
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Ping => pings += 1,
                    Event::Command(c) => commands.push(c),
                }
            }
            assert!(
                ended.is_ok() && ended_at >= quiet && pings == periods && commands == ["/quit"],
                "the client connected and stayed quiet for {FAR_QUIET_YEARS} and a half years \
                 on an open connection (a ping every 20 years), then sent \"/quit\" and closed \
                 it; the session ended after {:.1} years with {ended:?}, having asked for {pings} \
                 ping(s) and handed out {commands:?}: expected {periods} pings, [\"/quit\"] and \
                 Ok(()) only when the client closed. `serve` has no idle timeout of its own, \
                 however long",
                ended_at.as_secs_f64() / year.as_secs_f64()
            );
        });
    }

    /// The start of a line that has not ended is kept for as long as the line takes to end: a
    /// client that sends the start of a line, stays quiet for `PINGS_FLOOR` (2^16) periods of
    /// 2 ms (pinged after each), then sends the rest, has sent one command, the whole line. A
    /// reader that hands the start out as a command after some number of pings, or throws it
    /// away, at any figure under the floor, fails here. (On one seed's runtime: a wake per ping.)
    fn a_half_line_held_over_the_floor_of_pings_is_kept() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let ping_every = Duration::from_millis(2);
            let quiet = ping_every * PINGS_FLOOR + Duration::from_millis(1);
            let (head, tail) = ("/privmsg #ops :deploy to prod", " only after QA");
            let client = PausingClient::from_bytes(vec![
                (Duration::ZERO, head.as_bytes().to_vec()),
                (quiet, format!("{tail}\r\n").into_bytes()),
            ]);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = serve(client, ping_every, tx).await;
            let (mut pings, mut commands) = (0u32, Vec::new());
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Ping => pings += 1,
                    Event::Command(c) => commands.push(c),
                }
            }
            let whole = format!("{head}{tail}");
            assert!(
                ended.is_ok() && pings == PINGS_FLOOR && commands == [whole.clone()],
                "the client sent {head:?} (no line ending yet), then nothing for {quiet:?} (a \
                 ping every 2 ms: {PINGS_FLOOR} pings, 2^16, the floor under which no count of \
                 pings may change what becomes of a line that has not ended), then {tail:?} and \
                 \"\\r\\n\", and closed the connection; the session ended with {ended:?}, having \
                 asked for {pings} ping(s) and handed out {commands:?}: expected {PINGS_FLOOR} \
                 pings and one command, [{whole:?}]. The start of a line that has not ended is \
                 no command, and it is kept, however long the line takes, to come out with its \
                 rest"
            );
        });
    }

    /// The far end of a half line's wait: a client that sends the start of a line and then
    /// nothing for ten thousand years (pinged every 20 years) before sending the rest has sent one
    /// command, the whole line. No age, however great, makes the start of a line a command of its
    /// own or something to throw away.
    fn a_half_line_held_for_ten_thousand_years_is_kept() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let year = Duration::from_secs(365 * 24 * 3600);
            let ping_every = year * 20;
            let periods = FAR_QUIET_YEARS / 20;
            let quiet = year * FAR_QUIET_YEARS + year / 2;
            let start = tokio::time::Instant::now();
            let client = FarQuietClient::new(
                start + quiet,
                b"/privmsg #ops :deploy to prod",
                b" only after QA\r\n",
            );
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ended = serve(client, ping_every, tx).await;
            let (mut pings, mut commands) = (0u32, Vec::new());
            while let Ok(event) = rx.try_recv() {
                match event {
                    Event::Ping => pings += 1,
                    Event::Command(c) => commands.push(c),
                }
            }
            let whole = "/privmsg #ops :deploy to prod only after QA";
            assert!(
                ended.is_ok() && pings == periods && commands == [whole],
                "the client sent \"/privmsg #ops :deploy to prod\" (no line ending yet), then \
                 nothing for {FAR_QUIET_YEARS} and a half years on an open connection (a ping \
                 every 20 years), then \" only after QA\\r\\n\", and closed it; the session \
                 ended with {ended:?}, having asked for {pings} ping(s) and handed out \
                 {commands:?}: expected {periods} pings and one command, [{whole:?}]. The start \
                 of a line that has not ended is no command, and it is kept, however long the \
                 line takes, to come out with its rest"
            );
        });
    }

    /// The floor on the pieces of one line: a line of `PIECES_FLOOR` (2^13) bytes that arrives
    /// a byte per packet (each after a read that found nothing yet), cut inside its multi-byte
    /// characters too, comes out whole, and the line after it too. A limit on the reads, packets
    /// or pieces a line may take ("slowloris"), at any figure under the floor, fails here. (On
    /// one seed's runtime, polled by hand: a poll per byte.)
    fn a_line_in_the_floor_of_pieces_comes_out_whole() {
        runtime::current_thread(SEEDS[0]).block_on(async {
            let words = "over a slow link, café 日本語 🦀 ";
            let mut line = "/privmsg #rust :".to_string();
            while line.len() + words.len() <= PIECES_FLOOR {
                line.push_str(words);
            }
            line.push_str(&".".repeat(PIECES_FLOOR - line.len()));
            let after = "/quit";
            let client = BytewiseClient {
                bytes: format!("{line}\r\n{after}\r\n").into_bytes(),
                at: 0,
                waited: false,
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut session = std::pin::pin!(serve(client, PING_EVERY, tx));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let limit = 4 * PIECES_FLOOR + 100;
            let mut ended = None;
            for _ in 0..limit {
                if let Poll::Ready(result) = session.as_mut().poll(&mut cx) {
                    ended = Some(result);
                    break;
                }
            }
            let mut commands = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let Event::Command(c) = event {
                    commands.push(c);
                }
            }
            let lengths: Vec<usize> = commands.iter().map(String::len).collect();
            let told = format!(
                "the client sent a line of {PIECES_FLOOR} bytes (2^13, the floor under which \
                 `serve` may not limit how many pieces a line arrives in; valid UTF-8) a byte per \
                 packet, then \"\\r\\n{after}\\r\\n\", a byte per packet too, and closed the \
                 connection"
            );
            match ended {
                None => panic!(
                    "{told}; after {limit} polls the session had not ended, having handed out \
                     commands of {lengths:?} bytes"
                ),
                Some(Err(err)) => panic!(
                    "{told}; the session ended with an error of kind {:?} ({err}) after commands \
                     of {lengths:?} bytes: a line that arrives in many pieces is neither a close \
                     nor a failure, and comes out whole once it ends",
                    err.kind()
                ),
                Some(Ok(())) => {}
            }
            assert!(
                commands.len() == 2 && commands[0] == line && commands[1] == after,
                "{told}; the session produced commands of {lengths:?} bytes (expected the line \
                 whole, {PIECES_FLOOR} bytes, then {after:?})"
            );
        });
    }
}

/// A client that sends `head` (if any) as it connects, is then quiet until `until` (waiting in
/// steps of 25 years, under tokio's cap on one wait), then sends `tail` and closes the connection.
struct FarQuietClient {
    head: &'static [u8],
    until: tokio::time::Instant,
    tail: &'static [u8],
    sent_head: bool,
    sent: bool,
    pause: Option<Pin<Box<Sleep>>>,
}

impl FarQuietClient {
    fn new(until: tokio::time::Instant, head: &'static [u8], tail: &'static [u8]) -> Self {
        FarQuietClient { head, until, tail, sent_head: false, sent: false, pause: None }
    }
}

impl AsyncRead for FarQuietClient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let step = Duration::from_secs(25 * 365 * 24 * 3600);
        if !self.sent_head {
            self.sent_head = true;
            if !self.head.is_empty() {
                buf.put_slice(self.head);
                return Poll::Ready(Ok(()));
            }
        }
        loop {
            let now = tokio::time::Instant::now();
            if now >= self.until {
                break;
            }
            if self.pause.is_none() {
                let wake = now + step.min(self.until - now);
                self.pause = Some(Box::pin(tokio::time::sleep_until(wake)));
            }
            match self.pause.as_mut().expect("set above").as_mut().poll(cx) {
                Poll::Ready(()) => self.pause = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.sent {
            self.sent = true;
            buf.put_slice(self.tail);
        }
        Poll::Ready(Ok(()))
    }
}

/// A client whose bytes arrive one per read, and each only after a read that found nothing yet
/// (the reader answers `Pending` and wakes itself): every byte is a packet of its own.
struct BytewiseClient {
    bytes: Vec<u8>,
    at: usize,
    waited: bool,
}

impl AsyncRead for BytewiseClient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at == this.bytes.len() {
            return Poll::Ready(Ok(()));
        }
        if !this.waited {
            this.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.waited = false;
        buf.put_slice(&this.bytes[this.at..this.at + 1]);
        this.at += 1;
        Poll::Ready(Ok(()))
    }
}

/// The floors the README states: the longest line `serve` may not refuse (640 KiB, before its
/// line ending), how many commands it may not limit (per read, per second or in all), how many
/// unanswered pings no cut-off may stop at, and how many years of quiet the tests reach.
const LINE_FLOOR: usize = 640 * 1024;
const FLOOD_FLOOR: usize = 1 << 17;
/// How many empty lines in a row, or repetitions of one line in a row, `serve` may not limit.
const RUN_FLOOR: usize = 1 << 16;
const PINGS_FLOOR: u32 = 1 << 16;
const FAR_QUIET_YEARS: u32 = 10_000;
/// How many pieces (a byte each) of one line `serve` may not limit. No higher: an accepted
/// reader that scans its whole buffer for `\n` after every read pays for the square of the
/// pieces (over a second at 2^15 in the grader's debug build).
const PIECES_FLOOR: usize = 1 << 13;
