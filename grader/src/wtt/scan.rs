//! What a learner's test may not use: anything that tells the versions of the function apart by
//! something other than what they do.
//!
//! Each version is built from its own source into its own package, so a test that could read a
//! file, the build's environment or its own executable, or measure a future's size, an address or
//! the wall clock, could tell which version it was built against without exercising it. The
//! sandbox and the build close what they can (see `crate::wtt`); this scan refuses the rest before
//! anything is built, by token, so that a macro cannot spell its way around it: an identifier
//! cannot be put together from pieces on stable Rust. It is a list of what a cancellation test
//! never needs, not a proof; `SECURITY.md` says what is left.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// One thing the scan refused, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line of the token.
    pub line: usize,
    /// 1-based column (in characters) of the token.
    pub column: usize,
    /// The token as written (`include_str!`, `std::fs`).
    pub what: String,
    /// Why it is refused, for the learner.
    pub why: &'static str,
}

/// Identifiers refused wherever they appear, and why.
const NAMES: &[(&str, &str)] = &[
    ("fs", "reads files, where the versions' sources and builds are"),
    ("env", "reads the environment, which names the package being built"),
    ("process", "starts programs or reads what the process is"),
    ("net", "opens sockets"),
    ("os", "reaches the operating system beyond the test"),
    ("Path", "names files"),
    ("PathBuf", "names files"),
    ("OsStr", "names files"),
    ("OsString", "names files"),
    ("Command", "starts programs"),
    ("current_exe", "finds the test's own executable, which holds the version's code"),
    ("args", "reads the command line, which holds the executable's path"),
    ("args_os", "reads the command line, which holds the executable's path"),
    ("Instant", "measures time; a test observes the paused clock through `sleep` and `advance`"),
    ("SystemTime", "measures the wall clock"),
    ("UNIX_EPOCH", "measures the wall clock"),
    ("size_of", "measures how a version is compiled, not what it does"),
    ("size_of_val", "measures how a version is compiled, not what it does"),
    ("align_of", "measures how a version is compiled, not what it does"),
    ("align_of_val", "measures how a version is compiled, not what it does"),
    ("Layout", "measures how a version is compiled, not what it does"),
    ("type_name", "names types, which is how a version is written, not what it does"),
    ("type_name_of_val", "names types, which is how a version is written, not what it does"),
    ("ptr", "looks at addresses"),
    ("addr_of", "looks at addresses"),
    ("as_ptr", "looks at addresses"),
    ("set_hook", "sees where a panic happened in the version's source"),
    ("take_hook", "sees where a panic happened in the version's source"),
    ("Location", "sees where code is in the version's source"),
    ("Backtrace", "sees the version's source locations"),
    ("backtrace", "sees the version's source locations"),
    ("main", "the test's `main` is the harness's: declare tests in `kata_support::hidden_test!`"),
    (
        "no_main",
        "the test's `main` is the harness's: declare tests in `kata_support::hidden_test!`",
    ),
    ("extern", "links code the test does not show"),
];

/// Macros refused (the name before `!`), and why.
const MACROS: &[(&str, &str)] = &[
    ("include", "reads a file at compile time"),
    ("include_str", "reads a file at compile time"),
    ("include_bytes", "reads a file at compile time"),
    ("env", "reads the build's environment, which names the package being built"),
    ("option_env", "reads the build's environment, which names the package being built"),
    ("file", "names the file being built, which differs per build"),
    ("module_path", "names the crate being built, which differs per build"),
];

/// The tokens of `source` a learner's test may not use, in order; empty when it may be built.
/// A file that does not tokenize is left to the compiler, which says why better.
pub fn scan(source: &str) -> Vec<Refusal> {
    let Ok(tokens) = source.parse::<TokenStream>() else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    walk(tokens, &mut refused);
    if !source.contains("hidden_test!") {
        refused.push(Refusal {
            line: 1,
            column: 1,
            what: "no `hidden_test!`".into(),
            why: "declare your tests inside `kata_support::hidden_test! { .. }`, as the skeleton \
                  does: it is how the grader runs them",
        });
    }
    refused
}

