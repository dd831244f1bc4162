//! After BuildKit has written an image's blobs: label them so containerd's garbage collector keeps them,
//! unpack the layers into the snapshotter CRI uses, and name the image so CRI resolves `name:tag@digest`.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::api::containerd::services::content::v1::{Info, InfoRequest, ReadContentRequest, UpdateRequest};
use super::api::containerd::services::diff::v1::ApplyRequest;
use super::api::containerd::services::images::v1::{CreateImageRequest, GetImageRequest, Image, UpdateImageRequest};
use super::api::containerd::services::snapshots::v1::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use super::api::containerd::types::Descriptor;
use super::api::google::protobuf::FieldMask;
use super::{Containerd, Error};

/// The snapshotter CRI unpacks into unless configured otherwise.
pub const SNAPSHOTTER: &str = "overlayfs";

/// An OCI/Docker descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Desc {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// For an index's entries.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Annotations (an attestation manifest says so in one).
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
}

/// A manifest or an index: which fields are set says which.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Media type, when the document states it.
    #[serde(default)]
    pub media_type: String,
    /// An image manifest's config.
    pub config: Option<Desc>,
    /// An image manifest's layers.
    #[serde(default)]
    pub layers: Vec<Desc>,
    /// An index's manifests.
    #[serde(default)]
    pub manifests: Vec<Desc>,
}

#[derive(Debug, Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The gc labels a manifest or index blob needs so containerd keeps what it references.
pub fn gc_labels(m: &Manifest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(c) = &m.config {
        out.push(("containerd.io/gc.ref.content.config".to_string(), c.digest.clone()));
    }
    for (i, l) in m.layers.iter().enumerate() {
        out.push((format!("containerd.io/gc.ref.content.l.{i}"), l.digest.clone()));
    }
    for (i, c) in m.manifests.iter().enumerate() {
        out.push((format!("containerd.io/gc.ref.content.m.{i}"), c.digest.clone()));
    }
    out
}

/// The manifest of an index that runs on `arch` (attestation manifests are not images).
pub fn pick_manifest<'a>(index: &'a Manifest, arch: &str) -> Option<&'a Desc> {
    let images = index.manifests.iter().filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"));
    let images: Vec<_> = images.collect();
    images
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch))
        .or(images.first())
        .copied()
}

/// The layers' chain IDs, as the snapshotter names unpacked layers: the first layer's diff ID, then
/// `sha256(parent + " " + diff ID)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{parent} {d}")))),
        };
        out.push(next);
    }
    out
}

/// The layers to unpack: those from the first whose chain the snapshotter lacks (a layer's snapshot needs
/// its parent's).
pub fn to_unpack(chains: &[String], present: impl Fn(&str) -> bool) -> usize {
    chains.iter().position(|c| !present(c)).unwrap_or(chains.len())
}

/// The image names CRI looks up: `<name>:<tag>` and `<name>@<digest>`, normalised as Docker does
/// (`hello` → `docker.io/library/hello`). CRI resolves `name:tag@digest` by the digested one.
pub fn record_names(name: &str, tag: &str, digest: &str) -> [String; 2] {
    let full = normalize(name);
    [format!("{full}:{tag}"), format!("{full}@{digest}")]
}

