//! Removing the older images of a name that devloop imported: every iteration adds one to the node's store,
//! and nothing else ever removes them. The newest few are kept (a revert to a recent edit finds its image
//! there, nothing to build), so are those a container uses and those the caller names; the rest lose their
//! records, and containerd's garbage collector frees the blobs and unpacked snapshots nothing else references.

use std::collections::{BTreeMap, BTreeSet};

use super::api::containerd::services::containers::v1::ListContainersRequest;
use super::api::containerd::services::images::v1::{DeleteImageRequest, Image, ListImagesRequest};
use super::image::normalize;
use super::{Containerd, Error};
use crate::prune::{choose, Pruned, Stored};

/// Whether a container's `image` (a name as the pod spec gave it, `name:tag@digest`, or an image ID
/// `sha256:…`) is `s`. An image ID is the config's digest, which the records do not say: `configs` maps
/// targets to it where known.
fn uses(image: &str, s: &Stored, configs: &BTreeMap<String, String>) -> bool {
    if image.starts_with("sha256:") {
        return image == s.digest || configs.get(&s.digest).is_some_and(|c| c == image);
    }
    let r = crate::reference::Reference::parse(image);
    if r.digest == Some(s.digest.as_str()) {
        return true;
    }
    let full = normalize(r.repository);
    r.tag.is_some_and(|t| s.names.iter().any(|n| *n == format!("{full}:{t}")))
}

/// The images of `name`, grouped by target.
fn group(name: &str, records: Vec<Image>) -> Vec<Stored> {
    let full = normalize(name);
    let mut by: BTreeMap<String, Stored> = BTreeMap::new();
    for r in records {
        let rest = r.name.strip_prefix(&full).unwrap_or_default();
        // `hello:t` and `hello@sha256:…`, not `hello-other:t`.
        let Some(target) = r.target.filter(|_| rest.starts_with([':', '@'])) else { continue };
        let at = |t: Option<super::api::google::protobuf::Timestamp>| t.map_or(0, |t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128);
        let updated = at(r.updated_at).max(at(r.created_at));
        let s = by.entry(target.digest.clone()).or_insert_with(|| Stored { digest: target.digest, names: Vec::new(), updated, in_use: false });
        s.names.push(r.name);
        s.updated = s.updated.max(updated);
    }
    by.into_values().collect()
}

impl Containerd {
    /// Removes the images of `name` beyond the `keep` newest, but never one a container of the namespace
    /// uses nor one tagged with a tag in `tags`. The last delete waits for the garbage collector, so that
    /// what it frees is gone when this returns.
    pub async fn prune(&self, name: &str, keep: usize, tags: &[String]) -> Result<Pruned, Error> {
        // `[.]` rather than `\.`: the filter's quoting would take the backslash.
        let pattern = format!("^{}[:@]", normalize(name).replace('.', "[.]"));
        let req = ListImagesRequest { filters: vec![format!("name~=\"{pattern}\"")] };
        let records = self.images().list(self.req(req, None)).await.map_err(|s| self.fail(format!("list the images of {name}"), s))?.into_inner().images;
        let mut images = group(name, records);
        let containers = self.containers().list(self.req(ListContainersRequest { filters: Vec::new() }, None)).await;
        let used: BTreeSet<String> = containers.map_err(|s| self.fail("list containers", s))?.into_inner().containers.into_iter().map(|c| c.image).collect();
        let mut configs = BTreeMap::new();
        if used.iter().any(|i| i.starts_with("sha256:")) {
            for s in &images {
                if let Ok(Some(c)) = self.config_digest(&s.digest).await {
                    configs.insert(s.digest.clone(), c);
                }
            }
        }
        let full = normalize(name);
        for s in &mut images {
            s.in_use = used.iter().any(|i| uses(i, s, &configs)) || tags.iter().any(|t| s.names.contains(&format!("{full}:{t}")));
        }
        let doomed: Vec<Stored> = choose(&images, keep).into_iter().cloned().collect();
        let records: Vec<(&String, &String)> = doomed.iter().flat_map(|s| s.names.iter().map(move |n| (n, &s.digest))).collect();
        for (i, (record, digest)) in records.iter().enumerate() {
            let target = Some(super::api::containerd::types::Descriptor { digest: (*digest).clone(), ..Default::default() });
            let req = DeleteImageRequest { name: (*record).clone(), sync: i + 1 == records.len(), target };
            match self.images().delete(self.req(req, None)).await {
                // Gone, or moved to another target meanwhile (a new import of that tag): not ours to remove.
                Err(s) if s.code() != tonic::Code::NotFound => return Err(self.fail(format!("delete image {record}"), s)),
                _ => {}
            }
        }
        Ok(Pruned { removed: doomed.len(), kept: images.len() - doomed.len() })
    }

    /// The config digest of the image `target` names (an index: the manifest for this machine), if readable.
    async fn config_digest(&self, target: &str) -> Result<Option<String>, Error> {
        let mut m: super::image::Manifest = serde_json::from_slice(&self.read_blob(target).await?).unwrap_or_default();
        if let Some(pick) = super::image::pick_manifest(&m, &super::image::oci_arch()).cloned() {
            m = serde_json::from_slice(&self.read_blob(&pick.digest).await?).unwrap_or_default();
        }
        Ok(m.config.map(|c| c.digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_group_by_target_and_other_names_are_left_out() {
        let rec = |name: &str, digest: &str, secs: i64| Image {
            name: name.into(),
            target: Some(super::super::api::containerd::types::Descriptor { digest: digest.into(), ..Default::default() }),
            updated_at: Some(super::super::api::google::protobuf::Timestamp { seconds: secs, nanos: 0 }),
            ..Default::default()
        };
        let records = vec![
            rec("docker.io/library/hello:t1", "sha256:a", 10),
            rec("docker.io/library/hello@sha256:a", "sha256:a", 11),
            rec("docker.io/library/hello:t2", "sha256:b", 20),
            rec("docker.io/library/hello-other:t1", "sha256:c", 30),
        ];
        let got = group("hello", records);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].digest.as_str(), got[0].names.len(), got[0].updated), ("sha256:a", 2, 11_000_000_000));
        assert_eq!(got[1].names, ["docker.io/library/hello:t2"]);
    }

    #[test]
    fn a_container_uses_an_image_by_tag_digest_or_id() {
        let s = Stored { digest: "sha256:a".into(), names: vec!["docker.io/library/hello:t1".into()], updated: 0, in_use: false };
        let configs: BTreeMap<String, String> = [("sha256:a".to_string(), "sha256:cfg".to_string())].into();
        for (image, uses_it) in [
            ("hello:t1", true),
            ("docker.io/library/hello:t1", true),
            ("hello:t9@sha256:a", true),
            ("sha256:cfg", true),
            ("hello:t2", false),
            ("other:t1", false),
            ("sha256:zzz", false),
        ] {
            assert_eq!(uses(image, &s, &configs), uses_it, "{image}");
        }
    }
}
