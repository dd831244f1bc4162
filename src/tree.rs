//! The files a build can see: a walk of the context through its [`Filter`], in the order BuildKit's
//! DiffCopy expects (depth-first, a directory before its contents, siblings in byte order of their names).
//! The hasher and the DiffCopy sender both take their entries from here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::filter::Filter;

/// Errors walking a context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The context directory does not exist or is not a directory.
    #[error("build context {0} does not exist or is not a directory")]
    MissingContext(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A name that is not UTF-8 (BuildKit paths are strings).
    #[error("file name is not UTF-8: {0}")]
    NotUtf8(PathBuf),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Symlink,
}

/// One file, directory or symlink the build can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the context, `/`-separated, no `./`.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub perm: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Change time, ns since the epoch (for the digest cache only).
    pub ctime_ns: i64,
    /// Inode number (for the digest cache, and to check that a file sent is the file listed).
    pub ino: u64,
    /// Device number (with `ino`, identifies the file listed).
    pub dev: u64,
    /// Symlink target, as written.
    pub link: Option<String>,
}

impl Entry {
    fn from_metadata(path: String, full: &Path, md: &std::fs::Metadata) -> Result<Option<Entry>, Error> {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            // Sockets, fifos and devices have no place in an image build context.
            tracing::debug!(path = %full.display(), "skipping special file");
            return Ok(None);
        };
        let link = if kind == Kind::Symlink {
            let target = std::fs::read_link(full).map_err(|source| Error::Io { path: full.into(), source })?;
            Some(target.to_str().ok_or_else(|| Error::NotUtf8(full.into()))?.to_string())
        } else {
            None
        };
        Ok(Some(Entry {
            path,
            kind,
            perm: md.mode() & 0o7777,
            size: if kind == Kind::File { md.size() } else { 0 },
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            dev: md.dev(),
            link,
        }))
    }
}

/// Walks `root` and returns what `filter` lets through, in DiffCopy order.
pub fn walk(root: &Path, filter: &Filter) -> Result<Vec<Entry>, Error> {
    if !root.is_dir() {
        return Err(Error::MissingContext(root.to_path_buf()));
    }
    let mut out = Vec::new();
    walk_dir(root, "", filter, &mut out)?;
    Ok(out)
}

/// One entry at `rel` below `root` (symlinks followed when `follow`), or None if it does not exist.
pub fn stat(root: &Path, rel: &str, follow: bool) -> Result<Option<Entry>, Error> {
    let full = root.join(rel);
    let md = if follow { std::fs::metadata(&full) } else { std::fs::symlink_metadata(&full) };
    match md {
        Ok(md) => Entry::from_metadata(rel.to_string(), &full, &md),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: full, source }),
    }
}

/// The entry at `rel` below `root`, reached without leaving `root`: None when `rel` has a `..` component,
/// when a directory on the way is not a real directory (a symlink, perhaps to outside `root`), or when
/// nothing is there. Its path is `rel` cleaned (no `./`, no empty components). For names the daemon sends.
pub fn stat_inside(root: &Path, rel: &str) -> Result<Option<Entry>, Error> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let Some((_, dirs)) = parts.split_last() else { return Ok(None) };
    if parts.contains(&"..") {
        return Ok(None);
    }
    let mut dir = root.to_path_buf();
    for d in dirs {
        dir.push(d);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path: dir, source }),
        }
    }
    stat(root, &parts.join("/"), false)
}

/// Appends the visible entries below the directory `rel` of `root`, in DiffCopy order.
pub fn walk_below(root: &Path, rel: &str, filter: &Filter, out: &mut Vec<Entry>) -> Result<(), Error> {
    walk_dir(root, rel, filter, out)
}

/// DiffCopy order of two relative paths: component by component, so a directory comes right before its
/// contents ("a" < "a/b" < "a-c") although '-' sorts before '/' in a plain byte comparison.
pub fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// One child of a directory, as a walk sees it.
#[derive(Debug)]
pub struct Child {
    /// The entry (its path relative to the context).
    pub entry: Entry,
    /// False for an excluded directory that a `!` pattern may reach into: it is part of the build only if
    /// something below it is.
    pub visible: bool,
}

