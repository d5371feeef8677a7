//! `grader reset KATA | --all`: restores a kata's starting code, after saving every file it would
//! overwrite to a backup it names. Nothing the learner wrote is ever lost.
//!
//! The starting code is the kata's `src/` as of the first commit that contains it: the handout's
//! initial commit in a student repository.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::ResetArgs;
use crate::course::{Course, Kata, Tree};
use crate::exit;

pub fn run(course: &Course, args: &ResetArgs) -> anyhow::Result<u8> {
    let katas: Vec<&Kata> = match &args.kata {
        Some(name) => vec![course.find(name)?],
        None => course.katas.iter().collect(),
    };
    if args.all
        && !args.yes
        && !confirm(&format!("reset all {} katas to their starting code?", katas.len()))?
    {
        outln!("nothing was changed");
        return Ok(exit::SUCCESS);
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for kata in katas {
        reset(course, kata, stamp)?;
    }
    Ok(exit::SUCCESS)
}

fn reset(course: &Course, kata: &Kata, stamp: u64) -> anyhow::Result<()> {
    let src = course.kata_dir(Tree::Exercises, kata).join("src");
    let rel = src.strip_prefix(&course.root).unwrap_or(&src).to_string_lossy().into_owned();
    let first = git(&course.root, &["log", "--format=%H", "--reverse", "--", &rel])?;
    let Some(commit) = first.lines().next() else {
        bail!(UsageError(format!(
            "{rel} is not in the repository's history, so its starting code is unknown; \
             restore it from the course repository"
        )));
    };
    let files = git(&course.root, &["ls-tree", "-r", "--name-only", commit, "--", &rel])?;
    let mut changed = 0;
    for file in files.lines() {
        let start = git_bytes(&course.root, &["show", &format!("{commit}:{file}")])?;
        let path = course.root.join(file);
        let current = std::fs::read(&path).ok();
        if current.as_deref() == Some(start.as_slice()) {
            continue;
        }
        if let Some(current) = current {
            let backup = backup_path(&path, stamp);
            std::fs::write(&backup, current).with_context(|| {
                format!("failed to save a backup to {}; nothing was reset", backup.display())
            })?;
            outln!(
                "saved {} to {}",
                file,
                backup.strip_prefix(&course.root).unwrap_or(&backup).display()
            );
        }
        crate::state::write_atomic(&path, &start)?;
        changed += 1;
    }
    if changed == 0 {
        outln!("kata {:02} is already at its starting code", kata.number());
    } else {
        outln!("kata {:02} is back at its starting code", kata.number());
    }
    Ok(())
}

/// `lib.rs.<stamp>.grader-backup`, with a counter if that name is taken.
fn backup_path(path: &Path, stamp: u64) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    (0..)
        .map(|n| {
            let suffix = if n == 0 { String::new() } else { format!("-{n}") };
            path.with_file_name(format!("{name}.{stamp}{suffix}.grader-backup"))
        })
        .find(|p| !p.exists())
        .expect("an unused backup name")
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(UsageError(format!(
            "{question} needs confirmation; pass --yes to go ahead without a terminal"
        )));
    }
    out!("{question} your files are backed up first [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn git(root: &Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&git_bytes(root, args)?).into_owned())
}

fn git_bytes(root: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .context("failed to run git; `grader reset` needs git to find the starting code")?;
    if !output.status.success() {
        bail!(UsageError(format!(
            "git {} failed: {}; `grader reset` needs the course in a git repository",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}
