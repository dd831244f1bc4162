//! One `[check]` command: `sh -c` in its own process group, its output copied to the check's as it comes,
//! bounded by `[check] timeout` and ended by an interrupt. Ending it ends the whole group (SIGTERM, then
//! SIGKILL after a grace), so nothing it started in the background is left running after the check.

use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a command's processes have between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited by itself (whatever it left running in its group was ended after it).
    Exited(ExitStatus),
    /// It was still running when the timeout passed, and was killed.
    TimedOut,
    /// The token was cancelled while it ran, and it was killed.
    Interrupted,
}

/// Runs `cmd` with `sh -c` in `dir` with `env` added, copying its stdout and stderr to `out`, until it exits,
/// `timeout` passes or `stop` is cancelled; then ends every process left in its group.
pub async fn run(
    cmd: &str,
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
    stop: &CancellationToken,
    out: &mut (dyn Write + Send),
) -> std::io::Result<Ended> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = child.id().ok_or_else(|| std::io::Error::other("the command exited before it could be watched"))?;
    let mut group = Group { id: pid as i32, armed: true };
    let (tx, mut chunks) = mpsc::channel(16);
    if let Some(p) = child.stdout.take() {
        tokio::spawn(pump(p, tx.clone()));
    }
    if let Some(p) = child.stderr.take() {
        tokio::spawn(pump(p, tx));
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            s = child.wait() => break Ended::Exited(s?),
            _ = &mut deadline => break Ended::TimedOut,
            _ = stop.cancelled() => break Ended::Interrupted,
            Some(chunk) = chunks.recv() => {
                let _ = out.write_all(&chunk);
            }
        }
    };
    group.end(&mut child).await;
    // The rest of the output: the pipes close once every process holding them has ended (bounded, in case
    // something left the group and keeps them open).
    let drain = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(drain, chunks.recv()).await {
        let _ = out.write_all(&chunk);
    }
    Ok(ended)
}

/// Copies a pipe into the channel until EOF.
async fn pump(mut pipe: impl AsyncRead + Unpin, tx: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
            return;
        }
    }
}

/// A process group led by the command's shell.
struct Group {
    id: i32,
    /// Whether dropping it still has to kill it (a run dropped half-way must not leave processes behind).
    armed: bool,
}

impl Group {
    /// Sends `sig` to every process of the group; false when none is left (0 only checks).
    fn signal(&self, sig: i32) -> bool {
        // SAFETY: kill(2) with a negative pid addresses the group; it has no memory effects.
        unsafe { libc::kill(-self.id, sig) == 0 }
    }

    /// SIGTERM to the group, then SIGKILL to whatever is still there after [`GRACE`].
    async fn end(&mut self, leader: &mut tokio::process::Child) {
        let deadline = tokio::time::Instant::now() + GRACE;
        if self.signal(libc::SIGTERM) {
            // Reap the shell first: a zombie still counts as a member of its group.
            let _ = tokio::time::timeout_at(deadline, leader.wait()).await;
            while self.signal(0) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.signal(libc::SIGKILL) {
                let _ = leader.wait().await;
            }
        }
        let _ = leader.wait().await;
        self.armed = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            self.signal(libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        // A zombie (state Z) no longer runs: whoever adopted it just has not reaped it yet.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
    }

    async fn run_here(cmd: &str, timeout: Duration, stop: &CancellationToken) -> (Ended, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let env = [("GREETING".to_string(), "hi".to_string())];
        let ended = run(cmd, dir.path(), &env, timeout, stop, &mut out).await.unwrap();
        (ended, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn output_and_exit_status_are_reported() {
        let (ended, out) = run_here("echo $GREETING; echo oops >&2; exit 3", Duration::from_secs(10), &CancellationToken::new()).await;
        assert!(matches!(ended, Ended::Exited(s) if s.code() == Some(3)), "{ended:?}");
        assert!(out.contains("hi\n") && out.contains("oops\n"), "{out}");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_command_and_its_background_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let cmd = format!("sleep 1000 & echo $! > {}; echo started; sleep 1000", pidfile.display());
        let started = std::time::Instant::now();
        let (ended, out) = run_here(&cmd, Duration::from_millis(500), &CancellationToken::new()).await;
        assert!(matches!(ended, Ended::TimedOut), "{ended:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(out.contains("started"), "{out}");
        let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(!alive(child), "the background child {child} survived");
    }

    #[tokio::test]
    async fn a_cancelled_token_ends_the_command() {
        let stop = CancellationToken::new();
        let canceller = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            canceller.cancel();
        });
        let (ended, _) = run_here("sleep 1000", Duration::from_secs(60), &stop).await;
        assert!(matches!(ended, Ended::Interrupted), "{ended:?}");
    }

    #[tokio::test]
    async fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
        let started = std::time::Instant::now();
        let (ended, _) = run_here("trap '' TERM; sleep 1000", Duration::from_millis(200), &CancellationToken::new()).await;
        assert!(matches!(ended, Ended::TimedOut), "{ended:?}");
        let took = started.elapsed();
        assert!(took >= GRACE && took < GRACE + Duration::from_secs(3), "took {took:?}");
    }
}
