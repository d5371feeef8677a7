//! What a learner's test may not use: anything that tells the versions of the function apart by
//! something other than what they do.
//!
//! Each version is built from its own source into its own package, so a test that could read a
//! file, the build's environment or its own executable, or measure a future's size, an address or
//! the wall clock, could tell which version it was built against without exercising it. The
//! sandbox and the build close what they can (see `crate::wtt`); this scan refuses the rest before
//! anything is built, by token, so that a macro cannot spell its way around it: an identifier
//! cannot be put together from pieces on stable Rust. Comments are not code: `//` comments never
//! become tokens, and a doc comment (`#[doc = ".."]`, a plain string) is skipped. A size or an
//! address reaches a test through many doors (a pointer's or a function's `as usize`, `offset_of!`,
//! a slice's `as_ptr_range`, an overflowing `try_reserve`), so the scan refuses the doors, and every
//! `as` cast to an integer, which it cannot tell from a harmless one without types. Each refusal
//! says what to write instead. It is a list of what a cancellation test never needs, not a proof;
//! `SECURITY.md` says what is left.

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
    /// Why it is refused, for the learner: completes "it ...".
    pub why: &'static str,
    /// What to write instead.
    pub help: &'static str,
    /// Refused as a bare name, wherever it appears (a path, an import, a name of the learner's
    /// own), so that no renaming can hide it: the learner may only need to rename their own item.
    pub anywhere: bool,
}

/// Why a kind of token is refused, and what to do instead.
#[derive(Debug)]
struct Rule {
    why: &'static str,
    help: &'static str,
}

const OUTSIDE: &str = "use only the function's public API, the explorer (`kata_support`) and tokio: \
                       nothing outside the test";
const BEHAVIOUR: &str = "check what the call does instead: the state it leaves after each cut, \
                         and with `kata_support::Options::default().forbid_leftover_tasks()` the \
                         tasks it leaves running";

const FILES: Rule =
    Rule { why: "reads files, where the versions' sources and builds are", help: OUTSIDE };
const NAMES_FILES: Rule =
    Rule { why: "names files, where the versions' sources and builds are", help: OUTSIDE };
const ENVIRONMENT: Rule =
    Rule { why: "reads the environment, which names the package being built", help: OUTSIDE };
const PROCESS: Rule = Rule {
    why: "reaches the process, its executable or its command line, which hold the version's code",
    help: OUTSIDE,
};
const CLOCK: Rule = Rule {
    why: "reads a clock",
    help: "a test sees time through tokio's paused clock: `sleep`, `timeout`, `advance`",
};
const LAYOUT: Rule = Rule {
    why: "measures how a version is compiled (a future's size, layout or type), not what it does",
    help: BEHAVIOUR,
};
const ADDRESS: Rule = Rule {
    why: "gives an address, and addresses tell how a version is compiled (the distance between \
          two is a future's size)",
    help: BEHAVIOUR,
};
const ALLOCATOR: Rule =
    Rule { why: "sees allocations, whose sizes tell how a version is compiled", help: BEHAVIOUR };
const CAST: Rule = Rule {
    why: "is an `as` cast to an integer, which also turns an address (a pointer's, a function's) \
          into a number, and the scan cannot tell which",
    help: "convert with `u64::from(n)` or `usize::try_from(n).unwrap()`, or give the value the \
           type it needs where it is made (`for ms in 0..20u64`)",
};
const PRIMITIVE: Rule = Rule {
    why: "names a primitive type by path, which could rename an integer type out of the sight \
          of the check on `as` casts",
    help: "write the type's own name (`u16`)",
};
const TASK_ID: Rule = Rule {
    why: "reads a tokio task id, a count of the tasks spawned so far: how a version is written, \
          not what it leaves behind",
    help: BEHAVIOUR,
};
const WAKER: Rule = Rule {
    why: "reads a task's waker, whose `Debug` shows addresses",
    help: "poll by hand with `tokio_test::task::spawn`, or with `std::task::Waker::noop()`",
};
const PANIC_PLACE: Rule = Rule {
    why: "sees where code is in the version's source",
    help: "check what the call does, not where it panicked",
};
const MAIN: Rule = Rule {
    why: "gives the test a `main` of its own, but its `main` is the harness's",
    help: "declare tests inside `kata_support::hidden_test! { .. }`",
};
const EXTERN: Rule = Rule { why: "links code the test does not show", help: OUTSIDE };
const PIECES: Rule = Rule {
    why: "puts a string together from pieces, which could be a format string the scan cannot \
          read (`{:p}` prints an address)",
    help: "write the string whole",
};

