//! FileSync/DiffCopy, the sending side of fsutil's protocol: BuildKit asks for a directory by name, we send
//! a STAT for every entry it may see (depth-first, directory before contents, byte-sorted siblings, then an
//! empty STAT), and answer its REQs for file contents with DATA chunks. BuildKit keeps a copy of the last
//! context per session shared key and only REQs files whose stat changed, so stable stats make the second
//! build send only what changed.
//!
//! Nothing outside a served directory is ever sent: the daemon's names are resolved without leaving it, only
//! regular files listed in the STATs of the same call are served, and each is opened without following a
//! symlink anywhere on its path and checked to be the very file listed (see [`open_listed`]).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::fsutil::types::{packet::PacketType, Packet, Stat};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::filter::{Filter, Pattern};
use crate::tree::{self, Entry, Kind};

/// Largest DATA payload, as fsutil sends.
const CHUNK: usize = 32 * 1024;

/// A directory the daemon may ask for, with the filter that decides what it may see.
#[derive(Debug, Clone)]
pub struct SyncedDir {
    /// The directory.
    pub root: PathBuf,
    /// What is excluded (the image's filter for the context; built-ins only for the Dockerfile's dir).
    pub filter: Filter,
    /// When set, the only names (directly in `root`) that may be listed, whatever the daemon asks for.
    pub only: Option<Vec<String>>,
}

impl SyncedDir {
    /// The build context: everything `filter` lets through.
    pub fn context(root: &Path, filter: Filter) -> SyncedDir {
        SyncedDir { root: root.to_path_buf(), filter, only: None }
    }

    /// The Dockerfile's directory, which may be a repository root full of other things: only the
    /// Dockerfile, `<Dockerfile>.dockerignore` and `.dockerignore` beside it (and the file a symlinked
    /// Dockerfile names in the same directory). Built-in ignores only: a context's `.dockerignore` often lists
    /// the Dockerfile, which the build still needs.
    pub fn dockerfile(dockerfile: &Path) -> Result<SyncedDir, crate::filter::Error> {
        let root = dockerfile.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let name = dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut only = vec![name.clone(), format!("{name}.dockerignore"), ".dockerignore".to_string()];
        if let Ok(target) = std::fs::read_link(dockerfile) {
            let mut parts = target.components();
            if let (Some(std::path::Component::Normal(t)), None) = (parts.next(), parts.next()) {
                only.push(t.to_string_lossy().into_owned());
            }
        }
        Ok(SyncedDir { root, filter: Filter::new::<&str>(&[])?, only: Some(only) })
    }
}

/// What the daemon pulled during a session.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// File contents sent, in bytes.
    pub bytes: AtomicU64,
    /// Files whose contents were sent.
    pub files: AtomicU64,
    /// Paths sent, as `<dir-name>/<path>` (for `-v` and tests).
    pub paths: Mutex<Vec<String>>,
    /// Why files were refused (changed since they were listed): the build then failed because its context
    /// changed under it, not because of the build.
    pub refused: Mutex<Vec<String>>,
}

/// The FileSync service over a set of named directories.
pub struct FileSync {
    dirs: HashMap<String, SyncedDir>,
    stats: Arc<TransferStats>,
}

impl FileSync {
    /// Serves `dirs` by DiffCopy `dir-name`, counting transfers into `stats`.
    pub fn new(dirs: HashMap<String, SyncedDir>, stats: Arc<TransferStats>) -> Self {
        FileSync { dirs, stats }
    }
}

/// Go's os.FileMode for an entry: permission bits plus Go's type and special-bit flags (not st_mode).
pub fn go_file_mode(kind: Kind, perm: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const STICKY: u32 = 1 << 20;
    let mut m = perm & 0o777;
    if perm & 0o4000 != 0 {
        m |= SETUID;
    }
    if perm & 0o2000 != 0 {
        m |= SETGID;
    }
    if perm & 0o1000 != 0 {
        m |= STICKY;
    }
    match kind {
        Kind::Dir => m | DIR,
        Kind::Symlink => m | SYMLINK,
        Kind::File => m,
    }
}

