//! Hidden tests for kata 10: a config download that stalls, times out and is resumed (or is
//! cancelled by its caller and resumed) must end with every byte of the config, exactly once.

use std::sync::Arc;
use std::time::Duration;

use config_read_to_string::{ConfigDownload, Fetch, PATIENCE};
use kata_support::{Outcome, TrickleReader, assert_cancel_safe, hidden_test};
use tokio::io::AsyncRead;

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

hidden_test! {
    /// Nothing stalls and nothing is cancelled: the config arrives in one round.
    async fn downloads_a_config_that_arrives_in_time() {
        let chunks: Vec<&[u8]> = CONFIG.as_bytes().chunks(64).collect();
        let mut config = ConfigDownload::new(TrickleReader::new(chunks));
        let (text, stalls) = download(&mut config).await.expect("the download failed");
        compare_with_config(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stalls, Vec::<usize>::new(), "nothing stalled, so no round should time out");
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
        assert_eq!(
            stalls,
            [split_u, second],
            "the server sent {split_u} bytes, then stalled; later {second} bytes in all, then \
             stalled again. Each `Fetch::Stalled` must report everything received since the \
             download started. When the `PATIENCE` timeout dropped the read, the text received \
             so far went with it: `read_to_string` moves the `String` it is given into its own \
             future, so cancelling it empties the `String`, even what was there before the call."
        );
        compare_with_config(&text).unwrap_or_else(|e| {
            panic!("after two stalls, each cut short by the `PATIENCE` timeout: {e}")
        });
    }

    /// Cancel the reloader at every point; resuming on the same download must give the config.
    async fn resume_is_cancel_safe_at_every_chunk() {
        let split_u = inside_the_u_umlaut();
        let bytes = CONFIG.as_bytes();
        let chunks: Vec<Vec<u8>> = bytes[..split_u]
            .chunks(24)
            .chain(bytes[split_u..].chunks(24))
            .map(<[u8]>::to_vec)
            .collect();
        type Shared = Arc<tokio::sync::Mutex<ConfigDownload<TrickleReader>>>;
        assert_cancel_safe(
            || -> Shared {
                Arc::new(tokio::sync::Mutex::new(ConfigDownload::new(TrickleReader::new(
                    chunks.clone(),
                ))))
            },
            |config: Shared| async move { download(&mut *config.lock().await).await },
            |config: Shared, outcome| async move {
                match outcome {
                    Outcome::Completed(Ok((text, _))) => compare_with_config(&text),
                    Outcome::Completed(Err(e)) => Err(format!("the download failed: {e}")),
                    Outcome::Cancelled { .. } => {
                        let resumed = download(&mut *config.lock().await).await;
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
}
