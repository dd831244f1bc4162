//! A long-lived shell per container, fed each sync's script on its stdin: a sync then costs one round trip
//! on an open stream instead of a new exec (API server → kubelet → containerd → `runc exec`, ~50 ms each
//! time). The tar stream travels base64-encoded in a here-document, which the shell reads as part of the
//! script (a shell reading commands from a pipe may read ahead, so raw bytes after a command could be lost
//! to it). A session that died (its pod gone, the container restarted) is opened again once; a container
//! without `base64`, and every sync with `restart = true` (its `kill -1` would end the session's shell),
//! use one exec per sync ([`super::exec`]).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf, SimplexStream, WriteHalf};
use tokio::sync::Mutex;

use super::exec::{self, Outcome};
use super::{Carry, Error, Prepared, NO_BASE64, NO_SUPERVISOR, NO_TAR, RUN_FAILED, SESSION_MARK};
#[cfg(test)]
use super::prepare;
use crate::cluster::Target;

/// Ends a script's output; followed by its exit code.
const DONE: &str = "@@devloop-sync-done";

struct Session {
    _proc: AttachedProcess,
    stdin: WriteHalf<SimplexStream>,
    stdout: BufReader<ReadHalf<SimplexStream>>,
    /// Resolves when the shell has ended (or never started: no `sh` in the image), with the runtime's status.
    ended: std::pin::Pin<Box<dyn std::future::Future<Output = Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>> + Send>>,
}

/// A container's way of taking syncs.
enum Slot {
    Empty,
    Open(Session),
    /// No `base64`: one exec per sync.
    OneShot,
}

/// (pod, container)
type Key = (String, String);

/// The sessions of one `devloop up`, per (pod, container).
#[derive(Default)]
pub struct Sessions {
    slots: Mutex<HashMap<Key, Arc<Mutex<Slot>>>>,
}

/// What one sync sends down a session: the sync's one script ([`super::script`], its tar in a here-document)
/// in a subshell (so `exit` ends it, not the session), its output and errors on stdout, then the end marker
/// with its exit code.
pub fn script(p: &Prepared) -> String {
    format!("(\n{}) 2>&1 </dev/null; echo \"{DONE} $?\"\n", super::script(p, Carry::HereDoc))
}

async fn open(t: &Target, pod: &str, container: &str) -> Result<Option<Session>, Error> {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let params = AttachParams::default().container(container).stdin(true).stdout(true).stderr(false);
    let mut proc = match pods.exec(pod, vec!["sh", "-s", SESSION_MARK], &params).await {
        Ok(p) => p,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(Error::Exec { pod: pod.into(), message: format!("exec: {e}") }),
    };
    let (Some(stdin), Some(stdout)) = (proc.stdin(), proc.stdout()) else {
        return Err(Error::Exec { pod: pod.into(), message: "exec without stdin/stdout".into() });
    };
    let ended = match proc.take_status() {
        Some(f) => Box::pin(f) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        None => Box::pin(std::future::pending()),
    };
    Ok(Some(Session { _proc: proc, stdin, stdout: BufReader::new(stdout), ended }))
}

/// Sends the script; Ok((exit code, output)), or Err when the session is gone.
async fn send(s: &mut Session, script: &str) -> std::io::Result<(i32, String)> {
    let (stdin, stdout, ended) = (&mut s.stdin, &mut s.stdout, &mut s.ended);
    let io = async {
        stdin.write_all(script.as_bytes()).await?;
        stdin.flush().await?;
        let mut output = String::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(code) = line.trim_end().strip_prefix(DONE) {
                return Ok((code.trim().parse().unwrap_or(-1), output.trim().to_string()));
            }
            output.push_str(&line);
        }
    };
    // A shell that has ended never reads its stdin again, and nothing closes the stream's other end: a
    // write would wait forever. Its status says it is gone.
    tokio::select! {
        r = io => r,
        st = ended => Err(std::io::Error::other(format!(
            "the session's shell ended: {}",
            st.and_then(|s| s.message).unwrap_or_default()
        ))),
    }
}

impl Sessions {
    /// Forgets (and so closes) the sessions of every pod not in `pods`: a long `up` sees many pods come and go.
    pub async fn retain(&self, pods: &std::collections::BTreeSet<String>) {
        self.slots.lock().await.retain(|(pod, _), _| pods.contains(pod));
    }

    /// Opens the container's session ahead of its first sync (after a rollout), so that sync does not wait
    /// for the exec to start. A failure is left for the sync to find and tell.
    pub async fn warm(&self, t: &Target, pod: &str, container: &str) {
        let slot = self.slots.lock().await.entry((pod.to_string(), container.to_string())).or_insert_with(|| Arc::new(Mutex::new(Slot::Empty))).clone();
        let mut slot = slot.lock().await;
        if matches!(*slot, Slot::Empty) {
            let opened = open(t, pod, container).await;
            tracing::debug!(pod, container, ok = matches!(opened, Ok(Some(_))), "sync session opened ahead");
            if let Ok(Some(s)) = opened {
                *slot = Slot::Open(s);
            }
        }
    }

