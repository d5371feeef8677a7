//! The real `grader` binary against a tiny fixture course (tests/fixtures/course): one kata that
//! passes as shipped, one that fails, one that does not compile.

mod common;

use common::Fixture;
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn list_shows_every_kata_with_level_and_progress() {
    let fixture = Fixture::new();
    fixture
        .grader(["list"])
        .assert()
        .success()
        .stdout(contains("01 passing"))
        .stdout(contains("intermediate"))
        .stdout(contains("0/3 done (beginner 0/1, intermediate 0/1, advanced 0/1)"));
}

#[test]
fn check_grades_each_kata_and_keeps_going_past_a_compile_error() {
    let fixture = Fixture::new();
    let output = fixture.grader(["check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in [
        "PASS  01_passing  5/5  all 2 tests pass",
        "FAIL  02_failing  0/10 1 of 3 tests fail",
        "BUILD 03_broken   0/20 1 compile error",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    // Details for the current kata only: a first check is a line per kata (issue 13).
    assert!(
        stdout.contains(
            "cancelled after poll 1 of 2, while still waiting: the counter still reads 1"
        ),
        "{stdout}"
    );
    // Where the future was parked when it was dropped, in the learner's file (issue 13).
    for line in [
        "note: the future was dropped while parked here",
        "--> exercises/02_failing/src/lib.rs:16:9",
        "16 |     work.await;",
        "^^^^^^ dropped here",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("edit exercises/02_failing/src/lib.rs"), "{stdout}");
    assert!(stdout.contains("stuck? `grader hint 2`"), "{stdout}");
    assert!(!stdout.contains("expected `;`"), "kata 03 is not the current one:\n{stdout}");
    assert!(stdout.contains("one kata's details: `grader check 3`"), "{stdout}");
    assert!(stdout.contains("1/3 katas passed, 5/35 points"), "{stdout}");

    // Progress is derived from the results: one kata done.
    fixture.grader(["list"]).assert().success().stdout(contains("1/3 done"));

    // A named kata gets its details, its compiler error shown once.
    let output = fixture.grader(["check", "3"]).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.matches("error: expected `;`").count(), 1, "{stdout}");
    assert!(stdout.contains("--> exercises/03_broken/src/lib.rs:"), "{stdout}");
}

#[test]
fn check_inside_a_kata_folder_checks_that_kata() {
    let fixture = Fixture::new();
    fixture
        .grader(["check"])
        .current_dir(fixture.path("exercises/02_failing/src"))
        .assert()
        .code(1)
        .stderr(contains("checking kata 02, whose folder you are in"))
        .stdout(contains("FAIL  02_failing"))
        .stdout(contains("01_passing").not())
        .stdout(contains("0/1 katas passed"));
    fixture
        .grader(["check", "--solutions"])
        .current_dir(fixture.path("solutions/03_broken"))
        .assert()
        .success()
        .stdout(contains("PASS  03_broken"))
        .stdout(contains("1/1 katas passed"));
}

#[test]
fn messages_name_the_command_the_learner_typed() {
    let fixture = Fixture::new();
    // What `cargo run -p grader -- ...` (the README's commands) sets for the grader.
    fixture
        .grader(["check", "failng"])
        .env("CARGO_PKG_NAME", "grader")
        .assert()
        .code(2)
        .stderr(contains("did you mean `failing`? run `cargo run -p grader -- list`"));
    fixture
        .grader(["hint", "2"])
        .env("CARGO_PKG_NAME", "grader")
        .assert()
        .success()
        .stdout(contains("(run `cargo run -p grader -- hint 2` again for the next hint)"));
    fixture.grader(["hint", "2"]).assert().success().stdout(contains("run `grader hint 2` again"));
}

#[test]
fn a_zero_timeout_is_a_usage_error() {
    let fixture = Fixture::new();
    for flag in ["--timeout", "--build-timeout"] {
        fixture
            .grader(["check", "1", flag, "0"])
            .assert()
            .code(2)
            .stderr(contains("0 is not in 1.."));
    }
}

#[test]
fn list_and_help_fit_sixty_columns() {
    let fixture = Fixture::new();
    let list = fixture.grader(["list"]).output().unwrap();
    for args in [&["--help"][..], &["check", "--help"], &["reset", "--help"]] {
        let help = fixture.grader(args).env("COLUMNS", "60").output().unwrap();
        assert!(help.status.success());
        for line in String::from_utf8(help.stdout).unwrap().lines() {
            assert!(line.chars().count() <= 60, "{args:?}: `{line}`");
        }
    }
    for line in String::from_utf8(list.stdout).unwrap().lines() {
        assert!(line.chars().count() <= 60, "list: `{line}`");
    }
}

#[test]
fn a_dependency_added_to_the_kata_manifest_is_explained() {
    let fixture = Fixture::new();
    let kata = fixture.path("exercises/02_failing");
    std::fs::write(
        kata.join("Cargo.toml"),
        "[package]\nname = \"failing\"\nedition = \"2024\"\n[dependencies]\nanyhow = \"1\"\n\
         tokio = \"1\"\n",
    )
    .unwrap();
    let lib = kata.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("use anyhow::Context as _;\n{text}")).unwrap();
    fixture.grader(["check", "2"]).assert().code(1).stdout(contains("BUILD 02_failing")).stdout(
        contains(
            "note: exercises/02_failing/Cargo.toml adds `anyhow`, but only src/ is graded: the \
             hidden tests build it with the course's crates (`tokio`)",
        ),
    );
}