/// Identifiers refused wherever they appear (also raw, `r#name`), and why.
const NAMES: &[(&str, &Rule)] = &[
    ("fs", &FILES),
    ("Path", &NAMES_FILES),
    ("PathBuf", &NAMES_FILES),
    ("OsStr", &NAMES_FILES),
    ("OsString", &NAMES_FILES),
    ("env", &ENVIRONMENT),
    ("process", &PROCESS),
    ("net", &PROCESS),
    ("os", &PROCESS),
    ("Command", &PROCESS),
    ("current_exe", &PROCESS),
    ("args", &PROCESS),
    ("args_os", &PROCESS),
    ("Instant", &CLOCK),
    ("SystemTime", &CLOCK),
    ("UNIX_EPOCH", &CLOCK),
    ("size_of", &LAYOUT),
    ("size_of_val", &LAYOUT),
    ("align_of", &LAYOUT),
    ("align_of_val", &LAYOUT),
    ("Layout", &LAYOUT),
    ("needs_drop", &LAYOUT),
    ("type_name", &LAYOUT),
    ("type_name_of_val", &LAYOUT),
    ("TypeId", &LAYOUT),
    ("type_id", &LAYOUT),
    // Its `Debug` prints its type's name.
    ("PhantomData", &LAYOUT),
    // Whether a future is unwind safe depends on what it holds across an `.await`.
    ("UnwindSafe", &LAYOUT),
    ("RefUnwindSafe", &LAYOUT),
    // Whether a capacity overflows tells a size: `try_reserve(usize::MAX / 2 / t)` fails with
    // "capacity overflow" exactly when the element is bigger than `t` bytes.
    ("try_reserve", &LAYOUT),
    ("try_reserve_exact", &LAYOUT),
    ("try_with_capacity", &LAYOUT),
    ("ptr", &ADDRESS),
    ("addr_of", &ADDRESS),
    ("addr_of_mut", &ADDRESS),
    ("as_ptr", &ADDRESS),
    ("as_mut_ptr", &ADDRESS),
    ("as_ptr_range", &ADDRESS),
    ("as_mut_ptr_range", &ADDRESS),
    ("into_raw", &ADDRESS),
    ("addr", &ADDRESS),
    ("expose_provenance", &ADDRESS),
    ("expose_addr", &ADDRESS),
    ("with_exposed_provenance", &ADDRESS),
    ("with_exposed_provenance_mut", &ADDRESS),
    ("NonNull", &ADDRESS),
    ("AtomicPtr", &ADDRESS),
    ("UnsafeCell", &ADDRESS),
    ("RawWaker", &ADDRESS),
    ("as_raw", &ADDRESS),
    ("primitive", &PRIMITIVE),
    ("alloc", &ALLOCATOR),
    ("GlobalAlloc", &ALLOCATOR),
    ("global_allocator", &ALLOCATOR),
    ("try_id", &TASK_ID),
    ("set_hook", &PANIC_PLACE),
    ("take_hook", &PANIC_PLACE),
    ("Location", &PANIC_PLACE),
    ("Backtrace", &PANIC_PLACE),
    ("backtrace", &PANIC_PLACE),
    ("main", &MAIN),
    ("no_main", &MAIN),
    ("extern", &EXTERN),
];

/// Macros refused (the name before `!`, also without it: a macro could be handed the name), and
/// why.
const MACROS: &[(&str, &Rule)] = &[
    ("include", &FILES),
    ("include_str", &FILES),
    ("include_bytes", &FILES),
    ("env", &ENVIRONMENT),
    ("option_env", &ENVIRONMENT),
    ("file", &Rule { why: "names the file being built, which differs per build", help: OUTSIDE }),
    (
        "module_path",
        &Rule { why: "names the crate being built, which differs per build", help: OUTSIDE },
    ),
    ("offset_of", &LAYOUT),
    ("concat", &PIECES),
    ("stringify", &PIECES),
];