    /// Syncs `p` into `container` of `pod`.
    pub async fn sync(&self, t: &Target, pod: &str, container: &str, p: &Prepared) -> Result<Outcome, Error> {
        if p.restart {
            return exec::into_container(t, pod, container, p).await;
        }
        let slot = self.slots.lock().await.entry((pod.to_string(), container.to_string())).or_insert_with(|| Arc::new(Mutex::new(Slot::Empty))).clone();
        let mut slot = slot.lock().await;
        let script = script(p);
        for attempt in 0..2 {
            if matches!(*slot, Slot::OneShot) {
                return exec::into_container(t, pod, container, p).await;
            }
            if matches!(*slot, Slot::Empty) {
                match open(t, pod, container).await? {
                    Some(s) => *slot = Slot::Open(s),
                    None => return Ok(Outcome::Gone),
                }
            }
            // Out of its slot while in use: if this sync is abandoned mid-send (its timeout), the half-used
            // session is dropped (closing its exec stream) rather than handed to the next sync.
            let Slot::Open(mut session) = std::mem::replace(&mut *slot, Slot::Empty) else { unreachable!("opened above") };
            let t0 = std::time::Instant::now();
            tracing::debug!(pod, container, attempt, "sync: sending through the session");
            match send(&mut session, &script).await {
                Ok((code, output)) => {
                    *slot = Slot::Open(session);
                    tracing::debug!(pod, container, total_ms = t0.elapsed().as_millis() as u64, bytes = script.len(), "sync through the session");
                    return match code {
                        0 => Ok(Outcome::Done),
                        NO_BASE64 => {
                            *slot = Slot::OneShot;
                            continue;
                        }
                        NO_TAR => Err(Error::NoTar { pod: pod.into(), container: container.into() }),
                        NO_SUPERVISOR => Err(Error::NoSupervisor { pod: pod.into(), container: container.into() }),
                        RUN_FAILED => Err(Error::Run { pod: pod.into(), output }),
                        c => Err(Error::Exec { pod: pod.into(), message: format!("the sync script exited with {c}: {output}") }),
                    };
                }
                Err(e) => {
                    // The shell is gone (pod deleted, container restarted, no `sh` at all): open a new one once.
                    tracing::debug!(pod, container, attempt, "sync session lost: {e}");
                }
            }
        }
        // Twice no session: let one exec say why (no `sh`, the pod gone, …).
        exec::into_container(t, pod, container, p).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::{BufRead, Write};

    /// One real `sh` fed several scripts on its stdin, as a session is: each ends with its marker and exit
    /// code, an `exit` in one does not end the shell, the tar arrives whole, quoted deletes delete.
    #[test]
    fn one_shell_takes_script_after_script() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, root) = (dir.path().join("ctx"), dir.path().join("root"));
        std::fs::create_dir_all(ctx.join("www")).unwrap();
        std::fs::create_dir_all(root.join("www")).unwrap();
        let big: String = (0..20_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        std::fs::write(ctx.join("www/big.txt"), &big).unwrap();
        std::fs::write(root.join("www/it's gone.txt"), "x").unwrap();
        let text = format!(
            "[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[image.sync]]\nsrc = \"www/**\"\ndest = \"{}/www\"\nrun = [{{ cmd = \"false\", trigger = \"www/fail\" }}]\n",
            root.display()
        );
        let rules = crate::config::parse(std::path::Path::new("/p/devloop.toml"), &text).unwrap().images.remove(0).sync;
        let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

        let mut sh = std::process::Command::new("sh").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut stdin = sh.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(sh.stdout.take().unwrap());
        let mut run = |p: &Prepared| {
            stdin.write_all(script(p).as_bytes()).unwrap();
            stdin.flush().unwrap();
            let mut out = String::new();
            loop {
                let mut line = String::new();
                assert!(stdout.read_line(&mut line).unwrap() > 0, "the shell ended; output so far: {out}");
                if let Some(code) = line.trim_end().strip_prefix(DONE) {
                    return (code.trim().parse::<i32>().unwrap(), out);
                }
                out.push_str(&line);
            }
        };
        let p = prepare(&rules, &ctx, &crate::filter::Filter::new::<&str>(&[]).unwrap(), &set(&["www/big.txt", "www/it's gone.txt"])).unwrap();
        assert_eq!(run(&p).0, 0);
        assert_eq!(std::fs::read_to_string(root.join("www/big.txt")).unwrap(), big, "20 kB through the here-document");
        assert!(!root.join("www/it's gone.txt").exists());
        std::fs::write(ctx.join("www/fail"), "").unwrap();
        let (code, _) = run(&prepare(&rules, &ctx, &crate::filter::Filter::new::<&str>(&[]).unwrap(), &set(&["www/fail"])).unwrap());
        assert_eq!(code, RUN_FAILED, "a failing run command");
        std::fs::write(ctx.join("www/big.txt"), "small").unwrap();
        assert_eq!(run(&prepare(&rules, &ctx, &crate::filter::Filter::new::<&str>(&[]).unwrap(), &set(&["www/big.txt"])).unwrap()).0, 0, "the shell lives on after an `exit`");
        assert_eq!(std::fs::read_to_string(root.join("www/big.txt")).unwrap(), "small");
        drop(stdin);
        sh.wait().unwrap();
    }

    #[tokio::test]
    async fn sessions_of_pods_that_are_gone_are_forgotten() {
        let sessions = Sessions::default();
        for (pod, c) in [("web-1", "app"), ("web-1", "side"), ("web-2", "app"), ("old-9", "app")] {
            sessions.slots.lock().await.insert((pod.into(), c.into()), Arc::new(Mutex::new(Slot::OneShot)));
        }
        sessions.retain(&BTreeSet::from(["web-1".to_string(), "web-3".to_string()])).await;
        let mut left: Vec<Key> = sessions.slots.lock().await.keys().cloned().collect();
        left.sort();
        assert_eq!(left, [("web-1".to_string(), "app".to_string()), ("web-1".to_string(), "side".to_string())]);
    }
}
