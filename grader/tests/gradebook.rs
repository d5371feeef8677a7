//! The gradebook, driven through the real binary: a class of handmade result files with every
//! status, the new fields, a hostile name and broken files; real reports of the fixture course
//! for the identical-sources flags; and the HTML dashboard rendered in a real headless Chromium.
//!
//! The browser test skips (saying so) when no Chromium is installed, unless
//! `GRADER_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes a missing browser a failure.
//! `GRADER_CHROMIUM` names the binary when it is not `chromium` on the PATH.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fixture;

const DEADLINE: &str = "2025-06-01T23:59:00+02:00";
const BEN: &str = "<script>alert(\"ben\")</script>";
const ANN: &str = "Ann O'Neil & co";
const KATAS: [&str; 3] = ["01_inflight_gauge", "02_outbox_timeout", "03_irc_line_reader"];

fn class() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gradebook_class")
}

/// Runs `grader gradebook RESULTS --out OUT --deadline DEADLINE` in `cwd`; returns its stderr.
fn gradebook(cwd: &Path, results: &Path, out: &Path) -> String {
    let output = assert_cmd::Command::cargo_bin("grader")
        .unwrap()
        .current_dir(cwd)
        .arg("gradebook")
        .arg(results)
        .arg("--out")
        .arg(out)
        .args(["--deadline", DEADLINE])
        .assert()
        .success()
        .get_output()
        .clone();
    String::from_utf8(output.stderr).unwrap()
}

/// The long CSV as `(student, kata) -> (status, identical_to)`.
fn cells(out: &Path) -> BTreeMap<(String, String), (String, String)> {
    let mut reader = csv::Reader::from_path(out.join("gradebook-katas.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (student, kata, status, same) =
        (column("student"), column("kata"), column("status"), column("identical_to"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            ((r[student].into(), r[kata].into()), (r[status].into(), r[same].into()))
        })
        .collect()
}

#[test]
fn a_class_with_every_status_new_fields_and_broken_files() {
    let out = tempfile::tempdir().unwrap();
    let stderr = gradebook(out.path(), &class(), out.path());
    assert!(stderr.contains("warning: skipped") && stderr.contains("broken.json"), "{stderr}");
    assert!(stderr.contains("future.json: is report version 2"), "{stderr}");
    assert!(!stderr.contains("notes.txt"), "only *.json files are results: {stderr}");
    assert!(stderr.contains("(4 students, 2 skipped)"), "{stderr}");

    // The LMS file: a row per student, points per kata, total, percentage, late flag.
    let mut reader = csv::Reader::from_path(out.path().join("gradebook.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["student", KATAS[0], KATAS[1], KATAS[2]]);
    let rows: BTreeMap<String, BTreeMap<String, String>> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let row: BTreeMap<String, String> =
                header.iter().cloned().zip(r.iter().map(String::from)).collect();
            (row["student"].clone(), row)
        })
        .collect();
    assert_eq!(rows.keys().collect::<Vec<_>>(), [BEN, ANN, "cy", "dee"]);
    let field = |student: &str, name: &str| rows[student][name].as_str();
    assert_eq!((field(ANN, "total"), field(ANN, "percent")), ("10", "25.0"));
    assert_eq!((field("cy", "total"), field("cy", "max")), ("20", "40"));
    assert_eq!(field(ANN, "late"), "no", "committed at 20:00, before the deadline");
    assert_eq!(field(BEN, "late"), "yes", "committed at 01:30 the next day");
    assert_eq!(field("cy", "late"), "", "an old report has no commit date: unknown");
    assert_eq!(field(ANN, "commit"), "1a2b3c4d5e6f7a8b9c0d");
    assert_eq!(field(BEN, "graded_at"), "2025-06-02T09:01:00Z");
    assert_eq!(field("dee", "total"), "0");

    // Per student and kata: the status, and identical sources.
    let cells = cells(out.path());
    let status =
        |student: &str, kata: usize| cells[&(student.into(), KATAS[kata].into())].0.clone();
    assert_eq!([status(ANN, 0), status(ANN, 1), status(ANN, 2)], ["passed", "failed", "timed_out"]);
    assert_eq!(
        [status(BEN, 0), status(BEN, 1), status(BEN, 2)],
        ["passed", "compile_error", "not_attempted"]
    );
    assert_eq!([status("cy", 0), status("cy", 1), status("cy", 2)], ["passed", "passed", "failed"]);
    assert!((0..3).all(|k| status("dee", k) == "not_attempted"));
    assert_eq!(cells[&(ANN.into(), KATAS[0].into())].1, BEN);
    assert_eq!(cells[&(BEN.into(), KATAS[0].into())].1, ANN);
    assert_eq!(cells[&(ANN.into(), KATAS[1].into())].1, "", "different sources");

    // The summary: escaped names, the notes, the files left out.
    let md = std::fs::read_to_string(out.path().join("gradebook.md")).unwrap();
    assert!(md.starts_with("# Gradebook: 4 students, 3 katas"), "{md}");
    assert!(md.contains("| 02 | The outbox that drops messages | 1/4 | 25% | 1 | 1 | 1 | 0 | 0 |"));
    assert!(md.contains("| &lt;script&gt;alert(\"ben\")&lt;/script&gt; | 10 | 40 | 25% | yes |"));
    assert!(!md.contains("<script>"), "{md}");
    assert!(md.contains("commit dates are set by the student's own clock"), "{md}");
    assert!(md.contains("- not graded: dee: unreachable"), "{md}");
    assert!(md.contains("broken.json: is not a grader JSON report"), "{md}");

    // The page: the hostile name is text, the only script is the page's own, nothing remote.
    let html = std::fs::read_to_string(out.path().join("gradebook.html")).unwrap();
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("&lt;script&gt;alert(&quot;ben&quot;)&lt;/script&gt;"));
    assert!(html.contains("Half a command &lt;b&gt;"), "a kata title is escaped too");
    assert!(!html.contains("http://") && !html.contains("src="), "nothing is fetched");
}

#[test]
fn real_reports_flag_copies_of_the_reference_and_of_each_other() {
    let fixture = Fixture::new();
    // Kata 2 worked on (still failing); katas 1 and 3 as shipped.
    let lib = fixture.path("exercises/02_failing/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.clone() + "\n// tried something\n").unwrap();
    let results = fixture.path("results");
    std::fs::create_dir_all(&results).unwrap();
    let report = |args: &[&str]| -> serde_json::Value {
        let output = fixture.grader(args).output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let alice = report(&["check", "--format", "json"]);
    let bob = report(&["check", "--solutions", "--format", "json"]);
    for kata in alice["katas"].as_array().unwrap() {
        let hash = kata["source_sha256"].as_str().expect("every kata's source hash is reported");
        assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    }
    // The fixture is the teacher's course again: kata 2 as shipped.
    std::fs::write(&lib, text).unwrap();
    let mut carol = bob.clone();
    carol["student"] = "carol".into();
    for (name, value) in [("alice", &alice), ("bob", &bob), ("carol-result", &carol)] {
        std::fs::write(results.join(format!("{name}.json")), value.to_string()).unwrap();
    }

    let out = fixture.path("out");
    gradebook(&fixture.path(""), &results, &out);
    let cells = cells(&out);
    let cell = |student: &str, kata: &str| cells[&(student.into(), kata.into())].clone();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    // Untouched: passing as shipped stays passed, the rest is not attempted; never "identical".
    assert_eq!(cell("alice", "01_passing"), pair("passed", ""));
    assert_eq!(cell("alice", "02_failing"), pair("failed", ""));
    assert_eq!(cell("alice", "03_broken"), pair("not_attempted", ""));
    // The reference solution, handed in twice.
    assert_eq!(cell("bob", "02_failing"), pair("passed", "the reference solution; carol"));
    assert_eq!(cell("carol", "03_broken"), pair("passed", "the reference solution; bob"));
    assert_eq!(cell("bob", "01_passing"), pair("passed", ""), "the solution is the exercise");
}

/// The Chromium binary: `GRADER_CHROMIUM`, else the first of the usual names on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GRADER_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].iter().find_map(
        |name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()),
    )
}

