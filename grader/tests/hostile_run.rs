//! Hostile submissions against the run side: kata code that reads the proof nonce through `/proc`,
//! writes where later runs trust, forges the report after the grader exits, holds the output open,
//! bombs memory, processes and threads, looks for signs of grading, or reaches the network. Each
//! stands in for a kata's source in one grader run, knocks on one of the sandbox's walls
//! (`grader/src/sandbox.rs`) and must get an honest verdict; nothing may be left running or
//! changed afterwards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Fixture;

/// Each hostile source (tests/fixtures/hostile_run/NAME.rs), the verdict it must get and what the
/// verdict must say.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("proc_nonce", "failed", "left: 6"),
    ("write_trusted", "failed", "left: 6"),
    ("setsid_escapee", "failed", "left: 6"),
    ("stdout_held", "failed", "left: 6"),
    ("memory_bomb", "failed", "left: 6"),
    ("process_bomb", "failed", "left: 6"),
    ("thread_bomb", "failed", "left: 6"),
    ("grading_signs", "failed", "left: 6"),
    ("network", "failed", "left: 6"),
];

#[test]
fn hostile_runs_meet_the_walls_and_leave_nothing_behind() {
    let fixture = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_run");
    for (i, (name, _, _)) in HOSTILE.iter().enumerate() {
        let kata = format!("{:02}_{name}", i + 4);
        let src = fixture.path(&format!("exercises/{kata}/src"));
        std::fs::create_dir_all(&src).unwrap();
        let source = std::fs::read_to_string(sources.join(format!("{name}.rs"))).unwrap();
        let source = source
            .replace("\"PORT\"", &format!("\"{port}\""))
            .replace("\"COURSE_ROOT\"", &format!("{:?}", fixture.path("")))
            .replace(
                "\"SUPPORT_DIR\"",
                &format!("{:?}", Path::new(env!("CARGO_MANIFEST_DIR")).join("support")),
            );
        std::fs::write(src.join("lib.rs"), source).unwrap();
        std::fs::write(
            fixture.path(&format!("grader/hidden/{kata}.rs")),
            format!("kata_support::hidden_test! {{\n    fn adds() {{\n        assert_eq!({name}::add(2, 3), 5);\n    }}\n}}\n"),
        )
        .unwrap();
        manifest.push_str(&format!(
            "\n[[kata]]\nname = \"{kata}\"\ntitle = \"hostile\"\nlevel = \"advanced\"\npoints = 1\n\
             hints = [\"a\", \"b\", \"c\"]\ntimeout_secs = 3\n"
        ));
    }
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();
    let trusted = [
        fixture.path("grader/hidden/01_passing.rs"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("support/src/harness.rs"),
    ];
    let before: Vec<Vec<u8>> = trusted.iter().map(|p| std::fs::read(p).unwrap()).collect();

    let report = fixture.path("report.json");
    let output = fixture
        .grader(["check", "--format", "json", "--report"])
        .arg(format!("json={}", report.display()))
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read(&report).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let katas = parsed["katas"].as_array().unwrap();
    let verdict =
        |name: &str| katas.iter().find(|k| k["name"].as_str().unwrap().ends_with(name)).unwrap();
    assert_eq!(verdict("01_passing")["status"], "passed");
    assert_eq!(verdict("02_failing")["status"], "failed");
    for (name, status, says) in HOSTILE {
        let kata = verdict(name);
        assert_eq!(kata["status"], *status, "{name}: {kata:#}");
        assert!(kata.to_string().contains(says), "{name} should say `{says}`: {kata:#}");
    }
    // Once the test process is gone its pipe closes: no waiting out the reader grace.
    let held = verdict("stdout_held")["tests"][0]["duration_ms"].as_u64().unwrap();
    assert!(held < 1500, "the held stdout kept the grader waiting {held} ms");

    // The escapee had time to forge the report if it were still alive.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::read(&report).unwrap(),
        written,
        "the report changed after the grader exited"
    );
    for (path, before) in trusted.iter().zip(&before) {
        assert_eq!(&std::fs::read(path).unwrap(), before, "{} changed", path.display());
    }
    let target = common::shared_target();
    let probes: Vec<_> = walk(&target.join("debug"))
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/kata-hostile-probe")))
        .filter(|p| p.ends_with("kata-hostile-probe") && p.exists())
        .collect();
    assert!(probes.is_empty(), "kata code created {probes:?}");
    assert!(listener.accept().is_err(), "kata code reached a server on this machine");

    let names: Vec<String> = HOSTILE.iter().map(|(name, _, _)| name.replace('_', "-")).collect();
    let needles: Vec<&str> = names.iter().map(String::as_str).collect();
    let leftovers = processes_mentioning(&needles);
    assert!(leftovers.is_empty(), "processes left running: {leftovers:?}");
}

