//! # Kata 30 solution: the thumbnailer that kills the workers it no longer wants
//!
//! A video site makes the poster frame of every upload with a worker process: `ffmpeg` decodes the
//! video, seeks to the fifth second, and writes that frame as a PNG to its standard output. A
//! [`Thumbnailer`] runs at most [`WORKERS`] of them at once (one per CPU core it may use), reads
//! the PNG from the worker's stdout, and waits for the worker to exit.
//!
//! A [`process::Child`], like tokio's, is not killed when it is dropped unless its `Command` asked
//! for it. The exercise did not ask, so a request dropped while its worker ran (a timeout, a
//! client gone) gave its slot back and left the worker decoding. Here the worker is started with
//! `kill_on_drop(true)`: whoever drops the request's future, wherever and whenever, drops the
//! `Child` with it, and its `Drop` sends the worker `SIGKILL` there and then, before the slot is
//! given back.
//!
//! The [`process`] module is a small process API modelled on `tokio::process`, with the same names
//! and the same documented behaviour, on top of an [`process::Os`] that the tests replace with a
//! fake one. Read `README.md` for the whole story.

use std::fmt;
use std::io;

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::process::{ExitStatus, Launcher};

pub mod process {
    //! Processes, modelled on `tokio::process` (same names, same behaviour), on top of an [`Os`].
    //!
    //! - [`Command::kill_on_drop`] is `false` unless set: a [`Child`] dropped before it was reaped
    //!   leaves its process running, as tokio's does ("Caveats" in the `tokio::process` docs).
    //! - With `kill_on_drop(true)`, dropping the `Child` sends the process `SIGKILL` at once, in
    //!   `Drop` (synchronous: no runtime needed), and leaves it to be reaped later, best effort: it
    //!   may stay a zombie for a while.
    //! - [`Child::start_kill`] sends `SIGKILL` and returns; [`Child::kill`] is `async`: it sends
    //!   `SIGKILL`, then waits for the process to be reaped.
    //! - [`Child::id`] is `None` once the child was reaped: its pid may already belong to another
    //!   process.
    //!
    //! Standard output is always piped to the parent ([`Child::stdout`]).

