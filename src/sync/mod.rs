//! Live update, carried out: the changed context paths an `[[image.sync]]` rule covers become one tar stream
//! (files as they are on disk now, directories with what the image's filter lets through below them, mapped
//! to their container paths; at most [`MAX_BYTES`] and [`MAX_ENTRIES`]) plus a list of container paths to
//! delete (those gone from disk), and one script per container (delete, `tar -xmf - -C /`, the rules' `run`
//! commands, the restart) sent to every running container of the deployed image, all pods in parallel
//! (down a long-lived shell, [`session`], or one exec, [`exec`]). Pods are known from a watch ([`pods`]),
//! which also notices pods that come later, for a replay.
//!
//! Each file is read once: the bytes that go into the tar are the bytes whose digest [`Prepared::read`]
//! hands to the hasher's tree ([`crate::hash::merkle::Tree::apply`]), so the content tag a sync reports
//! describes exactly what the pods received, even when the file changes again meanwhile (that change has
//! its own event, and its own sync). Checking afterwards instead (as a build's `ContextChanged` does) would
//! need a second read and a retry; one read needs neither.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::{sync_route, SyncRule};
use crate::filter::Filter;
use crate::hash::merkle::Sent;
use crate::tree;

pub mod exec;
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
    /// A directory could not be listed.
    #[error(transparent)]
    Tree(#[from] tree::Error),
    /// The sync would send more than the caps allow.
    #[error("the sync would send over {} MiB or {MAX_ENTRIES} files (so far {:.1} MiB in {entries} entries): too large to copy into containers", MAX_BYTES >> 20, *bytes as f64 / 1048576.0)]
    TooLarge { bytes: u64, entries: usize },
    /// A synced directory holds a file the image would have but no rule covers.
    #[error("{path} is below a synced directory, but no sync rule covers it")]
    Uncovered { path: String },
    /// The content tag of what the sync read could not be computed: nothing was sent.
    #[error("the content tag of the sync: {0}")]
    Tag(String),
    /// No container running the deployed image can take a sync now.
    #[error("no running container of the deployed image can take the sync (none running, or all being replaced)")]
    NoTakers,
}

impl Error {
    /// The containers cannot take a sync at all: the image must be rebuilt from now on.
    pub fn unsupported(&self) -> bool {
        matches!(self, Error::NoTar { .. })
    }

