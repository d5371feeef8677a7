//! The private workspace the hidden tests are built in.
//!
//! The grader never builds a learner's crate as the learner declared it. For every kata it writes
//! two packages of its own under `<target>/grader/<set>/`: a library built from a staged copy of the
//! learner's `src/` (`staged/<set>/src/<package>/`, see `stage`; their `Cargo.toml` and any `build.rs` are
//! never read), and a test package holding a copy of the hidden tests, which imports that library
//! under the kata's slug. Dependencies are copied from the course's `[workspace.dependencies]`, so
//! tokio resolves to the same features as in the course workspace and is compiled once.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use toml::{Table, Value};

use crate::course::Course;
use crate::explain;
use crate::stage;

/// One library to build and test: a kata's sources from one tree, or one decoy.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Index of the kata in the course.
    pub kata: usize,
    /// What the reports call it: the kata name, or `kata/decoy` for a decoy.
    pub label: String,
    /// The library root the learner (or solution, or decoy) wrote.
    pub lib_rs: PathBuf,
    /// What paths are shown relative to: the course root, or the private copy of a submission's
    /// sources that `grader grade` builds from.
    pub root: PathBuf,
    /// The test file built against the library instead of the kata's hidden tests: a learner's
    /// test in a write-the-test kata (`crate::wtt`). It is kata code, built with `unsafe` forbidden.
    pub tests: Option<PathBuf>,
    /// The one hidden test the unit is built with (`grader verify` builds a decoy with the test
    /// that last rejected it, see `crate::decoy::Record`): the others are type-checked, never
    /// compiled to code, and the executable lists this test alone. `None`: every test.
    pub focus: Option<String>,
}

impl Unit {
    /// The test file this unit is built and run with: [`Unit::tests`], else the hidden tests.
    pub fn test_source(&self, course: &Course) -> PathBuf {
        self.tests.clone().unwrap_or_else(|| course.hidden_tests(&course.katas[self.kata]))
    }

    /// `lib_rs` as the learner knows it: relative to [`Unit::root`] when below it.
    pub fn shown(&self) -> &Path {
        self.lib_rs.strip_prefix(&self.root).unwrap_or(&self.lib_rs)
    }

    /// A cargo package name unique within the set.
    pub fn package(&self) -> String {
        self.label.replace(['_', '/'], "-").to_lowercase()
    }
}

/// The target directory the grader builds in: `CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(course: &Course) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { course.root.join(dir) }
        }
        _ => course.root.join("target"),
    }
}

/// Where the grader keeps its generated workspaces and state.
pub fn grader_dir(course: &Course) -> PathBuf {
    let target = target_dir(course);
    let mut base = target.join("grader");
    // A target directory shared between courses keeps each course's state apart.
    if target != course.root.join("target") {
        let hash = stage::hash_bytes(course.root.as_os_str().as_encoded_bytes());
        base = base.join(format!("course-{}", &hash[..16]));
    }
    match &course.draft {
        Some(draft) => base.join(format!("draft-{draft}")),
        None => base,
    }
}