#[test]
fn the_dashboard_renders_in_a_real_browser_with_every_student_and_kata_and_no_error() {
    let Some(browser) = chromium() else {
        let required = std::env::var("GRADER_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "GRADER_REQUIRE_BROWSER=1 but no Chromium was found (install the `chromium` package, \
             or set GRADER_CHROMIUM)"
        );
        eprintln!(
            "SKIPPED: no Chromium found (install the `chromium` package, or set GRADER_CHROMIUM); \
             the dashboard was not rendered"
        );
        return;
    };
    let out = tempfile::tempdir().unwrap();
    gradebook(out.path(), &class(), out.path());
    let page = out.path().join("gradebook.html");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            // Root in CI: Chromium's own sandbox needs a user namespace it may not get.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", browser.display()));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{} did not render the page within 120 s", browser.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {log}", browser.display());

    // Any console message is a defect: a script error, or a request the page's CSP blocked.
    let console: Vec<&str> =
        log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "the page logged: {console:#?}");
    assert!(dom.contains("data-ready=\"yes\""), "the page's script did not run to its end: {dom}");
    // Every student, as text (the hostile name too, never as a script of its own).
    for name in ["&lt;script&gt;alert(\"ben\")&lt;/script&gt;", "Ann O'Neil &amp; co", "cy", "dee"]
    {
        assert!(dom.contains(&format!(">{name}</th>")), "{name} is missing: {dom}");
    }
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    for kata in KATAS {
        assert!(dom.contains(kata), "{kata} is missing: {dom}");
    }
    for section in ["id=\"heatmap\"", "id=\"pass-rate\"", "id=\"distribution\"", "<svg"] {
        assert!(dom.contains(section), "{section} is missing");
    }
}
