//! `grader verify`: checks the kata contract (CONTRIBUTING.md) for maintainers.
//!
//! Static part: the files and sections every kata must have, the manifest entry, the decoys and
//! accepted alternatives (patches that apply to the exercise), and hidden tests free of wall-clock
//! sleeps and real sockets. Behaviour part, with the same grading machinery as `check`: every
//! exercise compiles without warnings, passes at least one hidden test and fails at least one;
//! every solution and alternative passes; every decoy compiles and is rejected; and, run `--repeat`
//! times from one build, every test of the solutions and alternatives gives the same outcome every
//! run, and every decoy is rejected on every run (its tests run until one fails; see
//! `grade::Runs::UntilRejected`).

mod wtt;

use std::path::Path;

use crate::cli::VerifyArgs;
use crate::course::{Course, Kata, KataKind, Tree};
use crate::decoy::{self, Kind};
use crate::exit;
use std::io::IsTerminal;

use crate::grade::{self, Options, Status, UnitResult};
use crate::progress::Progress;
use crate::run::Outcome;
use crate::workspace::{self, Unit};

const EXERCISE_SECTIONS: &[&str] =
    &["## The story", "## Your task", "## Further reading", "Cancellation source"];
const SOLUTION_SECTIONS: &[&str] =
    &["## The bug", "## The fix", "## Why it is now cancel safe", "## Acceptable alternatives"];
/// Things a deterministic hidden test never uses.
const NONDETERMINISTIC: &[&str] = &[
    "std::thread::sleep",
    "thread::sleep(",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "std::time::Instant",
    "SystemTime",
];

