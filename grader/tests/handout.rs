//! `grader handout`: a student copy taken from the committed fixture course, made a real cargo
//! workspace (a package per exercise and solution, a Cargo.lock) and given the maintainers' files
//! a real course has, so that each promise can fail: taken from HEAD, refused while exercise
//! sources are uncommitted or solved, no solutions or maintainer files, a student README, a lock
//! file that `--locked` accepts, and messages that make sense without solutions.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Fixture, git};
use predicates::str::contains;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The fixture course as a teacher's repository holds it.
fn course() -> Fixture {
    let fixture = Fixture::new();
    let root = fixture.path("");
    for tree in ["exercises", "solutions"] {
        for kata in ["01_passing", "02_failing", "03_broken"] {
            let slug = kata[3..].to_owned();
            let name = if tree == "solutions" { format!("{slug}-solution") } else { slug };
            write(
                &root.join(tree).join(kata).join("Cargo.toml"),
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                     [dependencies]\ntokio.workspace = true\n"
                ),
            );
        }
    }
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[workspace]\n", "[workspace]\nmembers = [\"exercises/*\", \"solutions/*\"]\n");
    std::fs::write(&manifest, text).unwrap();
    for (file, text) in [
        ("README.md", "Compare with solutions/ and run `grader check --solutions`.\n"),
        ("CONTRIBUTING.md", "How to write a kata.\n"),
        ("SECURITY.md", "Threat model.\n"),
        ("BENCHMARKS.md", "Figures.\n"),
        ("docs/classroom.md", "For teachers.\n"),
        ("scripts/bench", "#!/bin/sh\n"),
        (".ci/run", "#!/bin/sh\n"),
        (".github/workflows/ci.yml", "name: ci\n"),
        (".github/workflows/classroom.yml", "name: classroom\n"),
        ("grader/tests/course.rs", "// runs verify\n"),
        ("grader/alternatives/02_failing/right.patch", "a right fix\n"),
    ] {
        write(&root.join(file), text);
    }
    // The teacher's lock, solutions and all.
    let status = Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success());
    fixture
}

fn packages(lock: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(lock).unwrap();
    let lock: toml::Table = toml::from_str(&text).unwrap();
    let packages = lock["package"].as_array().unwrap();
    packages
        .iter()
        .map(|p| format!("{} {}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_handout_is_the_committed_course_for_students_with_a_lock_file_that_matches() {
    let fixture = course();
    let root = fixture.path("");
    let parent = tempfile::tempdir().unwrap();
    let handout = parent.path().join("student");
    let handout_of = |extra: &[&str]| {
        let mut cmd = fixture.grader(["handout"]);
        cmd.arg(&handout).args(extra);
        cmd
    };

    // Not in git: there is nothing committed to hand out.
    handout_of(&[]).assert().code(2).stderr(contains("the course is not in a git repository"));
    git(&root, &["init", "-q"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "course"]);

    // 01_passing ships as its own solution: refused.
    handout_of(&[])
        .assert()
        .code(2)
        .stderr(contains("exercises/01_passing: src/lib.rs is the reference solution"));
    assert!(!handout.exists(), "nothing is written when refused");
    let exercise = root.join("exercises/01_passing/src/lib.rs");
    let text = std::fs::read_to_string(&exercise).unwrap();
    std::fs::write(&exercise, format!("{text}\n// TODO: nothing to do here\n")).unwrap();
    git(&root, &["commit", "-q", "-a", "-m", "an exercise to do"]);

    // The teacher solves a kata in the working tree: refused, and still refused as solved when
    // the working tree is handed out on purpose.
    let failing = root.join("exercises/02_failing/src/lib.rs");
    std::fs::copy(root.join("solutions/02_failing/src/lib.rs"), &failing).unwrap();
    handout_of(&[]).assert().code(2).stderr(contains(
        "uncommitted changes to exercise sources: exercises/02_failing/src/lib.rs; \
         the handout is taken from HEAD",
    ));
    handout_of(&["--allow-dirty"])
        .assert()
        .code(2)
        .stderr(contains("exercises/02_failing: src/lib.rs is the reference solution"));
    assert!(!handout.exists());
    git(&root, &["checkout", "-q", "--", "exercises"]);

    // An uncommitted change elsewhere is left out, said so.
    let hidden = root.join("grader/hidden/01_passing.rs");
    let committed_hidden = std::fs::read(&hidden).unwrap();
    std::fs::write(&hidden, "// not committed\n").unwrap();
    handout_of(&[])
        .assert()
        .success()
        .stdout(contains("from the committed course (HEAD)"))
        .stdout(contains("Cargo.lock matches it"))
        .stderr(contains("1 uncommitted change(s) outside exercises/ are left out"));
    assert_eq!(
        std::fs::read(handout.join("grader/hidden/01_passing.rs")).unwrap(),
        committed_hidden
    );
    assert_eq!(
        std::fs::read_to_string(handout.join("exercises/01_passing/src/lib.rs")).unwrap(),
        std::fs::read_to_string(&exercise).unwrap()
    );

    // Nothing for maintainers, nothing that gives a fix away; the students' workflow stays.
    for gone in [
        "solutions",
        "grader/decoys",
        "grader/alternatives",
        "grader/tests",
        "docs",
        "scripts",
        ".ci",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "BENCHMARKS.md",
        ".github/workflows/ci.yml",
        ".git",
    ] {
        assert!(!handout.join(gone).exists(), "{gone} is handed out");
    }
    assert!(handout.join(".github/workflows/classroom.yml").is_file());
    let readme = std::fs::read_to_string(handout.join("README.md")).unwrap();
    for kata in ["01_passing", "02_failing", "03_broken"] {
        assert!(readme.contains(&format!("`{kata}`")), "{kata} missing from the README");
    }
    assert!(readme.contains("cargo run -p grader -- check 1"), "{readme}");
    for word in ["solution", "verify", "CONTRIBUTING", "SECURITY", "docs/", "scripts"] {
        assert!(!readme.to_lowercase().contains(&word.to_lowercase()), "README says {word}");
    }

    // The lock: the teacher's, less the solutions, every version kept; cargo takes it --locked.
    let manifest = std::fs::read_to_string(handout.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("members = [\"exercises/*\"]"), "{manifest}");
    let teacher = packages(&root.join("Cargo.lock"));
    let student = packages(&handout.join("Cargo.lock"));
    assert!(teacher.iter().any(|p| p.starts_with("failing-solution ")));
    let expected: Vec<&String> = teacher.iter().filter(|p| !p.contains("-solution ")).collect();
    assert_eq!(student.iter().collect::<Vec<_>>(), expected);
    let locked = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(&handout)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(locked.status.success(), "{}", String::from_utf8_lossy(&locked.stderr));

    // Messages that make sense without solutions.
    let grader = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("grader").unwrap();
        cmd.current_dir(&handout).env("CARGO_TARGET_DIR", common::shared_target()).args(args);
        cmd
    };
    grader(&["list"]).assert().success();
    grader(&["check", "--solutions"])
        .assert()
        .code(2)
        .stderr(contains("this copy of the course has no reference solutions (a student handout)"));
    grader(&["verify"]).assert().code(2).stderr(contains("is for the course's maintainers"));
    grader(&["solution", "1", "--force"]).assert().code(2).stderr(contains("ask your teacher"));
}
