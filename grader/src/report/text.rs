//! Untrusted text (test messages, compiler output quoting the learner's `compile_error!`) made
//! safe to show: control characters become visible escapes, so a message cannot clear the
//! screen, retitle the terminal, hide a link or overwrite the summary with `\r`; only the SGR
//! colour codes the compiler itself emits survive, and only when colour is on.

/// `text` with every control character but newline and tab written as `\u{..}`.
pub fn visible(text: &str) -> String {
    escape(text, false)
}

/// As [`visible`], but keeping `ESC [ digits/semicolons m` (colour) sequences.
pub fn visible_colored(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, keep_sgr: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if keep_sgr && c == '\u{1b}' {
            let params = rest[1..]
                .strip_prefix('[')
                .map(|p| p.find(|ch: char| !(ch.is_ascii_digit() || ch == ';')).unwrap_or(p.len()));
            if let Some(len) = params
                && rest[2 + len..].starts_with('m')
            {
                out.push_str(&rest[..3 + len]);
                rest = &rest[3 + len..];
                continue;
            }
        }
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(visible("a\u{1b}[2Jb\rc\n\td"), "a\\u{1b}[2Jb\\u{d}c\n\td");
        assert_eq!(visible("\u{1b}]0;title\u{7}"), "\\u{1b}]0;title\\u{7}");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m", "C1 CSI is a control too");
        assert_eq!(visible_colored("\u{1b}[1;31merror\u{1b}[0m"), "\u{1b}[1;31merror\u{1b}[0m");
        assert_eq!(visible_colored("\u{1b}[2J\u{1b}]8;;x\u{7}"), "\\u{1b}[2J\\u{1b}]8;;x\\u{7}");
    }
}