    use std::fmt;
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};

    /// The system calls the process API is built on. The tests provide a fake one.
    pub trait Os: Send + Sync + 'static {
        /// Starts `program` with `args`, its standard output piped to the parent (`fork` and
        /// `exec`). Returns the new process's pid and the read end of its stdout.
        fn spawn(
            &self,
            program: &str,
            args: &[String],
        ) -> io::Result<(u32, Box<dyn AsyncRead + Send + Unpin>)>;

        /// Waits until the process `pid` exits, and reaps it (`waitpid`): from then on, `pid` is
        /// free and the system may give it to a new process. Cancel safe: a wait dropped before
        /// it completes has reaped nothing.
        fn wait(&self, pid: u32) -> Pin<Box<dyn Future<Output = io::Result<ExitStatus>> + Send>>;

        /// Reaps the process `pid` if it has exited (`waitpid` with `WNOHANG`), without waiting.
        fn try_wait(&self, pid: u32) -> io::Result<Option<ExitStatus>>;

        /// Sends `SIGKILL` to whatever process has the pid `pid` now (`kill(2)`). Synchronous; the
        /// killed process stays a zombie until it is reaped.
        fn kill(&self, pid: u32) -> io::Result<()>;

        /// The parent dropped its handle of `pid` before reaping it: the system reaps it once it
        /// has exited, on a best-effort basis (tokio's orphan queue).
        fn orphan(&self, pid: u32);
    }

    /// How a process ended: the code it exited with, or none if a signal killed it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitStatus {
        code: Option<i32>,
    }

    impl ExitStatus {
        /// A process that exited with `code`.
        pub fn exited(code: i32) -> Self {
            ExitStatus { code: Some(code) }
        }

        /// A process that a signal (`SIGKILL`) killed.
        pub fn killed() -> Self {
            ExitStatus { code: None }
        }

        /// The exit code, or `None` if a signal killed the process.
        pub fn code(&self) -> Option<i32> {
            self.code
        }

        /// Whether the process exited with code 0.
        pub fn success(&self) -> bool {
            self.code == Some(0)
        }
    }

    impl fmt::Display for ExitStatus {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.code {
                Some(code) => write!(f, "exit status: {code}"),
                None => write!(f, "signal: 9 (SIGKILL)"),
            }
        }
    }

    /// Starts processes on an [`Os`]; what `tokio::process::Command::new` does on the real one.
    /// Clones share the system.
    #[derive(Clone)]
    pub struct Launcher {
        os: Arc<dyn Os>,
    }

    impl Launcher {
        /// A launcher on `os`.
        pub fn new(os: impl Os) -> Self {
            Launcher { os: Arc::new(os) }
        }

        /// A command that runs `program`, like `tokio::process::Command::new(program)`.
        pub fn command(&self, program: &str) -> Command {
            Command {
                os: Arc::clone(&self.os),
                program: program.to_owned(),
                args: Vec::new(),
                kill_on_drop: false,
            }
        }

        /// Sends `SIGKILL` to the process that has the pid `pid` now, like
        /// `nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL)`. Once a process has been
        /// reaped, its pid may belong to another process.
        pub fn kill(&self, pid: u32) -> io::Result<()> {
            self.os.kill(pid)
        }
    }

    impl fmt::Debug for Launcher {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Launcher")
        }
    }

    /// A process to start: `tokio::process::Command`.
    pub struct Command {
        os: Arc<dyn Os>,
        program: String,
        args: Vec<String>,
        kill_on_drop: bool,
    }

    impl Command {
        /// Adds an argument.
        pub fn arg(&mut self, arg: impl AsRef<str>) -> &mut Command {
            self.args.push(arg.as_ref().to_owned());
            self
        }

        /// Whether to kill the process (`SIGKILL`) when its [`Child`] is dropped before it was
        /// reaped. `false` by default, as in tokio and the standard library.
        pub fn kill_on_drop(&mut self, kill_on_drop: bool) -> &mut Command {
            self.kill_on_drop = kill_on_drop;
            self
        }

        /// Starts the process.
        ///
        /// # Errors
        ///
        /// What the system refused.
        pub fn spawn(&mut self) -> io::Result<Child> {
            let (pid, stdout) = self.os.spawn(&self.program, &self.args)?;
            Ok(Child {
                os: Arc::clone(&self.os),
                pid,
                status: None,
                kill_on_drop: self.kill_on_drop,
                stdout: Some(ChildStdout { pipe: stdout }),
            })
        }
    }

    /// A running process: `tokio::process::Child`. Dropping it does not kill the process unless
    /// its command set [`Command::kill_on_drop`].
    pub struct Child {
        os: Arc<dyn Os>,
        pid: u32,
        /// Set once the process was reaped.
        status: Option<ExitStatus>,
        kill_on_drop: bool,
        /// The read end of the process's standard output.
        pub stdout: Option<ChildStdout>,
    }

    impl Child {
        /// The process's pid while it has not been reaped; `None` after, since the pid may then
        /// belong to another process.
        pub fn id(&self) -> Option<u32> {
            self.status.is_none().then_some(self.pid)
        }

        /// Sends `SIGKILL`, and does not wait for the process to exit. On a child already reaped,
        /// does nothing.
        ///
        /// # Errors
        ///
        /// What the system refused.
        pub fn start_kill(&mut self) -> io::Result<()> {
            if self.status.is_none() {
                self.os.kill(self.pid)?;
                // Killed: there is nothing left for `kill_on_drop` to do.
                self.kill_on_drop = false;
            }
            Ok(())
        }

        /// Sends `SIGKILL`, then waits for the process to exit and reaps it.
        ///
        /// # Errors
        ///
        /// What the system refused.
        ///
        /// # Cancel safety
        ///
        /// The signal is sent at the first poll; dropped after it, the process is dead and not yet
        /// reaped.
        pub async fn kill(&mut self) -> io::Result<()> {
            self.start_kill()?;
            self.wait().await?;
            Ok(())
        }

        /// Waits for the process to exit, reaps it, and returns its status (the same status on
        /// every later call).
        ///
        /// # Errors
        ///
        /// What the system refused.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: dropped before it completes, it has reaped nothing.
        pub async fn wait(&mut self) -> io::Result<ExitStatus> {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let status = self.os.wait(self.pid).await?;
            self.status = Some(status);
            Ok(status)
        }

        /// Reaps the process if it has exited, without waiting.
        ///
        /// # Errors
        ///
        /// What the system refused.
        pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
            if self.status.is_none() {
                self.status = self.os.try_wait(self.pid)?;
            }
            Ok(self.status)
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if self.status.is_some() {
                return;
            }
            if self.kill_on_drop {
                let _ = self.os.kill(self.pid);
            }
            // Not reaped: the system reaps it once it exits, when it gets round to it.
            self.os.orphan(self.pid);
        }
    }

    impl fmt::Debug for Child {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Child")
                .field("pid", &self.pid)
                .field("status", &self.status)
                .field("kill_on_drop", &self.kill_on_drop)
                .finish_non_exhaustive()
        }
    }

    /// The read end of a child's standard output: `tokio::process::ChildStdout`. It reaches end
    /// of file once the process closed its stdout (or died).
    pub struct ChildStdout {
        pipe: Box<dyn AsyncRead + Send + Unpin>,
    }

    impl AsyncRead for ChildStdout {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.pipe).poll_read(cx, buf)
        }
    }

    impl fmt::Debug for ChildStdout {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ChildStdout")
        }
    }
}

