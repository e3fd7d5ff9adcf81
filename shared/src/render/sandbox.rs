//! Rendering in supervised child processes, so that a hostile template is *stopped*, not
//! abandoned.
//!
//! A [`Sandbox`] keeps a small pool of rendering processes: the function's own binary started
//! again with [`CHILD_ARG`] (every binary that renders calls [`serve_if_child`] first thing in
//! `main`). A child runs with an OS memory limit (`RLIMIT_DATA`: its private writable memory)
//! and a cleared environment, reads one render job at a time from its stdin and answers on its
//! stdout. The parent waits for the answer at most the time budget:
//!
//! - on time, the child goes back to the pool and stays warm (fonts and the Typst library
//!   loaded), so a warm render costs what it costs in-process plus a pipe round trip;
//! - past the budget, the child is killed (`SIGKILL`) and reaped: its CPU stops and its memory
//!   is returned at once; the next render starts a fresh child;
//! - when an allocation fails at the memory limit, or the stack overflows, the child aborts
//!   and says why on stderr; a panic is reported by a hook before the child exits. Either way
//!   that one render fails and every other request and message goes on.
//!
//! A child that kept a lot of memory after a render (more than half its budget) is retired
//! rather than reused, so an idle service returns to its idle size.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    renderer_for, time_budget_exceeded, DocumentFormat, RenderInput, RenderLimits, TemplateError,
    TemplateErrorKind,
};

/// The first argument that makes a binary a rendering process (see [`serve_if_child`]).
pub const CHILD_ARG: &str = "__docbundle-render-sandbox";
/// The child's memory limit in bytes, passed by the parent.
const MEMORY_ENV: &str = "DOCBUNDLE_RENDER_MEMORY_BYTES";
/// Stack of the thread that runs the engines: Typst's layout recurses deeply.
pub const RENDER_STACK_BYTES: usize = 16 * 1024 * 1024;
/// Exit code of a child whose renderer panicked (after reporting it).
const PANIC_EXIT: i32 = 70;
/// Lines of a child's stderr kept to explain its death.
const STDERR_LINES: usize = 16;
/// Largest job a child accepts (a template and a seed, both already size-capped at the edge).
const MAX_JOB_BYTES: usize = 64 * 1024 * 1024;

/// How the pool is run.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The binary to start as a rendering process; it must call [`serve_if_child`].
    pub program: PathBuf,
    /// Most rendering processes alive at once (renders beyond that wait for one).
    pub processes: usize,
}

impl SandboxSettings {
    /// This very binary, with `processes` children at most.
    pub fn current_exe(processes: usize) -> std::io::Result<Self> {
        Ok(SandboxSettings {
            program: std::env::current_exe()?,
            processes,
        })
    }
}

/// A render job as it crosses the pipe.
#[derive(Serialize)]
struct JobRef<'a> {
    format: DocumentFormat,
    template: &'a str,
    data: &'a Value,
    seed_hash: &'a str,
    configuration_name: &'a str,
    configuration_version: i32,
    limits: &'a RenderLimits,
}

#[derive(Deserialize)]
struct Job {
    format: DocumentFormat,
    template: String,
    data: Value,
    seed_hash: String,
    configuration_name: String,
    configuration_version: i32,
    limits: RenderLimits,
}

/// A child's answer: the length of the bytes that follow, or why there are none. `fatal`
/// means the child is about to exit.
#[derive(Serialize, Deserialize)]
struct Reply {
    result: Result<u64, TemplateError>,
    fatal: bool,
}

// ------------------------------------------------------------------------------------ frames

fn write_frame(out: &mut impl Write, header: &[u8], body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(header)?;
    out.write_all(body)?;
    out.flush()
}

fn read_exact_vec(input: &mut impl Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(std::io::Error::other)?;
    input.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Reads one length-prefixed header; `None` at a clean end of stream.
fn read_header(input: &mut impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over {max}"),
        ));
    }
    read_exact_vec(input, len).map(Some)
}

// ------------------------------------------------------------------------------------- child

/// When this process was started as a rendering process, serves render jobs until its parent
/// closes the pipe, then exits; otherwise returns at once. Call it first thing in `main`,
/// before any runtime or logging starts.
pub fn serve_if_child() {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(CHILD_ARG)) {
        return;
    }
    std::process::exit(child::run());
}

mod child {
    use std::fs::File;
    use std::io::{BufReader, BufWriter};
    use std::os::fd::FromRawFd;
    use std::sync::OnceLock;

    use super::*;

