//! Classroom grading: the report formats CI understands, handouts and the gradebook, each driven
//! through the real binary against the fixture course.

mod common;

use std::collections::BTreeMap;

use common::Fixture;
use predicates::str::contains;
use quick_xml::events::Event;

/// One run writes every format; they must agree with each other.
#[test]
fn every_report_format_agrees_with_the_json() {
    let fixture = Fixture::new();
    let out = fixture.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let arg = |format: &str, file: &str| format!("{format}={}", out.join(file).display());
    fixture
        .grader([
            "check",
            "--format",
            "json",
            "--report",
            &arg("junit", "junit.xml"),
            "--report",
            &arg("classroom", "classroom.json"),
            "--report",
            &arg("json", "report.json"),
        ])
        .assert()
        .code(1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();

    // JUnit: well-formed, a suite per kata, and per suite the JSON's test and failure counts.
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let suites = junit_counts(&xml);
    let mut expected = BTreeMap::new();
    for kata in report["katas"].as_array().unwrap() {
        let tests = kata["tests"].as_array().unwrap();
        let failed = tests.iter().filter(|t| t["status"] != "passed").count();
        let build_error = usize::from(kata["status"] == "compile_error");
        expected.insert(
            kata["name"].as_str().unwrap().to_owned(),
            (tests.len() + build_error, failed, build_error),
        );
    }
    assert_eq!(suites, expected, "JUnit suites (tests, failures, errors) must match the JSON");

    // Classroom: equal-weight entries (5 points each: the katas are worth 5, 10 and 20), so the
    // reporter's log (`passed / tests x max_score`) and its recorded points (the sum of the
    // scores) both come out as the JSON's points.
    let classroom: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("classroom.json")).unwrap())
            .unwrap();
    assert_eq!(classroom["version"], 1);
    assert_eq!(classroom["status"], "fail");
    assert_eq!(classroom["max_score"], report["summary"]["max_points"]);
    let tests = classroom["tests"].as_array().unwrap();
    let statuses: Vec<_> = tests.iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pass", "fail", "fail", "fail", "fail", "fail", "fail"]);
    assert!(tests.iter().all(|t| t["score"] == 0 || t["score"] == 5), "{classroom:#}");
    let recorded: u64 = tests.iter().map(|t| t["score"].as_u64().unwrap()).sum();
    assert_eq!(recorded, report["summary"]["points"].as_u64().unwrap());
    let passed = statuses.iter().filter(|s| **s == "pass").count() as u64;
    let max_score = classroom["max_score"].as_u64().unwrap();
    assert_eq!(passed * max_score, recorded * tests.len() as u64, "the log must say {recorded}");
}

