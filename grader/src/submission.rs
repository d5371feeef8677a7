//! One submission's sources for `grader grade`: a git source cloned into a private temporary
//! directory and checked out at one commit, then only `exercises/*/src` taken from the checkout
//! (or from a plain directory) into a private copy that the grade builds from.
//!
//! Taking follows the staging rules (`stage::read`: regular files only, within caps), and also
//! refuses a symlinked `exercises/` or `exercises/<kata>/`, which `check` can leave to the learner
//! but a teacher cannot: a submission's `exercises/01_x -> /course/solutions/01_x` would otherwise
//! be graded as the reference solution. A kata that cannot be taken is a compile error worth 0,
//! as in `check`. Nothing of the submission is read again after it is taken.
//!
//! Git runs as the `git` command line, without a terminal (no credential prompt can hang a run),
//! within a time limit, in its own process group so that a timeout kills its helpers (`ssh`,
//! `git-remote-https`) too. A source is always passed after `--`, and the roster refuses a source
//! or commit starting with `-`, so neither is taken for an option.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::course::Course;
use crate::roster::Source;

/// How long one git command (a clone of one student's repository) may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a submission could not be fetched: a missing directory, a failed clone, an unknown commit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// A submission's sources, taken into a private directory that lives as long as this value.
#[derive(Debug)]
pub struct Taken {
    /// Holds the checkout (for a git source) and the private copy; removed on drop.
    _scratch: tempfile::TempDir,
    /// The private copy: `exercises/<kata>/src/` for each kata that could be taken.
    pub root: PathBuf,
    /// Per course kata, in course order: taken, or why not (a compile error).
    pub katas: Vec<Result<(), String>>,
    /// SHA-256 over every kata's taken sources (or why they could not be taken).
    pub content_hash: String,
    /// The commit graded, for a git source.
    pub commit: Option<String>,
    /// The commit's committer date (RFC 3339), as git records it: set by the student, so a
    /// late flag drawn from it is a hint, not proof.
    pub committed_at: Option<String>,
}

/// Fetches `source` and takes its sources for `course`.
pub fn fetch(course: &Course, source: &Source) -> Result<Taken, Unreachable> {
    let scratch = tempfile::Builder::new()
        .prefix("grader-grade-")
        .tempdir()
        .map_err(|e| Unreachable(format!("failed to create a temporary directory: {e}")))?;
    let (checkout, commit, committed_at) = match source {
        Source::Dir(dir) => {
            if !dir.is_dir() {
                return Err(Unreachable(format!("no directory at {}", dir.display())));
            }
            (dir.clone(), None, None)
        }
        Source::Git { url, commit } => {
            let checkout = scratch.path().join("checkout");
            let commit = clone(url, commit.as_deref(), &checkout)?;
            let date = git(Some(&checkout), &["log", "-1", "--format=%cI", &commit], &[])
                .ok()
                .map(|date| date.trim().to_owned())
                .filter(|date| !date.is_empty());
            (checkout, Some(commit), date)
        }
    };
    let root = scratch.path().join("sources");
    let katas = take(course, &checkout, &root)
        .map_err(|e| Unreachable(format!("failed to copy the sources: {e:#}")))?;
    let mut summary = String::new();
    for (kata, taken) in course.katas.iter().zip(&katas) {
        let what = match taken {
            Ok(hash) => hash.clone(),
            Err(why) => format!("not taken: {why}"),
        };
        summary.push_str(&format!("{}\0{what}\n", kata.name));
    }
    Ok(Taken {
        _scratch: scratch,
        root,
        katas: katas.into_iter().map(|k| k.map(drop)).collect(),
        content_hash: crate::stage::hash_bytes(summary.as_bytes()),
        commit,
        committed_at,
    })
}

/// Clones `url` into `into` and checks out `commit` (default: the remote's head); returns the
/// full hash of the commit checked out.
fn clone(url: &str, commit: Option<&str>, into: &Path) -> Result<String, Unreachable> {
    // `--no-local`: a local repository is read through git's transport like a remote one, never
    // by copying or linking its object files (which may be links planted to read elsewhere).
    // `ext::` runs a command of the URL's choosing: never, whatever the teacher's git config says.
    let args =
        ["-c", "protocol.ext.allow=never", "clone", "--quiet", "--no-checkout", "--no-local", "--"];
    git(None, &args, &[OsStr::new(url), into.as_os_str()])
        .map_err(|e| Unreachable(format!("failed to clone {url}: {e}")))?;
    let wanted = commit.unwrap_or("HEAD");
    let sha = git(
        Some(into),
        &["rev-parse", "--verify", "--quiet", "--end-of-options"],
        &[OsStr::new(&format!("{wanted}^{{commit}}"))],
    )
    .map_err(|_| match commit {
        Some(commit) => Unreachable(format!("commit `{commit}` is not in {url}")),
        None => Unreachable(format!("{url} has no commits")),
    })?;
    let sha = sha.trim().to_owned();
    let args = ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach"];
    git(Some(into), &args, &[OsStr::new(&sha)])
        .map_err(|e| Unreachable(format!("failed to check out {sha} of {url}: {e}")))?;
    Ok(sha)
}

