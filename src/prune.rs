//! Which of an image name's copies in a node's store to remove, as `[registry] keep` says: the pure choice,
//! shared by the stores devloop loads images into (containerd, Docker Engine), which list and remove.

/// One image of a name in a store: its names there (`name:tag`, `name@digest`) that point at one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The image's digest (containerd: the records' target) or ID (Docker Engine).
    pub digest: String,
    /// Its names.
    pub names: Vec<String>,
    /// When it was last written there, in nanoseconds since the epoch.
    pub updated: i128,
    /// A container uses it, or the caller said to keep it.
    pub in_use: bool,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    /// Images removed (each with all of its names).
    pub removed: usize,
    /// Images of the name left in the store.
    pub kept: usize,
}

/// Which images to remove: all but the `keep` most recently written and those in use. `keep` 0 removes
/// nothing (pruning is off).
pub fn choose(images: &[Stored], keep: usize) -> Vec<&Stored> {
    if keep == 0 {
        return Vec::new();
    }
    let mut newest: Vec<&Stored> = images.iter().collect();
    // Newest first; equal times by digest, so that the choice does not depend on the listing's order.
    newest.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.digest.cmp(&b.digest)));
    newest.into_iter().skip(keep).filter(|s| !s.in_use).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(digest: &str, updated: i128, in_use: bool) -> Stored {
        Stored { digest: digest.into(), names: vec![format!("docker.io/library/hello@{digest}")], updated, in_use }
    }
    fn digests(v: Vec<&Stored>) -> Vec<&str> {
        v.into_iter().map(|s| s.digest.as_str()).collect()
    }

    #[test]
    fn the_newest_are_kept_and_the_rest_go_unless_in_use() {
        // Listed in no particular order: d1 oldest … d6 newest; d2 runs in a container.
        let images = [stored("d3", 3, false), stored("d1", 1, false), stored("d6", 6, false), stored("d2", 2, true), stored("d5", 5, false), stored("d4", 4, false)];
        let mut gone = digests(choose(&images, 3));
        gone.sort();
        assert_eq!(gone, ["d1", "d3"]);
        // The image in use is one of the newest: it counts towards them, nothing more is kept.
        let images = [stored("d1", 1, false), stored("d2", 2, false), stored("d3", 3, true)];
        assert_eq!(digests(choose(&images, 1)), ["d2", "d1"]);
    }

    #[test]
    fn keep_zero_or_few_images_remove_nothing() {
        let images = [stored("d1", 1, false), stored("d2", 2, false)];
        assert!(choose(&images, 0).is_empty());
        assert!(choose(&images, 2).is_empty());
        assert!(choose(&[], 3).is_empty());
    }
}