/// The STAT fsutil expects for an entry. uid/gid are zeroed as buildctl does (they are part of the cache key).
pub fn stat_of(e: &Entry) -> Stat {
    Stat {
        path: e.path.clone(),
        mode: go_file_mode(e.kind, e.perm),
        uid: 0,
        gid: 0,
        size: e.size as i64,
        mod_time: e.mtime_ns,
        linkname: e.link.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// The daemon's per-call options, from gRPC metadata.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Opts {
    /// Which directory.
    pub dir_name: String,
    /// Only these paths (and what is below them).
    pub includes: Vec<String>,
    /// Never these (`.dockerignore` syntax).
    pub excludes: Vec<String>,
    /// Symlinks to resolve rather than send as links.
    pub follow: Vec<String>,
}

impl Opts {
    /// Reads the options; values are URL-query-escaped when `<key>-encoded` is true.
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Opts {
        let values = |key: &str| -> Vec<String> {
            let encoded = matches!(md.get(format!("{key}-encoded")).and_then(|v| v.to_str().ok()), Some("1" | "true"));
            md.get_all(key)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| if encoded { query_unescape(v) } else { v.to_string() })
                .collect()
        };
        Opts {
            dir_name: values("dir-name").into_iter().next().unwrap_or_default(),
            includes: values("include-patterns"),
            excludes: values("exclude-patterns"),
            follow: values("followpaths"),
        }
    }
}

/// Go's url.QueryUnescape: `%XX` escapes and `+` for space.
fn query_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The include patterns in effect: the daemon's includes plus its `followpaths`, which fsutil also treats as
/// includes (the Dockerfile frontend names the Dockerfile, `.dockerignore` and the sources of COPY there),
/// with the targets of followed symlinks inside the directory.
fn effective_includes(root: &Path, opts: &Opts) -> Vec<String> {
    let mut out = opts.includes.clone();
    for f in &opts.follow {
        let rel = f.trim_start_matches("./").trim_matches('/').to_string();
        if let Some(e) = tree::stat_inside(root, &rel).ok().flatten() {
            // The link's target, if it stays inside the directory (resolved lexically; it is then stat'ed
            // like any include, without following anything).
            if let Some(target) = e.link.filter(|t| !t.starts_with('/')) {
                let mut parts: Vec<&str> = rel.split('/').collect();
                parts.pop();
                let mut inside = true;
                for c in target.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => inside &= parts.pop().is_some(),
                        c => parts.push(c),
                    }
                }
                if inside && !parts.is_empty() {
                    out.push(parts.join("/"));
                }
            }
        }
        out.push(rel);
    }
    out.sort();
    out.dedup();
    out
}