    /// Nothing was sent to any container: the sync was judged unfit before it began (too large, a file no
    /// rule covers, no container to take it), not tried and failed.
    pub fn skipped(&self) -> bool {
        matches!(self, Error::TooLarge { .. } | Error::Uncovered { .. } | Error::NoTakers | Error::Tag(_))
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
    /// The context paths judged (sent, deleted, or found not to be part of the image).
    pub judged: BTreeSet<String>,
    /// What went into the tar, as read: the hasher's tree takes these to compute the content tag.
    pub read: Vec<Sent>,
}

/// The most one sync sends: beyond it, building the image is the better deal. The tar is held in memory and
/// goes base64-encoded to every container (a third more bytes, each container on its own stream), and
/// `tar -x` of thousands of files in a running container races the server reading them; a build streams the
/// context once, with BuildKit's cache, and a rollout swaps the pods at once.
pub const MAX_BYTES: u64 = 8 << 20;
/// …and the most entries (files, directories, links): a checkout or an `npm install` under a synced path.
pub const MAX_ENTRIES: usize = 1000;

/// Sums what a sync would send, and says when it would exceed the caps.
#[derive(Default)]
struct Budget {
    bytes: u64,
    entries: usize,
}

impl Budget {
    fn take(&mut self, size: u64) -> Result<(), Error> {
        self.bytes += size;
        self.entries += 1;
        if self.bytes > MAX_BYTES || self.entries > MAX_ENTRIES {
            return Err(Error::TooLarge { bytes: self.bytes, entries: self.entries });
        }
        Ok(())
    }
}

/// Whether every directory above `rel` (inside `context`) is a real directory: a path reached through a
/// symlinked directory may lead outside the context, and a build would not follow it either. Err(NotFound)
/// when one is gone.
fn parents_are_dirs(context: &Path, rel: &str) -> std::io::Result<bool> {
    let mut dir = context.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(part);
        if !std::fs::symlink_metadata(&dir)?.is_dir() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads the current state of `paths` (relative to `context`) into what a sync sends: a file as it is now, a
/// directory with everything below it (a new or renamed directory arrives whole), a path gone from disk as
/// a delete. Only what `filter` (the image's one filter, the hasher's) lets into a build is ever read; a path
/// no rule covers is skipped (the core only asks for covered ones), and a file below a synced directory that
/// no rule covers fails the sync ([`Error::Uncovered`]): the image must be built to hold it. Past
/// [`MAX_BYTES`] or [`MAX_ENTRIES`] it stops reading ([`Error::TooLarge`]).
pub fn prepare(rules: &[SyncRule], context: &Path, filter: &Filter, paths: &BTreeSet<String>) -> Result<Prepared, Error> {
    let mut out = Prepared::default();
    let mut b = tar::Builder::new(Vec::new());
    // Owner root and normalized modes, as `COPY` gives; no local uid leaks into the container.
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut budget = Budget::default();
    let mut touched = vec![Vec::<String>::new(); rules.len()];
    // A directory and paths below it may both be asked for: each goes in once.
    let mut added = BTreeSet::new();
    for rel in paths {
        let Some((rule, dest)) = sync_route(rules, rel) else { continue };
        out.judged.insert(rel.clone());
        let local = context.join(rel);
        let read = |source| Error::Read { path: local.display().to_string(), source };
        match parents_are_dirs(context, rel) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.deletes.push(dest);
                touched[rule].push(rel.clone());
                continue;
            }
            Err(e) => return Err(read(e)),
        }
        // As the hasher judges it: an excluded path is not part of the image (an excluded directory only
        // for what a `!` pattern brings back below it), so it is neither sent nor deleted.
        let Some(tree::Child { entry, visible }) = tree::child_at(context, rel, filter)? else {
            let gone = matches!(std::fs::symlink_metadata(&local), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
            if gone && !filter.excluded(rel) {
                out.deletes.push(dest);
                touched[rule].push(rel.clone());
            }
            continue;
        };
        let mut entries = Vec::new();
        if entry.kind == tree::Kind::Dir {
            tree::walk_below(context, rel, filter, &mut entries)?;
            if !visible && entries.is_empty() {
                continue;
            }
        }
        entries.insert(0, entry);
        for e in entries {
            if added.contains(&e.path) {
                continue;
            }
            let (r, dest) = if e.path == *rel { (rule, dest.clone()) } else { sync_route(rules, &e.path).ok_or_else(|| Error::Uncovered { path: e.path.clone() })? };
            budget.take(e.size)?;
            let full = context.join(&e.path);
            // Gone since it was listed (None): its own event follows (a delete).
            let Some(sent) = append(&mut b, &full, dest.trim_start_matches('/'), e).map_err(|source| Error::Read { path: full.display().to_string(), source })? else {
                continue;
            };
            out.files += 1;
            added.insert(sent.entry.path.clone());
            touched[r].push(sent.entry.path.clone());
            out.read.push(sent);
        }
    }
    out.tar = b.into_inner().map_err(|source| Error::Read { path: context.display().to_string(), source })?;
    for (rule, rels) in rules.iter().zip(&touched).filter(|(_, t)| !t.is_empty()) {
        for step in &rule.run {
            if step.triggered_by(rels.iter().map(String::as_str)) && !out.run.contains(&step.cmd) {
                out.run.push(step.cmd.clone());
            }
        }
        out.restart |= rule.restart;
    }
    Ok(out)
}

/// Appends one listed entry to the tar under `name`, reading it once: a file's bytes (and its mode, from
/// the open file) go into the tar and their digest into the returned [`Sent`]; a symlink goes with the target
/// the listing read. None: gone since it was listed, or no longer what it was (a fifo swapped in).
fn append(b: &mut tar::Builder<Vec<u8>>, full: &Path, name: &str, e: tree::Entry) -> std::io::Result<Option<Sent>> {
    let gone = |r: std::io::Result<std::fs::Metadata>| match r {
        Ok(md) => Ok(Some(md)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    };
    match e.kind {
        tree::Kind::Dir => {
            match b.append_dir(name, full) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                r => r?,
            }
            Ok(Some(Sent { entry: e, digest: None }))
        }
        tree::Kind::Symlink => {
            let Some(md) = gone(std::fs::symlink_metadata(full))? else { return Ok(None) };
            let target = e.link.clone().unwrap_or_default();
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&md, tar::HeaderMode::Deterministic);
            h.set_size(0);
            b.append_link(&mut h, name, &target)?;
            Ok(Some(Sent { entry: e, digest: None }))
        }
        tree::Kind::File => {
            // O_NONBLOCK: a fifo swapped in since the listing must not hang the open;
            // O_NOFOLLOW: nor a symlink, which might lead out of the context.
            let f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(full) {
                Ok(f) => f,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
                Err(err) => return Err(err),
            };
            let md = f.metadata()?;
            if !md.is_file() {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(md.len() as usize);
            (&f).read_to_end(&mut bytes)?;
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&md, tar::HeaderMode::Deterministic);
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, name, bytes.as_slice())?;
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            let entry = tree::Entry { perm: md.mode() & 0o7777, size: bytes.len() as u64, ..e };
            Ok(Some(Sent { entry, digest: Some(digest) }))
        }
    }
}