pub fn run(course: &Course, args: &VerifyArgs) -> anyhow::Result<u8> {
    let katas = course.select(&args.katas)?;
    if !course.root.join("solutions").is_dir() {
        return Err(crate::UsageError(
            "this copy of the course has no solutions (a student handout): `grader verify` is \
             for the course's maintainers; `grader check` checks your exercises"
                .into(),
        )
        .into());
    }
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut note = |kata: &Kata, problem: String| problems.push((kata.name.clone(), problem));

    check_manifest(course, &mut note);
    for kata in &katas {
        let found = match kata.kind {
            KataKind::Fix => check_files(course, kata)?,
            KataKind::WriteTheTest => wtt::check_files(course, kata)?,
        };
        for problem in found {
            note(kata, problem);
        }
    }
    // A write-the-test kata has no hidden tests, decoys or alternatives: its contract is `wtt`'s.
    let (all_katas, katas): (Vec<&Kata>, Vec<&Kata>) = (katas.clone(), katas);
    let (katas, test_katas): (Vec<&Kata>, Vec<&Kata>) =
        katas.into_iter().partition(|k| k.kind == KataKind::Fix);

    let options = Options {
        color: false,
        parallel: args.jobs.unwrap_or_else(Options::parallel_default),
        timeout: None,
        trusted: false,
        build_timeout: None,
        cache: false,
        gate: None,
        explain: false,
    };
    let index =
        |kata: &Kata| course.katas.iter().position(|k| k.name == kata.name).expect("selected kata");
    let tree_units = |tree: Tree| -> Vec<Unit> {
        katas
            .iter()
            .map(|k| Unit {
                kata: index(k),
                label: k.name.clone(),
                lib_rs: course.lib_rs(tree, k),
                root: course.root.clone(),
                tests: None,
                focus: None,
            })
            .collect()
    };
    let mut record = decoy::Record::read(course)?;
    let mut variants = |kind: Kind| -> anyhow::Result<Vec<Unit>> {
        let mut units = Vec::new();
        for kata in &katas {
            let (found, stray) = decoy::find(course, kata, kind)?;
            for problem in stray {
                note(kata, problem.to_string());
            }
            for decoy in found {
                let source = match decoy::apply(course, kata, &decoy) {
                    Ok(source) => source,
                    Err(problem) => {
                        note(kata, problem.to_string());
                        continue;
                    }
                };
                let lib_rs = decoy::applied_path(course, kata, &decoy);
                workspace::write_if_changed(&lib_rs, &source)?;
                units.push(Unit {
                    kata: index(kata),
                    label: format!("{}/{}", kata.name, decoy.name),
                    lib_rs,
                    root: course.root.clone(),
                    tests: None,
                    focus: match kind {
                        Kind::Decoy => record.test(kata, &decoy.name).map(str::to_owned),
                        Kind::Alternative | Kind::DecoyTest => None,
                    },
                });
            }
        }
        Ok(units)
    };
    let decoys = variants(Kind::Decoy)?;
    let alternatives = variants(Kind::Alternative)?;

    eprintln!(
        "verifying {} kata(s): exercises, solutions, {} decoys and {} alternatives{}...",
        all_katas.len(),
        decoys.len(),
        alternatives.len(),
        if test_katas.is_empty() {
            String::new()
        } else {
            format!(
                "; the skeleton and reference test of {} write-the-test kata(s) against every \
                 version, each decoy test against the versions it misjudges",
                test_katas.len()
            )
        }
    );
    let progress = Progress::new(true, std::io::stderr().is_terminal());
    // Where the time goes, for a maintainer whose CI is slow: wall seconds per set.
    let mut spent: Vec<(&str, std::time::Duration)> = Vec::new();
    let started = std::time::Instant::now();
    let rejected_tests = if test_katas.is_empty() {
        Vec::new()
    } else {
        wtt::check_behaviour(course, &test_katas, &options, args.repeat, &progress, &mut note)?
    };
    if !test_katas.is_empty() {
        spent.push(("write-the-test", started.elapsed()));
    }
    // Only write-the-test katas asked for: no fix kata to build.
    let fixing = !katas.is_empty();
    let started = std::time::Instant::now();
    let (exercises, _) = if fixing {
        grade::grade(
            course,
            Tree::Exercises.dir(),
            &tree_units(Tree::Exercises),
            &options,
            &progress,
        )?
    } else {
        Default::default()
    };
    let solution_units = tree_units(Tree::Solutions);
    if fixing {
        spent.push(("exercises", started.elapsed()));
    }
    let mut repeated = |set: &'static str, units: &[Unit], spent_on: &'static str| {
        if !fixing || units.is_empty() {
            return Ok(Default::default());
        }
        let started = std::time::Instant::now();
        // A decoy has only to be rejected every run: the tests that reject it are run again.
        let runs = if set == "decoys" {
            grade::Runs::UntilRejected(args.repeat)
        } else {
            grade::Runs::Every(args.repeat)
        };
        let graded = grade::grade_repeated(course, set, units, &options, runs, &progress);
        spent.push((spent_on, started.elapsed()));
        graded
    };
    let (solutions, flaky_solutions) =
        repeated(Tree::Solutions.dir(), &solution_units, "solutions")?;
    let (mut decoy_results, mut flaky_decoys) = repeated("decoys", &decoys, "decoys")?;
    // A decoy built with its recorded test alone that the test did not reject on every run (the
    // hidden tests changed, or the record is stale) is built again whole and judged on every test.
    let rejected = |result: &UnitResult| matches!(result.status, Status::Failed | Status::TimedOut);
    let whole: Vec<usize> = (0..decoy_results.len())
        .filter(|&i| {
            decoys[i].focus.is_some()
                && (!rejected(&decoy_results[i]) || flaky_decoys.iter().any(|t| t.unit == i))
        })
        .collect();
    let unrecorded = decoys.iter().filter(|u| u.focus.is_none()).count();
    let whole_units: Vec<Unit> =
        whole.iter().map(|&i| Unit { focus: None, ..decoys[i].clone() }).collect();
    let (whole_results, whole_flaky) =
        repeated("decoys", &whole_units, "decoys built again whole")?;
    flaky_decoys.retain(|t| !whole.contains(&t.unit));
    for (k, result) in whole_results.into_iter().enumerate() {
        decoy_results[whole[k]] = result;
    }
    flaky_decoys.extend(
        whole_flaky.into_iter().map(|t| grade::Nondeterministic { unit: whole[t.unit], ..t }),
    );
    // Written before the alternatives run, so that an interrupted run keeps what it learned.
    if args.record {
        for kata in &katas {
            let prefix = format!("{}/", kata.name);
            let tests = decoys.iter().zip(&decoy_results).filter_map(|(unit, result)| {
                let name = unit.label.strip_prefix(&prefix)?;
                rejecting_test(result).map(|test| (name.to_owned(), test.to_owned()))
            });
            record.set(kata, tests);
        }
        if record.write(course)? {
            eprintln!("recorded the test that rejects each decoy in {}", decoy::RECORD);
        }
    }

    let (alternative_results, flaky_alternatives) =
        repeated("alternatives", &alternatives, "alternatives")?;
    // A decoy rejected on every run, by one test on one run and by another on the next, has a
    // verdict that holds: the race is the decoy's own (a real thread, say). Named, not a problem.
    let (held, flaky_decoys): (Vec<_>, Vec<_>) =
        flaky_decoys.into_iter().partition(|test| test.verdict_held);
    for (kind, units, flaky) in [
        ("solution", &solution_units, flaky_solutions),
        ("decoy", &decoys, flaky_decoys),
        ("alternative", &alternatives, flaky_alternatives),
    ] {
        for test in flaky {
            let unit = &units[test.unit];
            let seen: Vec<&str> = test.outcomes.iter().map(|o| outcome_label(*o)).collect();
            if kind == "decoy" {
                note(
                    &course.katas[unit.kata],
                    format!(
                        "decoy {} passes every hidden test on some runs: `{}` is \
                         nondeterministic over {} runs of one build ({}), and no other test \
                         rejected it where it passed; hidden tests must give the same verdict \
                         every run",
                        unit.label,
                        test.test,
                        seen.len(),
                        seen.join(", ")
                    ),
                );
                continue;
            }
            note(
                &course.katas[unit.kata],
                format!(
                    "{kind} {}: hidden test `{}` is nondeterministic over {} runs of one build \
                     ({}); hidden tests must give the same verdict every run",
                    unit.label,
                    test.test,
                    seen.len(),
                    seen.join(", ")
                ),
            );
        }
    }

    for (kata, result) in katas.iter().zip(&exercises) {
        if let Some(problem) = exercise_problem(result) {
            note(kata, format!("exercise {problem}"));
        }
    }
    for (kata, result) in katas.iter().zip(&solutions) {
        if result.status != Status::Passed {
            note(
                kata,
                format!("solution {}: {}", result.status.label(), crate::report::reason(result)),
            );
        } else if !result.warnings.is_empty() {
            note(kata, format!("solution compiles with warnings:\n{}", result.warnings.join("\n")));
        }
    }
    for (unit, result) in decoys.iter().zip(&decoy_results) {
        let kata = &course.katas[unit.kata];
        match result.status {
            Status::Failed | Status::TimedOut => {}
            Status::Passed => note(
                kata,
                format!("decoy {} passes every hidden test; the tests must reject it", result.name),
            ),
            other => note(
                kata,
                format!(
                    "decoy {} must compile and fail, but {}: {}",
                    result.name,
                    other.label(),
                    crate::report::reason(result)
                ),
            ),
        }
    }

    for (unit, result) in alternatives.iter().zip(&alternative_results) {
        if result.status != Status::Passed {
            note(
                &course.katas[unit.kata],
                format!(
                    "alternative {} is a right fix, but {}: {}; the tests say more than the \
                     README promises, or the alternative is not right after all",
                    result.name,
                    result.status.label(),
                    crate::report::reason(result)
                ),
            );
        }
    }

    let slowest = exercises
        .iter()
        .chain(&solutions)
        .flat_map(|r| r.tests.iter().map(move |t| (t.duration_ms, &r.name, &t.name)))
        .max();
    for kata in &all_katas {
        let mine: Vec<_> = problems.iter().filter(|(k, _)| *k == kata.name).collect();
        let count = |units: &[Unit]| {
            units.iter().filter(|u| course.katas[u.kata].name == kata.name).count()
        };
        let tested = test_katas.iter().position(|k| k.name == kata.name);
        if let (true, Some(i)) = (mine.is_empty(), tested) {
            outln!(
                "ok    {} (skeleton rejected, reference test passes, {} decoy tests rejected)",
                kata.name,
                rejected_tests.get(i).copied().unwrap_or(0)
            );
        } else if mine.is_empty() {
            outln!(
                "ok    {} ({} decoys rejected, {} alternatives accepted)",
                kata.name,
                count(&decoys),
                count(&alternatives)
            );
        } else {
            outln!("FAIL  {}", kata.name);
            for (_, problem) in mine {
                outln!("{}", indent(problem));
            }
        }
    }
    if let Some((ms, kata, test)) = slowest {
        outln!("\nslowest hidden test: {kata} {test} ({ms} ms, wall clock incl. process start)");
    }
    // A decoy rejected by nothing but the per-test timeout costs the whole timeout on every run,
    // and its verdict hangs on the machine's speed: worth a test that fails it outright.
    let timed_out: Vec<&str> = decoy_results
        .iter()
        .filter(|r| {
            r.tests.iter().any(|t| t.status == Outcome::TimedOut)
                && !r.tests.iter().any(|t| t.status == Outcome::Failed)
        })
        .map(|r| r.name.as_str())
        .collect();
    if !held.is_empty() {
        let named: Vec<String> =
            held.iter().map(|t| format!("{} `{}`", decoys[t.unit].label, t.test)).collect();
        outln!(
            "decoys rejected on every run, but not always by the same tests, a race of the \
             decoy's own ({}): {}",
            named.len(),
            named.join(", ")
        );
    }
    if !timed_out.is_empty() {
        outln!(
            "decoys rejected only by the per-test timeout ({}): {}",
            timed_out.len(),
            timed_out.join(", ")
        );
    }
    // A test that finished but took over a third of its timeout may time out on a slower or
    // busier machine, and then its outcome changes between runs: worth making it cheaper before
    // it does. Not a problem in itself: the figure is the machine's as much as the test's.
    let mut near: Vec<String> = Vec::new();
    for (units, results) in [
        (&solution_units, &solutions),
        (&decoys, &decoy_results),
        (&alternatives, &alternative_results),
    ] {
        for (unit, result) in units.iter().zip(results.iter()) {
            let limit = grade::timeout(course, unit, &options).as_millis() as u64;
            for test in &result.tests {
                if test.status != Outcome::TimedOut && test.duration_ms * 3 > limit {
                    near.push(format!(
                        "{} `{}` ({:.1} s)",
                        unit.label,
                        test.name,
                        test.duration_ms as f64 / 1000.0
                    ));
                }
            }
        }
    }
    if !near.is_empty() {
        outln!(
            "tests that took over a third of the per-test timeout, and may time out on a slower \
             machine ({}): {}",
            near.len(),
            near.join(", ")
        );
    }
    if !decoys.is_empty() {
        let built_whole = unrecorded + whole.len();
        outln!(
            "decoys built with the test that rejected them last time: {} of {}{}",
            decoys.len() - built_whole,
            decoys.len(),
            if built_whole == 0 || args.record {
                String::new()
            } else {
                format!(
                    "; {built_whole} built whole, with no recorded test or one that no longer \
                     rejects them (`grader verify --record` saves the tests that reject them now)"
                )
            }
        );
    }
    if !spent.is_empty() {
        let sets: Vec<String> =
            spent.iter().map(|(set, took)| format!("{set} {:.0} s", took.as_secs_f64())).collect();
        outln!("time (build and {} run(s) of the tests): {}", args.repeat, sets.join(", "));
    }
    if problems.is_empty() {
        outln!("contract holds for {} kata(s)", all_katas.len());
        Ok(exit::SUCCESS)
    } else {
        outln!("{} problem(s) found", problems.len());
        Ok(exit::FAILED)
    }
}

