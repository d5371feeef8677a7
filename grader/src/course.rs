//! The course: the manifest (`course.toml`), where each kata's files live, and naming katas.
//!
//! A kata is named on the command line by number (`3`, `03`), slug (`inflight_gauge`) or folder
//! name (`01_inflight_gauge`); anything else gets a did-you-mean.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::UsageError;

/// The manifest format this grader reads.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest file at the course root.
pub const MANIFEST: &str = "course.toml";

/// The kata difficulty levels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
    /// After the fix katas: the learner writes the cancellation test (`Kind::WriteTheTest`).
    WriteTheTest,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Beginner => "beginner",
            Level::Intermediate => "intermediate",
            Level::Advanced => "advanced",
            Level::WriteTheTest => "write-the-test",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format_version: u32,
    build: BuildSection,
    #[serde(rename = "kata", default)]
    katas: Vec<Kata>,
}

/// Which workspace dependencies kata crates and hidden tests get.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    pub kata_dependencies: Vec<String>,
    pub test_dependencies: Vec<String>,
}

/// What the learner does in a kata: fix a function (the default, every manifest before write-the-test
/// katas), or write the cancellation test for a function they are given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KataKind {
    /// The learner edits `src/lib.rs`; hidden tests grade it.
    #[default]
    Fix,
    /// The learner writes `tests/cancel.rs`; it is run against every variant of the function
    /// (`crate::wtt`).
    WriteTheTest,
}

impl KataKind {
    /// Whether this is a fix kata (for serde's `skip_serializing_if`).
    pub fn is_fix(&self) -> bool {
        *self == KataKind::Fix
    }
}

/// One kata as the manifest describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kata {
    /// Folder name, `NN_slug`.
    pub name: String,
    pub title: String,
    pub level: Level,
    pub points: u32,
    pub hints: Vec<String>,
    /// Per-test timeout override, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// `fix` (default) or `write-the-test`.
    #[serde(default)]
    pub kind: KataKind,
    /// A write-the-test kata's shipped function: its bug in one line, shown to the learner in
    /// place of its source. Required for, and only allowed on, a write-the-test kata.
    #[serde(default)]
    pub bug: Option<String>,
}

impl Kata {
    /// The number before the first underscore (`01_x` is 1).
    pub fn number(&self) -> u32 {
        self.name.split('_').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// The name without its number: also the crate name the hidden tests import.
    pub fn slug(&self) -> &str {
        self.name.split_once('_').map_or(&self.name, |(_, slug)| slug)
    }
}

/// Which copy of the katas to build: the learner's or the reference solutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    Exercises,
    Solutions,
}

impl Tree {
    pub fn dir(self) -> &'static str {
        match self {
            Tree::Exercises => "exercises",
            Tree::Solutions => "solutions",
        }
    }
}

/// A loaded course rooted at a directory.
#[derive(Debug, Clone)]
pub struct Course {
    pub root: PathBuf,
    /// The manifest's name when it is not `course.toml`.
    pub draft: Option<String>,
    pub build: BuildSection,
    pub katas: Vec<Kata>,
}

