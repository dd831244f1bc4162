//! Per-file content digests keyed by path and metadata, so an unchanged file is not read again. The cache can
//! only skip reading, never change a result: an entry is used only while size, mtime, ctime and inode all
//! match, and only if it was taken well after the file's last change.
//!
//! Persisted (outside the context) in a small binary file: a header line and the record count (u64 LE), one
//! record per file — path length (u32 LE), path, size, mtime, ctime, inode, when hashed (8 bytes LE each),
//! SHA-256 (32 bytes) — and a SHA-256 of all that. A file that does not parse or check out is ignored (a
//! torn write after a crash included): a bad cache only costs a re-read.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tree::Entry;

const MAGIC: &[u8] = b"devloop digest cache 2\n";

/// What a cached digest is keyed by: if any of these changed, the file is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

impl Meta {
    fn of(e: &Entry) -> Meta {
        Meta { size: e.size, mtime_ns: e.mtime_ns, ctime_ns: e.ctime_ns, ino: e.ino }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    meta: Meta,
    /// When the digest was taken: a file modified in the same instant could keep its metadata, so entries
    /// hashed less than [`RACY_NS`] after the file's last change are never trusted (git's "racy clean").
    hashed_at_ns: i64,
    digest: [u8; 32],
}

const RACY_NS: i64 = 2_000_000_000;

/// Per-file content digests keyed by path and metadata, optionally persisted between runs.
#[derive(Debug)]
pub struct DigestCache {
    entries: HashMap<String, Cached>,
    file: Option<PathBuf>,
    dirty: bool,
    /// How long after a file's last change a digest must have been taken to be trusted.
    pub(super) racy_ns: i64,
}

impl Default for DigestCache {
    fn default() -> Self {
        DigestCache { entries: HashMap::new(), file: None, dirty: false, racy_ns: RACY_NS }
    }
}

impl DigestCache {
    /// An in-memory cache.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A cache persisted in `dir` for the context `context` (never inside the context: devloop writes
    /// nothing into the tree it watches). A missing or unreadable file starts an empty cache.
    pub fn persistent(dir: &Path, context: &Path) -> Self {
        let abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let key = hex::encode(Sha256::digest(abs.to_string_lossy().as_bytes()));
        let file = dir.join(format!("{}.v2", &key[..16]));
        let entries = std::fs::File::open(&file).ok().and_then(|f| read(BufReader::new(f)).ok()).unwrap_or_default();
        DigestCache { entries, file: Some(file), ..Self::default() }
    }

    /// The persistent cache for `context` in [`super::cache_dir`] (in memory only when there is no home).
    pub fn for_context(context: &Path) -> Self {
        match super::cache_dir() {
            Some(dir) => Self::persistent(&dir.join("digests"), context),
            None => Self::in_memory(),
        }
    }

    /// Writes the cache back if it changed. Failures only cost speed next time, so they are logged.
    pub fn save(&mut self) {
        let Some(file) = &self.file else { return };
        if !self.dirty {
            return;
        }
        // Written to a temporary file and renamed, so a reader never sees half a file.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let res = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            write(&mut w, &self.entries)?;
            w.flush()?;
            std::fs::rename(&tmp, file)
        });
        match res {
            Ok(()) => {
                self.dirty = false;
                // The JSON cache of earlier versions is superseded by this file.
                let _ = std::fs::remove_file(file.with_extension("json"));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(file = %file.display(), "cannot save the digest cache: {e}")
            }
        }
    }

    /// The cached digest of a file entry, if its metadata still vouches for it.
    pub(super) fn lookup(&self, e: &Entry) -> Option<[u8; 32]> {
        let c = self.entries.get(&e.path)?;
        if c.meta != Meta::of(e) || c.hashed_at_ns - e.mtime_ns.max(e.ctime_ns) < self.racy_ns {
            return None;
        }
        Some(c.digest)
    }

    /// Records a digest read at `hashed_at_ns`.
    pub(super) fn insert(&mut self, e: &Entry, digest: [u8; 32], hashed_at_ns: i64) {
        self.entries.insert(e.path.clone(), Cached { meta: Meta::of(e), hashed_at_ns, digest });
        self.dirty = true;
    }
}

/// Reads or writes through, hashing what passes.
struct Hashing<T> {
    inner: T,
    h: Sha256,
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write(w: &mut impl Write, entries: &HashMap<String, Cached>) -> std::io::Result<()> {
    let mut w = Hashing { inner: w, h: Sha256::new() };
    w.write_all(MAGIC)?;
    w.write_all(&(entries.len() as u64).to_le_bytes())?;
    for (path, c) in entries {
        w.write_all(&(path.len() as u32).to_le_bytes())?;
        w.write_all(path.as_bytes())?;
        for n in [c.meta.size, c.meta.mtime_ns as u64, c.meta.ctime_ns as u64, c.meta.ino, c.hashed_at_ns as u64] {
            w.write_all(&n.to_le_bytes())?;
        }
        w.write_all(&c.digest)?;
    }
    let sum: [u8; 32] = w.h.finalize().into();
    w.inner.write_all(&sum)
}

fn read(r: impl Read) -> std::io::Result<HashMap<String, Cached>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a digest cache");
    let mut r = Hashing { inner: r, h: Sha256::new() };
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(bad());
    }
    let mut count = [0u8; 8];
    r.read_exact(&mut count)?;
    let mut out = HashMap::new();
    let mut len = [0u8; 4];
    for _ in 0..u64::from_le_bytes(count) {
        r.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 64 * 1024 {
            return Err(bad());
        }
        let mut path = vec![0u8; len];
        r.read_exact(&mut path)?;
        let mut fixed = [0u8; 5 * 8 + 32];
        r.read_exact(&mut fixed)?;
        let n = |i: usize| u64::from_le_bytes(fixed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let meta = Meta { size: n(0), mtime_ns: n(1) as i64, ctime_ns: n(2) as i64, ino: n(3) };
        let digest = fixed[40..].try_into().expect("32 bytes");
        let path = String::from_utf8(path).map_err(|_| bad())?;
        out.insert(path, Cached { meta, hashed_at_ns: n(4) as i64, digest });
    }
    let want: [u8; 32] = r.h.finalize().into();
    let mut sum = [0u8; 32];
    r.inner.read_exact(&mut sum)?;
    if sum != want {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_format_round_trips_and_rejects_garbage() {
        let mut entries = HashMap::new();
        for (i, p) in ["a", "dir/ü b", ""].iter().enumerate() {
            let meta = Meta { size: i as u64, mtime_ns: -(i as i64), ctime_ns: 7, ino: u64::MAX };
            entries.insert(p.to_string(), Cached { meta, hashed_at_ns: 1 << 62, digest: [i as u8; 32] });
        }
        let mut buf = Vec::new();
        write(&mut buf, &entries).unwrap();
        let back = read(&buf[..]).unwrap();
        assert_eq!(back.len(), 3);
        for (p, c) in &entries {
            let b = &back[p];
            assert_eq!((b.meta, b.hashed_at_ns, b.digest), (c.meta, c.hashed_at_ns, c.digest), "{p}");
        }
        assert!(read(&b"{\"a\": 1}"[..]).is_err(), "the old JSON format");
        assert!(read(&buf[..buf.len() - 1]).is_err(), "a truncated file");
        let mut flipped = buf.clone();
        let last_digest_byte = flipped.len() - 33;
        flipped[last_digest_byte] ^= 1; // still parses: only the checksum tells
        assert!(read(&flipped[..]).is_err(), "a damaged file");
    }
}
