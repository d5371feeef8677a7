//! The classroom workflow's grading step, run the way GitHub's runner runs it: its `run:` script
//! taken from `.github/workflows/classroom.yml` and executed with `bash -e -o pipefail` in the
//! fixture course, with the runner's files (`GITHUB_OUTPUT`, `RUNNER_TEMP`) made up.

mod common;

use std::path::Path;
use std::process::Command;

use common::Fixture;

/// The `run: |` block of the step named `name`, dedented.
fn step_script(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows/classroom.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.next().expect("the step exists");
    let mut lines = lines.skip_while(|l| l.trim() != "run: |");
    let run = lines.next().expect("the step has a run block");
    let indent = run.len() - run.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .collect();
    let pad = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len());
    let pad = pad.min().unwrap();
    body.iter().map(|l| l.get(pad..).unwrap_or("")).collect::<Vec<_>>().join("\n") + "\n"
}

/// Runs the grading step in the fixture; returns its exit code and the `result` output, decoded.
fn grade(fixture: &Fixture, env: &[(&str, &str)]) -> (Option<i32>, Option<serde_json::Value>) {
    let runner = tempfile::tempdir().unwrap();
    let output_file = runner.path().join("output");
    std::fs::write(&output_file, "").unwrap();
    let status = Command::new("bash")
        .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", &step_script("Grade")])
        .current_dir(fixture.path(""))
        .env("GRADER", assert_cmd::cargo::cargo_bin("grader"))
        .env("CARGO_TARGET_DIR", common::shared_target())
        .env("NO_COLOR", "1")
        .env("GITHUB_OUTPUT", &output_file)
        .env("GITHUB_STEP_SUMMARY", runner.path().join("summary"))
        .env("RUNNER_TEMP", runner.path())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let outputs = std::fs::read_to_string(&output_file).unwrap();
    // Decoded as the reporter action will, with the same tool the step encodes with.
    let result = outputs.lines().find_map(|l| l.strip_prefix("result=")).map(|b64| {
        let mut decode = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut decode.stdin.take().unwrap(), b64.as_bytes()).unwrap();
        serde_json::from_slice(&decode.wait_with_output().unwrap().stdout).unwrap()
    });
    (status.code(), result)
}

#[test]
fn a_failing_grade_is_still_posted_and_solutions_only_when_asked() {
    let fixture = Fixture::new();
    assert!(fixture.path("solutions").is_dir(), "the fixture has solutions, as the course does");
    fixture.grader(["list"]).assert().success();

    // Exercises fail: the step survives `bash -e` and hands on the points of the exercises.
    let (code, result) = grade(&fixture, &[]);
    assert_eq!(code, Some(0));
    let result = result.expect("a failing grade is posted");
    assert_eq!(result["status"], "fail");
    let score: u64 =
        result["tests"].as_array().unwrap().iter().map(|t| t["score"].as_u64().unwrap()).sum();
    assert_eq!(score, 5, "the exercises were graded, not the solutions: {result:#}");

    let (code, result) = grade(&fixture, &[("GRADE_SOLUTIONS", "true")]);
    assert_eq!(code, Some(0));
    assert_eq!(result.expect("posted")["status"], "pass");

    // The grader could not grade (no cargo): the step fails and posts nothing.
    let (code, result) = grade(&fixture, &[("CARGO", "/nonexistent/cargo")]);
    assert_eq!(code, Some(3));
    assert!(result.is_none());
}