/// The integer types: an `as` cast to one of them can read an address.
const INTEGERS: &[&str] =
    &["usize", "isize", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128"];

/// The tokens of `source` a learner's test may not use, in order; empty when it may be built.
/// A file that does not tokenize is left to the compiler, which says why better. Comments are
/// not code: `//` comments never reach the tokens, and doc comments (`#[doc = ".."]`) are skipped.
pub fn scan(source: &str) -> Vec<Refusal> {
    let Ok(tokens) = source.parse::<TokenStream>() else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    let aliases = integer_aliases(&tokens);
    walk(tokens, false, &aliases, &mut refused);
    if !source.contains("hidden_test!") {
        refused.push(Refusal {
            line: 1,
            column: 1,
            what: "no `hidden_test!`".into(),
            why: "declares no test the grader can run",
            help: "declare your tests inside `kata_support::hidden_test! { .. }`, as the skeleton \
                   does: it is how the grader runs them",
            anywhere: false,
        });
    }
    refused
}

fn punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

fn ident(t: Option<&TokenTree>) -> Option<String> {
    match t {
        Some(TokenTree::Ident(i)) => {
            let name = i.to_string();
            Some(name.strip_prefix("r#").map(str::to_owned).unwrap_or(name))
        }
        _ => None,
    }
}

/// Whether `group` is an attribute's `[..]` holding only a doc string: a comment.
fn is_doc_comment(group: &proc_macro2::Group) -> bool {
    let inner: Vec<TokenTree> = group.stream().into_iter().collect();
    inner.len() == 3
        && ident(inner.first()).as_deref() == Some("doc")
        && punct(inner.get(1), '=')
        && matches!(inner.get(2), Some(TokenTree::Literal(_)))
}

/// The last segment of the path starting at `tokens[i]` (`std::primitive::usize` gives `usize`),
/// or the punctuation that starts it (`_`, `<`, `$`, `*`, `&`).
fn cast_target(tokens: &[TokenTree], mut i: usize) -> Option<String> {
    let mut last = None;
    loop {
        match tokens.get(i) {
            Some(TokenTree::Ident(_)) => last = ident(tokens.get(i)),
            Some(TokenTree::Punct(p)) if last.is_none() => return Some(p.as_char().to_string()),
            _ => return last,
        }
        if punct(tokens.get(i + 1), ':') && punct(tokens.get(i + 2), ':') {
            i += 3;
        } else {
            return last;
        }
    }
}

/// Every token of `tokens`, groups opened, in order.
fn flatten(tokens: &TokenStream, into: &mut Vec<TokenTree>) {
    for token in tokens.clone() {
        if let TokenTree::Group(group) = &token {
            flatten(&group.stream(), into);
        } else {
            into.push(token);
        }
    }
}

/// Names the file gives an integer type (`type Word = usize;`, `use ..::Word as W;`), which a
/// cast could use in its place.
fn integer_aliases(tokens: &TokenStream) -> Vec<String> {
    let mut flat = Vec::new();
    flatten(tokens, &mut flat);
    let mut aliases: Vec<String> = Vec::new();
    let integer = |name: &str, aliases: &[String]| {
        INTEGERS.contains(&name) || aliases.iter().any(|a| a == name)
    };
    loop {
        let known = aliases.len();
        for i in 0..flat.len() {
            let name = ident(flat.get(i));
            let renamed = match name.as_deref() {
                // `type NAME = TARGET` (generics between are allowed for).
                Some("type") => flat[i..]
                    .iter()
                    .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '='))
                    .and_then(|eq| cast_target(&flat, i + eq + 1))
                    .filter(|target| integer(target, &aliases))
                    .and_then(|_| ident(flat.get(i + 1))),
                // `OLD as NEW` (in a `use`).
                Some("as") => ident(i.checked_sub(1).and_then(|b| flat.get(b)))
                    .filter(|old| integer(old, &aliases))
                    .and_then(|_| ident(flat.get(i + 1))),
                _ => None,
            };
            if let Some(alias) = renamed.filter(|a| !integer(a, &aliases)) {
                aliases.push(alias);
            }
        }
        if aliases.len() == known {
            return aliases;
        }
    }
}