/// Counts (tests, failures, errors) per testsuite, from the testcase elements themselves.
fn junit_counts(xml: &str) -> BTreeMap<String, (usize, usize, usize)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites = BTreeMap::new();
    let mut current = String::new();
    loop {
        match reader.read_event().expect("the JUnit report must be well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| {
                    e.try_get_attribute(name)
                        .unwrap()
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                };
                match e.name().as_ref() {
                    b"testsuite" => {
                        current = attr("name").expect("a testsuite has a name");
                        suites.insert(current.clone(), (0, 0, 0));
                    }
                    b"testcase" => suites.get_mut(&current).unwrap().0 += 1,
                    b"failure" => suites.get_mut(&current).unwrap().1 += 1,
                    b"error" => suites.get_mut(&current).unwrap().2 += 1,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    suites
}

#[test]
fn github_format_annotates_the_learners_files_and_writes_a_job_summary() {
    let fixture = Fixture::new();
    let summary = fixture.path("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let output = fixture
        .grader(["check", "--format", "github"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::error")).collect();
    assert_eq!(annotations.len(), 2, "{stdout}");
    // The readable log follows with workflow commands switched off, then on again.
    let commands: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(commands.len(), 4, "{stdout}");
    let token = commands[2].strip_prefix("::stop-commands::").expect("commands off for the log");
    assert_eq!(commands[3], format!("::{token}::"));
    assert!(
        annotations[0].starts_with(
            "::error file=exercises/02_failing/src/lib.rs,line=16,col=9,\
             title=02_failing%3A cancelled_call_lowers_the_counter::cancelled after poll 1 of 2, \
             while still waiting: the counter still reads 1"
        ),
        "{}",
        annotations[0]
    );
    assert!(
        annotations[1].starts_with(
            "::error file=exercises/03_broken/src/lib.rs,line=5,title=03_broken%3A does not compile::error: expected `;`"
        ),
        "{}",
        annotations[1]
    );
    assert!(annotations.iter().all(|a| !a.contains('\r') && a.matches("::").count() >= 2));

    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.starts_with("earlier step\n## Cancellation katas: 1/3 passed, 5/35 points"),
        "{summary}"
    );
    assert!(summary.contains("| 01 | Already done | beginner | passed | 5/5 |"), "{summary}");
    assert!(
        summary
            .contains("| 03 | Does not compile | advanced | does not compile: error: expected `;`")
    );
    assert!(summary.contains("| | **total** | | | **5/35** |"));
}

#[test]
fn annotations_stay_within_githubs_limit_per_step() {
    let fixture = Fixture::new();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    for n in 4..=15 {
        let kata = format!("{n:02}_copy{n}");
        std::fs::create_dir_all(fixture.path(&format!("exercises/{kata}/src"))).unwrap();
        std::fs::copy(
            fixture.path("exercises/03_broken/src/lib.rs"),
            fixture.path(&format!("exercises/{kata}/src/lib.rs")),
        )
        .unwrap();
        std::fs::write(
            fixture.path(&format!("grader/hidden/{kata}.rs")),
            "kata_support::hidden_test! { fn t() {} }\n",
        )
        .unwrap();
        manifest.push_str(&format!(
            "\n[[kata]]\nname = \"{kata}\"\ntitle = \"copy\"\nlevel = \"advanced\"\npoints = 1\nhints = [\"a\", \"b\", \"c\"]\n"
        ));
    }
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();
    let output =
        fixture.grader(["check", "--format", "github", "--summary", "/dev/null"]).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().filter(|l| l.starts_with("::error ")).count(), 10);
    assert!(
        stdout.contains(
            "::notice title=more failing katas::4 more kata(s) fail; see the job summary"
        )
    );
}

#[test]
fn a_handout_has_no_solutions_and_checks_like_the_course() {
    let fixture = Fixture::new();
    let parent = tempfile::tempdir().unwrap();
    let handout = parent.path().join("student");
    // The fixture is no git repository, and ships 01_passing solved: tests/handout.rs covers
    // both refusals; here the working tree goes out as it is.
    fixture
        .grader(["handout", handout.to_str().unwrap(), "--allow-dirty", "--allow-solved"])
        .assert()
        .success()
        .stdout(contains("wrote a student copy of 3 kata(s) from the working tree"));
    assert!(!handout.join("solutions").exists());
    assert!(!handout.join("grader/decoys").exists());
    assert!(handout.join("exercises/02_failing/src/lib.rs").is_file());

    let grader = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("grader").unwrap();
        cmd.current_dir(&handout).env("CARGO_TARGET_DIR", common::shared_target()).args(args);
        cmd
    };
    grader(&["check"]).assert().code(1).stdout(contains("1/3 katas passed"));
    grader(&["list"]).assert().success().stdout(contains("1/3 done"));

    // With the solutions copied in, everything passes.
    for kata in ["01_passing", "02_failing", "03_broken"] {
        std::fs::copy(
            fixture.path(&format!("solutions/{kata}/src/lib.rs")),
            handout.join(format!("exercises/{kata}/src/lib.rs")),
        )
        .unwrap();
    }
    grader(&["check"]).assert().success().stdout(contains("3/3 katas passed"));

    // Never written over.
    fixture
        .grader(["handout", handout.to_str().unwrap(), "--allow-dirty", "--allow-solved"])
        .assert()
        .code(2)
        .stderr(contains("already exists and is not empty"));
}

#[test]
fn the_gradebook_of_three_students_is_correct() {
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gradebook");
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("grades.csv");
    let summary = out.path().join("summary.md");
    assert_cmd::Command::cargo_bin("grader")
        .unwrap()
        .arg("gradebook")
        .arg(results.join("alice.json"))
        .arg(results.join("bob.json"))
        .arg(results.join("carol/report.json"))
        .arg("--csv")
        .arg(&csv)
        .arg("--summary")
        .arg(&summary)
        .assert()
        .success();
    // The columns of earlier graders first, new ones after.
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "student,01_inflight_gauge,02_outbox_timeout,03_irc_line_reader,total,max,\
         percent,late,commit,committed_at,graded_at,source,identical\n\
         alice,10,10,0,20,40,50.0,,,,,,\n\
         bob,10,0,0,10,40,25.0,,,,,,\n\
         carol,10,10,0,20,40,50.0,,,,,,\n"
    );
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.starts_with("# Gradebook: 3 students, 3 katas"), "{summary}");
    assert!(
        summary.contains("| 01 | The in-flight gauge that leaks | 3/3 | 100% | 0 |"),
        "{summary}"
    );
    assert!(
        summary.contains("| 02 | The outbox that drops messages | 2/3 | 67% | 0 |"),
        "{summary}"
    );
    assert!(summary.contains("| 03 | Half a command | 0/3 | 0% | 1 |"), "{summary}");
    assert!(summary.contains("| bob | 10 | 40 |"), "{summary}");
}

#[test]
fn the_gradebook_skips_a_file_that_is_not_a_report_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("dave.json");
    std::fs::write(&bogus, "{\"hello\": 1}").unwrap();
    let alice = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gradebook/alice.json");
    let grader = || {
        let mut cmd = assert_cmd::Command::cargo_bin("grader").unwrap();
        cmd.current_dir(dir.path()).arg("gradebook");
        cmd
    };
    grader()
        .args([bogus.as_os_str(), alice.as_os_str()])
        .assert()
        .success()
        .stderr(contains("warning: skipped"))
        .stderr(contains("dave.json: is not a grader JSON report"))
        .stdout(contains("| alice | 20 | 40 |"))
        .stdout(contains("- skipped"));
    let csv = std::fs::read_to_string(dir.path().join("gradebook.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "alice only: {csv}");

    // Nothing readable at all: no gradebook.
    std::fs::remove_file(dir.path().join("gradebook.csv")).unwrap();
    grader()
        .arg(&bogus)
        .assert()
        .code(3)
        .stderr(contains("none of the 1 result file(s) could be read"));
    assert!(!dir.path().join("gradebook.csv").exists());
}