/// How many workers may run at once: one per CPU core the thumbnailer may use.
pub const WORKERS: usize = 2;

/// Why no thumbnail was made.
#[derive(Debug)]
pub enum ThumbnailError {
    /// The worker could not be started.
    Spawn(io::Error),
    /// Reading the worker's output, or waiting for it, failed.
    Io(io::Error),
    /// The worker exited with an error: the video is broken, or not a video.
    Failed { video: String, status: ExitStatus },
}

impl fmt::Display for ThumbnailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThumbnailError::Spawn(e) => write!(f, "failed to start ffmpeg: {e}"),
            ThumbnailError::Io(e) => write!(f, "failed to talk to ffmpeg: {e}"),
            ThumbnailError::Failed { video, status } => {
                write!(f, "ffmpeg failed on `{video}` ({status})")
            }
        }
    }
}

impl std::error::Error for ThumbnailError {}

/// Makes poster frames with `ffmpeg` workers, at most [`WORKERS`] at once.
#[derive(Debug)]
pub struct Thumbnailer {
    launcher: Launcher,
    /// One permit per worker that may run.
    slots: Semaphore,
}

impl Thumbnailer {
    /// A thumbnailer that starts its workers with `launcher`.
    pub fn new(launcher: Launcher) -> Self {
        Thumbnailer { launcher, slots: Semaphore::new(WORKERS) }
    }

    /// How many more workers may start now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Makes the poster frame of `video`: waits for a free slot, runs an `ffmpeg` worker, and
    /// returns the PNG it wrote to its standard output.
    ///
    /// # Errors
    ///
    /// [`ThumbnailError`]: the worker did not start, or failed.
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for a slot, nothing is lost. Dropped once its worker runs (a
    /// timeout, a client gone, a runtime shutting down), its worker is sent `SIGKILL` at once, in
    /// the `Child`'s `Drop`, and then its slot is given back; the dead worker is reaped later.
    pub async fn thumbnail(&self, video: &str) -> Result<Vec<u8>, ThumbnailError> {
        let _slot = self.slots.acquire().await.expect("the slots are never closed");
        // `kill_on_drop(true)`: if this future is dropped before the worker was reaped, the
        // `Child` is dropped with it and sends the worker `SIGKILL`, synchronously, in any
        // runtime or none. `child` is declared after `_slot`, so it is dropped first: the worker
        // is dead before its slot goes to the next request.
        let mut child = self
            .launcher
            .command("ffmpeg")
            .arg("-loglevel")
            .arg("error")
            .arg("-ss")
            .arg("5")
            .arg("-i")
            .arg(video)
            .arg("-frames:v")
            .arg("1")
            .arg("-f")
            .arg("image2pipe")
            .arg("-c:v")
            .arg("png")
            .arg("pipe:1")
            .kill_on_drop(true)
            .spawn()
            .map_err(ThumbnailError::Spawn)?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut png = Vec::new();
        stdout.read_to_end(&mut png).await.map_err(ThumbnailError::Io)?;
        let status = child.wait().await.map_err(ThumbnailError::Io)?;
        if !status.success() {
            return Err(ThumbnailError::Failed { video: video.to_owned(), status });
        }
        Ok(png)
    }
}
