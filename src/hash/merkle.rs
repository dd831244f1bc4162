//! The content tag's tree. A directory's digest covers its children's records (README, "The content tag"),
//! so a change re-hashes only the directories above it. [`Tree::scan`] builds the tree in one parallel pass
//! (walking, reading and hashing together); `devloop up` keeps it and applies the watcher's changed paths with
//! [`Tree::update`], which looks only at those paths and never walks the context again.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{file_digest, record, DigestCache, Error};
use crate::filter::Filter;
use crate::tree::{self, Kind};

/// What a name in a directory stands for.
#[derive(Debug)]
enum Node {
    File { perm: u32, digest: [u8; 32] },
    Link { perm: u32, target: Box<str> },
    // Boxed so that the common case, a file, stays small (the tree of a 100k-file context is kept in memory).
    Dir(Box<Dir>),
}

/// A directory: its children in byte order of their names, and its digest once computed.
#[derive(Debug, Default)]
struct Dir {
    perm: u32,
    children: Vec<(Box<str>, Node)>,
    /// None while something below changed since it was last computed.
    digest: Option<[u8; 32]>,
}

impl Dir {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.children.binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
    }

    fn child_dir(&mut self, name: &str) -> Option<&mut Dir> {
        let i = self.find(name).ok()?;
        match &mut self.children[i].1 {
            Node::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// The digest, recomputing first the directories below that changed.
    fn digest(&mut self) -> [u8; 32] {
        if let Some(d) = self.digest {
            return d;
        }
        for (_, node) in &mut self.children {
            if let Node::Dir(d) = node {
                d.digest();
            }
        }
        let d = self.records_digest();
        self.digest = Some(d);
        d
    }

    /// SHA-256 over the children's records; child directories must have their digests.
    fn records_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut mode = String::with_capacity(8);
        for (name, node) in &self.children {
            let (kind, perm) = match node {
                Node::File { perm, .. } => ('f', *perm),
                Node::Link { perm, .. } => ('l', *perm),
                Node::Dir(d) => ('d', d.perm),
            };
            mode.clear();
            let _ = write!(mode, "{kind}{perm:04o}");
            record(&mut h, "name", name.as_bytes());
            record(&mut h, "mode", mode.as_bytes());
            match node {
                Node::File { digest, .. } => record(&mut h, "content", digest),
                Node::Link { target, .. } => record(&mut h, "link", target.as_bytes()),
                Node::Dir(d) => record(&mut h, "tree", &d.digest.expect("child directories are digested first")),
            }
        }
        h.finalize().into()
    }

    /// Every path below, for tests comparing the tree with a walk.
    #[cfg(test)]
    fn paths(&self, prefix: &str, out: &mut Vec<String>) {
        for (name, node) in &self.children {
            let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            if let Node::Dir(d) = node {
                d.paths(&path, out);
            }
            out.push(path);
        }
    }

    fn count(&self) -> usize {
        self.children.iter().map(|(_, n)| 1 + if let Node::Dir(d) = n { d.count() } else { 0 }).sum()
    }
}

/// One entry as a sync read it (its file's bytes went into the tar): the entry, with the mode of the file it
/// opened, and the digest of the bytes it sent (files only).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The entry (path relative to the context).
    pub entry: tree::Entry,
    /// SHA-256 of the bytes sent, for a file.
    pub digest: Option<[u8; 32]>,
}

/// What one scan saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Files, directories and symlinks the build can see.
    pub entries: usize,
    /// Bytes of file content covered.
    pub bytes: u64,
    /// Files read (digest cache misses).
    pub files_read: usize,
}

/// One image's context as the tag sees it.
#[derive(Debug, Default)]
pub struct Tree {
    root: Dir,
}

impl Tree {
    /// Walks `root` through `filter` and digests every file, in parallel, reading only what `cache` cannot
    /// vouch for (and adding what was read to it).
    pub fn scan(root: &Path, filter: &Filter, cache: &mut DigestCache) -> Result<(Tree, ScanStats), Error> {
        if !root.is_dir() {
            return Err(tree::Error::MissingContext(root.to_path_buf()).into());
        }
        let scan = Scan::new(root, filter, cache);
        let dir = scan.dir("", 0)?;
        Ok((Tree { root: dir }, scan.stats()))
    }