fn walk(tokens: TokenStream, in_use: bool, aliases: &[String], refused: &mut Vec<Refusal>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    // Inside a `use` item, `as` renames; anywhere else it casts.
    let mut in_use = in_use;
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        let before = i.checked_sub(1).and_then(|b| tokens.get(b));
        match token {
            TokenTree::Group(group) => {
                let attribute = group.delimiter() == Delimiter::Bracket
                    && (punct(before, '#')
                        || (punct(before, '!')
                            && punct(i.checked_sub(2).and_then(|b| tokens.get(b)), '#')));
                if attribute && is_doc_comment(group) {
                    continue;
                }
                // `#[path = ".."]` on a module reads any file as the module.
                if attribute {
                    let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                    if ident(inner.first()).as_deref() == Some("path") && punct(inner.get(1), '=') {
                        refuse(
                            refused,
                            token,
                            "#[path]",
                            &Rule { why: "reads any file as a module", help: OUTSIDE },
                        );
                    }
                }
                // A `use` tree's braces (`use a::{b as c}`) are still the `use`; a body is not.
                walk(group.stream(), in_use && punct(before, ':'), aliases, refused);
            }
            TokenTree::Ident(_) => {
                let name = ident(Some(token)).unwrap_or_default();
                let name = name.as_str();
                let call = matches!(next, Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                let empty_call = matches!(next, Some(TokenTree::Group(g))
                    if g.delimiter() == Delimiter::Parenthesis && g.stream().is_empty());
                if let Some((_, rule)) = MACROS.iter().find(|(m, _)| *m == name) {
                    if punct(next, '!') {
                        refuse(refused, token, &format!("{name}!"), rule);
                    } else {
                        refuse_name(refused, token, name, rule);
                    }
                } else if let Some((_, rule)) = NAMES.iter().find(|(n, _)| *n == name) {
                    refuse_name(refused, token, name, rule);
                } else if name == "mod" && ident(next).is_some() && punct(tokens.get(i + 2), ';') {
                    refuse(
                        refused,
                        token,
                        "mod NAME;",
                        &Rule { why: "reads another file as a module", help: OUTSIDE },
                    );
                } else if name == "use" && !punct(next, '<') {
                    in_use = true;
                } else if name == "as" && !in_use {
                    let target = cast_target(&tokens, i + 1).unwrap_or_default();
                    let t = target.as_str();
                    if INTEGERS.contains(&t)
                        || aliases.iter().any(|a| a == t)
                        || matches!(t, "_" | "<" | "$" | "Self")
                    {
                        refuse(refused, token, &format!("as {t}"), &CAST);
                    }
                } else if name == "id" && empty_call {
                    // `tokio::task::id()`, `handle.id()`; a field `job.id` is data.
                    refuse(refused, token, "id()", &TASK_ID);
                } else if name == "Id" {
                    refuse(refused, token, "Id", &TASK_ID);
                } else if name == "waker" && call {
                    refuse(refused, token, "waker()", &WAKER);
                } else if name == "raw" && matches!(ident(next).as_deref(), Some("const" | "mut")) {
                    refuse(refused, token, "&raw", &ADDRESS);
                }
            }
            TokenTree::Punct(p) => {
                if p.as_char() == ';' {
                    in_use = false;
                }
                // `*const T`, `*mut T`: a raw pointer, which a reference coerces to.
                if p.as_char() == '*' && matches!(ident(next).as_deref(), Some("const" | "mut")) {
                    let what = format!("*{}", ident(next).unwrap_or_default());
                    refuse(refused, token, &what, &ADDRESS);
                }
            }
            TokenTree::Literal(literal) => {
                if prints_an_address(&literal.to_string()) {
                    refuse(
                        refused,
                        token,
                        "{:p}",
                        &Rule {
                            why: "prints an address (a format string's `{:p}`)",
                            help: BEHAVIOUR,
                        },
                    );
                }
            }
        }
    }
}

