//! `grader handout DIR`: a student copy of the course, without the solutions, the decoys and the
//! maintainers' files, that builds, lists and checks exactly as the full repository does.
//!
//! The copy is taken from the committed files at HEAD (`git archive`), so what a teacher tried in
//! the working tree never ships: uncommitted changes under `exercises/` are refused, and so is an
//! exercise whose `src/lib.rs` is its solution's (a kata the teacher solved and committed).
//! `--allow-dirty` copies the working tree instead, `--allow-solved` lets a solved exercise go.
//! "Solved" is equality with the reference solution, line endings and trailing spaces aside: a
//! check that is cheap, exact for the usual accident (a solution copied over the exercise) and
//! never wrong about an exercise as shipped; whether every exercise fails its hidden tests is
//! `grader verify`'s question. The README is written for students (`readme`), and the teacher's
//! Cargo.lock is pruned to the handout's packages so that `--locked` builds there.

mod readme;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::HandoutArgs;
use crate::course::Course;
use crate::exit;

/// Top-level entries never handed out: solutions, drafts, and the maintainers' documents,
/// scripts and CI (the README is written anew).
const SKIP_TOP: &[&str] = &[
    ".git",
    "target",
    "solutions",
    "drafts",
    "docs",
    "scripts",
    ".ci",
    "README.md",
    "CONTRIBUTING.md",
    "SECURITY.md",
    "BENCHMARKS.md",
];
/// Paths (relative to the root) never handed out.
const SKIP_PATHS: &[&str] = &[
    "grader/decoys",
    // Right fixes: as good as the solutions.
    "grader/alternatives",
    // Weak tests of write-the-test katas (their versions, grader/variants, ship: a check needs them).
    "grader/decoy-tests",
    // The grader's own tests, which run `grader verify` over the solutions.
    "grader/tests",
    // The project's own CI; students get the classroom workflow.
    ".github/workflows/ci.yml",
];

pub fn run(course: &Course, args: &HandoutArgs) -> anyhow::Result<u8> {
    let dest = absolute(&args.dir)?;
    if dest.starts_with(&course.root) {
        bail!(UsageError(format!(
            "{} is inside the course; choose a directory outside it (nothing was written)",
            dest.display()
        )));
    }
    if dest.exists() && std::fs::read_dir(&dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(UsageError(format!(
            "{} already exists and is not empty; choose a new directory (nothing was written)",
            dest.display()
        )));
    }
    let committed = committed(course, args.allow_dirty)?;
    let from = committed.as_ref().map_or(course.root.as_path(), |dir| dir.path());
    let solved = solved(course, from);
    if !solved.is_empty() {
        let list = solved.join(", ");
        if !args.allow_solved {
            bail!(UsageError(format!(
                "exercises/{list}: src/lib.rs is the reference solution, so students would get \
                 it solved; restore the exercise (`grader reset KATA`) and commit, or pass \
                 --allow-solved (nothing was written)"
            )));
        }
        eprintln!("warning: handing out exercises identical to their solution: {list}");
    }
    copy(from, &dest, from)?;

    // The workspace no longer has a solutions tree.
    let manifest = dest.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("failed to read {}", manifest.display()))?;
    let text = text.replace(", \"solutions/*\"", "").replace("\"solutions/*\", ", "");
    std::fs::write(&manifest, text)?;
    std::fs::write(dest.join("README.md"), readme::text(course))
        .context("failed to write the handout's README.md")?;
    let locked = lock(&dest)?;

    let taken =
        if committed.is_some() { "the committed course (HEAD)" } else { "the working tree" };
    outln!(
        "wrote a student copy of {} kata(s) from {taken} to {} (no solutions, no decoys{})",
        course.katas.len(),
        dest.display(),
        if locked { "; Cargo.lock matches it" } else { "" }
    );
    outln!("next: cd {} && git init && cargo run -p grader -- list", dest.display());
    Ok(exit::SUCCESS)
}