    /// Applies changed paths (relative to the context): each is dropped with everything below it, then read
    /// again — judged and digested as a scan would — if it still exists and the filter lets it through.
    /// Returns how many files were read.
    pub fn update(&mut self, root: &Path, filter: &Filter, changed: &BTreeSet<String>) -> Result<usize, Error> {
        let mut read = 0;
        for path in changed {
            self.remove(path, filter);
            let Some(child) = tree::child_at(root, path, filter)? else { continue };
            let mut none = DigestCache::in_memory();
            let scan = Scan::new(root, filter, &mut none);
            let node = scan.child(child)?;
            read += scan.stats().files_read;
            if let Some((_, node)) = node {
                self.put(root, path, node)?;
            }
        }
        Ok(read)
    }

    /// Applies what a sync read (see [`Sent`]) instead of reading again: each of `judged` (the changed paths
    /// it looked at) is dropped with everything below it, then `sent` goes in as it was read, in walk order.
    /// The tag then describes exactly the bytes the sync sent.
    pub fn apply(&mut self, root: &Path, filter: &Filter, judged: &BTreeSet<String>, sent: &[Sent]) -> Result<(), Error> {
        for path in judged {
            self.remove(path, filter);
        }
        for s in sent {
            let e = &s.entry;
            let node = match (e.kind, s.digest) {
                (Kind::File, Some(digest)) => Node::File { perm: e.perm, digest },
                (Kind::Symlink, _) => Node::Link { perm: e.perm, target: e.link.clone().unwrap_or_default().into() },
                (Kind::Dir, _) => Node::Dir(Box::new(Dir { perm: e.perm, ..Dir::default() })),
                (Kind::File, None) => return Err(Error::Io { path: root.join(&e.path), source: std::io::Error::other("a file sent without its digest") }),
            };
            self.put(root, &e.path, node)?;
        }
        Ok(())
    }

    /// The root directory's digest (what the tag is computed from), re-hashing only what changed.
    pub fn root_digest(&mut self) -> [u8; 32] {
        self.root.digest()
    }

    /// The content tag of the tree as it stands, for `image`'s other inputs, in its `tag` template.
    pub fn tag(&mut self, image: &crate::config::Image) -> Result<String, Error> {
        let inputs = super::BuildInputs::of(image, super::dockerfile_digest(image)?);
        Ok(image.tag.tag(&super::tag(&inputs, &self.root_digest())))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.root.count()
    }

    /// Every path in the tree, sorted.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.paths("", &mut out);
        out.sort();
        out
    }

    /// Whether the context has nothing the build can see.
    pub fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }

    /// Drops `path` and everything below it, then directories left empty that were there only for it.
    fn remove(&mut self, path: &str, filter: &Filter) {
        fn go(dir: &mut Dir, prefix: &str, rest: &str, filter: &Filter) -> bool {
            let (name, below) = rest.split_once('/').map_or((rest, None), |(n, b)| (n, Some(b)));
            let Ok(i) = dir.find(name) else { return false };
            let removed = match (below, &mut dir.children[i].1) {
                (None, _) => {
                    dir.children.remove(i);
                    true
                }
                (Some(below), Node::Dir(sub)) => {
                    let sub_path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
                    let removed = go(sub, &sub_path, below, filter);
                    // An excluded directory is in the tree only while something below it is re-included.
                    if removed && sub.children.is_empty() && filter.excluded(&sub_path) {
                        dir.children.remove(i);
                    }
                    removed
                }
                (Some(_), _) => false,
            };
            if removed {
                dir.digest = None;
            }
            removed
        }
        go(&mut self.root, "", path, filter);
    }

    /// Puts `node` at `path`. Directories above it that the tree lacks (created in the same batch, or excluded
    /// ones that a re-included entry brings along) are read from disk; if one is gone again, so is the node.
    fn put(&mut self, root: &Path, path: &str, node: Node) -> Result<(), Error> {
        let mut dir = &mut self.root;
        dir.digest = None;
        let mut parts = path.split('/').peekable();
        let mut end = 0;
        while let Some(name) = parts.next() {
            end += name.len() + usize::from(end > 0);
            if parts.peek().is_none() {
                match dir.find(name) {
                    Ok(i) => dir.children[i].1 = node,
                    Err(i) => dir.children.insert(i, (name.into(), node)),
                }
                return Ok(());
            }
            if dir.child_dir(name).is_none() {
                let Some(perm) = tree::stat(root, &path[..end], false)?.filter(|e| e.kind == Kind::Dir).map(|e| e.perm) else {
                    return Ok(());
                };
                let fresh = Node::Dir(Box::new(Dir { perm, ..Dir::default() }));
                match dir.find(name) {
                    Ok(i) => dir.children[i].1 = fresh, // a file replaced by a directory
                    Err(i) => dir.children.insert(i, (name.into(), fresh)),
                }
            }
            dir = dir.child_dir(name).expect("just made sure");
            dir.digest = None;
        }
        Ok(())
    }
}