/// The test that rejects a decoy: the first, in declaration order, that failed outright, else the
/// first that timed out. `None` for a decoy nothing rejected.
fn rejecting_test(result: &UnitResult) -> Option<&str> {
    if !matches!(result.status, Status::Failed | Status::TimedOut) {
        return None;
    }
    let first = |outcome| result.tests.iter().find(|t| t.status == outcome);
    first(Outcome::Failed).or_else(|| first(Outcome::TimedOut)).map(|t| t.name.as_str())
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timed out",
    }
}

fn exercise_problem(result: &UnitResult) -> Option<String> {
    let passed = result.tests.iter().filter(|t| t.status == Outcome::Passed).count();
    match result.status {
        Status::Failed if passed == 0 => Some(
            "fails every hidden test; it must work when nothing is cancelled (at least one test passes)"
                .into(),
        ),
        Status::Failed if !result.warnings.is_empty() => {
            Some(format!("compiles with warnings:\n{}", result.warnings.join("\n")))
        }
        Status::Failed => None,
        Status::Passed => Some(
            "passes every hidden test; as shipped it must fail (if you solved this kata, that is \
             your fix passing: `verify` and the project's own tests check the course as shipped, \
             for its maintainers; `grader check` is the learner's command)"
                .into(),
        ),
        other => Some(format!("{}: {}", other.label(), crate::report::reason(result))),
    }
}

