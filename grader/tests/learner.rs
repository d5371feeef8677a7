//! The learner's loop through the real binary: watch (driven through a pseudo-terminal by file
//! changes), next, reset with backups, solution gating, completions and colour.

mod common;

use std::io::{Read, Write};
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
    std::fs::write(
        fixture.path("exercises/02_failing/README.md"),
        "# Kata\n\n## The story\n\nA gateway counts requests.\n\nMore story.\n\nEven more.\n\n## Your task\n\nFix it.\n",
    )
    .unwrap();
    fixture
        .grader(["next"])
        .assert()
        .success()
        .stdout(contains("kata 02: A counter that leaks"))
        .stdout(contains("A gateway counts requests.\n\nMore story."))
        .stdout(contains("Even more.").not())
        .stdout(contains("edit  exercises/02_failing/src/lib.rs"));
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
    fixture
        .grader(["solution", "2"])
        .assert()
        .code(2)
        .stderr(contains("kata 2 does not pass yet").and(contains("--force")));
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

/// Drives `grader watch` in a pseudo-terminal (util-linux `script`): it checks the current kata,
/// re-checks when the file is saved, and quits on `q`.
#[test]
fn watch_rechecks_on_save_and_quits_on_q() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    let grader = assert_cmd::cargo::cargo_bin("grader");
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &format!("{} watch", grader.display()), "/dev/null"])
        .current_dir(fixture.path(""))
        .env("CARGO_TARGET_DIR", common::shared_target())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux `script` provides the pseudo-terminal");
    let mut stdin = child.stdin.take().unwrap();
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
    let mut seen = String::new();
    let wait_for = |needle: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("watch never printed `{needle}`; it printed:\n{seen}"),
            }
        }
    };

    wait_for("waiting for you to save exercises/02_failing/src/lib.rs", &mut seen);
    assert!(seen.contains("FAIL  02_failing"), "{seen}");
    seen.clear();
    std::fs::copy(
        fixture.path("solutions/02_failing/src/lib.rs"),
        fixture.path("exercises/02_failing/src/lib.rs"),
    )
    .unwrap();
    wait_for("kata 02 passes. Press n for the next kata.", &mut seen);
    seen.clear();
    stdin.write_all(b"q").unwrap();
    stdin.flush().unwrap();
    wait_for("bye", &mut seen);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "watch exited with {status}");
    fixture.grader(["list"]).assert().success().stdout(contains("2/3 done"));
}