/// The hidden tests with `hidden_test!` told to build `test` alone (its `focus NAME;` form): the
/// first line that opens the macro (`hidden_test! {` or `kata_support::hidden_test! {`, unindented)
/// gains the focus. A file without such a line, or without the test, is left to list every test or
/// to fail its build; `verify` then builds the unit whole.
fn focused(hidden: &str, test: &str) -> String {
    let mut done = false;
    let mut out = String::with_capacity(hidden.len() + test.len() + 8);
    for line in hidden.split_inclusive('\n') {
        let opens = line.trim_end().strip_suffix('{').filter(|head| {
            let head = head.trim_end();
            head == "hidden_test!" || head == "kata_support::hidden_test!"
        });
        match opens {
            Some(head) if !done => {
                out.push_str(&format!("{head}{{ focus {test};\n"));
                done = true;
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A unit as the build sees it: staged sources and a copy of its hidden tests.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The staged `src/` directory the library is built from.
    pub src: PathBuf,
    /// The staged `lib.rs`.
    pub lib_rs: PathBuf,
    /// SHA-256 of the staged sources (`stage::read`).
    pub hash: String,
    /// The copy of the hidden tests the test package is built from.
    pub hidden: PathBuf,
}

/// Why a unit was left out of the build.
#[derive(Debug, Clone)]
pub enum Excluded {
    /// The learner's sources cannot be staged: a compile error, worth 0 points.
    Sources(String),
    /// The course is incomplete (no hidden tests): the grader cannot grade it.
    Course(String),
}

/// The generated workspace and, per unit (in order), what went into it.
#[derive(Debug)]
pub struct Generated {
    pub dir: PathBuf,
    pub units: Vec<Result<Staged, Excluded>>,
    /// Files every unit's build trusts: manifests, the lock file, the sources of path
    /// dependencies (the test-support crate and its harness).
    pub trusted: Vec<PathBuf>,
    /// The directories of the path dependencies the build reads (the test-support crate).
    pub path_dependencies: Vec<PathBuf>,
}

/// Where a set's sources and hidden tests are staged: `<target>/grader/staged/<set>`.
pub fn staged_dir(course: &Course, set: &str) -> PathBuf {
    grader_dir(course).join("staged").join(set)
}

/// Takes the set's lock, held (until the file is dropped) from staging to the end of the build, so
/// that two graders at once neither stage over each other nor build the other's sources.
pub fn lock(course: &Course, set: &str) -> anyhow::Result<std::fs::File> {
    let dir = grader_dir(course);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let path = dir.join(format!("{set}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    file.lock().with_context(|| format!("failed to lock {}", path.display()))?;
    Ok(file)
}

/// Stages every unit and writes the workspace for those that could be staged under
/// `<target>/grader/<set>`.
pub fn generate(course: &Course, set: &str, units: &[Unit]) -> anyhow::Result<Generated> {
    let dir = grader_dir(course).join(set);
    let root_manifest = read_root_manifest(&course.root)?;
    let deps = |names: &[String]| -> anyhow::Result<Table> {
        let mut table = Table::new();
        for name in names {
            table.insert(name.clone(), workspace_dependency(&root_manifest, &course.root, name)?);
        }
        Ok(table)
    };
    let kata_deps = deps(&course.build.kata_dependencies)?;
    let mut test_deps = kata_deps.clone();
    test_deps.extend(deps(&course.build.test_dependencies)?);
    // The explanation build's library calls the support crate's `trace` (see `explain`).
    let mut lib_deps = kata_deps.clone();
    if set == explain::SET {
        let support = workspace_dependency(&root_manifest, &course.root, "kata-support")?;
        lib_deps.insert("kata-support".into(), support);
    }

    // Cargo names outputs by a hash of the package's name and its path relative to the workspace,
    // the same for every set and every course sharing a target directory: without a salt, a
    // `check --solutions` (or another course) could overwrite the test executable an exercise's
    // run is about to start, or be taken as fresh for it.
    let salt = &stage::hash_bytes(dir.as_os_str().as_encoded_bytes())[..12];
    let mut members = Vec::new();
    let mut staged_units = Vec::new();
    for unit in units {
        let kata = &course.katas[unit.kata];
        let package = unit.package();
        let hidden_src = unit.test_source(course);
        let Ok(hidden_text) = std::fs::read(&hidden_src) else {
            staged_units.push(Err(Excluded::Course(format!(
                "{} is missing; restore it (git checkout -- {0}) or run `grader check` in a \
                 complete course",
                hidden_src.display()
            ))));
            continue;
        };
        let mut sources = match stage::read(&unit.lib_rs, unit.shown()) {
            Ok(sources) => sources,
            Err(rejected) => {
                staged_units.push(Err(Excluded::Sources(rejected.to_string())));
                continue;
            }
        };
        if set == explain::SET && !explain_sources(&mut sources) {
            staged_units.push(Err(Excluded::Sources("src/lib.rs does not parse".into())));
            continue;
        }
        // Outside the generated workspace: cargo fingerprints a source inside the workspace by
        // its relative path, which would be the same for every set (a solution's build would be
        // taken as fresh for the exercise).
        let staged = staged_dir(course, set);
        let src = staged.join("src").join(&package);
        stage::write(&sources, &src)?;
        let hidden = staged.join("hidden").join(format!("{package}.rs"));
        let test_dir = dir.join("tests").join(&package);
        let hidden_text = String::from_utf8_lossy(&hidden_text);
        let hidden_text = match &unit.focus {
            Some(test) => focused(&hidden_text, test),
            None => hidden_text.into_owned(),
        };
        write_if_changed(&hidden, &hidden_text)?;
        let lib_rs = src.join("lib.rs");
        let lib_dir = dir.join("katas").join(&package);
        let lib = toml_table([
            ("package", package_table(&format!("kata-{package}-{salt}"))),
            (
                "lib",
                toml_table([
                    ("name", Value::from(kata.slug())),
                    ("path", path_value(&lib_rs)),
                    ("test", Value::from(false)),
                    ("doctest", Value::from(false)),
                ]),
            ),
            ("dependencies", Value::Table(lib_deps.clone())),
            ("lints", toml_table([("rust", toml_table([("unsafe_code", Value::from("forbid"))]))])),
        ]);
        write_if_changed(&lib_dir.join("Cargo.toml"), &toml::to_string(&lib)?)?;

        let mut deps = test_deps.clone();
        // A learner's test (write-the-test) must not learn where in a version's source its tasks
        // are spawned: the explorer's messages then name no source location.
        if unit.tests.is_some()
            && let Some(Value::Table(support)) = deps.get_mut("kata-support")
        {
            support.insert(
                "features".into(),
                Value::Array(vec![Value::from("hide-source-locations")]),
            );
        }
        deps.insert(
            kata.slug().to_owned(),
            toml_table([
                ("path", path_value(&lib_dir)),
                ("package", Value::from(format!("kata-{package}-{salt}"))),
            ]),
        );
        let mut test = toml_table([
            ("package", package_table(&format!("hidden-{package}-{salt}"))),
            (
                "test",
                Value::Array(vec![toml_table([
                    ("name", Value::from(format!("hidden-{package}"))),
                    ("path", path_value(&hidden)),
                    // `hidden_test!` writes `main`: the test is chosen on stdin, not in argv.
                    ("harness", Value::from(false)),
                ])]),
            ),
            ("dependencies", Value::Table(deps)),
        ]);
        // A learner's test is kata code: no `unsafe`, so no life before `main` (see
        // `run::list_tests`) and no reading of memory it was not given.
        if unit.tests.is_some()
            && let Value::Table(table) = &mut test
        {
            table.insert(
                "lints".into(),
                toml_table([("rust", toml_table([("unsafe_code", Value::from("forbid"))]))]),
            );
        }
        write_if_changed(&test_dir.join("Cargo.toml"), &toml::to_string(&test)?)?;
        members.push(Value::from(format!("tests/{package}")));
        staged_units.push(Ok(Staged { src, lib_rs, hash: sources.hash, hidden }));
    }

    let workspace = toml_table([
        ("resolver", Value::from("3")),
        ("members", Value::Array(members)),
        ("exclude", Value::Array(vec![Value::from("katas")])),
    ]);
    let mut top = Table::new();
    top.insert("workspace".into(), workspace);
    if let Some(profile) = root_manifest.get("profile") {
        top.insert("profile".into(), profile.clone());
    }
    write_if_changed(
        &dir.join("Cargo.toml"),
        &format!("# Generated by the grader.\n{}", toml::to_string(&top)?),
    )?;

    // Start from the course's lock file so the hidden tests get exactly the course's versions.
    let lock = dir.join("Cargo.lock");
    let course_lock = course.root.join("Cargo.lock");
    if !lock.exists() && course_lock.exists() {
        std::fs::copy(&course_lock, &lock)
            .with_context(|| format!("failed to copy {}", course_lock.display()))?;
    }
    let mut trusted = vec![
        course.root.join("Cargo.toml"),
        course.root.join("course.toml"),
        dir.join("Cargo.toml"),
        lock,
    ];
    trusted.retain(|f| f.is_file());
    let path_dependencies = path_dependencies(&test_deps);
    for dep in &path_dependencies {
        trusted.push(dep.join("Cargo.toml"));
        collect_files(&dep.join("src"), &mut trusted);
    }
    trusted.sort();
    Ok(Generated { dir, units: staged_units, trusted, path_dependencies })
}

/// Rewrites the staged `src/lib.rs` for the explanation build ([`explain::instrument`]); false
/// when it does not parse. The hash names the rewrite too, so a staged copy is rewritten when
/// the rewrite changes.
fn explain_sources(sources: &mut stage::Sources) -> bool {
    let Some((_, bytes)) = sources.files.iter_mut().find(|(path, _)| path.as_os_str() == "lib.rs")
    else {
        return false;
    };
    let Some(rewritten) = std::str::from_utf8(bytes).ok().and_then(explain::instrument) else {
        return false;
    };
    *bytes = rewritten.into_bytes();
    sources.hash = format!("{}-explain-{}", sources.hash, explain::VERSION);
    true
}

/// Every file a verdict depends on besides the learner's sources: the manifests, the lock file,
/// every kata's hidden tests and the sources of the path dependencies (the test-support crate).
/// Missing files are left out (a missing hidden test is reported when the kata is graded).
pub fn trusted_inputs(course: &Course) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = ["Cargo.toml", "course.toml", "Cargo.lock"]
        .into_iter()
        .map(|f| course.root.join(f))
        .collect();
    files.extend(course.katas.iter().map(|kata| course.hidden_tests(kata)));
    files.extend(support_files(course)?);
    files.retain(|f| f.is_file());
    Ok(files)
}

/// The directories of the path dependencies in a dependency table, and of theirs (a path relative
/// to the manifest that names it), each once: the build reads them all.
pub fn path_dependencies(deps: &Table) -> Vec<PathBuf> {
    let paths = |table: &Table, base: &Path| -> Vec<PathBuf> {
        table.values().filter_map(|dep| dep.get("path")?.as_str().map(|p| base.join(p))).collect()
    };
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut queue = paths(deps, Path::new(""));
    while let Some(dir) = queue.pop() {
        // Named as reached (`grader/support/../explorer`), so that paths shown relative to the
        // course stay the same wherever it is; compared as the directory it is.
        let same = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if seen.contains(&same) {
            continue;
        }
        seen.push(same);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .ok()
            .and_then(|text| text.parse::<Table>().ok());
        if let Some(Value::Table(own)) = manifest.as_ref().and_then(|m| m.get("dependencies")) {
            queue.extend(paths(own, &dir));
        }
        found.push(dir);
    }
    found.sort();
    found
}

/// The manifests and sources of the course's path dependencies (the test-support crate and the
/// explorer it re-exports), in path order: trusted inputs of every verdict.
pub fn support_files(course: &Course) -> anyhow::Result<Vec<PathBuf>> {
    let root_manifest = read_root_manifest(&course.root)?;
    let mut deps = Table::new();
    for name in course.build.kata_dependencies.iter().chain(&course.build.test_dependencies) {
        deps.insert(name.clone(), workspace_dependency(&root_manifest, &course.root, name)?);
    }
    let mut files = Vec::new();
    for dep in path_dependencies(&deps) {
        files.push(dep.join("Cargo.toml"));
        let mut sources = Vec::new();
        collect_files(&dep.join("src"), &mut sources);
        sources.sort();
        files.extend(sources);
    }
    files.retain(|f| f.is_file());
    Ok(files)
}

/// Regular files below `dir`, not following links.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&entry.path(), out),
            Ok(t) if t.is_file() => out.push(entry.path()),
            _ => {}
        }
    }
}

fn read_root_manifest(root: &Path) -> anyhow::Result<Table> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    text.parse::<Table>().with_context(|| format!("failed to parse {}", path.display()))
}