fn walk(tokens: TokenStream, refused: &mut Vec<Refusal>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        let punct = |t: Option<&TokenTree>, c: char| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c);
        match token {
            TokenTree::Group(group) => {
                // `#[path = ".."]` on a module reads any file as the module.
                if group.delimiter() == Delimiter::Bracket && i > 0 && punct(tokens.get(i - 1), '#')
                {
                    let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                    if let (Some(TokenTree::Ident(name)), true) =
                        (inner.first(), punct(inner.get(1), '='))
                        && name == "path"
                    {
                        refuse(refused, token, "#[path]", "reads any file as a module");
                    }
                }
                walk(group.stream(), refused);
            }
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                let name = name.strip_prefix("r#").unwrap_or(&name);
                // Also without the `!`: a macro could be handed the name and call it.
                if let Some((_, why)) = MACROS.iter().find(|(m, _)| *m == name) {
                    let what = if punct(next, '!') { format!("{name}!") } else { name.to_owned() };
                    refuse(refused, token, &what, why);
                } else if let Some((_, why)) = NAMES.iter().find(|(n, _)| *n == name) {
                    refuse(refused, token, name, why);
                } else if name == "mod"
                    && matches!(next, Some(TokenTree::Ident(_)))
                    && punct(tokens.get(i + 2), ';')
                {
                    refuse(refused, token, "mod NAME;", "reads another file as a module");
                }
            }
            TokenTree::Literal(literal) => {
                let text = literal.to_string();
                if text.contains(":p}") || text.contains(":#p}") || text.contains(":?p}") {
                    refuse(refused, token, "{:p}", "prints an address");
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}

fn refuse(refused: &mut Vec<Refusal>, token: &TokenTree, what: &str, why: &'static str) {
    let start = token.span().start();
    refused.push(Refusal { line: start.line, column: start.column + 1, what: what.into(), why });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(source: &str) -> Vec<String> {
        scan(source).into_iter().map(|r| r.what).collect()
    }

    #[test]
    fn a_plain_explorer_test_passes() {
        let test = "use std::sync::Arc;\nkata_support::hidden_test! {\n    async fn t() {\n        \
                    let path = 2; let _ = path;\n        \
                    assert_eq!(format!(\"{:?}\", 1), \"1\");\n    }\n}\n";
        assert_eq!(whats(test), Vec::<String>::new());
    }

    #[test]
    fn reading_the_source_or_the_build_is_refused_with_where() {
        let test = "kata_support::hidden_test! {\n    fn t() {\n        \
                    let s = include_str!(\"../src/lib.rs\");\n        \
                    let n = env!(\"CARGO_PKG_NAME\");\n        let f = std::fs::read(\"x\");\n    \
                    }\n}\n#[path = \"/etc/passwd\"]\nmod m;\n";
        let refused = scan(test);
        let found: Vec<_> = refused.iter().map(|r| (r.what.as_str(), r.line)).collect();
        assert_eq!(
            found,
            [("include_str!", 3), ("env!", 4), ("fs", 5), ("#[path]", 8), ("mod NAME;", 9)]
        );
        assert_eq!(refused[0].column, 17);
    }

    #[test]
    fn a_macro_cannot_spell_its_way_around_and_raw_names_count() {
        let test = "macro_rules! m { ($x:ident) => { $x!(\"K\") } }\nkata_support::hidden_test! \
                    { fn t() { m!(option_env); let _ = r#main; let _ = std::mem::size_of_val(&1); \
                    println!(\"{:p}\", &1); } }\n";
        assert_eq!(whats(test), ["option_env", "main", "size_of_val", "{:p}"]);
    }

    #[test]
    fn a_test_outside_the_harness_is_told_how_to_declare_it() {
        assert_eq!(whats("#[test]\nfn t() {}\n"), ["no `hidden_test!`"]);
    }
}
