//! Hostile submissions: code that exits early, aborts, hangs, floods, fakes success, escapes into
//! child processes, rewrites the grader's files or reconfigures the build. Each stands in for a
//! kata's source in one grader run; each must get an honest non-pass in bounded time, the
//! fixture's ordinary katas must be graded as usual in the same run, and no process may be left.

mod common;

use std::time::Duration;

use common::Fixture;

/// Each hostile source (tests/fixtures/hostile/NAME.rs) and the verdict it must get.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("exit_zero", "failed", "exited before the test body finished"),
    ("abort", "failed", "aborted"),
    ("busy_loop", "timed_out", "timed out after 3s"),
    ("sleep_an_hour", "timed_out", "timed out after 3s"),
    ("deadlock", "timed_out", "timed out after 3s"),
    ("output_flood", "failed", "left: 6"),
    ("fake_success", "failed", "exited before the test body finished"),
    ("panic_in_drop", "failed", "first panic"),
    ("stack_overflow", "failed", "aborted"),
    ("orphan_child", "timed_out", "timed out after 3s"),
    // The sandbox refuses the write; the hash check behind it stays for kernels without Landlock.
    ("rewrite_hidden_tests", "failed", "PermissionDenied"),
    ("unsafe_code", "compile_error", "unsafe"),
    ("build_script", "failed", "left: 6"),
    ("cargo_config", "failed", "left: 6"),
];

#[test]
fn hostile_submissions_get_honest_verdicts_and_leave_nothing_running() {
    let fixture = Fixture::new();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    for (i, (name, _, _)) in HOSTILE.iter().enumerate() {
        let kata = format!("{:02}_{name}", i + 4);
        let src = fixture.path(&format!("exercises/{kata}/src"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::copy(sources.join(format!("{name}.rs")), src.join("lib.rs")).unwrap();
        std::fs::write(
            fixture.path(&format!("grader/hidden/{kata}.rs")),
            format!("kata_support::hidden_test! {{\n    fn adds() {{\n        assert_eq!({name}::add(2, 3), 5);\n    }}\n}}\n"),
        )
        .unwrap();
        // Hangs are cut at 3 s; the flood gets time to be read to its end.
        let timeout = if *name == "output_flood" { 120 } else { 3 };
        manifest.push_str(&format!(
            "\n[[kata]]\nname = \"{kata}\"\ntitle = \"hostile\"\nlevel = \"advanced\"\npoints = 1\n\
             hints = [\"a\", \"b\", \"c\"]\ntimeout_secs = {timeout}\n"
        ));
    }
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();
    // A build script that would swap in the right answer, and a config that would rebuild with
    // `--cfg hacked` and run every test through `true`.
    let build_kata = fixture.path("exercises/16_build_script");
    std::fs::write(
        build_kata.join("build.rs"),
        "fn main() { std::fs::write(\"src/lib.rs\", \"pub fn add(a: u32, b: u32) -> u32 { a + b }\").unwrap(); }",
    )
    .unwrap();
    std::fs::write(
        build_kata.join("Cargo.toml"),
        "[package]\nname = \"build-script\"\nbuild = \"build.rs\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(fixture.path(".cargo")).unwrap();
    std::fs::write(
        fixture.path(".cargo/config.toml"),
        "[build]\nrustflags = [\"--cfg\", \"hacked\"]\n[target.'cfg(all())']\nrunner = \"true\"\n",
    )
    .unwrap();

    let output = fixture
        .grader(["check", "--format", "json"])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.len() < 1 << 20,
        "the report carried {} bytes: output was not capped",
        output.stdout.len()
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let katas = report["katas"].as_array().unwrap();
    let verdict =
        |name: &str| katas.iter().find(|k| k["name"].as_str().unwrap().ends_with(name)).unwrap();

    assert_eq!(verdict("01_passing")["status"], "passed");
    assert_eq!(verdict("02_failing")["status"], "failed");
    assert_eq!(verdict("03_broken")["status"], "compile_error");
    for (name, status, says) in HOSTILE {
        let kata = verdict(name);
        assert_eq!(kata["status"], *status, "{name}: {kata:#}");
        let text = kata.to_string();
        assert!(text.contains(says), "{name} should say `{says}`: {kata:#}");
    }

    let leftovers = processes_mentioning(&[
        "kata-hostile-orphan",
        "sleep_an_hour",
        "busy_loop",
        "deadlock",
        "orphan_child",
    ]);
    assert!(leftovers.is_empty(), "processes left running: {leftovers:?}");
}

/// Command lines of live processes that contain any of `needles`.
fn processes_mentioning(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().any(|n| cmdline.contains(n)) && !cmdline.contains("hostile_submissions") {
            found.push(cmdline);
        }
    }
    found
}
