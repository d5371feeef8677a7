//! Hostile submissions against the build and the reports: sources that are links, FIFOs or
//! devices, code that reaches for the teacher's solutions at compile time, a build that never
//! ends, stale verdicts from old mtimes, planted report files and text that tries to drive the
//! terminal or the workflow runner. Each must get an honest verdict in bounded time while the
//! fixture's ordinary katas are graded as usual.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::Fixture;

/// The teacher's answer to the hostile katas, which no learner's build may read.
const ANSWER: &str = "pub fn add(a: u32, b: u32) -> u32 { a + b }\n";

/// Adds a kata `NN_name` whose hidden test needs `name::add(2, 3) == 5`; `setup` makes its `src/`.
fn add_kata(fixture: &Fixture, manifest: &mut String, number: usize, name: &str) -> String {
    let kata = format!("{number:02}_{name}");
    std::fs::create_dir_all(fixture.path(&format!("exercises/{kata}"))).unwrap();
    std::fs::write(
        fixture.path(&format!("grader/hidden/{kata}.rs")),
        format!(
            "kata_support::hidden_test! {{\n    fn adds() {{\n        assert_eq!({name}::add(2, 3), 5);\n    }}\n}}\n"
        ),
    )
    .unwrap();
    manifest.push_str(&format!(
        "\n[[kata]]\nname = \"{kata}\"\ntitle = \"hostile\"\nlevel = \"advanced\"\npoints = 1\n\
         hints = [\"a\", \"b\", \"c\"]\ntimeout_secs = 5\n"
    ));
    kata
}

fn fixture_source(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_build");
    std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap()
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn verdict<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let katas = report["katas"].as_array().unwrap();
    katas.iter().find(|k| k["name"].as_str().unwrap().ends_with(name)).unwrap()
}