#[test]
fn progress_is_stale_when_the_hidden_tests_change() {
    let fixture = Fixture::new();
    fixture.grader(["check", "1"]).assert().success();
    fixture.grader(["list"]).assert().success().stdout(contains("1/3 done"));
    let hidden = fixture.path("grader/hidden/01_passing.rs");
    let text = std::fs::read_to_string(&hidden).unwrap();
    std::fs::write(&hidden, format!("{text}\n// a stricter test, some day\n")).unwrap();
    fixture
        .grader(["list"])
        .assert()
        .success()
        .stdout(contains("0/3 done"))
        .stdout(contains("01 passing"));
}

#[test]
fn check_json_follows_the_documented_schema() {
    let fixture = Fixture::new();
    let output = fixture.grader(["check", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["version"], 1);
    assert_eq!(report["tree"], "exercises");
    let statuses: Vec<_> =
        report["katas"].as_array().unwrap().iter().map(|k| k["status"].clone()).collect();
    assert_eq!(statuses, ["passed", "failed", "compile_error"]);
    let failing = &report["katas"][1];
    assert_eq!(failing["name"], "02_failing");
    assert_eq!(failing["points"], 0);
    assert_eq!(failing["max_points"], 10);
    let tests = failing["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3);
    let cancelled =
        tests.iter().find(|t| t["name"] == "cancelled_call_lowers_the_counter").unwrap();
    assert_eq!(cancelled["status"], "failed");
    assert!(cancelled["message"].as_str().unwrap().contains("cancelled after poll 1"));
    let parked = &cancelled["parked"][0];
    assert_eq!(parked["file"], "exercises/02_failing/src/lib.rs");
    assert_eq!((parked["line"].as_u64(), parked["column"].as_u64()), (Some(16), Some(9)));
    assert_eq!(parked["end_column"].as_u64(), Some(15));
    assert!(cancelled["duration_ms"].is_u64());
    assert!(report["katas"][2]["compile_errors"][0].as_str().unwrap().contains("expected `;`"));
    let summary = &report["summary"];
    assert_eq!((summary["katas"].as_u64(), summary["passed"].as_u64()), (Some(3), Some(1)));
    assert_eq!((summary["points"].as_u64(), summary["max_points"].as_u64()), (Some(5), Some(35)));
}

#[test]
fn check_solutions_passes_everything() {
    let fixture = Fixture::new();
    fixture
        .grader(["check", "--solutions"])
        .assert()
        .success()
        .stdout(contains("3/3 katas passed, 35/35 points"));
}

#[test]
fn katas_are_named_by_number_slug_or_folder_with_did_you_mean() {
    let fixture = Fixture::new();
    for name in ["1", "01", "passing", "01_passing"] {
        fixture.grader(["check", name]).assert().success().stdout(contains("1/1 katas passed"));
    }
    fixture
        .grader(["check", "failng"])
        .assert()
        .code(2)
        .stderr(contains("no kata named `failng`; did you mean `failing`? run `grader list`"));
}

#[test]
fn hints_are_revealed_one_at_a_time_and_remembered() {
    let fixture = Fixture::new();
    fixture
        .grader(["hint", "2"])
        .assert()
        .success()
        .stdout(contains("hint 1/3: look at the await"))
        .stdout(contains("hint 2/3").not());
    fixture.grader(["hint", "2"]).assert().success().stdout(contains("hint 2/3: destructors"));
    fixture
        .grader(["hint", "2", "--all"])
        .assert()
        .success()
        .stdout(contains("hint 3/3: use a guard"));
}

#[test]
fn build_script_and_manifest_edits_in_an_exercise_change_no_verdict() {
    let fixture = Fixture::new();
    let kata = fixture.path("exercises/02_failing");
    std::fs::write(kata.join("build.rs"), "fn main() { panic!(\"build scripts must not run\") }")
        .unwrap();
    std::fs::write(
        kata.join("Cargo.toml"),
        "[package]\nname = \"hacked\"\nbuild = \"build.rs\"\n[lib]\ntest = true\n",
    )
    .unwrap();
    std::fs::create_dir_all(fixture.path(".cargo")).unwrap();
    std::fs::write(
        fixture.path(".cargo/config.toml"),
        "[target.'cfg(all())']\nrunner = \"true\"\n[build]\nrustflags = [\"--cfg\", \"hacked\"]\n",
    )
    .unwrap();
    fixture
        .grader(["check", "2"])
        .assert()
        .code(1)
        .stdout(contains("FAIL  02_failing"))
        .stdout(contains("1 of 3 tests fail"));
}

#[test]
fn a_missing_learner_file_is_reported_with_what_to_do() {
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path("exercises/01_passing/src/lib.rs")).unwrap();
    fixture
        .grader(["check"])
        .assert()
        .code(1)
        .stdout(contains("BUILD 01_passing"))
        .stdout(contains("exercises/01_passing/src/lib.rs is missing; restore it"))
        .stdout(contains("FAIL  02_failing"));
}

#[test]
fn verify_reports_a_broken_contract() {
    let fixture = Fixture::new();
    fixture
        .grader(["verify"])
        .assert()
        .code(1)
        .stdout(contains("exercise passes every hidden test; as shipped it must fail"))
        // The README's second command run on a learner's tree fails this way: say whose it is.
        .stdout(contains("if you solved this kata, that is your fix passing"))
        .stdout(contains("exercise does not compile"))
        .stdout(contains("has 0 decoy(s); at least 2 plausible wrong fixes are required"))
        .stdout(contains("exercises/02_failing/README.md is missing"))
        .stdout(contains("nondeterministic").not());
}

#[test]
fn verify_reports_decoys_it_cannot_use() {
    let fixture = Fixture::new();
    // The exercise changes under the decoy, and an old whole-file decoy is left in the folder.
    let exercise = fixture.path("exercises/02_failing/src/lib.rs");
    let text = std::fs::read_to_string(&exercise).unwrap();
    std::fs::write(&exercise, text.replace("    work.await;\n", "    let () = work.await;\n"))
        .unwrap();
    std::fs::write(fixture.path("grader/decoys/02_failing/old.rs"), text).unwrap();
    fixture
        .grader(["verify", "2"])
        .assert()
        .code(1)
        .stdout(contains(
            "grader/decoys/02_failing/lower_first.patch no longer applies to \
             exercises/02_failing/src/lib.rs (error applying hunk #1); regenerate it",
        ))
        .stdout(contains("grader/decoys/02_failing/old.rs is a whole-file decoy; convert it"));
}

#[test]
fn verify_reports_a_hidden_test_whose_verdict_changes_between_runs() {
    let fixture = Fixture::new();
    let coin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nondeterministic.rs");
    std::fs::copy(coin, fixture.path("grader/hidden/01_passing.rs")).unwrap();
    // 40 fair flips all agree once in 2^39 runs of this test.
    fixture
        .grader(["verify", "1", "--repeat", "40"])
        .assert()
        .code(1)
        .stdout(contains(
            "solution 01_passing: hidden test `coin_flip` is nondeterministic over 40 runs of \
             one build (",
        ))
        .stdout(contains("passed").and(contains("failed")));
}

#[test]
fn verify_runs_a_decoy_again_only_where_it_was_rejected() {
    let fixture = Fixture::new();
    // One worker, so the order is fixed: the decoy fails the first of three tests; only that one
    // is run again, twice, where each of the solution's three tests is.
    fixture
        .grader(["verify", "2", "-j", "1"])
        .assert()
        // The fixture's katas lack their READMEs: not what this test is about.
        .code(1)
        .stderr(contains("testing again 6 ..."))
        .stderr(contains("testing again 2 ..."));
}

#[test]
fn verify_builds_a_decoy_with_its_recorded_test_and_whole_where_that_test_passes_it() {
    let fixture = Fixture::new();
    let record = fixture.path("grader/decoys/rejected-by.toml");
    fixture.grader(["verify", "2", "--record"]).assert().code(1);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("[02_failing]\nlower_first = \"counts_while_waiting\"\n"), "{text}");
    // Built with that test alone, the decoy's executable lists one test, run once and again twice.
    fixture
        .grader(["verify", "2", "-j", "1"])
        .assert()
        .code(1)
        .stderr(contains("testing 1 ...").and(contains("testing again 2 ...")))
        .stdout(contains("decoys built with the test that rejected them last time: 1 of 1\n"));
    // A test that passes the decoy (a stale record), or one the file lacks: built whole, rejected.
    for test in ["completes_normally", "no_such_test", "not a name"] {
        let stale = text.replace("counts_while_waiting", test);
        std::fs::write(&record, stale).unwrap();
        fixture
            .grader(["verify", "2"])
            .assert()
            .code(1)
            .stdout(contains("decoy 02_failing/lower_first").not())
            .stdout(contains("1 built whole, with no recorded test or one that no longer"));
    }
    std::fs::write(&record, "[02_failing]\nlower_first = 3\n").unwrap();
    fixture
        .grader(["verify", "2"])
        .assert()
        .code(3)
        .stderr(contains("rejected-by.toml is not a table per kata").and(contains("--record")));
}

