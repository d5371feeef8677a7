//! The learner's loop through the real binary: watch (driven through a pseudo-terminal by file
//! changes), next, reset with backups, solution gating, completions and colour.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Fixture;
use predicates::prelude::*;
use predicates::str::contains;

/// Makes the fixture a git repository whose first commit is the starting code.
fn git_init(fixture: &Fixture) {
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start"],
    ] {
        let status = Command::new("git").current_dir(fixture.path("")).args(args).status().unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

#[test]
fn next_shows_the_first_kata_not_done() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    let readme = "# Kata\n\n## The story\n\nA gateway counts requests.\n\nEvery handler races it:\n\n\
                  ```rust\nselect! {\n\n    r = forward() => r,\n}\n```\n\nEven more.\n\n\
                  ## Your task\n\nFix it.\n";
    // A checkout with CRLF line endings reads the same (issue 13).
    for text in [readme.to_owned(), readme.replace('\n', "\r\n")] {
        std::fs::write(fixture.path("exercises/02_failing/README.md"), text).unwrap();
        fixture
            .grader(["next"])
            .assert()
            .success()
            .stdout(contains("kata 02: A counter that leaks"))
            .stdout(contains("A gateway counts requests."))
            .stdout(contains("Every handler races it:\n\n```rust\nselect! {\n\n    r = forward()"))
            .stdout(contains("Even more.").not())
            .stdout(contains("Your task\nFix it."))
            .stdout(contains("edit  exercises/02_failing/src/lib.rs"));
    }
}

#[test]
fn reset_restores_the_starting_code_and_keeps_a_backup() {
    let fixture = Fixture::new();
    git_init(&fixture);
    let lib = fixture.path("exercises/02_failing/src/lib.rs");
    let start = std::fs::read_to_string(&lib).unwrap();
    // The learner commits work in progress; reset still finds the starting code.
    std::fs::write(&lib, "// my attempt\n").unwrap();
    Command::new("git")
        .current_dir(fixture.path(""))
        .args(["commit", "-qam", "wip"])
        .status()
        .unwrap();
    std::fs::write(&lib, "// my second attempt\n").unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o640)).unwrap();

    fixture
        .grader(["reset", "2"])
        .assert()
        .success()
        .stdout(contains(
            "saved exercises/02_failing/src/lib.rs to exercises/02_failing/src/lib.rs.",
        ))
        .stdout(contains("kata 02 is back at its starting code"));
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), start);
    let backups: Vec<_> = std::fs::read_dir(fixture.path("exercises/02_failing/src"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".grader-backup"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(backups[0].path()).unwrap(), "// my second attempt\n");
    // Named by a readable time: lib.rs.2025-06-01T14-03-22Z.grader-backup.
    let name = backups[0].file_name().to_string_lossy().into_owned();
    let stamp = name.strip_prefix("lib.rs.").unwrap().strip_suffix(".grader-backup").unwrap();
    assert!(
        stamp.len() == 20 && stamp.as_bytes()[4] == b'-' && stamp.as_bytes()[10] == b'T',
        "{name}"
    );
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lib), 0o640, "the restored file keeps the learner's file's mode");
    assert_eq!(mode(&backups[0].path()), 0o640);

    // `--restore` puts the latest backup back, saving what it replaces.
    fixture
        .grader(["reset", "2", "--restore"])
        .assert()
        .success()
        .stdout(contains("restored exercises/02_failing/src/lib.rs from its backup of "));
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "// my second attempt\n");
    assert_eq!(mode(&lib), 0o640);
    fixture.grader(["reset", "2"]).assert().success();

    fixture
        .grader(["reset", "2"])
        .assert()
        .success()
        .stdout(contains("already at its starting code"));
    // Without a terminal, resetting everything needs --yes; nothing is touched meanwhile.
    std::fs::write(&lib, "// third\n").unwrap();
    fixture.grader(["reset", "--all"]).assert().code(2).stderr(contains("pass --yes"));
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "// third\n");
    fixture.grader(["reset", "--all", "--yes"]).assert().success();
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), start);
}

#[test]
fn reset_outside_git_says_why_and_changes_nothing() {
    let fixture = Fixture::new();
    let lib = fixture.path("exercises/02_failing/src/lib.rs");
    std::fs::write(&lib, "// mine\n").unwrap();
    fixture
        .grader(["reset", "2"])
        .assert()
        .code(2)
        .stderr(contains("needs the course in a git repository"));
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "// mine\n");
}

#[test]
fn the_solution_waits_until_the_kata_passes() {
    let fixture = Fixture::new();
    // The command was right, the kata is not there yet: 1, as a failing check (not 2).
    fixture
        .grader(["solution", "2"])
        .assert()
        .code(1)
        .stderr(contains("kata 2 does not pass yet, so its solution stays hidden"))
        .stderr(contains("`grader solution 2 --force`"));
    fixture
        .grader(["solution", "2", "--force"])
        .assert()
        .success()
        .stdout(contains("struct Guard;"));
    fixture.grader(["check", "1"]).assert().success();
    fixture
        .grader(["solution", "1"])
        .assert()
        .success()
        .stdout(contains("==> solutions/01_passing/src/lib.rs <=="));
}

