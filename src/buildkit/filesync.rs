//! FileSync/DiffCopy, the sending side of fsutil's protocol: BuildKit asks for a directory by name, we send
//! a STAT for every entry it may see (depth-first, directory before contents, byte-sorted siblings, then an
//! empty STAT), and answer its REQs for file contents with DATA chunks. BuildKit keeps a copy of the last
//! context per session shared key and only REQs files whose stat changed, so stable stats make the second
//! build send only what changed.

use std::collections::{HashMap, HashSet};
use std::io::Read;
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
        if let Ok(target) = std::fs::read_link(root.join(&rel)) {
            let resolved = root.join(&rel).parent().map(|p| p.join(&target)).unwrap_or(target);
            if let Ok(inside) = resolved.strip_prefix(root) {
                out.push(inside.to_string_lossy().into_owned());
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

    let mut entries = if literal {
        // The Dockerfile's directory may be large (a repository root): stat only what is asked for.
        let mut out = Vec::new();
        for inc in &include_list {
            let rel = inc.trim_start_matches("./").trim_matches('/');
            if let Some(e) = tree::stat(&dir.root, rel, false).map_err(internal)? {
                let is_dir = e.kind == Kind::Dir;
                if !dir.filter.excluded(rel) {
                    out.push(e);
                }
                if is_dir {
                    tree::walk_below(&dir.root, rel, &dir.filter, &mut out).map_err(internal)?;
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
        if literal {
            // Ancestors of a literal include are not in the list yet: stat them.
            let mut have: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
            for p in keep.clone() {
                if !have.contains(&p) {
                    if let Some(e) = tree::stat(&dir.root, &p, false).map_err(internal)? {
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

/// Streams one file as DATA packets and the empty DATA that ends it (also after a read error: the
/// receiver then sees a short file and the build reports it, rather than hanging).
async fn send_file(tx: &mpsc::Sender<Result<Packet, Status>>, id: u32, path: &Path) -> Result<u64, ()> {
    let path = path.to_path_buf();
    let (ctx, mut crx) = mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
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
        tx.send(Ok(Packet { data: chunk, ..packet(PacketType::PacketData, id) })).await.map_err(|_| ())?;
    }
    if let Ok(Err(e)) = reader.await {
        tracing::warn!("reading a context file failed: {e}");
    }
    tx.send(Ok(packet(PacketType::PacketData, id))).await.map_err(|_| ())?;
    Ok(sent)
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
        let mut inbound = req.into_inner();
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
            while let Some(msg) = inbound.next().await {
                let Ok(p) = msg else { break };
                match PacketType::try_from(p.r#type) {
                    Ok(PacketType::PacketReq) => {
                        let Some(e) = entries.get(p.id as usize) else {
                            let _ = tx.send(Err(Status::invalid_argument(format!("no entry {}", p.id)))).await;
                            break;
                        };
                        let Ok(n) = send_file(&tx, p.id, &dir.root.join(&e.path)).await else { break };
                        stats.bytes.fetch_add(n, Ordering::Relaxed);
                        stats.files.fetch_add(1, Ordering::Relaxed);
                        stats.paths.lock().expect("not poisoned").push(format!("{}/{}", opts.dir_name, e.path));
                    }
                    Ok(PacketType::PacketFin) => {
                        let _ = stat_sender.await;
                        let _ = tx.send(Ok(packet(PacketType::PacketFin, 0))).await;
                        break;
                    }
                    Ok(PacketType::PacketErr) => {
                        tracing::warn!("BuildKit aborted the transfer: {}", String::from_utf8_lossy(&p.data));
                        break;
                    }
                    _ => {}
                }
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
