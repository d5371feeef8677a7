//! The command line, declared with clap's derive API; doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Grade the async-Rust cancellation katas: run each kata's hidden tests and report progress.
///
/// Exit codes: 0 every checked kata passed; 1 some kata failed; 2 usage error; 3 infrastructure
/// error (cargo missing, a broken course, a full disk).
#[derive(Debug, Parser)]
#[command(name = "grader", version)]
pub struct Cli {
    /// The course root (the directory holding course.toml); found from the current directory if
    /// omitted.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// When to use colour: auto (a terminal without NO_COLOR), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Maintainers: read this manifest instead of `<root>/course.toml` (a draft of new katas).
    #[arg(long, global = true, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the current kata, then re-check on every save (needs a terminal).
    Watch(WatchArgs),
    /// Show the current kata: its story, task and the file to edit.
    Next,
    /// List every kata in order, with its level and your progress.
    List,
    /// Build and run the hidden tests of the named katas (default: all).
    Check(CheckArgs),
    /// Show the next hint for a kata.
    Hint(HintArgs),
    /// Restore a kata's starting code, keeping a backup of your file.
    Reset(ResetArgs),
    /// Show a kata's solution and its explanation (once the kata passes, or with --force).
    Solution(SolutionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Teachers: write a student copy of the committed course to DIR: no solutions, decoys or
    /// maintainer files, a student README and a matching Cargo.lock.
    Handout(HandoutArgs),
    /// Teachers: grade a class's submissions (a roster, or directories), each in isolation, into
    /// one result file per student.
    #[command(long_about = GRADE_ABOUT)]
    Grade(GradeArgs),
    /// Teachers: combine students' result files into a CSV for an LMS, a Markdown summary and an
    /// HTML class dashboard.
    Gradebook(GradebookArgs),
    /// Maintainers: check the whole kata contract (every exercise fails, every solution passes,
    /// every decoy is rejected).
    Verify(VerifyArgs),
    /// Internal: runs one test process inside the sandbox's walls.
    #[command(hide = true)]
    SandboxExec(crate::sandbox::Args),
    /// Internal: run a build command behind the build's Landlock walls (see `build_sandbox`).
    #[command(hide = true)]
    BuildSandbox(BuildSandboxArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Look for saved files every second instead of waiting for the file system's events,
    /// which some containers do not send (automatic on NFS, SMB and 9p, as WSL 2's /mnt).
    #[arg(long)]
    pub poll: bool,
}

#[derive(Debug, Args)]
pub struct BuildSandboxArgs {
    /// Directories (or files) the build may read and execute.
    #[arg(long, value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// Directories the build may create and write files in, but not read.
    #[arg(long, value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// Directories the build may read and write.
    #[arg(long, value_name = "PATH")]
    pub read_write: Vec<PathBuf>,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Katas to check, by number (3, 03), slug or folder name.
    #[arg(value_name = "KATA")]
    pub katas: Vec<String>,

    /// Check the reference solutions instead of the exercises.
    #[arg(long)]
    pub solutions: bool,

    /// Give up on a build that finishes nothing for SECS seconds (default 120); only the
    /// runaway kata gets `compile timed out`.
    #[arg(long, value_name = "SECS", value_parser = seconds())]
    pub build_timeout: Option<u64>,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Also write a report to a file, as FORMAT=PATH (repeatable), e.g. `junit=report.xml`.
    #[arg(long = "report", value_name = "FORMAT=PATH", value_parser = parse_report)]
    pub reports: Vec<(Format, PathBuf)>,

    /// Append the Markdown job summary to this file (default with `--format github`:
    /// `$GITHUB_STEP_SUMMARY`).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,

    /// Per-test timeout in seconds (default: the kata's own, else 10).
    #[arg(long, value_name = "SECS", value_parser = seconds())]
    pub timeout: Option<u64>,

    /// Tests run at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Grade for the record: refuse to build or run kata code without the sandbox (a kernel
    /// without Landlock). Implied by `--format classroom` and by `GRADER_REQUIRE_SANDBOX=1`.
    #[arg(long)]
    pub trusted: bool,

    /// Build and run every kata, even one whose sources already have a verdict in the verdict
    /// cache (`<target>/grader/cache`).
    #[arg(long)]
    pub no_cache: bool,

    /// Do not show where a future was dropped: when a test fails at a cut, the grader builds
    /// `src/lib.rs` a second time to find the `.await`; this skips that build.
    #[arg(long)]
    pub no_explain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text.
    Human,
    /// The versioned JSON report (see README).
    Json,
    /// JUnit XML: a testsuite per kata, a testcase per hidden test.
    Junit,
    /// GitHub Actions annotations on the learner's files, then the readable report.
    Github,
    /// GitHub Classroom's autograding result JSON, scored per kata.
    Classroom,
}

/// A number of seconds of at least 1: a zero timeout would fail every test (issue 13).
fn seconds() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::<u64>::new().range(1..)
}

fn parse_report(value: &str) -> Result<(Format, PathBuf), String> {
    let (format, path) = value
        .split_once('=')
        .ok_or_else(|| format!("expected FORMAT=PATH (e.g. junit=report.xml), got `{value}`"))?;
    let format = Format::from_str(format, true).map_err(|_| {
        format!("unknown report format `{format}`; use human, json, junit, github or classroom")
    })?;
    if path.is_empty() {
        return Err("the report path is empty".into());
    }
    Ok((format, PathBuf::from(path)))
}

#[derive(Debug, Args)]
pub struct HintArgs {
    /// The kata, by number, slug or folder name.
    pub kata: String,

