//! The build's wall: cargo and rustc run under Landlock, so the learner's crate cannot read what
//! it should not at compile time (`#[path = ".../solutions/..."]`, `include!` of a path built
//! from `CARGO_MANIFEST_DIR`).
//!
//! Landlock restricts the calling thread and what it starts, and the workspace forbids `unsafe`,
//! so the grader re-executes itself as `grader build-sandbox --read .. -- cargo ..`: a fresh,
//! single-threaded process that restricts itself and then `exec`s cargo. Readable: the system and
//! toolchain directories, `CARGO_HOME`, the set's generated workspace and staged sources, the
//! trusted path dependencies (and the manifests cargo reads above them), and the profile's
//! output directory. Not readable: the course (its `solutions/` and the learners' own `src/`),
//! other sets' staged sources, the rest of the machine. The run side has a wall of its own
//! (`sandbox-exec`, branch sandbox-run); this one is self-contained on purpose.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};

use crate::cli::BuildSandboxArgs;
use crate::course::Course;
use crate::workspace::{self, Generated};

/// The Landlock ABI the rules are written for (Linux 6.10); older kernels enforce what they can.
const ABI_TARGET: ABI = ABI::V5;

/// Set (to anything) to make a build without Landlock an error instead of a warning: for trusted
/// grading, where an unwalled build is not acceptable.
pub const REQUIRE_ENV: &str = "GRADER_REQUIRE_SANDBOX";

/// What the build may touch.
#[derive(Debug, Default, Clone)]
pub struct Walls {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// The build's `TMPDIR`, inside `read_write`.
    pub tmp: PathBuf,
    /// Directories of `read_write` made before the build if missing: a Landlock rule needs an
    /// open file descriptor, so a path that does not exist yet gets no rule, and cargo would then
    /// be refused the directory it creates there (the target's `debug/` in a new target
    /// directory, the `TMPDIR`).
    pub make: Vec<PathBuf>,
}

/// The walls for building `set` of `course`.
pub fn walls(course: &Course, set: &str, generated: &Generated) -> Walls {
    let target = workspace::target_dir(course);
    let grader = workspace::grader_dir(course);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env_dir = |var: &str, default: &str| {
        std::env::var_os(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    let mut read: Vec<PathBuf> =
        ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/proc", "/sys"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
    read.extend(env_dir("RUSTUP_HOME", ".rustup"));
    // The toolchain cargo runs from (its sysroot), wherever rustup or a distribution put it.
    if let Ok(cargo) = crate::compile::cargo_path().and_then(|c| Ok(c.canonicalize()?)) {
        read.extend(cargo.parent().and_then(Path::parent).map(Path::to_path_buf));
    }
    read.push(generated.dir.clone());
    read.push(workspace::staged_dir(course, set));
    for dep in &generated.path_dependencies {
        read.push(dep.clone());
        // Cargo looks for the dependency's workspace in the manifests above it.
        read.extend(dep.ancestors().skip(1).map(|a| a.join("Cargo.toml")).filter(|m| m.is_file()));
    }
    let mut read_write = vec![target.join("debug"), PathBuf::from("/dev")];
    read_write.extend(env_dir("CARGO_HOME", ".cargo"));
    let tmp = grader.join("tmp");
    read_write.push(tmp.clone());
    // Cargo keeps a cache of rustc's version in the target directory's top level.
    read_write.push(target.join(".rustc_info.json"));
    let make = vec![target.join("debug"), tmp.clone()];
    Walls { read, write: vec![target], read_write, tmp, make }
}

/// `cargo` wrapped in the re-executed grader that walls it in.
pub fn command(walls: &Walls, cargo: &Path) -> anyhow::Result<Command> {
    for dir in &walls.make {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    // Not `current_exe()`: its path is gone once `cargo build` replaces the grader while it runs
    // (`/proc/self/exe` still names the running executable then).
    let mut command = Command::new("/proc/self/exe");
    command.arg("build-sandbox");
    for (flag, paths) in
        [("--read", &walls.read), ("--write", &walls.write), ("--read-write", &walls.read_write)]
    {
        for path in paths.iter().filter(|p| p.exists()) {
            command.arg(flag).arg(path);
        }
    }
    command.arg("--").arg(cargo).env("TMPDIR", &walls.tmp);
    Ok(command)
}

/// `grader build-sandbox`: restricts this process, then becomes the command.
pub fn exec(args: &BuildSandboxArgs) -> anyhow::Result<u8> {
    let status = restrict(args).context("failed to set up the build's Landlock sandbox")?;
    // Partly enforced (a kernel older than the rules' ABI) still walls reading in.
    if status == RulesetStatus::NotEnforced {
        let message = "the build is not sandboxed (no Landlock on this kernel): kata code can \
                       read files outside its own sources at compile time";
        if std::env::var_os(REQUIRE_ENV).is_some() {
            anyhow::bail!("{message}; {REQUIRE_ENV} is set, so the grader will not build");
        }
        eprintln!("warning: {message}");
    }
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let err = Command::new(program).args(rest).exec();
    Err(err).with_context(|| format!("failed to run {}", program.to_string_lossy()))
}

fn restrict(args: &BuildSandboxArgs) -> anyhow::Result<RulesetStatus> {
    let all = AccessFs::from_all(ABI_TARGET);
    let read = AccessFs::from_read(ABI_TARGET);
    let mut ruleset = Ruleset::default().handle_access(all)?.create()?;
    for (paths, access) in [(&args.read, read), (&args.write, all & !read), (&args.read_write, all)]
    {
        for path in paths {
            let fd = PathFd::new(path)?;
            // A file takes only the rights that apply to files.
            let access =
                if path.is_dir() { access } else { access & AccessFs::from_file(ABI_TARGET) };
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    Ok(ruleset.restrict_self()?.ruleset)
}