    /// The protocol's output, reachable from the panic hook.
    static OUT: OnceLock<File> = OnceLock::new();

    pub(super) fn run() -> i32 {
        // SAFETY: plain system calls on this process, before any other thread exists.
        unsafe {
            // Die with the parent, even when busy in a runaway render.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() == 1 {
                return 0;
            }
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        }
        if let Some(bytes) = std::env::var(MEMORY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            // SAFETY: lowers this process's own limit.
            if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
                eprintln!(
                    "cannot set the memory limit: {}",
                    std::io::Error::last_os_error()
                );
                return 1;
            }
        }
        // The protocol gets a private copy of stdout; whatever else writes to stdout (an
        // engine's stray print) lands on stderr instead of corrupting a frame.
        // SAFETY: duplicating our own standard descriptors.
        let out = unsafe {
            let fd = libc::dup(1);
            if fd < 0 || libc::dup2(2, 1) < 0 {
                return 1;
            }
            File::from_raw_fd(fd)
        };
        let _ = OUT.set(out);
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => match info.payload().downcast_ref::<String>() {
                    Some(s) => s.clone(),
                    None => "unknown panic".to_owned(),
                },
            };
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("renderer panicked: {message}{location}");
            let reply = Reply {
                result: Err(TemplateError::new(
                    TemplateErrorKind::Crashed,
                    format!("the renderer failed: {message}"),
                )),
                fatal: true,
            };
            if let (Some(mut out), Ok(header)) = (OUT.get(), serde_json::to_vec(&reply)) {
                let _ = write_frame(&mut out, &header, &[]);
            }
            // SAFETY: ends this process without unwinding through the engine.
            unsafe { libc::_exit(PANIC_EXIT) }
        }));
        let worker = std::thread::Builder::new()
            .name("render".into())
            .stack_size(RENDER_STACK_BYTES)
            .spawn(serve);
        match worker.map(|handle| handle.join()) {
            Ok(Ok(code)) => code,
            _ => 1,
        }
    }

    fn serve() -> i32 {
        let Some(out) = OUT.get() else { return 1 };
        let mut out = BufWriter::new(out);
        let mut input = BufReader::new(std::io::stdin().lock());
        loop {
            let header = match read_header(&mut input, MAX_JOB_BYTES) {
                Ok(Some(header)) => header,
                Ok(None) => return 0,
                Err(e) => {
                    eprintln!("cannot read a render job: {e}");
                    return 1;
                }
            };
            let (reply, body) = match serde_json::from_slice::<Job>(&header) {
                Ok(job) => answer(&job),
                Err(e) => (
                    Reply {
                        result: Err(TemplateError::new(
                            TemplateErrorKind::Crashed,
                            format!("unreadable render job: {e}"),
                        )),
                        fatal: false,
                    },
                    Vec::new(),
                ),
            };
            let written = serde_json::to_vec(&reply)
                .map_err(std::io::Error::other)
                .and_then(|header| write_frame(&mut out, &header, &body));
            if let Err(e) = written {
                eprintln!("cannot answer a render job: {e}");
                return 1;
            }
            // Large outputs are not kept around between jobs.
            drop(body);
        }
    }

    fn answer(job: &Job) -> (Reply, Vec<u8>) {
        let input = RenderInput {
            data: &job.data,
            seed_hash: &job.seed_hash,
            configuration_name: &job.configuration_name,
            configuration_version: job.configuration_version,
        };
        let result = match renderer_for(job.format) {
            Some(engine) => engine.render(&job.template, &input, &job.limits),
            None => Err(super::super::unsupported(job.format)),
        };
        match result {
            Ok(bytes) => (
                Reply {
                    result: Ok(bytes.len() as u64),
                    fatal: false,
                },
                bytes,
            ),
            Err(e) => (
                Reply {
                    result: Err(e),
                    fatal: false,
                },
                Vec::new(),
            ),
        }
    }
}

// ------------------------------------------------------------------------------------ parent

