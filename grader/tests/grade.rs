//! `grader grade`: a class graded from the teacher's copy of the fixture course, driven through the
//! real binary. Students are made from the fixture's own trees: the exercises as shipped (5/35
//! points: one kata passes, one fails, one does not compile) and the solutions (35/35).

mod common;

use std::path::{Path, PathBuf};

use common::{Fixture, git};
use predicates::str::contains;
use serde_json::Value;

/// Writes a submission at `dir`: the fixture course's `tree` (`exercises` or `solutions`) as the
/// student's `exercises/`.
fn submission(fixture: &Fixture, tree: &str, dir: &Path) {
    for kata in ["01_passing", "02_failing", "03_broken"] {
        let src = dir.join("exercises").join(kata).join("src");
        std::fs::create_dir_all(&src).unwrap();
        let from = fixture.path(&format!("{tree}/{kata}/src/lib.rs"));
        std::fs::copy(from, src.join("lib.rs")).unwrap();
    }
}

fn result(out: &Path, student: &str) -> Value {
    let path = out.join(format!("{student}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Each kata's status, in course order.
fn statuses(result: &Value) -> Vec<String> {
    let katas = result["katas"].as_array().unwrap();
    katas.iter().map(|k| k["status"].as_str().unwrap().to_owned()).collect()
}

fn read_all(out: &Path, students: &[&str]) -> Vec<Vec<u8>> {
    students.iter().map(|s| std::fs::read(out.join(format!("{s}.json"))).unwrap()).collect()
}

#[test]
fn a_roster_of_directories_a_pinned_repository_and_an_unreachable_source_then_a_resumed_run() {
    let fixture = Fixture::new();
    let class = tempfile::tempdir().unwrap();
    submission(&fixture, "exercises", &class.path().join("alice"));
    submission(&fixture, "solutions", &class.path().join("bob"));
    // Carol's repository: the solutions first, then the exercises; the roster pins the first.
    let carol = class.path().join("carol");
    submission(&fixture, "solutions", &carol);
    git(&carol, &["init", "-q"]);
    git(&carol, &["add", "-A"]);
    git(&carol, &["commit", "-q", "-m", "solved"]);
    let pinned = git(&carol, &["rev-parse", "HEAD"]);
    submission(&fixture, "exercises", &carol);
    git(&carol, &["commit", "-q", "-a", "-m", "started over"]);
    let roster = class.path().join("class.csv");
    std::fs::write(
        &roster,
        format!(
            "student,source,commit,email\n\
             alice,alice,,alice@example.org\n\
             bob,bob\n\
             carol,carol,{pinned},\n\
             dave,nowhere,,\n\
             erin,carol,0123abc,\n"
        ),
    )
    .unwrap();
    let out = class.path().join("results");
    let grade = || {
        let mut cmd = fixture.grader(["grade", "-j", "2", "--out"]);
        cmd.arg(&out).arg(&roster);
        cmd
    };

    grade()
        .assert()
        .code(1)
        .stdout(contains("3 graded, 0 already graded, 2 unreachable, 0 not graded"));
    let alice = result(&out, "alice");
    assert_eq!(statuses(&alice), ["passed", "failed", "compile_error"]);
    assert_eq!(alice["summary"]["points"], 5);
    assert_eq!(alice["student"], "alice");
    assert_eq!(alice["status"], "graded");
    assert_eq!(alice["commit"], Value::Null);
    assert!(alice["content_hash"].as_str().is_some_and(|h| h.len() == 64));
    assert!(alice["graded_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let compile_error = alice["katas"][2]["compile_errors"][0].as_str().unwrap();
    assert!(compile_error.contains("--> exercises/03_broken/src/lib.rs:5"), "{compile_error}");
    assert_eq!(statuses(&result(&out, "bob")), ["passed"; 3]);

    let carol = result(&out, "carol");
    assert_eq!(carol["commit"], pinned.as_str(), "graded at the pinned commit");
    let committed = git(&class.path().join("carol"), &["log", "-1", "--format=%cI", &pinned]);
    assert_eq!(carol["committed_at"], committed.as_str(), "the gradebook's late flag reads it");
    assert_eq!(statuses(&carol), ["passed"; 3], "the pinned commit holds the solutions");
    let course_hash = &alice["course_hash"];
    assert!(course_hash.as_str().is_some_and(|h| h.len() == 64));
    assert_eq!(&carol["course_hash"], course_hash);

    let dave = result(&out, "dave");
    assert_eq!(dave["status"], "unreachable");
    let why = dave["error"].as_str().unwrap();
    assert!(why.starts_with("no directory at ") && why.ends_with("nowhere"), "{why}");
    assert_eq!(dave["katas"], serde_json::json!([]));
    let erin = result(&out, "erin");
    assert_eq!(erin["status"], "unreachable");
    assert!(erin["error"].as_str().unwrap().starts_with("commit `0123abc` is not in "), "{erin}");

    // Resumed: nothing graded again, not a byte of a result rewritten.
    let graded = ["alice", "bob", "carol"];
    let before = read_all(&out, &graded);
    grade()
        .assert()
        .code(1)
        .stdout(contains("0 graded, 3 already graded, 2 unreachable, 0 not graded"))
        .stdout(contains("carol  already graded  35/35"));
    assert_eq!(read_all(&out, &graded), before);

    // Alice fixes a kata: only she is graded again.
    std::fs::copy(
        fixture.path("solutions/02_failing/src/lib.rs"),
        class.path().join("alice/exercises/02_failing/src/lib.rs"),
    )
    .unwrap();
    grade().assert().code(1).stdout(contains("1 graded, 2 already graded, 2 unreachable"));
    let alice = result(&out, "alice");
    assert_eq!(statuses(&alice), ["passed", "passed", "compile_error"]);
    assert_eq!(read_all(&out, &graded)[1..], before[1..]);
}

#[test]
fn a_hostile_submission_does_not_colour_another_students_verdict() {
    let fixture = Fixture::new();
    let class = tempfile::tempdir().unwrap();
    let bob = class.path().join("bob");
    submission(&fixture, "solutions", &bob);
    // Mallory links one file and one kata directory to the teacher's solutions, and hangs in
    // the third kata.
    let mallory = class.path().join("mallory");
    submission(&fixture, "exercises", &mallory);
    let kata = |k: &str| mallory.join("exercises").join(k);
    std::fs::remove_file(kata("01_passing/src/lib.rs")).unwrap();
    std::os::unix::fs::symlink(
        fixture.path("solutions/01_passing/src/lib.rs"),
        kata("01_passing/src/lib.rs"),
    )
    .unwrap();
    std::fs::remove_dir_all(kata("02_failing")).unwrap();
    std::os::unix::fs::symlink(fixture.path("solutions/02_failing"), kata("02_failing")).unwrap();
    std::fs::write(
        kata("03_broken/src/lib.rs"),
        "pub fn double(x: u32) -> u32 {\n    loop {\n        std::hint::black_box(x);\n    }\n}\n",
    )
    .unwrap();

    let out: PathBuf = class.path().join("results");
    let mut cmd = fixture.grader(["grade", "-j", "2", "--timeout", "2", "--out"]);
    cmd.arg(&out).arg(&mallory).arg(&bob);
    cmd.assert().success().stdout(contains("2 graded, 0 already graded, 0 unreachable"));

    assert_eq!(statuses(&result(&out, "bob")), ["passed"; 3]);
    assert_eq!(result(&out, "bob")["summary"]["points"], 35);
    let mallory = result(&out, "mallory");
    assert_eq!(mallory["student"], "mallory", "a directory is graded under its own name");
    assert_eq!(statuses(&mallory), ["compile_error", "compile_error", "timed_out"]);
    let errors: Vec<&str> =
        (0..2).map(|i| mallory["katas"][i]["compile_errors"][0].as_str().unwrap()).collect();
    assert!(errors[0].contains("exercises/01_passing/src/lib.rs is a symbolic link"), "{errors:?}");
    assert!(errors[1].contains("exercises/02_failing is a symbolic link"), "{errors:?}");
    assert_eq!(mallory["summary"]["points"], 0);
}

#[test]
fn a_malformed_roster_is_refused_naming_the_line() {
    let fixture = Fixture::new();
    let class = tempfile::tempdir().unwrap();
    let roster = class.path().join("class.csv");
    std::fs::write(&roster, "student,source\nalice,alice\nbob/../x,bob\n").unwrap();
    let mut cmd = fixture.grader(["grade", "--out"]);
    cmd.arg(class.path().join("results")).arg(&roster);
    cmd.assert().code(2).stderr(contains("class.csv line 3: the student id `bob/../x` holds `/`"));
    assert!(!class.path().join("results").exists(), "nothing is graded from a bad roster");
}

/// The result files' student names in `out`, sorted.
fn graded_in(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn shards_split_a_class_into_disjoint_parts_that_add_up_to_it() {
    // Unreachable sources get result files without a build: the split is what is tested here.
    let fixture = Fixture::new();
    let class = tempfile::tempdir().unwrap();
    let students: Vec<String> = (1..=12).map(|i| format!("student{i:02}")).collect();
    let roster = class.path().join("class.csv");
    let rows: String = students.iter().map(|s| format!("{s},gone/{s}\n")).collect();
    std::fs::write(&roster, format!("student,source\n{rows}")).unwrap();
    let shard = |spec: &str, out: &Path| {
        let mut cmd = fixture.grader(["grade", "--shard", spec, "--out"]);
        cmd.arg(out).arg(&roster);
        cmd
    };

    let mut everyone = Vec::new();
    for i in 1..=3 {
        let out = class.path().join(format!("results-{i}"));
        let assert = shard(&format!("{i}/3"), &out).assert();
        let got = graded_in(&out);
        let expected = if got.is_empty() { 0 } else { 1 };
        assert
            .code(expected)
            .stdout(contains(format!("shard {i}/3: {} of the 12 students", got.len())));
        // Run again: the same students, whatever else changed.
        let again = class.path().join(format!("again-{i}"));
        let _ = shard(&format!("{i}/3"), &again).assert();
        assert_eq!(graded_in(&again), got, "shard {i}/3 is deterministic");
        everyone.extend(got);
    }
    everyone.sort();
    assert_eq!(everyone, students, "every student in exactly one of the shards");

    // Ten shards of twelve students: some shard is empty, and that is a success.
    let empty = (1..=10)
        .find(|i| {
            let out = class.path().join(format!("ten-{i}"));
            let ok = shard(&format!("{i}/10"), &out).output().unwrap();
            graded_in(&out).is_empty() && ok.status.success()
        })
        .expect("an empty shard succeeds");
    let out = class.path().join("ten-empty");
    shard(&format!("{empty}/10"), &out)
        .assert()
        .success()
        .stdout(contains("nothing to grade in this shard"));
    assert!(out.is_dir(), "an empty shard still leaves its --out for the upload");

    fixture
        .grader(["grade", "--shard", "4/3", "--out", "x"])
        .arg(&roster)
        .assert()
        .code(2)
        .stderr(contains("expected I/N with 1 <= I <= N"));
}

/// Where the grader keeps the fixture's generated workspaces, in the shared target directory.
fn grader_dir(fixture: &Fixture) -> PathBuf {
    use sha2::Digest;
    let root = fixture.path("").canonicalize().unwrap();
    let hash = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    common::shared_target().join("grader").join(format!("course-{}", &hex[..16]))
}

#[test]
fn identical_sources_are_built_once_and_a_changed_hidden_test_grades_again() {
    let fixture = Fixture::new();
    let class = tempfile::tempdir().unwrap();
    for student in ["alice", "bob", "carol", "dave"] {
        submission(&fixture, "solutions", &class.path().join(student));
    }
    let out = class.path().join("results");
    let grade = |students: &[&str]| {
        let mut cmd = fixture.grader(["grade", "-j", "2", "--out"]);
        cmd.arg(&out).args(students.iter().map(|s| class.path().join(s)));
        cmd
    };
    let grader_dir = grader_dir(&fixture);
    let built = |student: &str| grader_dir.join(format!("grade-{student}")).exists();
    let cache = grader_dir.join("cache");

    // Alice and Bob, the same sources, graded side by side: one of them is built and run, the
    // other waits for the verdicts; no workspace is generated for them at all.
    grade(&["alice", "bob"]).assert().success().stdout(contains("2 graded"));
    assert!(built("alice") != built("bob"), "identical sources were built twice, or never");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3, "a verdict per kata");
    let (alice, bob) = (result(&out, "alice"), result(&out, "bob"));
    assert_eq!(statuses(&bob), ["passed"; 3]);
    assert_eq!(bob["summary"]["points"], 35);
    assert_eq!(alice["katas"], bob["katas"], "the same verdicts, tests and messages");

    // A damaged entry is ignored, said so, and graded again.
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), "{\"format\": 1, \"key\": ").unwrap();
    }
    grade(&["carol"])
        .assert()
        .success()
        .stderr(contains("warning: ignoring the damaged verdict cache entry"));
    assert!(built("carol"));
    assert_eq!(statuses(&result(&out, "carol")), ["passed"; 3]);

    // A changed hidden test is a changed course: nothing is reused.
    let hidden = fixture.path("grader/hidden/01_passing.rs");
    let text = std::fs::read_to_string(&hidden).unwrap();
    std::fs::write(&hidden, format!("{text}\n// a teacher's edit\n")).unwrap();
    grade(&["dave"]).assert().success();
    assert!(built("dave"), "a verdict of the old hidden tests was reused");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 6);

    // `--no-cache` builds even what the cache knows.
    std::fs::remove_dir_all(grader_dir.join("grade-dave")).unwrap();
    std::fs::remove_file(out.join("dave.json")).unwrap();
    fixture
        .grader(["grade", "--no-cache", "--out"])
        .arg(&out)
        .arg(class.path().join("dave"))
        .assert()
        .success();
    assert!(built("dave"));
}

#[test]
fn a_learners_unchanged_kata_is_not_built_again() {
    let fixture = Fixture::new();
    let grader_dir = grader_dir(&fixture);
    fixture.grader(["check", "1", "2"]).assert().code(1).stdout(contains("1/2 katas passed"));
    let exercises = grader_dir.join("exercises");
    assert!(exercises.is_dir());
    std::fs::remove_dir_all(&exercises).unwrap();
    fixture.grader(["check", "1", "2"]).assert().code(1).stdout(contains("1/2 katas passed"));
    assert!(!exercises.exists(), "unchanged katas were built again");

    // An edit is new sources: only that kata is built.
    std::fs::copy(
        fixture.path("solutions/02_failing/src/lib.rs"),
        fixture.path("exercises/02_failing/src/lib.rs"),
    )
    .unwrap();
    fixture.grader(["check", "1", "2"]).assert().success().stdout(contains("2/2 katas passed"));
    assert!(exercises.join("tests/02-failing").exists());
    assert!(!exercises.join("tests/01-passing").exists(), "kata 1 was built again");
}
