//! Removing the older images of a name that devloop loaded into Docker Engine's store (`load = true`): the
//! newest few stay, so do those a container uses (cri-dockerd's pods are the engine's containers) and those
//! the caller names; the rest are untagged, which deletes an image no other tag or container holds.

use std::collections::{BTreeSet, HashMap};

use super::{Engine, Error};
use crate::prune::{choose, Pruned, Stored};

/// `name:tag` names of `name` among an image's tags (not `name-other:tag`, nor `host/name:tag`).
fn own_tags(name: &str, tags: &[String]) -> Vec<String> {
    tags.iter().filter(|t| t.strip_prefix(name).is_some_and(|rest| rest.starts_with(':') && !rest.contains('/'))).cloned().collect()
}

impl Engine {
    /// Removes the images of `name` beyond the `keep` newest, but never one a container (running or not)
    /// was made from nor one tagged with a tag in `tags`. An image the engine refuses to remove (a container
    /// made meanwhile) stays, counted as kept.
    pub async fn prune(&self, name: &str, keep: usize, tags: &[String]) -> Result<Pruned, Error> {
        let filters = HashMap::from([("reference", vec![name])]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
        let listed = self.api.list_images(Some(opts)).await.map_err(|e| self.api_error(&format!("listing the images of {name}"), &e))?;
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).build();
        let containers = self.api.list_containers(Some(opts)).await.map_err(|e| self.api_error("listing containers", &e))?;
        let used: BTreeSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
        let keep_tags: Vec<String> = tags.iter().map(|t| format!("{name}:{t}")).collect();
        let images: Vec<Stored> = listed
            .into_iter()
            .filter_map(|i| {
                let names = own_tags(name, &i.repo_tags);
                let in_use = used.contains(&i.id) || names.iter().any(|n| keep_tags.contains(n));
                (!names.is_empty()).then(|| Stored { digest: i.id, names, updated: i.created as i128 * 1_000_000_000, in_use })
            })
            .collect();
        let mut removed = 0;
        for s in choose(&images, keep) {
            let mut gone = true;
            for tag in &s.names {
                match self.api.remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await {
                    Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                    // In use after all (a container made since the listing): it stays.
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => gone = false,
                    Err(e) => return Err(self.api_error(&format!("removing image {tag}"), &e)),
                }
            }
            removed += usize::from(gone);
        }
        Ok(Pruned { removed, kept: images.len() - removed })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_names_own_tags_are_its_images() {
        let tags = ["hello:t1", "hello-other:t1", "reg:5000/hello:t1", "hello:t2"].map(String::from);
        assert_eq!(super::own_tags("hello", &tags), ["hello:t1", "hello:t2"]);
    }
}