/// A pool of rendering processes, started on first use.
#[derive(Debug)]
pub struct Sandbox {
    settings: SandboxSettings,
    slots: Mutex<Slots>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct Slots {
    idle: Vec<Worker>,
    /// Children alive, idle or busy.
    alive: usize,
}

type ReplyFrame = std::io::Result<(Reply, Vec<u8>)>;

/// One rendering process and the threads that read its pipes.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<ReplyFrame>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Killing an exited child is harmless; reaping it leaves no zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Self {
        Sandbox {
            settings: SandboxSettings {
                processes: settings.processes.max(1),
                ..settings
            },
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        }
    }

    /// Process ids of the rendering processes alive and idle (for tests and diagnostics).
    pub fn idle_pids(&self) -> Vec<u32> {
        lock(&self.slots)
            .idle
            .iter()
            .map(|w| w.child.id())
            .collect()
    }

    /// Renders one document in a rendering process. Blocking.
    pub(super) fn render(
        &self,
        format: DocumentFormat,
        template: &str,
        input: &RenderInput<'_>,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError> {
        let job = JobRef {
            format,
            template,
            data: input.data,
            seed_hash: input.seed_hash,
            configuration_name: input.configuration_name,
            configuration_version: input.configuration_version,
            limits,
        };
        let header = serde_json::to_vec(&job).map_err(|e| {
            TemplateError::new(
                TemplateErrorKind::Crashed,
                format!("cannot encode the render job: {e}"),
            )
        })?;
        let mut worker = self.checkout(limits)?;
        if write_frame(&mut worker.stdin, &header, &[]).is_err() {
            // It died while idle (killed from outside, say): one fresh child, once.
            self.retire(worker);
            worker = self.checkout(limits)?;
            if let Err(e) = write_frame(&mut worker.stdin, &header, &[]) {
                self.retire(worker);
                return Err(TemplateError::new(
                    TemplateErrorKind::Unavailable,
                    format!("cannot reach the rendering process: {e}"),
                ));
            }
        }
        match worker.replies.recv_timeout(limits.time_budget) {
            Ok(Ok((reply, bytes))) => {
                if reply.fatal || resident_bytes(worker.child.id()) > limits.max_memory_bytes / 2 {
                    self.retire(worker);
                } else {
                    self.checkin(worker);
                }
                reply.result.map(|_| bytes)
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                let error = self.died(worker, limits);
                tracing::warn!(error = %error.message, "rendering process ended");
                Err(error)
            }
            Err(RecvTimeoutError::Timeout) => {
                // Dropping the worker kills and reaps it: its CPU and memory are back now.
                self.retire(worker);
                tracing::warn!(
                    budget_ms = limits.time_budget.as_millis() as u64,
                    "rendering process killed at its time budget"
                );
                Err(time_budget_exceeded(limits))
            }
        }
    }

    /// An idle child, a new one if fewer than `processes` are alive, or the next one freed.
    fn checkout(&self, limits: &RenderLimits) -> Result<Worker, TemplateError> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(worker) = slots.idle.pop() {
                return Ok(worker);
            }
            if slots.alive < self.settings.processes {
                slots.alive += 1;
                drop(slots);
                return self.spawn(limits).inspect_err(|_| {
                    lock(&self.slots).alive -= 1;
                    self.freed.notify_one();
                });
            }
            slots = self
                .freed
                .wait(slots)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn checkin(&self, worker: Worker) {
        lock(&self.slots).idle.push(worker);
        self.freed.notify_one();
    }

    fn retire(&self, worker: Worker) {
        drop(worker);
        let mut slots = lock(&self.slots);
        slots.alive = slots.alive.saturating_sub(1);
        drop(slots);
        self.freed.notify_one();
    }

    /// Why a child ended mid-render, from its exit status and last words on stderr.
    fn died(&self, mut worker: Worker, limits: &RenderLimits) -> TemplateError {
        // Usually already dead; when it only broke the protocol, it is killed here.
        let _ = worker.child.kill();
        let status = worker.child.wait().ok();
        if let Some(reader) = worker.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail: Vec<String> = lock(&worker.stderr_tail).iter().cloned().collect();
        self.retire(worker);
        explain_death(status, &tail, limits)
    }

    fn spawn(&self, limits: &RenderLimits) -> Result<Worker, TemplateError> {
        let mut command = Command::new(&self.settings.program);
        command
            .arg(CHILD_ARG)
            // Tenant templates run here: no credentials or settings of ours are passed on.
            .env_clear()
            .env(MEMORY_ENV, limits.max_memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            TemplateError::new(
                TemplateErrorKind::Unavailable,
                format!(
                    "cannot start the rendering process {}: {e}",
                    self.settings.program.display()
                ),
            )
        })?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(TemplateError::new(
                        TemplateErrorKind::Crashed,
                        "the rendering process has no pipes",
                    ));
                }
            };
        let (send, replies) = mpsc::channel();
        let max_body = limits.max_output_bytes as u64;
        let spawned = std::thread::Builder::new()
            .name("render-replies".into())
            .spawn(move || read_replies(stdout, max_body, send));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let pid = child.id();
        let stderr_reader = std::thread::Builder::new()
            .name("render-stderr".into())
            .spawn(move || read_stderr(stderr, pid, &tail));
        match (spawned, stderr_reader) {
            (Ok(_), Ok(stderr_reader)) => Ok(Worker {
                child,
                stdin,
                replies,
                stderr_tail,
                stderr_reader: Some(stderr_reader),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(TemplateError::new(
                    TemplateErrorKind::Unavailable,
                    "cannot start the rendering process's reader threads",
                ))
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Idle workers are killed and reaped by their own drop.
        lock(&self.slots).idle.clear();
    }
}

/// Forwards a child's answers until its stdout closes; an over-long answer ends the child's
/// usefulness (the parent then kills it).
fn read_replies(stdout: ChildStdout, max_body: u64, send: mpsc::Sender<ReplyFrame>) {
    let mut input = BufReader::new(stdout);
    loop {
        let frame = read_reply(&mut input, max_body);
        let end = !matches!(frame, Ok(Some(_)));
        let message = match frame {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e),
        };
        if send.send(message).is_err() || end {
            return;
        }
    }
}

