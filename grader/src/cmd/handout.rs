//! `grader handout DIR`: a student copy of the course, without the solutions and the decoys, that
//! builds, lists and checks exactly as the full repository does.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::HandoutArgs;
use crate::course::Course;
use crate::exit;

/// Top-level entries never handed out.
const SKIP_TOP: &[&str] = &[".git", "target", "solutions", "drafts"];
/// Paths (relative to the root) never handed out.
const SKIP_PATHS: &[&str] = &[
    "grader/decoys",
    // Right fixes: as good as the solutions.
    "grader/alternatives",
    // Runs `grader verify`, which needs the solutions.
    "grader/tests/course.rs",
    // The project's own CI; students get the classroom workflow.
    ".github/workflows/ci.yml",
];

pub fn run(course: &Course, args: &HandoutArgs) -> anyhow::Result<u8> {
    let dest = absolute(&args.dir)?;
    if dest.starts_with(&course.root) {
        bail!(crate::UsageError(format!(
            "{} is inside the course; choose a directory outside it (nothing was written)",
            dest.display()
        )));
    }
    if dest.exists() && std::fs::read_dir(&dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(crate::UsageError(format!(
            "{} already exists and is not empty; choose a new directory (nothing was written)",
            dest.display()
        )));
    }
    copy(&course.root, &dest, &course.root)?;

    // The workspace no longer has a solutions tree.
    let manifest = dest.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let text = text.replace(", \"solutions/*\"", "").replace("\"solutions/*\", ", "");
    std::fs::write(&manifest, text)?;

    outln!(
        "wrote a student copy of {} kata(s) to {} (no solutions, no decoys)",
        course.katas.len(),
        dest.display()
    );
    outln!("next: cd {} && git init && cargo run -p grader -- list", dest.display());
    Ok(exit::SUCCESS)
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