/// The entries to send for `opts`: what `dir.filter` lets through, narrowed by the daemon's excludes and
/// includes, with the directories above every included entry. In DiffCopy order.
pub fn select(dir: &SyncedDir, opts: &Opts) -> Result<Vec<Entry>, Status> {
    let internal = |e: tree::Error| Status::internal(e.to_string());
    let excludes = Filter::new(&opts.excludes).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let include_list = effective_includes(&dir.root, opts);
    let includes: Vec<Pattern> =
        include_list.iter().map(|p| Pattern::parse(p)).collect::<Result<_, _>>().map_err(|e| Status::invalid_argument(e.to_string()))?;
    let literal = !includes.is_empty() && include_list.iter().all(|p| !p.contains(['*', '?', '[', '\\']));

    let mut entries = if let Some(only) = &dir.only {
        // Nothing but these names, even if the daemon asks for more (or for everything).
        let mut out = Vec::new();
        for name in only {
            if let Some(e) = tree::stat_inside(&dir.root, name).map_err(internal)? {
                if !dir.filter.excluded(&e.path) && e.kind != Kind::Dir {
                    out.push(e);
                }
            }
        }
        out
    } else if literal {
        // A large directory and a few names asked for: stat only those.
        let mut out = Vec::new();
        for inc in &include_list {
            if let Some(e) = tree::stat_inside(&dir.root, inc).map_err(internal)? {
                let (is_dir, rel) = (e.kind == Kind::Dir, e.path.clone());
                if !dir.filter.excluded(&rel) {
                    out.push(e);
                }
                if is_dir {
                    tree::walk_below(&dir.root, &rel, &dir.filter, &mut out).map_err(internal)?;
                }
            }
        }
        out
    } else {
        tree::walk(&dir.root, &dir.filter).map_err(internal)?
    };
    entries.retain(|e| !excludes.excluded(&e.path));
    if !includes.is_empty() {
        let wanted: Vec<&Entry> = entries.iter().filter(|e| includes.iter().any(|p| p.matches_or_parent(&e.path))).collect();
        let mut keep: HashSet<String> = HashSet::new();
        for e in wanted {
            let mut p = e.path.as_str();
            keep.insert(p.to_string());
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                keep.insert(p.to_string());
            }
        }
        if literal && dir.only.is_none() {
            // Ancestors of a literal include are not in the list yet: stat them.
            let mut have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
            for p in keep.clone() {
                if !have.contains(&p) {
                    if let Some(e) = tree::stat_inside(&dir.root, &p).map_err(internal)? {
                        entries.push(e);
                        have.insert(p);
                    }
                }
            }
        }
        entries.retain(|e| keep.contains(&e.path));
    }
    entries.sort_by(|a, b| tree::walk_order(&a.path, &b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(entries)
}

fn packet(kind: PacketType, id: u32) -> Packet {
    Packet { r#type: kind as i32, stat: None, id, data: Vec::new() }
}

/// Why a listed entry's contents are not sent.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A directory or symlink has no contents to send, and opening one could follow it.
    #[error("it was listed as a {0}, not a regular file")]
    NotAFile(&'static str),
    /// A directory on its path is no longer a real directory (a symlink was swapped in).
    #[error("{0} is no longer a directory (a symlink now?)")]
    DirReplaced(String),
    /// What is there now is not the file that was listed.
    #[error("it was replaced after it was listed (now {0})")]
    Replaced(&'static str),
    /// It was deleted (or a directory above it renamed) since the listing.
    #[error("it is gone since it was listed")]
    Gone,
    /// Opening it failed otherwise.
    #[error("cannot open it: {0}")]
    Io(std::io::Error),
}

/// Opens the listed regular file `e` below `root` for sending. Every directory on its path and the file
/// itself are opened relative to the one before with `O_NOFOLLOW`, so a symlink swapped in anywhere since the
/// listing is refused, never followed; the open file must then still be the one listed (a regular file with
/// the same device and inode).
pub fn open_listed(root: &Path, e: &Entry) -> Result<std::fs::File, Refusal> {
    match e.kind {
        Kind::File => {}
        Kind::Dir => return Err(Refusal::NotAFile("directory")),
        Kind::Symlink => return Err(Refusal::NotAFile("symlink")),
    }
    let parts: Vec<&str> = e.path.split('/').collect();
    let Some((name, dirs)) = parts.split_last() else { return Err(Refusal::NotAFile("nameless entry")) };
    if parts.iter().any(|p| matches!(*p, "" | "." | "..")) {
        return Err(Refusal::Io(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    let gone_or = |e: std::io::Error, other: Refusal| match e.raw_os_error() {
        _ if e.kind() == std::io::ErrorKind::NotFound => Refusal::Gone,
        Some(libc::ELOOP | libc::ENOTDIR) => other,
        _ => Refusal::Io(e),
    };
    // The root itself is the configured directory: it may be reached through a symlink.
    let mut dir: std::fs::File = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(root)
        .map_err(|e| gone_or(e, Refusal::DirReplaced(root.display().to_string())))?;
    for (i, d) in dirs.iter().enumerate() {
        dir = open_at(&dir, d, libc::O_DIRECTORY).map_err(|e| gone_or(e, Refusal::DirReplaced(dirs[..=i].join("/"))))?;
    }
    // O_NONBLOCK: a fifo swapped in must not hang the open; it is refused just below.
    let f = open_at(&dir, name, libc::O_NONBLOCK).map_err(|e| gone_or(e, Refusal::Replaced("a symlink")))?;
    let md = f.metadata().map_err(Refusal::Io)?; // fstat of what was opened, not a second lookup
    if !md.is_file() {
        return Err(Refusal::Replaced(if md.is_dir() { "a directory" } else { "a special file" }));
    }
    if (md.dev(), md.ino()) != (e.dev, e.ino) {
        return Err(Refusal::Replaced("another file"));
    }
    Ok(f)
}

/// `openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | extra)`.
fn open_at(dir: &std::fs::File, name: &str, extra: libc::c_int) -> std::io::Result<std::fs::File> {
    let c_name = std::ffi::CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra;
    // SAFETY: `dir` is an open descriptor and `c_name` a NUL-terminated string, both alive for the call.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nothing else.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Why a file was not (completely) sent.
enum SendError {
    /// The daemon went away.
    Closed,
    /// The file was refused before a byte was read.
    Refused(Refusal),
}

/// Streams one listed file as DATA packets and the empty DATA that ends it (also after a read error: the
/// receiver then sees a short file and the build reports it, rather than hanging). A refused file sends
/// nothing.
async fn send_file(tx: &mpsc::Sender<Result<Packet, Status>>, id: u32, root: &Path, entry: &Entry) -> Result<u64, SendError> {
    let (root, entry) = (root.to_path_buf(), entry.clone());
    let (ctx, mut crx) = mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut f = open_listed(&root, &entry).map_err(SendError::Refused)?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match f.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("reading {} failed: {e}", root.join(&entry.path).display());
                    return Ok(());
                }
            };
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            if ctx.blocking_send(buf).is_err() {
                return Ok(());
            }
        }
    });
    let mut sent = 0u64;
    while let Some(chunk) = crx.recv().await {
        sent += chunk.len() as u64;
        tx.send(Ok(Packet { data: chunk, ..packet(PacketType::PacketData, id) })).await.map_err(|_| SendError::Closed)?;
    }
    if let Ok(Err(e)) = reader.await {
        return Err(e);
    }
    tx.send(Ok(packet(PacketType::PacketData, id))).await.map_err(|_| SendError::Closed)?;
    Ok(sent)
}

/// Answers the daemon's packets for one DiffCopy call whose STATs listed `entries` of `dir` (named
/// `dir_name`): a REQ names an entry by its index in that list, and only a regular file of it is sent. A
/// refusal is logged, sent as an ERR packet (the build fails naming the path) and ends the transfer.
/// True when the daemon said FIN (the caller answers it once every STAT is out).
pub async fn serve_requests<S>(
    dir_name: &str,
    root: &Path,
    entries: &[Entry],
    mut inbound: S,
    tx: &mpsc::Sender<Result<Packet, Status>>,
    stats: &TransferStats,
) -> bool
where
    S: futures::Stream<Item = Result<Packet, Status>> + Unpin,
{
    while let Some(msg) = inbound.next().await {
        let Ok(p) = msg else { break };
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketReq) => {
                let Some(e) = entries.get(p.id as usize) else {
                    let _ = tx.send(Err(Status::invalid_argument(format!("no entry {}", p.id)))).await;
                    break;
                };
                match send_file(tx, p.id, root, e).await {
                    Ok(n) => {
                        stats.bytes.fetch_add(n, Ordering::Relaxed);
                        stats.files.fetch_add(1, Ordering::Relaxed);
                        stats.paths.lock().expect("not poisoned").push(format!("{dir_name}/{}", e.path));
                    }
                    Err(SendError::Closed) => break,
                    Err(SendError::Refused(why)) => {
                        let msg = format!("refusing to send {dir_name}/{}: {why}", e.path);
                        tracing::warn!("{msg}");
                        stats.refused.lock().expect("not poisoned").push(msg.clone());
                        let _ = tx.send(Ok(Packet { data: msg.clone().into_bytes(), ..packet(PacketType::PacketErr, p.id) })).await;
                        let _ = tx.send(Err(Status::failed_precondition(msg))).await;
                        break;
                    }
                }
            }
            Ok(PacketType::PacketFin) => return true,
            Ok(PacketType::PacketErr) => {
                tracing::warn!("BuildKit aborted the transfer: {}", String::from_utf8_lossy(&p.data));
                break;
            }
            _ => {}
        }
    }
    false
}