/// Whether a literal, as written, holds a format placeholder of type `p` (`{:p}`, `{0:#p}`,
/// `{x:>20p}`); `{{:p}}` is the text `{:p}`, not a placeholder.
fn prints_an_address(literal: &str) -> bool {
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let placeholder: String = chars.by_ref().take_while(|&c| c != '}').collect();
                if placeholder
                    .split_once(':')
                    .is_some_and(|(_, spec)| spec.trim_end().ends_with('p'))
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn refuse(refused: &mut Vec<Refusal>, token: &TokenTree, what: &str, rule: &Rule) {
    refused.push(refusal(token, what, rule));
}

/// As [`refuse`], for a name refused wherever it appears.
fn refuse_name(refused: &mut Vec<Refusal>, token: &TokenTree, name: &str, rule: &Rule) {
    refused.push(Refusal { anywhere: true, ..refusal(token, name, rule) });
}

fn refusal(token: &TokenTree, what: &str, rule: &Rule) -> Refusal {
    let start = token.span().start();
    Refusal {
        line: start.line,
        column: start.column + 1,
        what: what.into(),
        why: rule.why,
        help: rule.help,
        anywhere: false,
    }
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
    fn a_name_refused_anywhere_says_so_and_a_macro_call_does_not() {
        let test = "kata_support::hidden_test! { fn t() { let env = 1; let _ = env!(\"K\"); } }";
        let refused: Vec<(String, bool)> =
            scan(test).into_iter().map(|r| (r.what, r.anywhere)).collect();
        assert_eq!(refused, [("env".to_owned(), true), ("env!".to_owned(), false)]);
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

    /// One representative of each way to learn how a version was compiled in safe code.
    #[test]
    fn sizes_addresses_types_and_task_ids_are_refused_each_by_its_kind() {
        let cases: &[(&str, &str, &str)] = &[
            ("let r = std::slice::from_ref(&f).as_ptr_range();", "as_ptr_range", "address"),
            ("let n = std::mem::offset_of!(P<F>, 1);", "offset_of!", "compiled"),
            ("let big = v.try_reserve(usize::MAX / 2 / 260).is_err();", "try_reserve", "size"),
            ("let p = &f as *const F;", "*const", "address"),
            ("let p = &raw const f;", "&raw", "address"),
            ("let a = b.addr();", "addr", "address"),
            ("let p = Box::into_raw(b);", "into_raw", "address"),
            ("let n = Queues::claim as usize;", "as usize", "`as` cast"),
            ("let n: u64 = f as _;", "as _", "`as` cast"),
            ("type W = std::primitive::u16;", "primitive", "`as` casts"),
            (
                "#[global_allocator] static A: Counting = Counting;",
                "global_allocator",
                "allocations",
            ),
            ("let t = std::any::TypeId::of::<u8>();", "TypeId", "compiled"),
            (
                "let n = format!(\"{:?}\", std::marker::PhantomData::<F>);",
                "PhantomData",
                "compiled",
            ),
            ("let id = tokio::spawn(async {}).id();", "id()", "task id"),
            ("let id = tokio::task::try_id();", "try_id", "task id"),
            ("let d = format!(\"{:?}\", cx.waker());", "waker()", "waker"),
            ("let s = format!(concat!(\"{:\", \"p}\"), &f);", "concat!", "format string"),
            ("let s = format!(\"{0:#p}\", &f);", "{:p}", "address"),
        ];
        for (line, what, why) in cases {
            let test = format!("kata_support::hidden_test! {{ fn t() {{ {line} }} }}\n");
            let refused = scan(&test);
            assert_eq!(refused.len(), 1, "{line}: {refused:?}");
            assert_eq!(refused[0].what, *what, "{line}");
            assert!(refused[0].why.contains(why), "{line}: {}", refused[0].why);
            assert!(!refused[0].help.is_empty());
        }
    }

    #[test]
    fn an_alias_of_an_integer_type_is_still_a_cast_and_renames_are_not() {
        let test = "use std::sync::atomic::{AtomicU64 as Counter, Ordering};\n\
                    type Word = u32;\ntype Big = Word;\n\
                    kata_support::hidden_test! { fn t() { let n = f as Big; let x = 1.5 as f64; } }\n";
        assert_eq!(whats(test), ["as Big"]);
    }

    #[test]
    fn comments_and_escaped_braces_are_not_code() {
        let test = "//! Why not `{:p}`: an address tells nothing about cancellation.\n\
                    /// Does not print `{:p}`, `size_of` or `as usize`.\n\
                    fn judge() -> String { format!(\"{{:p}} {:?} {x:>8}\", 1, x = 2) }\n\
                    // std::fs::read(\"src/lib.rs\")\n\
                    kata_support::hidden_test! { fn t() { let job = J { id: 1 }; let _ = job.id; } }\n";
        assert_eq!(whats(test), Vec::<String>::new());
        // A doc attribute that is not a plain string is code.
        let test = "#[doc = include_str!(\"../src/lib.rs\")]\nkata_support::hidden_test! {}\n";
        assert_eq!(whats(test), ["include_str!"]);
    }

    #[test]
    fn a_test_outside_the_harness_is_told_how_to_declare_it() {
        assert_eq!(whats("#[test]\nfn t() {}\n"), ["no `hidden_test!`"]);
    }
}
