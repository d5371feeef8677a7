//! A temporary copy of the fixture course, and the grader binary pointed at it.

use std::path::{Path, PathBuf};

pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Copies tests/fixtures/course into a fresh directory, with `kata-support` made absolute.
    #[allow(dead_code)] // Not every test file that shares this module uses the fix-kata course.
    pub fn new() -> Fixture {
        Fixture::of("course")
    }

    /// Copies the fixture course tests/fixtures/`name` (`course`, or `wtt` for write-the-test
    /// katas) into a fresh directory, with `kata-support` made absolute.
    pub fn of(name: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        copy_tree(&source, dir.path());
        let manifest = dir.path().join("Cargo.toml");
        let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("support");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text =
            text.replace("\"../../../support\"", &format!("{:?}", support.display().to_string()));
        std::fs::write(&manifest, text).unwrap();
        Fixture { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The grader, run inside the fixture, building in the workspace's shared target directory
    /// (so tokio is not compiled again for every test).
    pub fn grader<I, S>(&self, args: I) -> assert_cmd::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = assert_cmd::Command::cargo_bin("grader").expect("grader binary");
        cmd.current_dir(self.dir.path())
            .env("CARGO_TARGET_DIR", shared_target())
            .env("NO_COLOR", "1")
            // Set by `cargo test` for this suite; the grader would take itself for `cargo run`.
            .env_remove("CARGO_PKG_NAME")
            .args(args);
        cmd
    }
}

/// The target directory this test suite was built in.
pub fn shared_target() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("target"),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs git in `dir` with a committer identity of its own; returns its standard output, trimmed.
/// Panics with git's error when it fails.
#[allow(dead_code)] // Not every test file that shares this module runs git.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Course Tests", "-c", "user.email=tests@example.org"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