/// Exit codes of the sync script that mean something to devloop.
pub(crate) const NO_TAR: i32 = 97;
pub(crate) const NO_SUPERVISOR: i32 = 96;
pub(crate) const RUN_FAILED: i32 = 98;
/// In the command line of devloop's session shells (`sh -s <mark>`), so a restart spares them.
pub(crate) const SESSION_MARK: &str = "devloop-sync-session";

/// The script's exit code when the container has no `base64` (a session's tar comes base64-encoded).
pub(crate) const NO_BASE64: i32 = 95;

/// How the tar stream reaches the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// On the script's stdin (one exec per sync: `sh -c <script>`, the tar after it).
    Stdin,
    /// Inside the script, base64-encoded in a here-document (a session's shell reads scripts from its stdin,
    /// and may read ahead: raw bytes after a command could be lost to it).
    HereDoc,
}

/// A word the shell takes as it is: in single quotes, each `'` as `'\''`. Spaces, `$`, backquotes, glob
/// characters and newlines are all literal inside single quotes.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The one script a sync runs in a container, whichever way it gets there: check for `tar`, delete, unpack,
/// run the rules' commands, restart. Paths to delete are quoted words after `rm -rf --` (a name starting with
/// `-` is not an option).
pub fn script(p: &Prepared, carry: Carry) -> String {
    let mut script = format!("command -v tar >/dev/null 2>&1 || exit {NO_TAR}\n");
    if p.files > 0 && carry == Carry::HereDoc {
        script.push_str(&format!("command -v base64 >/dev/null 2>&1 || exit {NO_BASE64}\n"));
    }
    if !p.deletes.is_empty() {
        script.push_str(&format!("rm -rf -- {} || exit 1\n", p.deletes.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ")));
    }
    // -m: the time of the sync as mtime, so servers that cache by mtime see a change.
    match carry {
        _ if p.files == 0 => {}
        Carry::Stdin => script.push_str("tar -xmf - -C / || exit 1\n"),
        Carry::HereDoc => {
            use base64::Engine as _;
            script.push_str("base64 -d <<'@@DEVLOOP_TAR' | tar -xmf - -C / || exit 1\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(&p.tar);
            for line in b64.as_bytes().chunks(76) {
                script.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                script.push('\n');
            }
            script.push_str("@@DEVLOOP_TAR\n");
        }
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
    script
}

/// The command one exec runs: `sh -c <script>`, the tar stream (if any files) on stdin.
pub fn command(p: &Prepared) -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), script(p, Carry::Stdin)]
}

#[cfg(test)]
mod tests;
