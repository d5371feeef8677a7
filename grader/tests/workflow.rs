//! The workflows' scripts, run the way GitHub's runner runs them: a step's `run:` script taken from
//! the workflow file and executed with `bash -e -o pipefail` in the fixture course, with the
//! runner's files (`GITHUB_OUTPUT`, `RUNNER_TEMP`) made up: the classroom workflow's grading step,
//! and the teacher's sharded grading template (`docs/workflows/grade-class.yml`) from the plan to
//! the merged gradebook.

mod common;

use std::path::Path;
use std::process::Command;

use common::Fixture;

/// The `run: |` block of the step named `name` in the classroom workflow, dedented.
fn step_script(name: &str) -> String {
    script_of("../.github/workflows/classroom.yml", name)
}

/// The `run: |` block of the step named `name` in `file` (relative to the grader), dedented.
fn script_of(file: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
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

    // The grader could not grade (no cargo): the step fails and posts nothing. A fresh runner's
    // target directory, since verdicts already in the cache need no cargo.
    let fresh = tempfile::tempdir().unwrap();
    let fresh = fresh.path().to_str().unwrap();
    let (code, result) =
        grade(&fixture, &[("CARGO", "/nonexistent/cargo"), ("CARGO_TARGET_DIR", fresh)]);
    assert_eq!(code, Some(3));
    assert!(result.is_none());
}

/// The step that builds the course to grade from the teacher's copy takes from the student's
/// repository each kata's `src/` and a write-the-test kata's `tests/cancel.rs`, and nothing else:
/// not a test file of a fix kata, not a kata the course does not have, not the hidden tests.
#[test]
fn feedback_takes_only_the_learners_files_from_the_student() {
    let runner = tempfile::tempdir().unwrap();
    let root = runner.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("course/exercises/01_fix/src/lib.rs", "teacher's exercise");
    write("course/exercises/02_test/src/lib.rs", "teacher's function");
    write("course/exercises/02_test/tests/cancel.rs", "teacher's skeleton");
    write("course/grader/hidden/01_fix.rs", "hidden tests");
    write("student/exercises/01_fix/src/lib.rs", "student's fix");
    write("student/exercises/01_fix/tests/cancel.rs", "student's extra test");
    write("student/exercises/02_test/src/lib.rs", "student's function");
    write("student/exercises/02_test/tests/cancel.rs", "student's test");
    write("student/exercises/99_unknown/src/lib.rs", "not a kata of the course");
    write("student/grader/hidden/01_fix.rs", "the student's own hidden tests");
    let status = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c"])
        .arg(step_script("Take only the exercise sources"))
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    assert_eq!(read("course/exercises/01_fix/src/lib.rs").as_deref(), Some("student's fix"));
    assert_eq!(read("course/exercises/01_fix/tests/cancel.rs"), None);
    assert_eq!(read("course/exercises/02_test/tests/cancel.rs").as_deref(), Some("student's test"));
    assert_eq!(read("course/grader/hidden/01_fix.rs").as_deref(), Some("hidden tests"));
    assert!(!root.join("course/exercises/99_unknown").exists());
}

const TEMPLATE: &str = "../docs/workflows/grade-class.yml";

/// Runs a step's script in `dir` with `env`; returns its exit code and standard output.
fn run_step(dir: &Path, script: &str, env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env("GRADER", assert_cmd::cargo::cargo_bin("grader"))
        .env("CARGO_TARGET_DIR", common::shared_target())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_sharded_template_plans_grades_every_shard_and_merges_one_gradebook() {
    let fixture = Fixture::new();
    let root = fixture.path("");
    let runner = tempfile::tempdir().unwrap();
    let class = tempfile::tempdir().unwrap();
    for (student, tree) in [("alice", "exercises"), ("bob", "solutions")] {
        for kata in ["01_passing", "02_failing", "03_broken"] {
            let src = class.path().join(student).join("exercises").join(kata).join("src");
            std::fs::create_dir_all(&src).unwrap();
            let from = fixture.path(&format!("{tree}/{kata}/src/lib.rs"));
            std::fs::copy(from, src.join("lib.rs")).unwrap();
        }
    }
    let students = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let rows: String =
        students.iter().map(|s| format!("{s},{}\n", class.path().join(s).display())).collect();
    std::fs::write(fixture.path("roster.csv"), format!("student,source\n{rows}")).unwrap();

    // plan: the matrix for three shards, and a refusal of nonsense.
    let plan = script_of(TEMPLATE, "Split the class");
    let output = runner.path().join("plan");
    std::fs::write(&output, "").unwrap();
    let (code, _) =
        run_step(&root, &plan, &[("SHARDS", Path::new("3")), ("GITHUB_OUTPUT", &output)]);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "count=3\nshards=[1,2,3]\n");
    let (code, _) =
        run_step(&root, &plan, &[("SHARDS", Path::new("0")), ("GITHUB_OUTPUT", &output)]);
    assert_eq!(code, Some(2));

    // grade: every shard, its files then "uploaded" into one directory as download-artifact's
    // merge-multiple does.
    let grade = script_of(TEMPLATE, "Grade this shard");
    let merged = fixture.path("results");
    std::fs::create_dir_all(&merged).unwrap();
    let mut graded = 0;
    for shard in ["1", "2", "3"] {
        let env = [
            ("ROSTER", Path::new("roster.csv")),
            ("SHARD", Path::new(shard)),
            ("SHARDS", Path::new("3")),
        ];
        let (code, stdout) = run_step(&root, &grade, &env);
        // Unreachable students do not fail the job: their files say so.
        assert_eq!(code, Some(0), "shard {shard}: {stdout}");
        assert!(stdout.contains(&format!("shard {shard}/3: ")), "{stdout}");
        for entry in std::fs::read_dir(fixture.path(&format!("results-{shard}"))).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), merged.join(entry.file_name())).unwrap();
            graded += 1;
        }
    }
    assert_eq!(graded, students.len(), "the shards' files are the class, once each");

    // gradebook: one gradebook of the whole class.
    let summary = runner.path().join("summary");
    let merge = script_of(TEMPLATE, "Merge into the gradebook");
    let (code, stdout) = run_step(&root, &merge, &[("GITHUB_STEP_SUMMARY", &summary)]);
    assert_eq!(code, Some(0), "{stdout}");
    let csv = std::fs::read_to_string(fixture.path("gradebook/gradebook.csv")).unwrap();
    for student in students {
        assert!(csv.lines().any(|l| l.starts_with(&format!("{student},"))), "{student}: {csv}");
    }
    assert!(std::fs::read_to_string(&summary).unwrap().contains("bob"));
    assert!(fixture.path("gradebook/gradebook.html").is_file());

    // The artifacts the jobs pass on are the directories the scripts write.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TEMPLATE)).unwrap();
    assert!(grade.contains("--out \"results-$SHARD\""));
    assert!(text.contains("path: results-${{ matrix.shard }}/"));
    assert!(
        text.contains("pattern: results-shard-*")
            && text.contains("name: results-shard-${{ matrix.shard }}")
    );
}