#[test]
fn completions_are_generated_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        assert_cmd::Command::cargo_bin("grader")
            .unwrap()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(contains("grader").and(contains("check")));
    }
}

#[test]
fn no_color_output_has_no_escape_codes_and_always_has_them() {
    let fixture = Fixture::new();
    let plain = fixture.grader(["check", "--color", "auto"]).env("NO_COLOR", "1").output().unwrap();
    assert!(!plain.stdout.contains(&0x1b) && !plain.stderr.contains(&0x1b));
    let coloured = fixture.grader(["check", "--color", "always"]).output().unwrap();
    assert!(coloured.stdout.contains(&0x1b), "--color always must colour the verdicts");
}

#[test]
fn watch_without_a_terminal_is_a_usage_error_not_a_hang() {
    let fixture = Fixture::new();
    fixture
        .grader(["watch"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2)
        .stderr(contains("needs a terminal"));
}

/// A command in a pseudo-terminal (util-linux `script`): keys in, everything it printed out.
struct Pty {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Pty {
    fn spawn(fixture: &Fixture, dir: &str, command: &str, colour: bool) -> Pty {
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-f", "-e", "-c", command, "/dev/null"])
            .current_dir(fixture.path(dir))
            .env("CARGO_TARGET_DIR", common::shared_target())
            .env_remove("CARGO_PKG_NAME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if !colour {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let mut child = cmd.spawn().expect("util-linux `script` provides the pseudo-terminal");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Pty { child, stdin, rx, seen: String::new() }
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("never printed `{needle}`; it printed:\n{}", self.seen),
            }
        }
    }

    /// Everything printed from now for `quiet` without a new byte.
    fn settle(&mut self, quiet: Duration) {
        while let Ok(bytes) = self.rx.recv_timeout(quiet) {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    fn keys(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).unwrap();
        self.stdin.flush().unwrap();
    }

    fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.settle(Duration::from_millis(200));
        (status.code(), self.seen)
    }
}

fn grader_bin() -> String {
    assert_cmd::cargo::cargo_bin("grader").display().to_string()
}

/// An SGR (colour) escape sequence: `ESC [ digits ; m`.
fn has_colour(text: &str) -> bool {
    text.match_indices("\u{1b}[").any(|(i, _)| {
        let rest = &text[i + 2..];
        let params = rest.find(|c: char| !(c.is_ascii_digit() || c == ';')).unwrap_or(rest.len());
        rest[params..].starts_with('m')
    })
}

/// On a terminal, `--color never` and NO_COLOR uncolour the compiler's errors too, a report
/// redirected to a file has no escape codes, and the progress bar never shows an empty 0/0.
#[test]
fn colour_follows_the_flag_and_no_color_on_a_terminal() {
    let fixture = Fixture::new();
    let grader = grader_bin();
    for (command, colour) in
        [(format!("{grader} check 3 --color never"), true), (format!("{grader} check 3"), false)]
    {
        let (code, seen) = Pty::spawn(&fixture, "", &command, colour).wait();
        assert_eq!(code, Some(1), "{seen}");
        assert!(seen.contains("expected `;`"), "{seen}");
        assert!(!has_colour(&seen), "`{command}` coloured its output:\n{seen:?}");
        assert!(!seen.contains("0/0"), "{seen:?}");
    }
    let (_, seen) = Pty::spawn(&fixture, "", &format!("{grader} check 3"), true).wait();
    assert!(has_colour(&seen), "a terminal without NO_COLOR gets colour:\n{seen}");
    let (_, _) = Pty::spawn(&fixture, "", &format!("{grader} check 3 > report.txt"), true).wait();
    let report = std::fs::read_to_string(fixture.path("report.txt")).unwrap();
    assert!(report.contains("expected `;`") && !report.contains('\u{1b}'), "{report:?}");
}

/// Drives `grader watch` in a pseudo-terminal: it checks the current kata, re-checks when the
/// file is saved, and quits on `q`.
#[test]
fn watch_rechecks_on_save_and_quits_on_q() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    let mut watch = Pty::spawn(&fixture, "", &format!("{} watch", grader_bin()), false);
    watch.wait_for("waiting for you to save exercises/02_failing/src/lib.rs");
    assert!(watch.seen.contains("FAIL  02_failing"), "{}", watch.seen);
    assert!(watch.seen.contains("stuck? press h"), "{}", watch.seen);
    // The `.await` the future was dropped at, as in `check` (issue 13).
    assert!(watch.seen.contains("16 |     work.await;"), "{}", watch.seen);
    assert!(watch.seen.contains("^^^^^^ dropped here"), "{}", watch.seen);
    watch.seen.clear();
    std::fs::copy(
        fixture.path("solutions/02_failing/src/lib.rs"),
        fixture.path("exercises/02_failing/src/lib.rs"),
    )
    .unwrap();
    watch.wait_for("kata 02 passes. Press n for the next kata.");
    watch.seen.clear();
    watch.keys(b"q");
    watch.wait_for("bye");
    let (code, _) = watch.wait();
    assert_eq!(code, Some(0));
    fixture.grader(["list"]).assert().success().stdout(contains("2/3 done"));
}

