//! `grader gradebook RESULTS... [--out DIR]`: many students' result files into a CSV for an LMS,
//! a Markdown summary and an HTML class dashboard (see `crate::gradebook`).
//!
//! A file that cannot be read is skipped with a warning on standard error and a line in every
//! output; only when no file at all can be read is there no gradebook. Run inside the course (or
//! with `--root`), the sources are also compared with the reference solutions and the exercises
//! as shipped.

use std::path::Path;

use anyhow::bail;

use crate::cli::GradebookArgs;
use crate::course::Course;
use crate::exit;
use crate::gradebook::{Gradebook, csv_export, html, load, markdown};

pub fn run(
    args: &GradebookArgs,
    root: Option<&Path>,
    manifest: Option<&Path>,
) -> anyhow::Result<u8> {
    let files = load::expand(&args.results)?;
    if files.is_empty() {
        bail!(crate::UsageError(
            "no result files found; pass one JSON report per student, or a directory of them"
                .into()
        ));
    }
    let loaded = load::read(&files);
    for skipped in &loaded.skipped {
        eprintln!("warning: skipped {}: {}", skipped.file.display(), skipped.why);
    }
    if loaded.rows.is_empty() {
        bail!("none of the {} result file(s) could be read; nothing was written", files.len());
    }
    let reference = match course(root, manifest) {
        Ok(course) => Some(load::reference(&course)),
        Err(err) => {
            eprintln!("warning: sources are not compared with the reference solutions: {err:#}");
            None
        }
    };
    let book = Gradebook::new(
        loaded.rows,
        loaded.skipped,
        reference.as_ref(),
        args.deadline,
        loaded.columns,
    );

    let in_out = |name: &str| args.out.as_ref().map(|dir| dir.join(name));
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
    }
    let csv =
        args.csv.clone().or_else(|| in_out("gradebook.csv")).unwrap_or("gradebook.csv".into());
    write(&csv, &csv_export::wide(&book)?)?;
    let mut written = vec![csv];
    if let Some(long) = in_out("gradebook-katas.csv") {
        write(&long, &csv_export::long(&book)?)?;
        written.push(long);
    }
    let md = markdown::render(&book);
    match args.summary.clone().or_else(|| in_out("gradebook.md")) {
        Some(path) => {
            write(&path, md.as_bytes())?;
            written.push(path);
        }
        None => out!("{md}"),
    }
    if let Some(path) = args.html.clone().or_else(|| in_out("gradebook.html")) {
        write(&path, html::render(&book).as_bytes())?;
        written.push(path);
    }
    let shown: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "wrote {} ({} students, {} skipped)",
        shown.join(", "),
        book.rows.len(),
        book.skipped.len()
    );
    Ok(exit::SUCCESS)
}

/// The course to compare sources with: as `--manifest`/`--root` say, else the one around the
/// current directory.
fn course(root: Option<&Path>, manifest: Option<&Path>) -> anyhow::Result<Course> {
    match (manifest, root) {
        (Some(manifest), root) => Course::load_manifest(manifest, root),
        (None, Some(root)) => Course::load(root),
        (None, None) => Course::discover(&std::env::current_dir()?),
    }
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::state::write_atomic(path, bytes)
        .map_err(|e| anyhow::anyhow!("failed to write {}: {e:#}", path.display()))
}