#[test]
fn verify_reports_a_decoy_whose_rejection_changes_between_runs() {
    let fixture = Fixture::new();
    // The one test that could reject the decoy is a coin flip, for the solution too.
    let hidden = "use std::hash::BuildHasher;\n\
                  kata_support::hidden_test! {\n\
                  fn coin_flip() {\n\
                  let seed = std::collections::hash_map::RandomState::new();\n\
                  assert_eq!(seed.hash_one(failing::IN_FLIGHT.as_ptr() as usize) % 2, 0);\n\
                  }\n\
                  }\n";
    std::fs::write(fixture.path("grader/hidden/02_failing.rs"), hidden).unwrap();
    // Rejected on the first run, it is caught on a later one; passed on the first, it is caught
    // then (40 fair flips all agree once in 2^39 runs of this test).
    fixture.grader(["verify", "2", "--repeat", "40"]).assert().code(1).stdout(
        contains(
            "decoy 02_failing/lower_first passes every hidden test on some runs: `coin_flip` is \
             nondeterministic over 40 runs",
        )
        .or(contains("decoy 02_failing/lower_first passes every hidden test")),
    );
}

#[test]
fn verify_takes_a_decoy_rejected_every_run_by_changing_tests_as_rejected() {
    let fixture = Fixture::new();
    // A coin flip first, then the test that always rejects the decoy: where the coin passes on a
    // repeat, the other test still rejects it on that run, and the verdict holds.
    let hidden = fixture.path("grader/hidden/02_failing.rs");
    let text = std::fs::read_to_string(&hidden).unwrap();
    let coin = "    fn coin_flip() {\n\
                let seed = std::collections::hash_map::RandomState::new();\n\
                let flip = std::hash::BuildHasher::hash_one(&seed, 0u8) % 2;\n\
                assert_eq!(flip, 0);\n\
                }\n\n";
    let text = text.replacen(
        "kata_support::hidden_test! {\n",
        &format!("kata_support::hidden_test! {{\n{coin}"),
        1,
    );
    std::fs::write(&hidden, text).unwrap();
    let output = fixture.grader(["verify", "2", "--repeat", "20", "-j", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("lower_first passes every hidden test"), "{stdout}");
}

#[test]
fn outside_a_course_the_error_says_where_to_run() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("grader")
        .unwrap()
        .current_dir(dir.path())
        .arg("list")
        .assert()
        .code(3)
        .stderr(contains("no course.toml in").and(contains("pass --root")));
}