/// The rest of the learner's loop in `watch`: quick `r`s are one check, a hint says "press h",
/// saving another kata checks that kata, `n` shows the next kata's story, Ctrl-C exits 130.
#[test]
fn watch_coalesces_rechecks_follows_saves_and_exits_130_on_ctrl_c() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    let mut watch = Pty::spawn(&fixture, "", &format!("{} watch", grader_bin()), false);
    watch.wait_for("waiting for you to save exercises/02_failing/src/lib.rs");
    watch.seen.clear();
    watch.keys(b"rrrrr");
    watch.wait_for("waiting for you to save");
    watch.settle(Duration::from_secs(3));
    assert_eq!(watch.seen.matches("FAIL  02_failing").count(), 1, "{}", watch.seen);
    watch.seen.clear();
    watch.keys(b"h");
    watch.wait_for("(press h again for the next hint)");
    watch.seen.clear();

    let broken = fixture.path("exercises/03_broken/src/lib.rs");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, format!("{text}\n")).unwrap();
    watch.wait_for("waiting for you to save exercises/03_broken/src/lib.rs");
    assert!(watch.seen.contains("you saved 03_broken: checking it"), "{}", watch.seen);
    assert!(watch.seen.contains("BUILD 03_broken"), "{}", watch.seen);
    watch.seen.clear();

    watch.keys(b"n");
    watch.wait_for("kata 02: A counter that leaks (intermediate, 10 points)");
    watch.wait_for("waiting for you to save exercises/02_failing/src/lib.rs");
    watch.keys(&[3]);
    watch.wait_for("interrupted");
    let (code, seen) = watch.wait();
    assert_eq!(code, Some(130), "{seen}");
}

/// `--poll` finds saves by looking, where the file system sends no events.
#[test]
fn watch_poll_finds_a_save() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    let mut watch = Pty::spawn(&fixture, "", &format!("{} watch --poll", grader_bin()), false);
    watch.wait_for("waiting for you to save exercises/02_failing/src/lib.rs");
    // A second later: a poller compares modification times.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(
        fixture.path("solutions/02_failing/src/lib.rs"),
        fixture.path("exercises/02_failing/src/lib.rs"),
    )
    .unwrap();
    watch.wait_for("kata 02 passes.");
    watch.keys(b"q");
    assert_eq!(watch.wait().0, Some(0));
}

/// `cargo test` inside an exercise builds it (a syntax error fails) and then fails, saying how
/// to check the kata; the project's own `cargo test --workspace` passes. Run on a copy of the
/// test target in a crate without dependencies, so the build is quick.
#[test]
fn cargo_test_in_an_exercise_says_how_to_check_it() {
    let dir = tempfile::tempdir().unwrap();
    let kata = dir.path().join("07_demo");
    std::fs::create_dir_all(kata.join("src")).unwrap();
    let target =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kata-test/check_with_the_grader.rs");
    std::fs::write(
        kata.join("Cargo.toml"),
        format!(
            "[package]\nname = \"demo\"\nedition = \"2024\"\n[workspace]\n[lib]\ntest = false\n\
             doctest = false\n[[test]]\nname = \"check-with-the-grader\"\npath = {:?}\n\
             harness = false\n",
            target.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(kata.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    let cargo = |args: &[&str]| {
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(&kata)
            .env("CARGO_TARGET_DIR", dir.path().join("target"))
            .output()
            .unwrap()
    };
    let output = cargo(&["test", "-q"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cargo run -p grader -- check 7"), "{stderr}");
    assert!(cargo(&["test", "-q", "--workspace"]).status.success());
    std::fs::write(kata.join("src/lib.rs"), "pub fn f() {\n").unwrap();
    let output = cargo(&["test", "-q"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("error"), "{stderr}");

    // Every exercise of the course has the target; a write-the-test exercise instead runs the
    // learner's own test (`tests/cancel.rs`), which `cargo test` can check against the function.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for entry in std::fs::read_dir(root.join("exercises")).unwrap() {
        let manifest = std::fs::read_to_string(entry.unwrap().path().join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("grader/kata-test/check_with_the_grader.rs")
                || manifest.contains("path = \"tests/cancel.rs\""),
            "{manifest}"
        );
    }
}
