//! Hidden tests for kata 03: a ping that fires in the middle of a line must not cost any of the
//! line's bytes, and pings must keep coming while the client is quiet.

use std::time::Duration;

use irc_line_reader::{Event, serve};
use kata_support::{TrickleReader, hidden_test};
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
    let mut session = Session {
        commands: Vec::new(),
        pings: 0,
    };
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
}