    /// Show every hint at once.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The kata to reset, by number, slug or folder name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub kata: Option<String>,

    /// Undo a reset: put back the latest backup of the kata's files (the file it replaces is
    /// backed up in turn).
    #[arg(long, conflicts_with = "all")]
    pub restore: bool,

    /// Reset every kata (asks first; `--yes` skips the question).
    #[arg(long)]
    pub all: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct SolutionArgs {
    /// The kata, by number, slug or folder name.
    pub kata: String,

    /// Show it even though the kata does not pass yet.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct HandoutArgs {
    /// Where to write the copy: a new or empty directory outside the course.
    pub dir: PathBuf,

    /// Copy the working tree, uncommitted changes included (default: the committed files at
    /// HEAD, refusing while exercise sources have uncommitted changes).
    #[arg(long)]
    pub allow_dirty: bool,

    /// Hand out even an exercise whose `src/lib.rs` is the reference solution's.
    #[arg(long)]
    pub allow_solved: bool,
}

const GRADE_ABOUT: &str = "\
Teachers: grade a class's submissions from this copy of the course (its hidden tests, support \
crate and grader), each in isolation, into one JSON result file per student in --out.

A roster is a CSV file with a header row naming the columns `student` and `source`, and \
optionally `commit`; other columns are ignored. A source is a directory, a local git repository \
or a git URL; a relative path is relative to the roster. A git source is cloned and graded at the \
pinned commit (any revision git knows), else at its default branch's head. A directory given as \
an argument is graded as it is, under its own name:

