//! Colour: on for a terminal unless `NO_COLOR` is set (https://no-color.org), or as `--color` says.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use owo_colors::OwoColorize;

use crate::cli::ColorChoice;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Decides once, at start-up, whether standard output gets colour.
pub fn init(choice: ColorChoice) {
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub fn good(text: &str) -> String {
    if enabled() { text.green().bold().to_string() } else { text.to_owned() }
}

pub fn bad(text: &str) -> String {
    if enabled() { text.red().bold().to_string() } else { text.to_owned() }
}

pub fn warn(text: &str) -> String {
    if enabled() { text.yellow().bold().to_string() } else { text.to_owned() }
}

pub fn dim(text: &str) -> String {
    if enabled() { text.dimmed().to_string() } else { text.to_owned() }
}

pub fn bold(text: &str) -> String {
    if enabled() { text.bold().to_string() } else { text.to_owned() }
}