/// This machine's architecture as OCI names it (the node is this machine, or its VM).
pub fn oci_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// Docker's normalisation of a repository name.
pub fn normalize(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.to_string(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// Bytes written to containerd's content store.
    pub written: u64,
    /// Blobs written / blobs in the image.
    pub new_blobs: usize,
    /// All blobs of the image.
    pub blobs: usize,
    /// Bytes of all the image's blobs.
    pub image_bytes: u64,
    /// Layers unpacked now (the others were unpacked already).
    pub unpacked: usize,
    /// The image's layers.
    pub layers: usize,
    /// Time spent after BuildKit's export: labelling, unpacking, naming.
    pub finish: std::time::Duration,
}

impl Containerd {
    /// A blob's bytes.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let mut s = self
            .content()
            .read(self.req(ReadContentRequest { digest: digest.into(), offset: 0, size: 0 }, None))
            .await
            .map_err(|s| self.fail(format!("read {digest}"), s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.message().await.map_err(|s| self.fail(format!("read {digest}"), s))? {
            out.extend_from_slice(&m.data);
        }
        Ok(out)
    }

    async fn manifest(&self, digest: &str) -> Result<Manifest, Error> {
        let bytes = self.read_blob(digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Image { digest: digest.into(), reason: format!("not a manifest: {e}") })
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, Error> {
        match self.content().info(self.req(InfoRequest { digest: digest.into() }, None)).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(self.fail(format!("look up {digest}"), s)),
        }
    }

    async fn add_labels(&self, digest: &str, labels: Vec<(String, String)>) -> Result<(), Error> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
        let info = Info { digest: digest.into(), labels: labels.into_iter().collect(), ..Default::default() };
        let req = UpdateRequest { info: Some(info), update_mask: Some(FieldMask { paths }) };
        self.content().update(self.req(req, None)).await.map_err(|s| self.fail(format!("label {digest}"), s))?;
        Ok(())
    }

    /// Labels the image's blobs for the garbage collector, unpacks it into `snapshotter` and creates (or
    /// moves) its records. `target` is the exported manifest or index. Runs under `lease`, which the caller
    /// ends afterwards.
    pub async fn finish_import(&self, lease: &str, name: &str, tag: &str, target: &Desc, snapshotter: &str) -> Result<Imported, Error> {
        let mut imported = Imported::default();
        let top = self.manifest(&target.digest).await?;
        let (manifest_desc, manifest) = if top.manifests.is_empty() {
            (target.clone(), top)
        } else {
            self.add_labels(&target.digest, gc_labels(&top)).await?;
            imported.blobs += 1;
            imported.image_bytes += target.size as u64;
            let arch = oci_arch();
            let pick = pick_manifest(&top, &arch).cloned().ok_or_else(|| Error::Image { digest: target.digest.clone(), reason: "an index without images".into() })?;
            let m = self.manifest(&pick.digest).await?;
            (pick, m)
        };
        let config = manifest.config.clone().ok_or_else(|| Error::Image { digest: manifest_desc.digest.clone(), reason: "no config".into() })?;
        self.add_labels(&manifest_desc.digest, gc_labels(&manifest)).await?;
        imported.blobs += 2 + manifest.layers.len();
        imported.image_bytes += (manifest_desc.size + config.size + manifest.layers.iter().map(|l| l.size).sum::<i64>()) as u64;

        let cfg: Config = serde_json::from_slice(&self.read_blob(&config.digest).await?)
            .map_err(|e| Error::Image { digest: config.digest.clone(), reason: format!("not an image config: {e}") })?;
        let diff_ids = cfg.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::Image { digest: manifest_desc.digest.clone(), reason: "layers and diff IDs differ in number".into() });
        }
        let chains = chain_ids(&diff_ids);
        imported.layers = chains.len();
        imported.unpacked = self.unpack(lease, &manifest.layers, &diff_ids, &chains, snapshotter).await?;
        // The config keeps the unpacked snapshot (and through its parents, all of them) from the collector.
        let mut cfg_labels = Vec::new();
        if let Some(top) = chains.last() {
            cfg_labels.push((format!("containerd.io/gc.ref.snapshot.{snapshotter}"), top.clone()));
        }
        self.add_labels(&config.digest, cfg_labels).await?;
        for (l, d) in manifest.layers.iter().zip(&diff_ids) {
            self.add_labels(&l.digest, vec![("containerd.io/uncompressed".into(), d.clone())]).await?;
        }

        for record in record_names(name, tag, &target.digest) {
            self.put_image(&record, target).await?;
        }
        Ok(imported)
    }

    async fn unpack(&self, lease: &str, layers: &[Desc], diff_ids: &[String], chains: &[String], snapshotter: &str) -> Result<usize, Error> {
        let mut present = Vec::new();
        for c in chains {
            let stat = self.snapshots().stat(self.req(StatSnapshotRequest { snapshotter: snapshotter.into(), key: c.clone() }, None)).await;
            match stat {
                Ok(_) => {
                    self.hold(lease, &format!("snapshots/{snapshotter}"), c).await?;
                    present.push(c.clone())
                }
                Err(s) if s.code() == tonic::Code::NotFound => break,
                Err(s) => return Err(self.fail(format!("stat snapshot {c}"), s)),
            }
        }
        let from = to_unpack(chains, |c| present.iter().any(|p| p == c));
        for i in from..chains.len() {
            let parent = if i == 0 { String::new() } else { chains[i - 1].clone() };
            let key = format!("devloop-extract-{} {}", crate::util::random_id(), chains[i]);
            let snaps = || self.snapshots();
            let mounts = snaps()
                .prepare(self.req(PrepareSnapshotRequest { snapshotter: snapshotter.into(), key: key.clone(), parent, labels: HashMap::new() }, Some(lease)))
                .await
                .map_err(|s| self.fail(format!("prepare a snapshot for layer {}", layers[i].digest), s))?
                .into_inner()
                .mounts;
            let layer = Descriptor { media_type: layers[i].media_type.clone(), digest: layers[i].digest.clone(), size: layers[i].size, annotations: HashMap::new() };
            let applied = self.diff().apply(self.req(ApplyRequest { diff: Some(layer), mounts, ..Default::default() }, Some(lease))).await;
            let applied = match applied {
                Ok(r) => r.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    self.remove_snapshot(lease, snapshotter, &key).await;
                    return Err(self.fail(format!("apply layer {}", layers[i].digest), s));
                }
            };
            if applied != diff_ids[i] {
                self.remove_snapshot(lease, snapshotter, &key).await;
                return Err(Error::Image { digest: layers[i].digest.clone(), reason: format!("unpacked to {applied}, the config says {}", diff_ids[i]) });
            }
            let commit = CommitSnapshotRequest { snapshotter: snapshotter.into(), name: chains[i].clone(), key: key.clone(), labels: HashMap::new() };
            match snaps().commit(self.req(commit, Some(lease))).await {
                Ok(_) => {}
                // Unpacked meanwhile by someone else (CRI unpacking on demand): theirs is as good.
                Err(s) if s.code() == tonic::Code::AlreadyExists => {
                    self.remove_snapshot(lease, snapshotter, &key).await;
                }
                Err(s) => return Err(self.fail(format!("commit the snapshot of layer {}", layers[i].digest), s)),
            }
        }
        Ok(chains.len() - from)
    }

    async fn remove_snapshot(&self, lease: &str, snapshotter: &str, key: &str) {
        let req = RemoveSnapshotRequest { snapshotter: snapshotter.into(), key: key.into() };
        if let Err(s) = self.snapshots().remove(self.req(req, Some(lease))).await {
            tracing::debug!("removing snapshot {key}: {}", s.message());
        }
    }

    async fn put_image(&self, name: &str, target: &Desc) -> Result<(), Error> {
        let image = Image {
            name: name.into(),
            labels: [("io.cri-containerd.image".to_string(), "managed".to_string())].into(),
            target: Some(Descriptor { media_type: target.media_type.clone(), digest: target.digest.clone(), size: target.size, annotations: HashMap::new() }),
            ..Default::default()
        };
        match self.images().create(self.req(CreateImageRequest { image: Some(image.clone()), ..Default::default() }, None)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                let mask = FieldMask { paths: vec!["target".into(), "labels.io.cri-containerd.image".into()] };
                let req = UpdateImageRequest { image: Some(image), update_mask: Some(mask), ..Default::default() };
                self.images().update(self.req(req, None)).await.map_err(|s| self.fail(format!("update image {name}"), s))?;
                Ok(())
            }
            Err(s) => Err(self.fail(format!("create image {name}"), s)),
        }
    }

    /// The digest `name:tag` points at, if containerd has that image with all of its blobs.
    pub async fn present(&self, name: &str, tag: &str) -> Result<Option<String>, Error> {
        let tagged = format!("{}:{tag}", normalize(name));
        let image = match self.images().get(self.req(GetImageRequest { name: tagged.clone() }, None)).await {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(self.fail(format!("look up image {tagged}"), s)),
        };
        let Some(target) = image.and_then(|i| i.target) else { return Ok(None) };
        if !self.has_blob(&target.digest).await? {
            return Ok(None);
        }
        let mut manifest = self.manifest(&target.digest).await?;
        if !manifest.manifests.is_empty() {
            let Some(pick) = pick_manifest(&manifest, &oci_arch()).cloned() else { return Ok(None) };
            if !self.has_blob(&pick.digest).await? {
                return Ok(None);
            }
            manifest = self.manifest(&pick.digest).await?;
        }
        for d in manifest.config.iter().chain(&manifest.layers) {
            if !self.has_blob(&d.digest).await? {
                return Ok(None);
            }
        }
        Ok(Some(target.digest))
    }
}

#[cfg(test)]
mod tests;