impl Course {
    /// Finds the course root at or above `start` (the first directory holding `course.toml`).
    pub fn discover(start: &Path) -> anyhow::Result<Course> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            if d.join(MANIFEST).is_file() {
                return Course::load(d);
            }
            dir = d.parent();
        }
        bail!(
            "no {MANIFEST} in {} or any parent directory; run the grader inside the course \
             repository, or pass --root",
            start.display()
        )
    }

    /// Loads the course at `root`.
    pub fn load(root: &Path) -> anyhow::Result<Course> {
        Course::load_manifest(&root.join(MANIFEST), Some(root))
    }

    /// Loads the course described by the manifest at `path`. The root is `root` if given, else
    /// the nearest directory at or above the manifest's that holds the workspace's Cargo.toml
    /// (so a draft in `drafts/` belongs to the course around it).
    pub fn load_manifest(path: &Path, root: Option<&Path>) -> anyhow::Result<Course> {
        let path = std::path::absolute(path)
            .with_context(|| format!("failed to resolve {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        let root = match root {
            Some(root) => root,
            None => dir.ancestors().find(|d| d.join("Cargo.toml").is_file()).unwrap_or(dir),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("failed to parse {}", path.display()))?;
        if manifest.format_version != FORMAT_VERSION {
            bail!(
                "{} has format_version {}, but this grader reads version {FORMAT_VERSION}; \
                 update the grader (git pull) or the manifest",
                path.display(),
                manifest.format_version
            );
        }
        for kata in &manifest.katas {
            validate_kind(kata).with_context(|| format!("{} is not valid", path.display()))?;
        }
        let root =
            root.canonicalize().with_context(|| format!("failed to resolve {}", root.display()))?;
        // A draft manifest gets its own generated workspaces and state.
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let draft = stem.filter(|s| s != "course");
        Ok(Course { root, draft, build: manifest.build, katas: manifest.katas })
    }

    pub fn kata_dir(&self, tree: Tree, kata: &Kata) -> PathBuf {
        self.root.join(tree.dir()).join(&kata.name)
    }

    /// The learner's file (or the solution's).
    pub fn lib_rs(&self, tree: Tree, kata: &Kata) -> PathBuf {
        self.kata_dir(tree, kata).join("src").join("lib.rs")
    }

    /// A `## Heading` section of a kata's README, without the heading.
    pub fn readme_section(&self, tree: Tree, kata: &Kata, heading: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.kata_dir(tree, kata).join("README.md")).ok()?;
        // A checkout with CRLF line endings (git's autocrlf on Windows) reads the same.
        let text = text.replace("\r\n", "\n");
        let start = text.find(&format!("## {heading}\n"))?;
        let body = &text[start..].split_once('\n')?.1;
        let end = body.find("\n## ").unwrap_or(body.len());
        Some(body[..end].trim().to_owned())
    }

    /// A write-the-test kata's test file in a tree: the learner's (`exercises/NN/tests/cancel.rs`)
    /// or the reference test (`solutions/NN/tests/cancel.rs`).
    pub fn test_rs(&self, tree: Tree, kata: &Kata) -> PathBuf {
        self.kata_dir(tree, kata).join("tests").join(crate::wtt::TEST_FILE)
    }

    /// The file the learner works in: `src/lib.rs`, or a write-the-test kata's test.
    pub fn learner_file(&self, kata: &Kata) -> PathBuf {
        match kata.kind {
            KataKind::Fix => self.lib_rs(Tree::Exercises, kata),
            KataKind::WriteTheTest => self.test_rs(Tree::Exercises, kata),
        }
    }

    pub fn hidden_tests(&self, kata: &Kata) -> PathBuf {
        self.root.join("grader").join("hidden").join(format!("{}.rs", kata.name))
    }

    /// `grader/<folder>/<kata>`: the kata's decoys (`decoys`) or accepted alternatives
    /// (`alternatives`).
    pub fn variant_dir(&self, folder: &str, kata: &Kata) -> PathBuf {
        self.root.join("grader").join(folder).join(&kata.name)
    }

    /// The files in one of a kata's variant folders, sorted by name (`decoy::find` sorts them out).
    pub fn variants(&self, folder: &str, kata: &Kata) -> anyhow::Result<Vec<PathBuf>> {
        let dir = self.variant_dir(folder, kata);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut decoys = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("failed to read {}", dir.display()))?
        {
            decoys.push(entry?.path());
        }
        decoys.sort();
        Ok(decoys)
    }

    /// Resolves names given on the command line, in course order; no names means every kata.
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<&Kata>> {
        if names.is_empty() {
            return Ok(self.katas.iter().collect());
        }
        let mut chosen = Vec::new();
        for name in names {
            let kata = self.find(name)?;
            if !chosen.iter().any(|k: &&Kata| k.name == kata.name) {
                chosen.push(kata);
            }
        }
        chosen.sort_by_key(|k| self.position(k));
        Ok(chosen)
    }

    fn position(&self, kata: &Kata) -> usize {
        self.katas.iter().position(|k| k.name == kata.name).unwrap_or(usize::MAX)
    }

    /// Finds one kata by number, slug or folder name.
    pub fn find(&self, name: &str) -> anyhow::Result<&Kata> {
        let wanted = name.trim().trim_end_matches('/');
        let wanted = wanted.rsplit('/').next().unwrap_or(wanted);
        let number: Option<u32> = wanted.parse().ok();
        let found = self.katas.iter().find(|k| {
            k.name == wanted || k.slug() == wanted || number.is_some_and(|n| n == k.number())
        });
        if let Some(kata) = found {
            return Ok(kata);
        }
        let best = self
            .katas
            .iter()
            .flat_map(|k| [k.name.as_str(), k.slug()])
            .map(|candidate| (strsim::jaro_winkler(wanted, candidate), candidate))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, candidate)) => Err(UsageError(format!(
                "no kata named `{wanted}`; did you mean `{candidate}`? run `{}`",
                crate::invoked::command("list")
            ))
            .into()),
            None => Err(UsageError(format!(
                "no kata named `{wanted}`; run `{}` to see every kata",
                crate::invoked::command("list")
            ))
            .into()),
        }
    }

    /// Katas per level, for progress lines.
    pub fn by_level(&self) -> BTreeMap<Level, Vec<&Kata>> {
        let mut levels: BTreeMap<Level, Vec<&Kata>> = BTreeMap::new();
        for kata in &self.katas {
            levels.entry(kata.level).or_default().push(kata);
        }
        levels
    }
}

