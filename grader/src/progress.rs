//! Progress while building and testing: a bar on a terminal, a few plain lines otherwise, nothing
//! for machine-readable output.

use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug)]
pub enum Progress {
    /// Machine-readable output: stay silent.
    Quiet,
    /// Not a terminal: one line per phase.
    Lines { phase: AtomicUsize },
    /// A terminal: a bar on standard error.
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(show: bool, terminal: bool) -> Progress {
        match (show, terminal) {
            (false, _) => Progress::Quiet,
            (true, false) => Progress::Lines { phase: AtomicUsize::new(0) },
            (true, true) => {
                // Hidden until a phase has steps: an empty bar reads as full (0/0).
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
                bar.set_style(
                    ProgressStyle::with_template("{msg:>9} [{bar:30}] {pos}/{len}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                Progress::Bar(bar)
            }
        }
    }

    /// Starts a phase ("building", "testing") of `total` steps.
    pub fn phase(&self, name: &'static str, total: usize) {
        match self {
            Progress::Quiet => {}
            Progress::Lines { phase } => {
                phase.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name} {total} ...");
            }
            Progress::Bar(bar) => {
                // Hidden while it changes, so that no mix of the old phase and the new is drawn.
                bar.set_draw_target(ProgressDrawTarget::hidden());
                bar.set_message(name);
                bar.set_length(total as u64);
                bar.set_position(0);
                if total > 0 {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
        }
    }

    /// One step of the current phase is done.
    pub fn step(&self) {
        if let Progress::Bar(bar) = self {
            bar.inc(1);
        }
    }

    /// Removes the bar before the report is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