#[test]
fn two_checks_at_once_both_finish_and_leave_readable_state() {
    let fixture = Fixture::new();
    let mut first = fixture.grader(["check", "--format", "json"]);
    let mut second = fixture.grader(["check", "--format", "json"]);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| first.output().unwrap());
        let b = scope.spawn(|| second.output().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    for output in [a, b] {
        assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["summary"]["passed"], 1);
    }
    fixture.grader(["list"]).assert().success().stdout(contains("1/3 done"));
}

/// A build that waits for another cargo's lock on the target directory (a second check, or
/// `cargo test`, building there) for longer than the build's idle limit is not a stalled build:
/// it waits, then builds and grades as usual.
#[test]
fn a_build_waiting_for_the_target_lock_is_not_timed_out() {
    let fixture = Fixture::new();
    // Built once first, so that once the lock is free nothing is left to compile.
    fixture.grader(["check", "1"]).assert().success();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(common::shared_target().join("debug/.cargo-lock"))
        .unwrap();
    lock.lock().unwrap();
    let held = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(12));
        drop(lock);
    });
    fixture
        .grader(["check", "1", "--no-cache", "--build-timeout", "5"])
        .assert()
        .success()
        .stdout(contains("1/1 katas passed"));
    held.join().unwrap();
}

#[test]
fn a_missing_cargo_is_an_infrastructure_error() {
    let fixture = Fixture::new();
    fixture
        .grader(["check"])
        .env("CARGO", "/nonexistent/cargo")
        .assert()
        .code(3)
        .stderr(contains("failed to run cargo"));
}

#[test]
fn a_draft_manifest_belongs_to_the_course_around_it() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.path("drafts")).unwrap();
    let manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    let draft = &manifest[..manifest.find("[[kata]]\nname = \"02_failing\"").unwrap()];
    std::fs::write(fixture.path("drafts/mine.toml"), draft).unwrap();
    fixture
        .grader(["--manifest", "drafts/mine.toml", "check"])
        .assert()
        .success()
        .stdout(contains("1/1 katas passed"));
}
