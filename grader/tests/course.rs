//! The real course keeps its contract: every exercise fails as shipped (and works when nothing is
//! cancelled), every solution passes, every decoy is rejected. This is `grader verify` on the
//! repository itself.

use predicates::str::contains;

#[test]
fn the_course_keeps_the_kata_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    assert_cmd::Command::cargo_bin("grader")
        .expect("grader binary")
        .arg("--root")
        .arg(root)
        .arg("verify")
        .env("NO_COLOR", "1")
        .assert()
        .success()
        .stdout(contains("contract holds for"));
}

/// A student handout of the real course: no solutions, every kata failing as shipped; with the
/// solutions copied in, every kata passes.
#[test]
fn a_handout_of_the_course_checks_zero_then_all() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let parent = tempfile::tempdir().unwrap();
    let handout = parent.path().join("katas");
    let grader = |dir: &std::path::Path, args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("grader").expect("grader binary");
        cmd.current_dir(dir).env("NO_COLOR", "1").args(args);
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            cmd.env("CARGO_TARGET_DIR", root.join("target"));
        }
        cmd
    };
    grader(root, &["handout", handout.to_str().unwrap()]).assert().success();
    assert!(!handout.join("solutions").exists() && !handout.join("grader/decoys").exists());

    let output = grader(&handout, &["check", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let katas = report["summary"]["katas"].as_u64().unwrap();
    assert!(katas >= 24, "the course has {katas} katas");
    assert_eq!(report["summary"]["passed"], 0, "every kata ships failing");
    every_cut_shows_its_await(&report);

    for entry in std::fs::read_dir(root.join("solutions")).unwrap().flatten() {
        // A write-the-test kata's solution is its reference test; its `src/lib.rs` is not graded.
        for file in ["src/lib.rs", "tests/cancel.rs"] {
            let from = entry.path().join(file);
            if from.is_file() {
                let to = handout.join("exercises").join(entry.file_name()).join(file);
                std::fs::copy(&from, to).unwrap();
            }
        }
    }
    grader(&handout, &["check"])
        .assert()
        .success()
        .stdout(contains(format!("{katas}/{katas} katas passed")));
}

/// Every test of the report that failed at one of the explorer's cuts names the `.await` (or the
/// awaiting macro) of the learner's file that the future was parked at, outermost first, with the
/// line as it reads in the file.
fn every_cut_shows_its_await(report: &serde_json::Value) {
    let cut_words =
        ["cancelled after poll", "dropped before its first poll", "dropped outside any"];
    let mut explained = 0;
    for kata in report["katas"].as_array().unwrap() {
        for test in kata["tests"].as_array().unwrap() {
            let message = test["message"].as_str().unwrap();
            if test["status"] == "passed" || !cut_words.iter().any(|w| message.starts_with(w)) {
                continue;
            }
            let name = format!("{} {}", kata["name"], test["name"]);
            let parked = test["parked"].as_array().unwrap_or_else(|| panic!("{name}: no cut"));
            assert!(!parked.is_empty(), "{name}: no cut");
            for cut in parked {
                assert_eq!(cut["file"], kata["file"], "{name}");
                let text = cut["text"].as_str().unwrap();
                let chars: Vec<char> = text.chars().collect();
                let (from, to) =
                    (cut["column"].as_u64().unwrap(), cut["end_column"].as_u64().unwrap());
                let marked: String = chars[from as usize - 1..to as usize - 1].iter().collect();
                assert!(marked == ".await" || marked.ends_with('!'), "{name}: marks {marked:?}");
            }
            explained += 1;
        }
    }
    assert!(explained >= 10, "only {explained} failing cuts in the shipped course");
}