#[tonic::async_trait]
impl file_sync_server::FileSync for FileSync {
    type DiffCopyStream = ReceiverStream<Result<Packet, Status>>;
    type TarStreamStream = ReceiverStream<Result<Packet, Status>>;

    async fn diff_copy(&self, req: Request<Streaming<Packet>>) -> Result<Response<Self::DiffCopyStream>, Status> {
        let opts = Opts::from_metadata(req.metadata());
        let dir = self
            .dirs
            .get(&opts.dir_name)
            .ok_or_else(|| Status::not_found(format!("no directory named {:?} in this session", opts.dir_name)))?
            .clone();
        let entries = {
            let (dir, opts) = (dir.clone(), opts.clone());
            tokio::task::spawn_blocking(move || select(&dir, &opts)).await.map_err(|e| Status::internal(e.to_string()))??
        };
        tracing::debug!(?opts, entries = entries.len(), "DiffCopy");
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let stat_tx = tx.clone();
            let stats_list: Vec<Stat> = entries.iter().map(stat_of).collect();
            let stat_sender = tokio::spawn(async move {
                for (i, s) in stats_list.into_iter().enumerate() {
                    let p = Packet { stat: Some(s), ..packet(PacketType::PacketStat, i as u32) };
                    if stat_tx.send(Ok(p)).await.is_err() {
                        return;
                    }
                }
                let _ = stat_tx.send(Ok(packet(PacketType::PacketStat, 0))).await; // end of STATs
            });
            // Take the daemon's packets off the connection as they arrive: BuildKit sends one small REQ frame
            // per file, and h2 closes the connection (GOAWAY ENHANCE_YOUR_CALM, "too many small DATA frames")
            // when thousands of them sit unread while one file is sent. It REQs each listed file at most once.
            let (in_tx, in_rx) = mpsc::channel(entries.len() + 16);
            let drain = tokio::spawn(async move {
                let mut inbound = inbound;
                while let Some(m) = inbound.next().await {
                    if in_tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let fin = serve_requests(&opts.dir_name, &dir.root, &entries, ReceiverStream::new(in_rx), &tx, &stats).await;
            drain.abort();
            if fin {
                // Our FIN goes after the last STAT.
                let _ = stat_sender.await;
                let _ = tx.send(Ok(packet(PacketType::PacketFin, 0))).await;
            } else {
                stat_sender.abort(); // refused, or the daemon went away: nothing more to say
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn tar_stream(&self, _: Request<Streaming<Packet>>) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented("TarStream is not offered; use DiffCopy"))
    }
}

#[cfg(test)]
mod tests;