/// The tests of one kata share a sandbox (`grader/src/run.rs`, `Session`): run one after another
/// in one sandbox (`-j 1`), no test may find what the one before it left, and nothing may outlive
/// them.
#[test]
fn tests_sharing_a_sandbox_inherit_nothing_from_each_other() {
    let fixture = Fixture::new();
    let name = "session_carryover";
    let kata = format!("04_{name}");
    let src = fixture.path(&format!("exercises/{kata}/src"));
    std::fs::create_dir_all(&src).unwrap();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_run");
    std::fs::copy(sources.join(format!("{name}.rs")), src.join("lib.rs")).unwrap();
    let tests: String = ["first", "second", "third"]
        .iter()
        .map(|test| {
            format!("    fn {test}() {{\n        assert_eq!({name}::add(2, 3), 5);\n    }}\n")
        })
        .collect();
    std::fs::write(
        fixture.path(&format!("grader/hidden/{kata}.rs")),
        format!("kata_support::hidden_test! {{\n{tests}}}\n"),
    )
    .unwrap();
    let mut manifest = std::fs::read_to_string(fixture.path("course.toml")).unwrap();
    manifest.push_str(&format!(
        "\n[[kata]]\nname = \"{kata}\"\ntitle = \"hostile\"\nlevel = \"advanced\"\npoints = 1\n\
         hints = [\"a\", \"b\", \"c\"]\ntimeout_secs = 3\n"
    ));
    std::fs::write(fixture.path("course.toml"), manifest).unwrap();

    let output = fixture
        .grader(["check", "--format", "json", "-j", "1", "4"])
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tests = parsed["katas"][0]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3, "{parsed:#}");
    for test in tests {
        assert_eq!(test["status"], "failed", "a test inherited from the one before: {test:#}");
        assert!(test.to_string().contains("left: 6"), "{test:#}");
    }
    let leftovers = processes_mentioning(&["session-carryover", "session_carryover"]);
    assert!(leftovers.is_empty(), "processes left running: {leftovers:?}");
}

/// Files directly in `dir` and in its `deps` (where test executables live).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    [dir.to_path_buf(), dir.join("deps")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .collect()
}

/// Command lines of live processes that contain any of `needles`.
fn processes_mentioning(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().any(|n| cmdline.contains(n)) && !cmdline.contains("hostile_runs") {
            found.push(cmdline);
        }
    }
    found
}

/// A course cloned under a private home and graded as root (a container's `/root`, mode 0700):
/// the test's uid cannot reach the target directory by its path, yet it must still run its own
/// executable in its scratch directory, and the scratch directory must still be emptied between
/// two tests of one sandbox. Drives the sandbox helper directly, with `sh` as the test.
#[test]
fn a_test_in_a_private_target_directory_runs_and_inherits_nothing() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let program = private.path().join("debug").join("hidden-test");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::copy("/bin/sh", &program).unwrap();
    let scratch = private.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();

    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_grader-sandbox"))
        .args(["--serve", "--scratch"])
        .arg(&scratch)
        .args(["--cpu-secs", "5", "--"])
        .arg(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each request's input goes to the test's standard input: `sh` runs it as a script, with
    // builtins only (the test may execute nothing but itself). `echo *` lists the directory, and
    // prints `*` when it is empty.
    let mut stdin = sandbox.stdin.take().unwrap();
    writeln!(stdin, "first echo left > leftover; echo *").unwrap();
    writeln!(stdin, "second echo *").unwrap();
    drop(stdin);
    let out = sandbox.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the sandbox failed:\n{stdout}\n{stderr}");
    let (first, second) = stdout
        .split_once("\nfirst 0\n")
        .unwrap_or_else(|| panic!("the first test did not run and exit 0:\n{stdout}\n{stderr}"));
    assert_eq!(first.trim(), "leftover", "{stderr}");
    assert_eq!(
        second.trim(),
        "*\n\nsecond 0",
        "the second test saw the first one's file, or did not run:\n{stderr}"
    );
}
