//! One rendering process as its parent sees it: the child, its stdin, and the threads that
//! read its answers and its stderr.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::wire::{read_reply, Reply};
use super::{lock, CHILD_ARG, MEMORY_ENV, PANIC_EXIT, STDERR_LINES};
use crate::{RenderLimits, TemplateError, TemplateErrorKind};

pub(super) type ReplyFrame = std::io::Result<(Reply, Vec<u8>)>;

/// Starts `command` from one thread that lives as long as the process. A child's
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked it ends, and the threads renders run
/// on (the async runtime's blocking pool) end after a few idle seconds: started from one of
/// them, a warm rendering process would be killed while idle.
fn spawn_from_a_lasting_thread(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<mpsc::Sender<Request>>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<Request>();
        let started = std::thread::Builder::new()
            .name("render-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receive {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the rendering processes' spawner thread");
        }
        Mutex::new(send)
    });
    let (reply, answer) = mpsc::channel();
    lock(spawner)
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// One rendering process and the threads that read its pipes.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) replies: Receiver<ReplyFrame>,
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

impl Worker {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the process ended mid-render, from its exit status and last words on stderr.
    pub(super) fn death(mut self, limits: &RenderLimits) -> TemplateError {
        // Usually already dead; when it only broke the protocol, it is killed here.
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail: Vec<String> = lock(&self.stderr_tail).iter().cloned().collect();
        explain_death(status, &tail, limits)
    }

    /// Starts `program` as a rendering process with `limits`' memory budget.
    pub(super) fn spawn(program: &Path, limits: &RenderLimits) -> Result<Worker, TemplateError> {
        let mut command = Command::new(program);
        command
            .arg(CHILD_ARG)
            // Tenant templates run here: no credentials or settings of ours are passed on.
            .env_clear()
            .env(MEMORY_ENV, limits.max_memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_from_a_lasting_thread(command).map_err(|e| {
            TemplateError::new(
                TemplateErrorKind::Unavailable,
                format!(
                    "cannot start the rendering process {}: {e}",
                    program.display()
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
                        TemplateErrorKind::Unavailable,
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

pub(super) fn explain_death(
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
pub(super) fn resident_bytes(pid: u32) -> u64 {
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
}