/// The committed course, extracted into a temporary directory; `None` to copy the working tree
/// (`--allow-dirty`). Refuses uncommitted changes under `exercises/`.
fn committed(course: &Course, allow_dirty: bool) -> anyhow::Result<Option<tempfile::TempDir>> {
    let prefix = match git(&course.root, &["rev-parse", "--show-prefix"]) {
        Ok(prefix) => prefix.trim().to_owned(),
        Err(_) if allow_dirty => return Ok(None),
        Err(why) => bail!(UsageError(format!(
            "the course is not in a git repository ({why}), so the handout cannot be taken from \
             committed files; commit the course, or pass --allow-dirty to copy the working tree \
             (nothing was written)"
        ))),
    };
    let status = |pathspec: &str| {
        git(&course.root, &["status", "--porcelain", "--untracked-files=all", "--", pathspec])
            .map_err(|why| anyhow::anyhow!("failed to ask git for uncommitted changes: {why}"))
    };
    let dirty: Vec<String> =
        status("exercises")?.lines().map(|l| l.get(3..).unwrap_or(l).to_owned()).collect();
    if allow_dirty {
        if !dirty.is_empty() {
            eprintln!("warning: handing out uncommitted changes to {}", dirty.join(", "));
        }
        return Ok(None);
    }
    if !dirty.is_empty() {
        let more =
            if dirty.len() > 5 { format!(" and {} more", dirty.len() - 5) } else { "".into() };
        bail!(UsageError(format!(
            "uncommitted changes to exercise sources: {}{more}; the handout is taken from HEAD, \
             so commit them or restore them (`git restore`, `grader reset KATA`), or pass \
             --allow-dirty to hand out the working tree (nothing was written)",
            dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let elsewhere = status(".")?.lines().count();
    if elsewhere > 0 {
        eprintln!(
            "note: {elsewhere} uncommitted change(s) outside exercises/ are left out: the \
             handout is taken from HEAD"
        );
    }
    let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(&course.root)
        .args(["archive", "--format=tar", &format!("HEAD:{prefix}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to run git archive")?;
    let tar = Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(dir.path())
        .stdin(archive.stdout.take().context("git archive's output")?)
        .status()
        .context("failed to run tar to unpack the committed course")?;
    let archived = archive.wait_with_output().context("failed to run git archive")?;
    if !archived.status.success() || !tar.success() {
        bail!(
            "failed to take the committed course from HEAD: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        );
    }
    Ok(Some(dir))
}

/// The katas whose exercise in `from` is its solution, line endings and trailing spaces aside.
fn solved(course: &Course, from: &Path) -> Vec<String> {
    let read = |tree: &str, kata: &str| {
        let text = std::fs::read_to_string(from.join(tree).join(kata).join("src/lib.rs")).ok()?;
        Some(text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_owned())
    };
    course
        .katas
        .iter()
        .filter(|kata| {
            let exercise = read("exercises", &kata.name);
            exercise.is_some() && exercise == read("solutions", &kata.name)
        })
        .map(|kata| kata.name.clone())
        .collect()
}

/// Prunes the teacher's Cargo.lock to the handout's packages (every version it pinned kept), or
/// writes one; checks that `cargo metadata --locked --offline` accepts it. `false` for a
/// workspace without packages, which needs no lock file.
fn lock(dest: &Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(dest.join("Cargo.toml"))?;
    let manifest: toml::Table = toml::from_str(&text).context("failed to parse Cargo.toml")?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .is_some_and(|m| !m.is_empty());
    if !members && !manifest.contains_key("package") {
        return Ok(false);
    }
    let cargo = crate::compile::cargo_path()?;
    let metadata = |extra: &[&str]| -> anyhow::Result<std::process::Output> {
        Command::new(&cargo)
            .args(["metadata", "--format-version", "1"])
            .args(extra)
            .current_dir(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("failed to run cargo metadata")
    };
    // Resolving with the lock in place drops the solutions' entries and changes nothing else;
    // the network only when the registry cache lacks what a fresh lock needs.
    if !metadata(&["--offline"])?.status.success() {
        let online = metadata(&[])?;
        if !online.status.success() {
            bail!(
                "failed to write the handout's Cargo.lock: {}",
                String::from_utf8_lossy(&online.stderr).trim()
            );
        }
    }
    let check = metadata(&["--locked", "--offline"])?;
    if !check.status.success() {
        bail!(
            "the handout's Cargo.lock does not match it: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    Ok(true)
}

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("failed to run git: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `path` made absolute through its parent, which must exist (the directory itself may not yet).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    let name = path.file_name().context("the handout directory needs a name")?;
    let parent = path.parent().context("the handout directory needs a parent")?;
    let parent = parent
        .canonicalize()
        .with_context(|| format!("{} does not exist; create it first", parent.display()))?;
    Ok(parent.join(name))
}

fn copy(from: &Path, to: &Path, root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("failed to read {}", from.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let top = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        if rel.components().count() == 1 && top.as_deref().is_some_and(|t| SKIP_TOP.contains(&t)) {
            continue;
        }
        if SKIP_PATHS.iter().any(|p| rel == Path::new(p)) {
            continue;
        }
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy(&path, &target, root)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target)
                .with_context(|| format!("failed to copy {}", path.display()))?;
        }
    }
    Ok(())
}
