//! Hidden tests for kata 03: a ping that fires in the middle of a line must not cost any of the
//! line's bytes (not even half a character), pings must keep coming while the client is quiet,
//! lines end in `\n` or `\r\n`, and a line that is not UTF-8 ends the session with `InvalidData`.

use std::time::Duration;

use irc_line_reader::{Event, serve};
use kata_support::{TrickleReader, check_property, hidden_test};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;
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
    session
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

/// A session's input: commands with non-ASCII text, ended by either line ending.
const CHATTY: &str =
    "/join #café\r\n/nick zoë\n/privmsg #café :ça va? 日本語もOK 🦀\r\n/part #café\n";
const CHATTY_COMMANDS: [&str; 4] =
    ["/join #café", "/nick zoë", "/privmsg #café :ça va? 日本語もOK 🦀", "/part #café"];

/// How `CHATTY` reaches the server: cut at any bytes (inside a character too), with a pause after
/// each packet: none, shorter than a ping, or long enough for one or two pings to fall due.
fn packetisations() -> impl Strategy<Value = Vec<(usize, u64)>> {
    prop::collection::vec(
        (1..CHATTY.len(), prop_oneof![Just(0u64), Just(300), Just(1500), Just(2100)]),
        1..6,
    )
}

hidden_test! {
    /// Nothing cancelled: whole lines, several in one packet, come out as commands in order.
    async fn reads_whole_lines() {
        let reader =
            TrickleReader::new(["/join #rust\r\n/nick alice\r\n", "/topic cancel safety\r\n"]);
        let session = run(reader).await;
        assert_eq!(
            session.commands,
            ["/join #rust", "/nick alice", "/topic cancel safety"],
            "three commands arrived in two packets, and each must come out, in order, without \
             its line ending; bytes a reader has buffered are lost if the `BufReader` or \
             `Lines` is created anew on every iteration"
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
            session.pings >= 3,
            "the client was quiet for 3.5 s with a ping every {PING_EVERY:?}, but the session \
             asked for {} ping(s) (expected 3): the reader must keep pinging while it waits for \
             a line",
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
            "the client sent \"/nick alice\\n/join #rust\\n\" and stayed connected; 2.5 s later \
             these commands were seen. Lines end in `\\n` as well as in `\\r\\n`"
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
                     {CHATTY_COMMANDS:?}",
                    shown.join(", ")
                ));
            }
            Ok(())
        });
    }
}
