//! Write-the-test katas through the real binary, on the fixture course `wtt`: one kata whose
//! function (a gauge) has a wrong version that leaks only at its second `.await`, and a right one.
//! A learner's test is judged against every version: a good one passes, a weak one is told which
//! version it missed, one that always fails is told it fails the right version, one that does not
//! build gets the compiler's errors, and one that reads the function's source is refused.

mod common;

use common::Fixture;
use predicates::str::contains;
use serde_json::Value;

const TEST: &str = "exercises/01_gauge/tests/cancel.rs";

/// The fixture with `test` as the learner's test; the JSON report of `check 1`.
fn check(fixture: &Fixture, test: &str) -> (Value, String) {
    std::fs::write(fixture.path(TEST), test).unwrap();
    let out = fixture.grader(["check", "1", "--format", "json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (report["katas"][0].clone(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `name verdict` for every version, in report order.
fn verdicts(kata: &Value) -> Vec<String> {
    kata["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{} {}", v["name"].as_str().unwrap(), v["verdict"].as_str().unwrap()))
        .collect()
}

const GOOD: &str = "use std::sync::Arc;\nuse std::sync::atomic::Ordering;\nuse gauge::{Gauge, work};\n\
kata_support::hidden_test! {\n    async fn every_cut() {\n        kata_support::assert_cancel_safe(\n            \
|| Arc::new(Gauge::default()),\n            |g| async move { work(&g).await },\n            \
|g, _| async move { if g.0.load(Ordering::SeqCst) == 0 { Ok(()) } else { Err(\"leaked\".to_owned()) } },\n        \
)\n        .await;\n    }\n}\n";

#[test]
fn a_good_test_catches_every_wrong_version_and_passes_the_right_one() {
    let fixture = Fixture::of("wtt");
    // A comment is not code: saying why the test prints no `{:p}` is no reason to refuse it.
    let good = format!("//! Checks the gauge, not its address: no `{{:p}}` here.\n{GOOD}");
    let (kata, _) = check(&fixture, &good);
    assert_eq!(kata["status"], "passed", "{kata:#}");
    assert_eq!(kata["points"], 10);
    assert_eq!(
        verdicts(&kata),
        ["shipped caught", "forgets_in_the_second_step caught", "solution passed"]
    );
    // The human report lists the versions by their one-line description, never their source.
    fixture.grader(["check", "1"]).assert().success().stdout(contains("caught 2/2, right 1/1"));
}

#[test]
fn a_weak_test_is_told_the_version_it_missed() {
    let fixture = Fixture::of("wtt");
    // One cut, in the first step: the version that leaks only in the second is missed.
    let weak = "use std::sync::atomic::Ordering;\nuse std::time::Duration;\nuse gauge::{Gauge, work};\n\
                kata_support::hidden_test! {\n    async fn one_cut() {\n        \
                let g = Gauge::default();\n        \
                let _ = tokio::time::timeout(Duration::from_millis(1), work(&g)).await;\n        \
                assert_eq!(g.0.load(Ordering::SeqCst), 0, \"leaked\");\n    }\n}\n";
    let (kata, _) = check(&fixture, weak);
    assert_eq!(kata["status"], "failed", "{kata:#}");
    assert_eq!(
        verdicts(&kata),
        ["shipped caught", "forgets_in_the_second_step missed", "solution passed"]
    );
    let out = fixture.grader(["check", "1"]).assert().failure().get_output().stdout.clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("x missed"), "{text}");
    assert!(
        text.contains("Lowers the gauge at a cut in the first step, but not in the second."),
        "{text}"
    );
    assert!(text.contains("your test misses 1 of the 2 bugs"), "{text}");
    // Never the version's source.
    assert!(!text.contains("mem::forget"), "{text}");
}

#[test]
fn a_test_that_always_fails_is_reported_as_failing_the_right_version() {
    let fixture = Fixture::of("wtt");
    // What it prints stands for anything a test could measure of the version it runs against.
    let always = "kata_support::hidden_test! {\n    fn fails() {\n        \
                  panic!(\"no, measured {}\", 6 * 7);\n    }\n}\n";
    let (kata, _) = check(&fixture, always);
    assert_eq!(kata["status"], "failed");
    assert_eq!(
        verdicts(&kata),
        ["shipped caught", "forgets_in_the_second_step caught", "solution falsely_failed"]
    );
    let advice = kata["advice"].as_str().unwrap();
    assert!(advice.starts_with("your test fails against every version, the right ones too"));
    let solution = &kata["tests"][2];
    assert_eq!(solution["name"], "right/solution");
    assert!(
        solution["message"].as_str().unwrap().contains("`fails` fails against it: no, measured 42")
    );
    assert!(kata["variants"][2]["failed_tests"][0]["message"].as_str().unwrap().contains("42"));
    // Against a wrong version, only caught or missed: what the test said there, which tests
    // failed and how long they ran, reported by version, would tell the versions apart.
    for (i, version) in kata["tests"].as_array().unwrap().iter().enumerate() {
        assert_eq!(version["duration_ms"], 0, "{version:#}");
        if i < 2 {
            assert_eq!(version["message"], "", "{version:#}");
            assert!(kata["variants"][i]["failed_tests"].is_null(), "{kata:#}");
        }
    }
    assert_eq!(kata.to_string().matches("measured 42").count(), 2, "{kata:#}");
    for format in ["human", "junit", "github"] {
        let out = fixture.grader(["check", "1", "--format", format]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let shown = text.matches("measured 42").count();
        assert!(shown <= 2 && text.contains("solution"), "{format}: {text}");
        for line in text.lines().filter(|l| l.contains("measured 42")) {
            assert!(!line.contains("shipped") && !line.contains("forgets"), "{format}: {line}");
        }
    }
}

#[test]
fn a_test_that_measures_how_a_version_was_compiled_is_refused_saying_what_to_do() {
    let fixture = Fixture::of("wtt");
    let gaming = "use gauge::{Gauge, work};\n\
                  /// Why no `{:p}`: an address says nothing about cancellation.\n\
                  fn bytes<F>(f: &F) -> usize {\n    \
                  let r = std::slice::from_ref(f).as_ptr_range();\n    \
                  r.end as usize - r.start as usize\n}\n\
                  #[repr(C)]\nstruct Probe<F>(F, u8);\n\
                  kata_support::hidden_test! {\n    async fn t() {\n        \
                  let g = Gauge::default();\n        \
                  let n = bytes(&work(&g)) + std::mem::offset_of!(Probe<u8>, 1);\n        \
                  let id = tokio::spawn(async {}).id();\n        \
                  assert!(n != 272, \"{id}\");\n    }\n}\n";
    let (kata, _) = check(&fixture, gaming);
    assert_eq!(kata["status"], "compile_error", "{kata:#}");
    assert!(kata["variants"].is_null(), "nothing was run: {kata:#}");
    let errors: Vec<&str> =
        kata["compile_errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let expected = [
        ("`as_ptr_range`", "cancel.rs:4:37", "gives an address"),
        ("`as usize`", "cancel.rs:5:11", "`as` cast to an integer"),
        ("`as usize`", "cancel.rs:5:30", "`as` cast to an integer"),
        ("`offset_of!`", "cancel.rs:12:46", "a future's size"),
        ("`id()`", "cancel.rs:13:41", "tokio task id"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, (what, place, why)) in errors.iter().zip(expected) {
        assert!(error.contains(what) && error.contains(place) && error.contains(why), "{error}");
        assert!(error.contains("= help: "), "{error}");
    }
    assert!(errors[1].contains("`u64::from(n)`"), "{}", errors[1]);
    assert!(errors[4].contains("forbid_leftover_tasks"), "{}", errors[4]);
}

#[test]
fn a_test_that_does_not_build_gets_the_compilers_errors() {
    let fixture = Fixture::of("wtt");
    let broken = "use gauge::Gauge;\nkata_support::hidden_test! {\n    fn t() {\n        \
                  let g: Gauge = 1;\n    }\n}\n";
    let (kata, _) = check(&fixture, broken);
    assert_eq!(kata["status"], "compile_error", "{kata:#}");
    let errors = kata["compile_errors"].to_string();
    assert!(errors.contains("mismatched types"), "{errors}");
    assert!(errors.contains("exercises/01_gauge/tests/cancel.rs"), "{errors}");
    // No test at all is the learner's error too (exit 1), not the grader's (exit 3).
    let (kata, _) = check(&fixture, "kata_support::hidden_test! {}\n");
    assert_eq!(kata["status"], "compile_error", "{kata:#}");
    assert!(kata["compile_errors"][0].as_str().unwrap().contains("declares no tests"));
}

#[test]
fn a_test_that_reads_the_source_is_refused_before_it_is_built() {
    let fixture = Fixture::of("wtt");
    let gaming = "kata_support::hidden_test! {\n    fn t() {\n        \
                  let source = include_str!(\"../src/lib.rs\");\n        \
                  assert!(!source.contains(\"forget\"));\n    }\n}\n";
    let (kata, _) = check(&fixture, gaming);
    assert_eq!(kata["status"], "compile_error", "{kata:#}");
    let errors = kata["compile_errors"][0].as_str().unwrap();
    assert!(errors.contains("`include_str!` is not allowed"), "{errors}");
    assert!(errors.contains("--> exercises/01_gauge/tests/cancel.rs:3:22"), "{errors}");
    assert!(kata["variants"].is_null(), "nothing was run: {kata:#}");
}

#[test]
fn an_edited_function_is_not_what_is_graded_and_the_report_says_so() {
    let fixture = Fixture::of("wtt");
    // The learner "fixes" the function instead of testing it: the test is still graded against
    // the shipped versions, so the skeleton still catches nothing.
    let lib = fixture.path("exercises/01_gauge/src/lib.rs");
    std::fs::write(&lib, "pub struct Gauge(pub std::sync::atomic::AtomicUsize);\n").unwrap();
    let skeleton = std::fs::read_to_string(fixture.path(TEST)).unwrap();
    let (kata, _) = check(&fixture, &skeleton);
    assert_eq!(kata["status"], "failed", "{kata:#}");
    let advice = kata["advice"].as_str().unwrap();
    assert!(advice.contains("src/lib.rs differs from the function as shipped"), "{advice}");
    assert!(advice.contains("never against your edit"), "{advice}");
    // What to try next is the kata's own first hint, not one kata's recipe.
    assert!(advice.contains("it catches nothing yet"), "{advice}");
    assert!(advice.contains("hint 1` shows the next hint"), "{advice}");
}

#[test]
fn a_class_is_graded_on_each_students_test() {
    let fixture = Fixture::of("wtt");
    let class = tempfile::tempdir().unwrap();
    for (student, test) in [("alice", GOOD), ("bob", "kata_support::hidden_test! { fn t() {} }\n")]
    {
        let tests = class.path().join(student).join("exercises/01_gauge/tests");
        std::fs::create_dir_all(&tests).unwrap();
        std::fs::write(tests.join("cancel.rs"), test).unwrap();
    }
    let roster = class.path().join("class.csv");
    std::fs::write(&roster, "student,source\nalice,alice\nbob,bob\n").unwrap();
    let out = class.path().join("results");
    let mut grade = fixture.grader(["grade", "--out"]);
    grade.arg(&out).arg(&roster).assert().success();
    let result = |student: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join(format!("{student}.json"))).unwrap())
            .unwrap()
    };
    let (alice, bob) = (result("alice"), result("bob"));
    assert_eq!(alice["katas"][0]["status"], "passed", "{alice:#}");
    assert_eq!(alice["katas"][0]["file"], TEST);
    assert_eq!(bob["katas"][0]["status"], "failed", "{bob:#}");
    assert_eq!(verdicts(&bob["katas"][0])[1], "forgets_in_the_second_step missed");
}

