//! Live update, carried out: the changed context paths an `[[image.sync]]` rule covers become one tar stream
//! (files and directories as they are on disk now, mapped to their container paths) plus a list of container
//! paths to delete (those gone from disk), and one exec per container (`sh -c`: delete, `tar -xmf - -C /`,
//! the rules' `run` commands, the restart) sent to every Ready container that runs the deployed image, all
//! pods in parallel ([`exec`]). Pods are known from a watch ([`pods`]), which also notices pods that come
//! later, for a replay.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{sync_route, SyncRule};

pub mod exec;
pub mod pods;
pub mod session;

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container has no `tar` (or no `sh`): it cannot take a sync.
    #[error("container {container} of pod {pod} has no `tar`/`sh` to unpack files with (a distroless or scratch image?): \
             add tar to the image, or remove [[image.sync]] to always rebuild")]
    NoTar { pod: String, container: String },
    /// `restart = true` found nothing to restart but PID 1.
    #[error("restart = true: in container {container} of pod {pod}, PID 1 is the only process, and a process \
             cannot end PID 1 from inside: run the server under a supervisor (e.g. CMD [\"sh\", \"-c\", \"while :; do node server.js; done\"])")]
    NoSupervisor { pod: String, container: String },
    /// A `run` command failed (the files are in place).
    #[error("in pod {pod}: a run command failed: {output}")]
    Run { pod: String, output: String },
    /// Unpacking failed, or the exec itself did.
    #[error("in pod {pod}: {message}")]
    Exec { pod: String, message: String },
    /// The sync (its `run` commands, say) did not finish in time; it was abandoned.
    #[error("the sync did not finish within {}s (a `run` command that never ends?): abandoned, rebuilding instead", TIMEOUT.as_secs())]
    Timeout,
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

impl Error {
    /// The containers cannot take a sync at all: the image must be rebuilt from now on.
    pub fn unsupported(&self) -> bool {
        matches!(self, Error::NoTar { .. })
    }
}

/// How long one sync (every container, `run` commands included) may take before it is abandoned and the
/// image rebuilt: long enough for an `npm install`, short enough that a hung command does not stall the loop.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// What one sync sends.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The tar stream of the files and directories to put in place (paths relative to `/`).
    pub tar: Vec<u8>,
    /// How many entries it holds.
    pub files: usize,
    /// Container paths to delete.
    pub deletes: Vec<String>,
    /// Commands to run after the files land, in rule order.
    pub run: Vec<String>,
    /// Restart the container's processes.
    pub restart: bool,
}

/// Reads the current state of `paths` (relative to `context`) into what a sync sends. A path no rule
/// covers is skipped (the core only asks for covered ones).
pub fn prepare(rules: &[SyncRule], context: &Path, paths: &BTreeSet<String>) -> Result<Prepared, Error> {
    let mut out = Prepared::default();
    let mut b = tar::Builder::new(Vec::new());
    // Owner root and normalized modes, as `COPY` gives; no local uid leaks into the container.
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut touched = vec![Vec::<&str>::new(); rules.len()];
    for rel in paths {
        let Some((rule, dest)) = sync_route(rules, rel) else { continue };
        touched[rule].push(rel);
        let local = context.join(rel);
        let name = dest.trim_start_matches('/');
        let read = |source| Error::Read { path: local.display().to_string(), source };
        match std::fs::symlink_metadata(&local) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.deletes.push(dest),
            Err(e) => return Err(read(e)),
            Ok(m) if m.is_dir() => {
                b.append_dir(name, &local).map_err(read)?;
                out.files += 1;
            }
            Ok(_) => match b.append_path_with_name(&local, name) {
                // Gone since the watcher saw it: a delete after all.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.deletes.push(dest),
                r => {
                    r.map_err(read)?;
                    out.files += 1;
                }
            },
        }
    }
    out.tar = b.into_inner().map_err(|source| Error::Read { path: context.display().to_string(), source })?;
    for (rule, rels) in rules.iter().zip(&touched).filter(|(_, t)| !t.is_empty()) {
        for step in &rule.run {
            if step.triggered_by(rels.iter().copied()) && !out.run.contains(&step.cmd) {
                out.run.push(step.cmd.clone());
            }
        }
        out.restart |= rule.restart;
    }
    Ok(out)
}

/// Exit codes of the sync script that mean something to devloop.
pub(crate) const NO_TAR: i32 = 97;
pub(crate) const NO_SUPERVISOR: i32 = 96;
pub(crate) const RUN_FAILED: i32 = 98;
/// In the command line of devloop's session shells (`sh -s <mark>`), so a restart spares them.
pub(crate) const SESSION_MARK: &str = "devloop-sync-session";

/// The command one exec runs: `sh -c <script> devloop-sync <paths to delete…>`; the tar stream (if any
/// files) comes on stdin.
pub fn command(p: &Prepared) -> Vec<String> {
    let mut script = format!("command -v tar >/dev/null 2>&1 || exit {NO_TAR}\n");
    if !p.deletes.is_empty() {
        script.push_str("rm -rf -- \"$@\" || exit 1\n");
    }
    if p.files > 0 {
        // -m: the time of the sync as mtime, so servers that cache by mtime see a change.
        script.push_str("tar -xmf - -C / || exit 1\n");
    }
    for cmd in &p.run {
        script.push_str(&format!("(cd / && {cmd}) >&2 || exit {RUN_FAILED}\n"));
    }
    if p.restart {
        // PID 1 cannot be ended from inside; a supervisor as PID 1 restarts what is ended here: every other
        // process but this script and devloop's own session shells.
        script.push_str(&format!(
            "pids=\n\
             for d in /proc/[0-9]*; do p=${{d#/proc/}}\n\
             [ \"$p\" = 1 ] || [ \"$p\" = $$ ] && continue\n\
             case \"$(tr '\\0' ' ' <\"$d/cmdline\" 2>/dev/null)\" in *{SESSION_MARK}*|'') continue;; esac\n\
             pids=\"$pids $p\"\ndone\n\
             [ -n \"$pids\" ] || exit {NO_SUPERVISOR}\nkill -TERM $pids 2>/dev/null; exit 0\n"
        ));
    }
    let mut argv = vec!["sh".to_string(), "-c".to_string(), script, "devloop-sync".to_string()];
    argv.extend(p.deletes.iter().cloned());
    argv
}

#[cfg(test)]
mod tests;