/// The children of the directory `rel` below `root` that a walk must consider, in byte order of their names:
/// everything the filter lets through, plus excluded directories a `!` pattern may reach into.
pub fn list_dir(root: &Path, rel: &str, filter: &Filter) -> Result<Vec<Child>, Error> {
    let full_dir = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let rd = std::fs::read_dir(&full_dir).map_err(|source| Error::Io { path: full_dir.clone(), source })?;
    let mut names = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|source| Error::Io { path: full_dir.clone(), source })?;
        let name = ent.file_name();
        let name = name.to_str().ok_or_else(|| Error::NotUtf8(ent.path()))?.to_string();
        names.push(name);
    }
    names.sort_unstable(); // String's Ord is byte order, as Go's WalkDir sorts
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let full = full_dir.join(&name);
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        out.extend(child(path, full, filter)?);
    }
    Ok(out)
}

/// The entry at `rel` below `root` as a walk would judge it (None: gone, or not for the build).
pub fn child_at(root: &Path, rel: &str, filter: &Filter) -> Result<Option<Child>, Error> {
    child(rel.to_string(), root.join(rel), filter)
}

fn child(path: String, full: PathBuf, filter: &Filter) -> Result<Option<Child>, Error> {
    let md = match std::fs::symlink_metadata(&full) {
        Ok(md) => md,
        // Deleted between readdir and stat: an editor's save in progress. It is simply not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: full, source }),
    };
    let excluded = filter.excluded(&path);
    if excluded && !(md.file_type().is_dir() && filter.may_reinclude_below(&path)) {
        return Ok(None);
    }
    Ok(Entry::from_metadata(path, &full, &md)?.map(|entry| Child { entry, visible: !excluded }))
}

/// Appends the visible entries below `dir` (relative path `rel`). Inside an excluded directory that a `!`
/// pattern may reach into, only re-included entries are kept, and their directories before them.
fn walk_dir(root: &Path, rel: &str, filter: &Filter, out: &mut Vec<Entry>) -> Result<(), Error> {
    for Child { entry, visible } in list_dir(root, rel, filter)? {
        if entry.kind != Kind::Dir {
            out.push(entry);
            continue;
        }
        let mark = out.len();
        let path = entry.path.clone();
        out.push(entry);
        walk_dir(root, &path, filter, out)?;
        if !visible && out.len() == mark + 1 {
            out.pop(); // nothing re-included below it
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn order_is_depth_first_with_dirs_before_contents_and_byte_sorted_siblings() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a/b", "a-c", "B", "a/A", "_x", "a.txt"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let entries = walk(d.path(), &Filter::new::<&str>(&[]).unwrap()).unwrap();
        // Byte order: 'B' (0x42) < '_' (0x5f) < 'a'; "a" < "a-c" < "a.txt"; the dir "a" precedes its
        // contents even though "a-c" < "a/b" in a plain path sort.
        assert_eq!(paths(&entries), ["B", "_x", "a", "a/A", "a/b", "a-c", "a.txt"]);
        assert_eq!(entries[2].kind, Kind::Dir);
    }

    #[test]
    fn excluded_entries_are_not_walked_and_reincluded_ones_bring_their_dirs() {
        let d = tempfile::tempdir().unwrap();
        for f in ["docs/keep.md", "docs/drop.md", "node_modules/x/y.js", "src/.main.rs.swp", "src/main.rs", ".env"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let f = Filter::new(&["docs", "!docs/keep.md", "node_modules", ".env"]).unwrap();
        assert_eq!(paths(&walk(d.path(), &f).unwrap()), ["docs", "docs/keep.md", "src", "src/main.rs"]);
    }

    #[test]
    fn symlinks_are_recorded_not_followed_and_modes_kept() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.path().join("run.sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let entries = walk(d.path(), &Filter::new::<&str>(&[]).unwrap()).unwrap();
        assert_eq!(entries[0].link.as_deref(), Some("/etc/passwd"));
        assert_eq!(entries[0].kind, Kind::Symlink);
        assert_eq!(entries[1].perm, 0o4755);
    }

    #[test]
    fn stat_inside_never_leaves_the_root() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ok"), "ok").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        let root = d.path().join("sub");
        assert_eq!(stat_inside(d.path(), "./sub//ok").unwrap().map(|e| e.path), Some("sub/ok".into()));
        assert_eq!(stat_inside(d.path(), "out").unwrap().map(|e| e.kind), Some(Kind::Symlink), "the link itself");
        assert_eq!(stat_inside(d.path(), "out/secret").unwrap(), None, "through a symlinked directory");
        assert_eq!(stat_inside(&root, "../out/secret").unwrap(), None, "up and out");
        assert_eq!(stat_inside(&root, "ok/../ok").unwrap(), None);
        assert_eq!(stat_inside(d.path(), "").unwrap(), None);
    }

    #[test]
    fn missing_context_is_named() {
        let err = walk(Path::new("/nonexistent/ctx"), &Filter::new::<&str>(&[]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ctx"));
    }
}
