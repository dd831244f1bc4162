//! The content tag kept up to date from changed paths, for `devloop up`: after the first full walk, a batch
//! of changes re-stats only the changed paths (and walks only directories that appeared), re-reads only
//! changed files, and re-encodes from a map already in path order. The result is the same tag a full
//! [`super::snapshot`] gives (tested).

use std::collections::{BTreeMap, BTreeSet};

use super::{dockerfile_digest, encode_sorted, file_digest, BuildInputs, Error};
use crate::config::Image;
use crate::filter::Filter;
use crate::tree::{self, Entry, Kind};

/// One image's entries and file digests, keyed by path (so iteration is in byte order).
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, (Entry, Option<[u8; 32]>)>,
}

impl Tree {
    /// Walks and digests everything.
    pub fn full(image: &Image, filter: &Filter, cache: &mut super::DigestCache) -> Result<Tree, Error> {
        let walked = tree::walk(&image.context, filter)?;
        let (digests, _) = cache.digests(&image.context, &walked)?;
        Ok(Tree { entries: walked.into_iter().zip(digests).map(|(e, d)| (e.path.clone(), (e, d))).collect() })
    }

    /// Applies changed paths (relative to the context): each is removed with everything below it, then
    /// re-read if it still exists and the filter lets it through. Returns how many files were read.
    pub fn update(&mut self, image: &Image, filter: &Filter, changed: &BTreeSet<String>) -> Result<usize, Error> {
        let mut read = 0;
        for path in changed {
            let below = format!("{path}/");
            let doomed: Vec<String> =
                self.entries.range(path.clone()..).map(|(k, _)| k).take_while(|k| *k == path || k.starts_with(&below)).cloned().collect();
            for k in doomed {
                self.entries.remove(&k);
            }
            if filter.excluded(path) {
                continue;
            }
            let Some(entry) = tree::stat(&image.context, path, false)? else { continue };
            let mut fresh = vec![entry];
            if fresh[0].kind == Kind::Dir {
                tree::walk_below(&image.context, path, filter, &mut fresh)?;
            }
            // Directories above a new entry that were not there before (created in the same batch).
            let mut parent = path.as_str();
            while let Some(i) = parent.rfind('/') {
                parent = &parent[..i];
                if self.entries.contains_key(parent) || filter.excluded(parent) {
                    break;
                }
                if let Some(e) = tree::stat(&image.context, parent, false)? {
                    fresh.push(e);
                }
            }
            for e in fresh {
                let digest = if e.kind == Kind::File {
                    read += 1;
                    match file_digest(&image.context.join(&e.path)) {
                        Ok(d) => Some(d),
                        Err(_) => continue, // gone again already: the next batch will say so
                    }
                } else {
                    None
                };
                self.entries.insert(e.path.clone(), (e, digest));
            }
        }
        Ok(read)
    }

    /// The content tag of the tree as it stands.
    pub fn tag(&self, image: &Image) -> Result<String, Error> {
        let inputs = BuildInputs::of(image, dockerfile_digest(image)?);
        Ok(encode_sorted(&inputs, self.entries.values().map(|(e, d)| (e, d.as_ref()))))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{snapshot, DigestCache};

    fn write(root: &std::path::Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn updates_from_changed_paths_give_the_tag_a_full_walk_gives() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(root, "Dockerfile", "FROM scratch\n");
        write(root, ".dockerignore", "secret\n");
        write(root, "src/a.rs", "a");
        write(root, "src/deep/b.rs", "b");
        let image = Image::new("x", root);
        let filter = Filter::for_image(&image).unwrap();
        let mut t = Tree::full(&image, &filter, &mut DigestCache::in_memory()).unwrap();
        let full = |filter: &Filter| snapshot(&image, filter, &mut DigestCache::in_memory()).unwrap().tag;
        assert_eq!(t.tag(&image).unwrap(), full(&filter));

        // (mutation, the paths a watcher reports)
        type M = fn(&std::path::Path);
        let steps: Vec<(M, &[&str])> = vec![
            (|r| write(r, "src/a.rs", "a2"), &["src/a.rs"]),
            (|r| write(r, "new/dir/c.rs", "c"), &["new/dir/c.rs", "new"]),
            (|r| std::fs::remove_dir_all(r.join("src/deep")).unwrap(), &["src/deep"]),
            (|r| write(r, "secret", "s"), &["secret"]),
            (|r| std::fs::rename(r.join("src/a.rs"), r.join("src/z.rs")).unwrap(), &["src/a.rs", "src/z.rs"]),
            (|r| write(r, "Dockerfile", "FROM scratch\nENV A=1\n"), &["Dockerfile"]),
        ];
        for (i, (mutate, paths)) in steps.into_iter().enumerate() {
            mutate(root);
            let changed: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
            t.update(&image, &filter, &changed).unwrap();
            assert_eq!(t.tag(&image).unwrap(), full(&filter), "step {i}: {paths:?}");
        }
    }
}