/// `[workspace.dependencies.<name>]`, with a relative `path` made absolute.
fn workspace_dependency(manifest: &Table, root: &Path, name: &str) -> anyhow::Result<Value> {
    let dep = manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get(name))
        .ok_or_else(|| {
            anyhow!(
                "course.toml asks for dependency `{name}`, but Cargo.toml has no \
                 [workspace.dependencies] entry for it; add one"
            )
        })?;
    let mut dep = match dep {
        Value::String(version) => toml_table([("version", Value::from(version.as_str()))]),
        other => other.clone(),
    };
    if let Value::Table(table) = &mut dep
        && let Some(Value::String(path)) = table.get("path")
    {
        let absolute = root.join(path);
        table.insert("path".into(), path_value(&absolute));
    }
    Ok(dep)
}

fn package_table(name: &str) -> Value {
    toml_table([
        ("name", Value::from(name)),
        ("version", Value::from("0.0.0")),
        ("edition", Value::from("2024")),
        ("publish", Value::from(false)),
    ])
}

fn toml_table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn path_value(path: &Path) -> Value {
    Value::from(path.to_string_lossy().into_owned())
}

/// Rewrites a file only when its content changes, so cargo's fingerprints stay fresh.
pub fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    crate::state::write_atomic(path, content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_focused_copy_names_its_test_where_the_macro_opens_and_nowhere_else() {
        let hidden = "use a::b;\n\n// hidden_test! {\nkata_support::hidden_test! {\n    fn one() {}\n}\n\
                      hidden_test! {\n";
        assert_eq!(
            focused(hidden, "one"),
            "use a::b;\n\n// hidden_test! {\nkata_support::hidden_test! { focus one;\n    fn one() \
             {}\n}\nhidden_test! {\n"
        );
        assert_eq!(focused("hidden_test! {\n}\n", "t"), "hidden_test! { focus t;\n}\n");
        assert_eq!(focused("fn main() {}\n", "t"), "fn main() {}\n");
    }

    #[test]
    fn path_dependencies_of_path_dependencies_are_found_once() {
        let dir = tempfile::tempdir().unwrap();
        let crate_at = |name: &str, deps: &str| {
            let at = dir.path().join(name);
            std::fs::create_dir_all(&at).unwrap();
            std::fs::write(at.join("Cargo.toml"), format!("[dependencies]\n{deps}")).unwrap();
            at
        };
        let explorer = crate_at("explorer", "tokio = { workspace = true }\n");
        let support = crate_at("support", "explorer = { path = \"../explorer\" }\n");
        let other = crate_at("other", "explorer = { path = \"../explorer\", version = \"0.1\" }\n");
        let mut deps = Table::new();
        for (name, at) in [("support", &support), ("other", &other)] {
            deps.insert(name.into(), toml_table([("path", path_value(at))]));
        }
        deps.insert("tokio".into(), toml_table([("version", Value::from("1"))]));
        let found = path_dependencies(&deps);
        assert_eq!(found.len(), 3, "{found:?}");
        for at in [&explorer, &support, &other] {
            let at = std::fs::canonicalize(at).unwrap();
            assert!(found.iter().any(|f| std::fs::canonicalize(f).unwrap() == at), "{found:?}");
        }
    }
}