fn check_manifest(course: &Course, note: &mut impl FnMut(&Kata, String)) {
    let mut last = 0;
    for kata in &course.katas {
        let valid_name = kata.name.split_once('_').is_some_and(|(n, slug)| {
            n.len() == 2
                && n.bytes().all(|b| b.is_ascii_digit())
                && !slug.is_empty()
                && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !valid_name {
            note(kata, "name must be `NN_slug` (two digits, lowercase snake_case)".into());
        }
        if kata.number() <= last {
            note(
                kata,
                format!(
                    "number {} does not follow {last}: katas are numbered in course order",
                    kata.number()
                ),
            );
        }
        last = kata.number();
        if kata.hints.len() < 3 {
            note(
                kata,
                format!(
                    "has {} hints; at least 3 progressive hints are required",
                    kata.hints.len()
                ),
            );
        }
        if kata.points == 0 {
            note(kata, "points must be above 0".into());
        }
        if kata.title.trim().is_empty() {
            note(kata, "title is empty".into());
        }
        if kata.kind == KataKind::Fix && kata.level == crate::course::Level::WriteTheTest {
            note(kata, "level `write-the-test` is for `kind = \"write-the-test\"` katas".into());
        }
    }
}

fn check_files(course: &Course, kata: &Kata) -> anyhow::Result<Vec<String>> {
    let mut problems = missing_files_and_sections(
        course,
        kata,
        &["Cargo.toml", "README.md", "src/lib.rs"],
        EXERCISE_SECTIONS,
        SOLUTION_SECTIONS,
    );
    for tree in [Tree::Exercises, Tree::Solutions] {
        let dir = course.kata_dir(tree, kata);
        let lib = read(&dir.join("src/lib.rs"));
        for name in async_fns_without_cancel_safety(&lib) {
            problems.push(format!(
                "{}: `pub async fn {name}` has no `# Cancel safety` doc section",
                rel(course, &dir.join("src/lib.rs"))
            ));
        }
    }
    let reading =
        course.readme_section(Tree::Exercises, kata, "Further reading").unwrap_or_default();
    if !reading.contains("https://docs.rs/") {
        problems.push(
            "the exercise README's `## Further reading` links no docs.rs page; link the tokio / \
             tokio-util items the kata relies on"
                .into(),
        );
    }
    if !read(&course.lib_rs(Tree::Exercises, kata)).contains("// TODO") {
        problems.push("the exercise's src/lib.rs has no `// TODO` where the learner works".into());
    }
    let hidden_path = course.hidden_tests(kata);
    let hidden = read(&hidden_path);
    if hidden.is_empty() {
        problems.push(format!("{} is missing", rel(course, &hidden_path)));
    } else if !hidden.contains("hidden_test!") {
        problems.push("hidden tests must be declared with `kata_support::hidden_test!`".into());
    }
    for pattern in NONDETERMINISTIC {
        if hidden.contains(pattern) {
            problems.push(format!(
                "{} uses `{pattern}`: hidden tests must use the paused clock and scripted I/O",
                rel(course, &hidden_path)
            ));
        }
    }
    let decoys = decoy::find(course, kata, Kind::Decoy)?.0.len();
    if decoys < 2 {
        problems
            .push(format!("has {decoys} decoy(s); at least 2 plausible wrong fixes are required"));
    }
    Ok(problems)
}

/// Names of `pub async fn`s whose doc comment lacks a `# Cancel safety` section.
fn async_fns_without_cancel_safety(source: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub async fn ") else {
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let documented = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("///") || l.starts_with("#[")
            })
            .any(|l| l.contains("# Cancel safety"));
        if !documented {
            missing.push(name);
        }
    }
    missing
}