/// The fields that go with a kata's kind: a write-the-test kata names its shipped bug, a fix kata
/// has no such line.
fn validate_kind(kata: &Kata) -> anyhow::Result<()> {
    match (kata.kind, &kata.bug) {
        (KataKind::WriteTheTest, None) => bail!(
            "kata `{}` is `kind = \"write-the-test\"` but has no `bug`: describe the shipped \
             function's bug in one line (it is shown to the learner instead of its source)",
            kata.name
        ),
        (KataKind::WriteTheTest, Some(bug)) if bug.trim().is_empty() || bug.contains('\n') => {
            bail!("kata `{}`: `bug` must be one non-empty line", kata.name)
        }
        (KataKind::Fix, Some(_)) => bail!(
            "kata `{}` has a `bug` line, which only a `kind = \"write-the-test\"` kata takes; \
             add the kind or remove the line",
            kata.name
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kata(name: &str) -> Kata {
        Kata {
            name: name.into(),
            title: String::new(),
            level: Level::Beginner,
            points: 10,
            hints: vec![],
            timeout_secs: None,
            kind: KataKind::Fix,
            bug: None,
        }
    }

    fn course() -> Course {
        Course {
            root: PathBuf::from("/course"),
            draft: None,
            build: BuildSection { kata_dependencies: vec![], test_dependencies: vec![] },
            katas: vec![kata("01_inflight_gauge"), kata("02_outbox_timeout"), kata("10_capstone")],
        }
    }

    #[test]
    fn finds_by_number_slug_and_folder() {
        let course = course();
        for name in
            ["2", "02", "outbox_timeout", "02_outbox_timeout", "exercises/02_outbox_timeout/"]
        {
            assert_eq!(course.find(name).unwrap().name, "02_outbox_timeout", "{name}");
        }
        assert_eq!(course.find("10").unwrap().name, "10_capstone");
    }

    #[test]
    fn suggests_the_closest_name() {
        let err = course().find("inflight_gage").unwrap_err().to_string();
        let list = crate::invoked::command("list");
        assert_eq!(
            err,
            format!("no kata named `inflight_gage`; did you mean `inflight_gauge`? run `{list}`")
        );
        let err = course().find("zzz").unwrap_err().to_string();
        assert!(err.contains(&format!("run `{list}`")), "{err}");
    }

    #[test]
    fn selection_follows_course_order_without_duplicates() {
        let course = course();
        let names: Vec<_> = course
            .select(&["10".into(), "1".into(), "inflight_gauge".into()])
            .unwrap()
            .into_iter()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, ["01_inflight_gauge", "10_capstone"]);
    }

    fn manifest(kata: &str) -> anyhow::Result<Course> {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "format_version = 1\n[build]\nkata_dependencies = []\ntest_dependencies = []\n\
             [[kata]]\nname = \"01_k\"\ntitle = \"t\"\nlevel = \"advanced\"\npoints = 1\n\
             hints = []\n{kata}"
        );
        std::fs::write(dir.path().join(MANIFEST), text).unwrap();
        Course::load(dir.path())
    }

    #[test]
    fn a_kata_is_a_fix_kata_unless_it_says_otherwise() {
        assert_eq!(manifest("").unwrap().katas[0].kind, KataKind::Fix);
        let course = manifest("kind = \"write-the-test\"\nbug = \"loses a job\"\n").unwrap();
        assert_eq!(course.katas[0].kind, KataKind::WriteTheTest);
        assert_eq!(course.katas[0].bug.as_deref(), Some("loses a job"));
    }

    #[test]
    fn a_kind_is_validated_with_a_clear_error() {
        let err = format!("{:#}", manifest("kind = \"write-a-test\"\n").unwrap_err());
        assert!(err.contains("unknown variant `write-a-test`"), "{err}");
        assert!(err.contains("expected `fix` or `write-the-test`"), "{err}");
        let err = format!("{:#}", manifest("kind = \"write-the-test\"\n").unwrap_err());
        assert!(err.contains("has no `bug`"), "{err}");
        let err = format!("{:#}", manifest("bug = \"x\"\n").unwrap_err());
        assert!(err.contains("only a `kind = \"write-the-test\"` kata takes"), "{err}");
    }
}