fn read_reply(input: &mut impl Read, max_body: u64) -> std::io::Result<Option<(Reply, Vec<u8>)>> {
    let Some(header) = read_header(input, 1024 * 1024)? else {
        return Ok(None);
    };
    let reply: Reply = serde_json::from_slice(&header)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let body = match reply.result {
        // The engines cap their output; a little slack covers formats measured after the fact.
        Ok(len) if len > max_body.saturating_mul(2).max(1024 * 1024) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("answer of {len} bytes"),
            ))
        }
        Ok(len) => read_exact_vec(input, len as usize)?,
        Err(_) => Vec::new(),
    };
    Ok(Some((reply, body)))
}

fn read_stderr(stderr: std::process::ChildStderr, pid: u32, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.by_ref().take(4096).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        tracing::warn!(pid, line = %text, "rendering process stderr");
        let mut tail = lock(tail);
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

fn explain_death(
    status: Option<ExitStatus>,
    stderr: &[String],
    limits: &RenderLimits,
) -> TemplateError {
    let said = |needle: &str| stderr.iter().any(|line| line.contains(needle));
    if said("memory allocation of") || said("cannot allocate memory") {
        return TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "rendering exceeded the memory budget of {} MiB",
                limits.max_memory_bytes / (1024 * 1024)
            ),
        );
    }
    if said("has overflowed its stack") {
        return TemplateError::new(
            TemplateErrorKind::Limit,
            "rendering exceeded the stack (the template nests or recurses too deeply)",
        );
    }
    let how = match status {
        Some(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(PANIC_EXIT), _) => "after a panic".to_owned(),
                (Some(code), _) => format!("with exit code {code}"),
                (_, Some(signal)) => format!("on signal {signal}"),
                _ => "for an unknown reason".to_owned(),
            }
        }
        None => "for an unknown reason".to_owned(),
    };
    TemplateError::new(
        TemplateErrorKind::Crashed,
        format!("the rendering process ended {how}"),
    )
}

/// Resident memory of a process, from `/proc` (0 when unknown).
fn resident_bytes(pid: u32) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: a read-only query of a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_are_explained() {
        let limits = RenderLimits::default();
        let oom = explain_death(
            None,
            &["memory allocation of 1073741824 bytes failed".to_owned()],
            &limits,
        );
        assert_eq!(oom.kind, TemplateErrorKind::Limit);
        assert!(oom.message.contains("memory budget of 256 MiB"), "{oom:?}");
        let stack = explain_death(
            None,
            &["thread 'render' has overflowed its stack".to_owned()],
            &limits,
        );
        assert_eq!(stack.kind, TemplateErrorKind::Limit);
        let other = explain_death(None, &[], &limits);
        assert_eq!(other.kind, TemplateErrorKind::Crashed);
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let reply = Reply {
            result: Ok(3),
            fatal: false,
        };
        let mut wire = Vec::new();
        write_frame(&mut wire, &serde_json::to_vec(&reply).unwrap(), b"abc").unwrap();
        let (back, body) = read_reply(&mut wire.as_slice(), 10).unwrap().unwrap();
        assert_eq!(back.result, Ok(3));
        assert_eq!(body, b"abc");
        assert!(read_reply(&mut [].as_slice(), 10).unwrap().is_none());
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_reply(&mut huge.as_slice(), 10).is_err());
    }
}