/// What is missing from a kata's two crates: each of `files` (paths relative to the crate) that
/// is not a file, and each README section heading (`## ...`, matched as text) that the
/// exercise's or the solution's README lacks. One line per problem, paths relative to the course.
fn missing_files_and_sections(
    course: &Course,
    kata: &Kata,
    files: &[&str],
    exercise_sections: &[&str],
    solution_sections: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (tree, sections) in
        [(Tree::Exercises, exercise_sections), (Tree::Solutions, solution_sections)]
    {
        let dir = course.kata_dir(tree, kata);
        for file in files {
            if !dir.join(file).is_file() {
                problems.push(format!("{} is missing", rel(course, &dir.join(file))));
            }
        }
        let readme = read(&dir.join("README.md"));
        for section in sections {
            if !readme.contains(section) {
                problems.push(format!("{} lacks `{section}`", rel(course, &dir.join("README.md"))));
            }
        }
    }
    problems
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn rel(course: &Course, path: &Path) -> String {
    path.strip_prefix(&course.root).unwrap_or(path).display().to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_async_fns_without_a_cancel_safety_section() {
        let source = "/// Sends.\n///\n/// # Cancel safety\n///\n/// Safe.\npub async fn send() {}\n\n\
                      /// Receives.\n#[must_use]\npub async fn recv() {}\n";
        assert_eq!(async_fns_without_cancel_safety(source), ["recv"]);
    }
}