#[test]
fn verify_holds_the_kata_to_its_contract_and_names_what_a_weak_reference_misses() {
    let fixture = Fixture::of("wtt");
    fixture.grader(["verify", "--repeat", "2"]).assert().success().stdout(contains(
        "ok    01_gauge (skeleton rejected, reference test passes, 2 decoy tests rejected)",
    ));
    // A reference test that cuts once, early (a decoy test applied), is a weak test: verify names
    // the version it misses. The decoy tests, diffs against the reference, no longer apply to it; a
    // decoy test that catches everything is no decoy; a whole-file one is to be made a patch.
    let decoys = fixture.path("grader/decoy-tests/01_gauge");
    let reference = fixture.path("solutions/01_gauge/tests/cancel.rs");
    let good = std::fs::read_to_string(&reference).unwrap();
    let early = std::fs::read_to_string(decoys.join("one_early_timeout.patch")).unwrap();
    let weak = diffy::apply(&good, &diffy::Patch::from_str(&early).unwrap()).unwrap();
    std::fs::write(&reference, &weak).unwrap();
    let good = format!("Good.\n\n{}", diffy::create_patch(&weak, &good));
    std::fs::write(decoys.join("good.patch"), good).unwrap();
    std::fs::write(decoys.join("old.rs"), &weak).unwrap();
    fixture
        .grader(["verify"])
        .assert()
        .code(1)
        .stdout(contains("the reference test (solutions/.../tests/cancel.rs): failed: missed forgets_in_the_second_step"))
        .stdout(contains("decoy test 01_gauge/good passes the kata"))
        .stdout(contains(
            "grader/decoy-tests/01_gauge/one_early_timeout.patch no longer applies to \
             solutions/01_gauge/tests/cancel.rs",
        ))
        .stdout(contains(
            "grader/decoy-tests/01_gauge/old.rs is a whole-file decoy test; convert it",
        ))
        .stdout(contains("`scripts/new-decoy --test 01_gauge grader/decoy-tests/01_gauge/old.rs`"));
}