#[test]
fn sources_that_reach_outside_src_or_never_compile_get_compile_errors() {
    let fixture = Fixture::new();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    let answer_dir = fixture.path("solutions/answer/src");
    std::fs::create_dir_all(&answer_dir).unwrap();
    std::fs::write(answer_dir.join("lib.rs"), ANSWER).unwrap();
    let answer = answer_dir.join("lib.rs");
    let src = |kata: &str| fixture.path(&format!("exercises/{kata}/src"));
    let symlink = |to: &Path, at: &Path| std::os::unix::fs::symlink(to, at).unwrap();
    // (kata, what its verdict must say)
    let mut expect = Vec::new();

    let kata = add_kata(&fixture, &mut manifest, 4, "symlinked_lib");
    std::fs::create_dir_all(src(&kata)).unwrap();
    symlink(&answer, &src(&kata).join("lib.rs"));
    expect.push((kata, "src/lib.rs is a symbolic link"));

    let kata = add_kata(&fixture, &mut manifest, 5, "symlinked_src");
    symlink(&answer_dir, &src(&kata));
    expect.push((kata, "src is a symbolic link"));

    let kata = add_kata(&fixture, &mut manifest, 6, "dev_zero");
    std::fs::create_dir_all(src(&kata)).unwrap();
    std::fs::write(src(&kata).join("lib.rs"), ANSWER).unwrap();
    symlink(Path::new("/dev/zero"), &src(&kata).join("x"));
    expect.push((kata, "src/x is a symbolic link"));

    let kata = add_kata(&fixture, &mut manifest, 7, "dir_loop");
    std::fs::create_dir_all(src(&kata)).unwrap();
    std::fs::write(src(&kata).join("lib.rs"), ANSWER).unwrap();
    symlink(Path::new("."), &src(&kata).join("a"));
    expect.push((kata, "src/a is a symbolic link"));

    let kata = add_kata(&fixture, &mut manifest, 8, "fifo");
    std::fs::create_dir_all(src(&kata)).unwrap();
    std::fs::write(src(&kata).join("lib.rs"), ANSWER).unwrap();
    nix::unistd::mkfifo(&src(&kata).join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    expect.push((kata, "src/pipe is a FIFO"));

    let kata = add_kata(&fixture, &mut manifest, 9, "empty_src");
    std::fs::create_dir_all(src(&kata)).unwrap();
    expect.push((kata, "src/lib.rs is missing"));

    let kata = add_kata(&fixture, &mut manifest, 10, "no_src");
    expect.push((kata, "src/lib.rs is missing"));

    let kata = add_kata(&fixture, &mut manifest, 11, "path_attribute");
    std::fs::create_dir_all(src(&kata)).unwrap();
    std::fs::write(
        src(&kata).join("lib.rs"),
        format!("#[path = {:?}]\nmod s;\npub use s::add;\n", answer.display().to_string()),
    )
    .unwrap();
    expect.push((kata, "Permission denied"));

    let kata = add_kata(&fixture, &mut manifest, 12, "include_outside");
    std::fs::create_dir_all(src(&kata)).unwrap();
    // The route a learner would take: up from the manifest the grader generates to the course.
    let up = "/..".repeat(12);
    std::fs::write(
        src(&kata).join("lib.rs"),
        format!(
            "include!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}));\n",
            format!("{up}{}", answer.display())
        ),
    )
    .unwrap();
    expect.push((kata, "Permission denied"));

    let kata = add_kata(&fixture, &mut manifest, 13, "runaway_const");
    std::fs::create_dir_all(src(&kata)).unwrap();
    std::fs::write(src(&kata).join("lib.rs"), fixture_source("runaway_const")).unwrap();
    expect.push((kata, "compile timed out"));
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();

    let started = std::time::Instant::now();
    let output = fixture
        .grader(["check", "--format", "json", "--build-timeout", "10"])
        .timeout(Duration::from_secs(400))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let report = json(&output);
    assert_eq!(verdict(&report, "01_passing")["status"], "passed");
    assert_eq!(verdict(&report, "02_failing")["status"], "failed");
    assert_eq!(verdict(&report, "03_broken")["status"], "compile_error");
    for (kata, says) in &expect {
        let v = verdict(&report, kata);
        assert_eq!(v["status"], "compile_error", "{kata}: {v:#}");
        assert_eq!(v["points"], 0, "{kata}: {v:#}");
        assert!(v.to_string().contains(says), "{kata} should say `{says}`: {v:#}");
    }
    assert!(started.elapsed() < Duration::from_secs(300), "took {:?}", started.elapsed());
}

#[test]
fn verdicts_follow_content_not_mtimes_or_the_other_tree() {
    let fixture = Fixture::new();
    let lib = fixture.path("exercises/02_failing/src/lib.rs");
    let broken = std::fs::read(&lib).unwrap();
    let broken_mtime = std::fs::metadata(&lib).unwrap().modified().unwrap();
    let status = |args: &[&str]| {
        let mut all = vec!["check", "--format", "json"];
        all.extend_from_slice(args);
        let report = json(&fixture.grader(all).output().unwrap());
        let status = |kata| {
            let katas = report["katas"].as_array().unwrap();
            let found = katas.iter().find(|k| k["name"] == kata);
            found.map_or(serde_json::Value::Null, |k| k["status"].clone())
        };
        (status("02_failing"), status("03_broken"))
    };
    // The solutions' build must never be taken as fresh for the exercises.
    assert_eq!(status(&["--solutions"]).0, "passed");
    assert_eq!(status(&[]), ("failed".into(), "compile_error".into()));

    std::fs::copy(fixture.path("solutions/02_failing/src/lib.rs"), &lib).unwrap();
    assert_eq!(status(&["2"]).0, "passed");
    fixture.grader(["list"]).assert().stdout(predicates::str::contains("2/3 done"));

    // `mv` of the backup: the broken file back, with its old mtime.
    std::fs::write(&lib, &broken).unwrap();
    let old = broken_mtime.min(SystemTime::now() - Duration::from_secs(3600));
    std::fs::File::options().write(true).open(&lib).unwrap().set_modified(old).unwrap();
    fixture.grader(["list"]).assert().stdout(predicates::str::contains("1/3 done"));
    assert_eq!(status(&["2"]).0, "failed");
}

#[test]
fn planted_report_files_are_replaced_never_written_through() {
    let fixture = Fixture::new();
    let forged = fixture.path("forged.json");
    std::fs::write(&forged, "{\"status\": \"pass\"}").unwrap();
    std::os::unix::fs::symlink(&forged, fixture.path("classroom.json")).unwrap();
    nix::unistd::mkfifo(&fixture.path("junit.xml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let output = fixture
        .grader(["check", "--report", "classroom=classroom.json", "--report", "junit=junit.xml"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&forged).unwrap(), "{\"status\": \"pass\"}");
    for report in ["classroom.json", "junit.xml"] {
        let meta = std::fs::symlink_metadata(fixture.path(report)).unwrap();
        assert!(meta.is_file(), "{report} is still not the grader's own file");
    }
    let classroom = std::fs::read_to_string(fixture.path("classroom.json")).unwrap();
    assert!(classroom.contains("\"status\":\"fail\""), "{classroom}");
}

#[test]
fn learner_text_drives_neither_the_terminal_nor_the_workflow_runner() {
    let fixture = Fixture::new();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    for (number, name) in [(4, "inject_output"), (5, "inject_compile_error")] {
        let kata = add_kata(&fixture, &mut manifest, number, name);
        let src = fixture.path(&format!("exercises/{kata}/src"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("lib.rs"), fixture_source(name)).unwrap();
    }
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();

    // Named, so that their details (the learner's text) are shown, not one line each.
    let human = fixture.grader(["check", "4", "5"]).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(human.status.code(), Some(1), "{text}");
    assert!(
        !text.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters reached the terminal: {text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "the escape is shown: {text}");

    let github =
        fixture.grader(["check", "--format", "github", "--summary", "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&github.stdout);
    assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "{text:?}");
    // Commands are only the grader's own: its annotations, then the log with commands off.
    let mut lines = text.lines();
    let mut token = None;
    for line in lines.by_ref() {
        if let Some(t) = line.strip_prefix("::stop-commands::") {
            token = Some(t.to_owned());
            break;
        }
        assert!(line.starts_with("::error ") || line.starts_with("::notice title=more"), "{line}");
        assert!(!line["::error ".len()..].contains("::notice") || line.contains("%0A"), "{line}");
    }
    let token = token.expect("the log is wrapped in stop-commands");
    assert!(
        text.contains("%0A:%3A") || text.contains("%0A::"),
        "annotation data keeps newlines escaped: {text}"
    );
    let mut resumed = false;
    for line in lines {
        if line == format!("::{token}::") {
            resumed = true;
            continue;
        }
        let trimmed = line.trim_start();
        assert!(
            !trimmed.starts_with("::") && !line.contains("##["),
            "a command in the log: {line:?}"
        );
    }
    assert!(resumed, "commands are switched back on after the log");
    assert!(text.contains("add-mask"), "the text is still shown: {text}");
}
