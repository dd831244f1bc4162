//! The content tag: SHA-256 over a canonical encoding of everything a build can see, so the same bytes give
//! the same tag on any machine and any change a build could see gives a new one. The encoding is documented
//! in the README ("The content tag"): [`tag`] writes the top-level records and [`merkle`] the directories'.
//!
//! The context is walked and its files digested in parallel, through a [`DigestCache`] keyed by each file's
//! metadata so an unchanged file is not read again. The cache can only skip reading, never change a result.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::config::Image;
use crate::filter::Filter;
use crate::tree;
use merkle::Tree;

/// Errors computing a tag.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The context could not be walked.
    #[error(transparent)]
    Tree(#[from] tree::Error),
    /// The filter could not be built.
    #[error(transparent)]
    Filter(#[from] crate::filter::Error),
    /// The Dockerfile is missing.
    #[error("Dockerfile {0} does not exist")]
    MissingDockerfile(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Length of the content hash in hex characters (128 bits of the SHA-256): the tag, unless the image's `tag`
/// template adds to it.
pub const TAG_LEN: usize = crate::config::HASH_LEN;

/// The result of hashing one image's inputs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The content tag: the content hash, in the image's `tag` template.
    pub tag: String,
    /// Number of entries (files, directories, symlinks) the build can see.
    pub entries: usize,
    /// Bytes of file content covered.
    pub bytes: u64,
    /// Files read this time (cache misses).
    pub files_read: usize,
}

/// Non-file inputs of a build that go into the tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInputs<'a> {
    /// `dockerfile.v0` or `gateway.v0`.
    pub frontend: &'a str,
    /// Gateway frontend image.
    pub frontend_source: &'a str,
    /// Multi-stage target.
    pub target: &'a str,
    /// Target platform.
    pub platform: &'a str,
    /// Build args, sorted by key.
    pub build_args: Vec<(&'a str, &'a str)>,
    /// Extra frontend options, sorted by key.
    pub frontend_opts: Vec<(&'a str, &'a str)>,
    /// SHA-256 of the Dockerfile's bytes (None for a gateway frontend without one).
    pub dockerfile: Option<[u8; 32]>,
}

impl<'a> BuildInputs<'a> {
    /// The inputs of a configured image, with the Dockerfile's digest.
    pub fn of(image: &'a Image, dockerfile: Option<[u8; 32]>) -> Self {
        BuildInputs {
            frontend: &image.frontend,
            frontend_source: &image.frontend_source,
            target: &image.target,
            platform: &image.platform,
            build_args: image.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            frontend_opts: image.frontend_opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            dockerfile,
        }
    }
}

/// Appends one record: the name and the value, each as a big-endian u64 length and the bytes.
fn record(h: &mut Sha256, name: &str, value: &[u8]) {
    h.update((name.len() as u64).to_be_bytes());
    h.update(name.as_bytes());
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
}

/// The tag for a context whose root directory has the digest `root` (see [`merkle`]), built with `inputs`.
pub fn tag(inputs: &BuildInputs<'_>, root: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    record(&mut h, "devloop-content-tag", b"2");
    record(&mut h, "frontend", inputs.frontend.as_bytes());
    record(&mut h, "frontend-source", inputs.frontend_source.as_bytes());
    record(&mut h, "target", inputs.target.as_bytes());
    record(&mut h, "platform", inputs.platform.as_bytes());
    let mut args = inputs.build_args.clone();
    args.sort();
    for (k, v) in args {
        record(&mut h, &format!("build-arg:{k}"), v.as_bytes());
    }
    let mut opts = inputs.frontend_opts.clone();
    opts.sort();
    for (k, v) in opts {
        record(&mut h, &format!("frontend-opt:{k}"), v.as_bytes());
    }
    record(&mut h, "dockerfile", inputs.dockerfile.as_ref().map_or(&[][..], |d| &d[..]));
    record(&mut h, "tree", root);
    hex::encode(h.finalize())[..TAG_LEN].to_string()
}

/// SHA-256 of a file's bytes.
pub fn file_digest(path: &Path) -> Result<[u8; 32], Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    thread_local! {
        // One read buffer per thread: a fresh zeroed 64 KiB per file costs more than hashing a small file.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    BUF.with_borrow_mut(|buf| loop {
        let n = f.read(buf).map_err(io)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    })
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Hashes one image: walks its context through `filter`, digests files through `cache`, and encodes.
pub fn snapshot(image: &Image, filter: &Filter, cache: &mut DigestCache) -> Result<Snapshot, Error> {
    let dockerfile = dockerfile_digest(image)?;
    let (mut tree, stats) = Tree::scan(&image.context, filter, cache)?;
    let tag = image.tag.tag(&tag(&BuildInputs::of(image, dockerfile), &tree.root_digest()));
    Ok(Snapshot { tag, entries: stats.entries, bytes: stats.bytes, files_read: stats.files_read })
}

/// Where devloop keeps caches: `$XDG_CACHE_HOME/devloop` or `~/.cache/devloop`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("devloop"))
}

/// The Dockerfile's digest, as the tag needs it (None for a gateway frontend without one).
pub fn dockerfile_digest(image: &Image) -> Result<Option<[u8; 32]>, Error> {
    if image.frontend == "dockerfile.v0" || image.dockerfile.is_file() {
        if !image.dockerfile.is_file() {
            return Err(Error::MissingDockerfile(image.dockerfile.clone()));
        }
        Ok(Some(file_digest(&image.dockerfile)?))
    } else {
        Ok(None)
    }
}

mod cache;
pub mod merkle;

pub use cache::DigestCache;

#[cfg(test)]
mod tests;
