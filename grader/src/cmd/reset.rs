//! `grader reset KATA | --all`: restores a kata's starting code, after saving every file it would
//! overwrite to a backup it names. Nothing the learner wrote is ever lost.
//!
//! The starting code is the kata's `src/` (and a write-the-test kata's `tests/`) as of the first
//! commit that contains it: the handout's initial commit in a student repository. A backup is
//! named by the time (UTC) (`lib.rs.2025-06-01T14-03-22Z.grader-backup`), and `--restore` puts
//! the latest one back.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::UsageError;
use crate::cli::ResetArgs;
use crate::course::{Course, Kata, KataKind, Tree};
use crate::exit;

pub fn run(course: &Course, args: &ResetArgs) -> anyhow::Result<u8> {
    // UTC (chrono without its time-zone database), readable and sorting as time does.
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let stamp = now.format("%Y-%m-%dT%H-%M-%SZ").to_string();
    if args.restore {
        let kata = course.find(args.kata.as_deref().unwrap_or_default())?;
        return restore(course, kata, &stamp);
    }
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
    for kata in katas {
        reset(course, kata, &stamp)?;
    }
    Ok(exit::SUCCESS)
}

/// The folders of a kata's starting code: `src/`, and a write-the-test kata's `tests/` (the
/// learner's test; its `src/` is the function under test, restored too if it was edited).
fn folders(kata: &Kata) -> &'static [&'static str] {
    match kata.kind {
        KataKind::Fix => &["src"],
        KataKind::WriteTheTest => &["src", "tests"],
    }
}

fn reset(course: &Course, kata: &Kata, stamp: &str) -> anyhow::Result<()> {
    let mut changed = 0;
    for folder in folders(kata) {
        changed += reset_folder(course, kata, folder, stamp)?;
    }
    if changed == 0 {
        outln!("kata {:02} is already at its starting code", kata.number());
    } else {
        outln!("kata {:02} is back at its starting code", kata.number());
    }
    Ok(())
}

/// Restores one folder of the kata's starting code; how many files it changed.
fn reset_folder(course: &Course, kata: &Kata, folder: &str, stamp: &str) -> anyhow::Result<usize> {
    let src = course.kata_dir(Tree::Exercises, kata).join(folder);
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
            save_backup(course, &path, &current, stamp)?;
        }
        replace(&path, &start)?;
        changed += 1;
    }
    Ok(changed)
}

/// Suffix of every backup file.
const BACKUP: &str = ".grader-backup";

/// Saves `content` (the file at `path`) next to it, named by `stamp`, with the file's mode.
fn save_backup(course: &Course, path: &Path, content: &[u8], stamp: &str) -> anyhow::Result<()> {
    let backup = backup_path(path, stamp);
    std::fs::write(&backup, content).and_then(|()| copy_mode(path, &backup)).with_context(
        || format!("failed to save a backup to {}; nothing was changed", backup.display()),
    )?;
    outln!("saved {} to {}", rel(course, path), rel(course, &backup));
    Ok(())
}

/// Replaces `path` with `bytes` atomically, keeping its mode (a new file gets 0644, not the
/// temporary file's 0600).
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    crate::state::write_atomic(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}

fn copy_mode(from: &Path, to: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(from)?.permissions().mode() & 0o7777;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
}

/// `lib.rs.<stamp>.grader-backup`, with a counter if that name is taken.
fn backup_path(path: &Path, stamp: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    (0..)
        .map(|n| {
            let suffix = if n == 0 { String::new() } else { format!("-{n}") };
            path.with_file_name(format!("{name}.{stamp}{suffix}{BACKUP}"))
        })
        .find(|p| !p.exists())
        .expect("an unused backup name")
}

/// Puts back the latest backup of the kata's files: the newest `*.grader-backup` under `src/`,
/// with every file saved in the same reset. What it replaces is backed up first.
fn restore(course: &Course, kata: &Kata, stamp: &str) -> anyhow::Result<u8> {
    let mut backups = Vec::new();
    for folder in folders(kata) {
        find_backups(&course.kata_dir(Tree::Exercises, kata).join(folder), &mut backups);
    }
    // The names sort by time: same stamp, same reset; a counter sorts after its plain name.
    let latest = backups.iter().map(|(_, stamp, _)| stamp.clone()).max();
    let Some(latest) = latest else {
        return Err(UsageError(format!(
            "kata {:02} has no backup to restore (`{}` makes one)",
            kata.number(),
            crate::invoked::command(&format!("reset {}", kata.number()))
        ))
        .into());
    };
    for (original, file_stamp, backup) in backups.iter().filter(|(_, s, _)| *s == latest) {
        let content = std::fs::read(backup)
            .with_context(|| format!("failed to read {}", backup.display()))?;
        if let Ok(current) = std::fs::read(original)
            && current != content
        {
            save_backup(course, original, &current, stamp)?;
        }
        replace(original, &content)?;
        std::fs::remove_file(backup)
            .with_context(|| format!("failed to remove {}", backup.display()))?;
        outln!("restored {} from its backup of {file_stamp}", rel(course, original));
    }
    Ok(exit::SUCCESS)
}

/// Every backup under `dir`: (the file it saved, its stamp with any counter, the backup).
fn find_backups(dir: &Path, found: &mut Vec<(PathBuf, String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            find_backups(&path, found);
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(BACKUP) else { continue };
        let Some((original, stamp)) = stem.rsplit_once('.') else { continue };
        found.push((path.with_file_name(original), stamp.to_owned(), path.clone()));
    }
}

fn rel(course: &Course, path: &Path) -> String {
    path.strip_prefix(&course.root).unwrap_or(path).display().to_string()
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