/// A decoy test names the versions it gets wrong, and is built against those only: naming none,
/// one it gets right, or one that does not exist is a contract problem that says what to write.
#[test]
fn verify_holds_a_decoy_test_to_the_versions_it_says_it_misjudges() {
    let fixture = Fixture::of("wtt");
    let decoys = fixture.path("grader/decoy-tests/01_gauge");
    // Copies the decoy test `from` to `to` with one line of its explanation replaced.
    let edit = |from: &str, to: &str, line: &str, new: &str| {
        let text = std::fs::read_to_string(decoys.join(from)).unwrap();
        assert!(text.contains(line), "{from}: {text}");
        std::fs::write(decoys.join(to), text.replace(line, new)).unwrap();
    };
    let second = "Misjudges: wrong/forgets_in_the_second_step\n";
    edit("one_early_timeout.patch", "typo.patch", second, "Misjudges: wrong/second\n");
    edit(
        "one_early_timeout.patch",
        "one_early_timeout.patch",
        second,
        "Misjudges: wrong/shipped\n",
    );
    let solution = "Misjudges: right/solution\n";
    edit("counts_during_the_work.patch", "counts_during_the_work.patch", solution, "");
    fixture
        .grader(["verify"])
        .assert()
        .code(1)
        .stdout(contains(
            "decoy test 01_gauge/one_early_timeout is said to misjudge wrong/shipped, but it \
             judges wrong/shipped right",
        ))
        .stdout(contains(
            "decoy test 01_gauge/counts_during_the_work names no version it gets wrong: end its \
             explanation with the line `Misjudges: right/solution`",
        ))
        .stdout(contains(
            "decoy test 01_gauge/typo says it misjudges wrong/second, which is no version of the \
             function; the versions are wrong/shipped, wrong/forgets_in_the_second_step, \
             right/solution",
        ));
}