/// One parallel pass over (part of) a context.
struct Scan<'a> {
    root: &'a Path,
    filter: &'a Filter,
    /// Looked up and added to as files are read (a lock held for a hash-map access, not for a read).
    cache: Mutex<&'a mut DigestCache>,
    started_ns: i64,
    entries: AtomicUsize,
    bytes: AtomicU64,
    read: AtomicUsize,
}

impl<'a> Scan<'a> {
    fn new(root: &'a Path, filter: &'a Filter, cache: &'a mut DigestCache) -> Self {
        Scan {
            root,
            filter,
            cache: Mutex::new(cache),
            started_ns: super::now_ns(),
            entries: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            read: AtomicUsize::new(0),
        }
    }

    fn stats(&self) -> ScanStats {
        ScanStats {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            files_read: self.read.load(Ordering::Relaxed),
        }
    }

    /// The directory `rel` (perm as given), with its digest. Children, and directories below, in parallel.
    fn dir(&self, rel: &str, perm: u32) -> Result<Dir, Error> {
        let children = tree::list_dir(self.root, rel, self.filter)?;
        let nodes: Vec<Option<(Box<str>, Node)>> =
            children.into_par_iter().map(|c| self.child(c)).collect::<Result<_, _>>()?;
        let mut dir = Dir { perm, children: nodes.into_iter().flatten().collect(), digest: None };
        dir.digest = Some(dir.records_digest());
        Ok(dir)
    }

    fn child(&self, child: tree::Child) -> Result<Option<(Box<str>, Node)>, Error> {
        let e = child.entry;
        let name: Box<str> = e.path.rsplit('/').next().unwrap_or(&e.path).into();
        let node = match e.kind {
            Kind::File => {
                let (perm, size) = (e.perm, e.size);
                let cached = self.cache.lock().expect("not poisoned").lookup(&e);
                let digest = match cached {
                    Some(d) => d,
                    None => match file_digest(&self.root.join(&e.path)) {
                        Ok(d) => {
                            self.read.fetch_add(1, Ordering::Relaxed);
                            self.cache.lock().expect("not poisoned").insert(&e, d, self.started_ns);
                            d
                        }
                        // Deleted since the listing: an editor's save in progress. It is simply not there.
                        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(err) => return Err(err),
                    },
                };
                self.bytes.fetch_add(size, Ordering::Relaxed);
                Node::File { perm, digest }
            }
            Kind::Symlink => Node::Link { perm: e.perm, target: e.link.unwrap_or_default().into() },
            Kind::Dir => {
                let dir = self.dir(&e.path, e.perm)?;
                if !child.visible && dir.children.is_empty() {
                    return Ok(None); // nothing re-included below an excluded directory
                }
                Node::Dir(Box::new(dir))
            }
        };
        self.entries.fetch_add(1, Ordering::Relaxed);
        Ok(Some((name, node)))
    }
}