/// Runs git with `args` then `paths`, in `dir`; returns its standard output, or why it failed.
fn git(dir: Option<&Path>, args: &[&str], paths: &[&OsStr]) -> Result<String, String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    command
        .args(args)
        .args(paths)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child =
        command.spawn().map_err(|e| format!("failed to run git ({e}); is git installed?"))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(1 << 20).read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > GIT_TIMEOUT => {
                let group = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("failed to wait for git: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        None => Err(format!("git took longer than {}s", GIT_TIMEOUT.as_secs())),
        Some(status) if status.success() => Ok(stdout),
        Some(status) => {
            let said = stderr.trim();
            Err(if said.is_empty() { format!("git {status}") } else { said.to_owned() })
        }
    }
}

/// Copies each kata's `exercises/<kata>/src` from `checkout` into `into`; per kata, the hash of
/// what was taken or why nothing was (the learner's doing). An error is the grader's (a full disk).
fn take(
    course: &Course,
    checkout: &Path,
    into: &Path,
) -> anyhow::Result<Vec<Result<String, String>>> {
    let exercises = Path::new("exercises");
    let mut katas = Vec::new();
    for kata in &course.katas {
        let dir = exercises.join(&kata.name);
        let linked = [exercises, dir.as_path()].into_iter().find(|rel| {
            std::fs::symlink_metadata(checkout.join(rel)).is_ok_and(|m| m.file_type().is_symlink())
        });
        if let Some(rel) = linked {
            katas.push(Err(format!(
                "{} is a symbolic link; the grader takes regular directories only",
                rel.display()
            )));
            continue;
        }
        // A write-the-test kata's work is its test, taken alone (`stage::read` of one file).
        let tested = kata.kind == crate::course::KataKind::WriteTheTest;
        let shown = if tested {
            dir.join("tests").join(crate::wtt::TEST_FILE)
        } else {
            dir.join("src").join("lib.rs")
        };
        let sources = match crate::stage::read(&checkout.join(&shown), &shown) {
            Ok(sources) => sources,
            Err(rejected) => {
                katas.push(Err(rejected.to_string()));
                continue;
            }
        };
        if tested {
            let path = into.join(&shown);
            std::fs::create_dir_all(path.parent().expect("tests/ holds the test"))?;
            std::fs::write(&path, &sources.files[0].1)?;
            katas.push(Ok(sources.hash));
            continue;
        }
        let src = into.join(&dir).join("src");
        for (rel, bytes) in &sources.files {
            let path = src.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        katas.push(Ok(sources.hash));
    }
    Ok(katas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::{BuildSection, Kata, Level};

    fn course(names: &[&str]) -> Course {
        let kata = |name: &&str| Kata {
            name: (*name).into(),
            title: String::new(),
            level: Level::Beginner,
            points: 1,
            hints: vec![],
            timeout_secs: None,
            kind: crate::course::KataKind::Fix,
            bug: None,
        };
        Course {
            root: PathBuf::from("/course"),
            draft: None,
            build: BuildSection { kata_dependencies: vec![], test_dependencies: vec![] },
            katas: names.iter().map(kata).collect(),
        }
    }

    #[test]
    fn takes_only_regular_sources_and_refuses_linked_kata_directories() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("alice");
        let src = sub.join("exercises/01_a/src");
        std::fs::create_dir_all(src.join("nested")).unwrap();
        std::fs::write(src.join("lib.rs"), "pub fn a() {}").unwrap();
        std::fs::write(src.join("nested/m.rs"), "").unwrap();
        std::fs::write(sub.join("exercises/01_a/Cargo.toml"), "not taken").unwrap();
        // A kata directory linked to somewhere else (the teacher's solutions, say).
        let elsewhere = dir.path().join("solutions/02_b/src");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("lib.rs"), "pub fn b() {}").unwrap();
        std::os::unix::fs::symlink(elsewhere.parent().unwrap(), sub.join("exercises/02_b"))
            .unwrap();

        let course = course(&["01_a", "02_b", "03_c"]);
        let taken = fetch(&course, &Source::Dir(sub.clone())).unwrap();
        assert!(taken.katas[0].is_ok());
        assert_eq!(
            std::fs::read_to_string(taken.root.join("exercises/01_a/src/lib.rs")).unwrap(),
            "pub fn a() {}"
        );
        assert!(taken.root.join("exercises/01_a/src/nested/m.rs").is_file());
        assert!(!taken.root.join("exercises/01_a/Cargo.toml").exists());
        let linked = taken.katas[1].as_ref().unwrap_err();
        assert!(linked.contains("exercises/02_b is a symbolic link"), "{linked}");
        assert!(!taken.root.join("exercises/02_b").exists());
        let missing = taken.katas[2].as_ref().unwrap_err();
        assert!(missing.contains("exercises/03_c/src/lib.rs is missing"), "{missing}");
        assert_eq!(taken.commit, None);

        // The hash follows content, and a kata's rejection is part of it.
        let again = fetch(&course, &Source::Dir(sub.clone())).unwrap();
        assert_eq!(again.content_hash, taken.content_hash);
        std::fs::write(src.join("lib.rs"), "pub fn a() { }").unwrap();
        let edited = fetch(&course, &Source::Dir(sub)).unwrap();
        assert_ne!(edited.content_hash, taken.content_hash);

        let err = fetch(&course, &Source::Dir(dir.path().join("nobody"))).unwrap_err();
        assert!(err.0.starts_with("no directory at "), "{err}");
    }

    #[test]
    fn an_ext_url_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join("pwned");
        let url = format!("ext::sh -c touch% {}", planted.display());
        let err = fetch(&course(&["01_a"]), &Source::Git { url, commit: None }).unwrap_err();
        assert!(err.0.contains("transport 'ext' not allowed"), "{err}");
        assert!(!planted.exists());
    }
}