    student,source,commit
    alice,https://example.org/alice/katas.git,4f2a9c1
    bob,../submissions/bob,

Only `exercises/*/src` is taken from a submission, by the staging rules of `check` (regular \
files only; a symlink is a compile error), and built and run in the sandbox: grading refuses to \
run without it unless --allow-unsandboxed. A run can be interrupted and started again: a \
submission already graded at the same commit (a directory: with the same content) by the same \
course is not graded again. An unreachable source (a missing directory, a failed clone, an \
unknown commit) gets a result file saying so, and the others are graded.

A kata whose sources (this student's, another's, or the exercise as shipped) were graded before \
by the same grader and course is not built again: its verdict comes from the verdict cache in \
the target directory (--no-cache to build everything). --shard I/N grades one of N disjoint parts \
of the class, chosen by a hash of the student id, for parallel runners whose result directories \
`grader gradebook` then merges.

Exit codes: 0 every submission is graded (in this run or an earlier one); 1 some submission \
could not be graded (unreachable, or the grader failed on it); 2 usage error (a malformed \
roster); 3 infrastructure error (no sandbox, an unwritable --out, a broken course, or the grader \
failed on every submission).";

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// Roster CSV files and submission directories.
    #[arg(required = true, value_name = "ROSTER_OR_DIR")]
    pub sources: Vec<PathBuf>,

    /// Where to write the result files (`<student>.json`), created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Submissions and tests at once, together (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Per-test timeout in seconds (default: the kata's own, else 10).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Give up on a build that finishes nothing for SECS seconds (default 120).
    #[arg(long, value_name = "SECS")]
    pub build_timeout: Option<u64>,

    /// Grade every submission again, even those already graded at the same commit.
    #[arg(long)]
    pub regrade: bool,

    /// Build and run every kata, even one whose sources (this student's or another's) already
    /// have a verdict in the verdict cache (`<target>/grader/cache`).
    #[arg(long)]
    pub no_cache: bool,

    /// Grade only shard I of N (`--shard 2/4`), for parallel runners: a student is in shard
    /// 1 + (the first 8 bytes of the SHA-256 of the student id) mod N, whatever the roster's order
    /// or the other students, so the N shards together grade everyone exactly once.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::shard::Shard>,

    /// Grade even where the sandbox cannot be raised (a kernel without Landlock): kata code then
    /// runs with your permissions. Not for grades you will publish.
    #[arg(long)]
    pub allow_unsandboxed: bool,
}

#[derive(Debug, Args)]
pub struct GradebookArgs {
    /// Result files, one per student (`grader check --format json`, or `grader grade`'s), or
    /// directories of them (every `*.json` inside). A student is named by the file's `student`
    /// field, else by its stem (`alice.json`), or its directory for `report.json`.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// Write everything into DIR: gradebook.csv, gradebook-katas.csv (a row per student and
    /// kata), gradebook.md and gradebook.html (the class dashboard).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Where to write the CSV for an LMS: a row per student, points per kata, total, percentage
    /// (default: gradebook.csv, in --out when given).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Where to write the Markdown summary (default: gradebook.md in --out, else standard
    /// output).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,

    /// Where to write the HTML class dashboard (default: gradebook.html in --out, else none).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// The deadline, in RFC 3339 (`2025-06-01T23:59:00+02:00`): a commit dated after it is
    /// flagged late. Commit dates are set by the student's clock: a hint, not proof.
    #[arg(long, value_name = "RFC3339", value_parser = parse_deadline)]
    pub deadline: Option<chrono::DateTime<chrono::FixedOffset>>,
}

fn parse_deadline(value: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(value).map_err(|e| {
        format!("`{value}` is not an RFC 3339 date and time ({e}); e.g. 2025-06-01T23:59:00+02:00")
    })
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Katas to verify (default: all).
    #[arg(value_name = "KATA")]
    pub katas: Vec<String>,

    /// Run the hidden tests N times from one build: every test of each solution and alternative,
    /// and each test that rejects a decoy (a decoy's tests run until one fails); a test whose
    /// outcome differs between runs is a problem. A test that timed out is not run again: it
    /// failed, and each repeat would cost the whole timeout.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub repeat: usize,

    /// Tests run at once (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Save, for every decoy of the katas verified, the hidden test that rejected it, in
    /// `grader/decoys/rejected-by.toml`. Later runs build each decoy with that test alone (a
    /// third of the build time) and build it whole only where that test no longer rejects it.
    #[arg(long)]
    pub record: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
