//! One import, from before the solve to the named image: the connection, the lease that holds what BuildKit
//! writes until the image names it, the content store served on the session, and what it moved.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::containerd::services::content::v1::content_server::ContentServer;
use super::image::{Desc, Imported, Manifest, SNAPSHOTTER};
use super::proxy::{ImportStats, ImportStore};
use super::{Containerd, Error};

/// An import into containerd in progress.
pub struct Import {
    ctrd: Containerd,
    lease: String,
    stats: Arc<ImportStats>,
}

impl Drop for Import {
    /// A failed or cancelled build ends its lease too (after a finished import, a second delete only finds it
    /// gone).
    fn drop(&mut self) {
        let (ctrd, lease) = (self.ctrd.clone(), self.lease.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { ctrd.release(&lease).await });
        }
    }
}

impl Import {
    /// Connects and takes a lease.
    pub async fn start(socket: &std::path::Path, namespace: &str) -> Result<Import, Error> {
        let ctrd = Containerd::connect(socket, namespace).await?;
        // Long enough for any build; a devloop killed mid-import leaves nothing held for longer.
        let lease = ctrd.lease(Duration::from_secs(3600)).await?;
        Ok(Import { ctrd, lease, stats: Arc::default() })
    }

    /// The content store to serve on the build session.
    pub fn store(&self) -> ContentServer<ImportStore> {
        ImportStore::server(self.ctrd.clone(), self.lease.clone(), self.stats.clone())
    }

    /// After the export of `reference` (`name:tag`) as `digest`: labels, unpacks and names the image, then
    /// ends the lease. `descriptor` is the exporter's (base64 JSON).
    pub async fn finish(self, reference: &str, digest: &str, descriptor: Option<&String>) -> Result<Imported, Error> {
        use base64::Engine;
        let started = Instant::now();
        let parsed = descriptor
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|json| serde_json::from_slice::<Desc>(&json).ok())
            .filter(|d| d.digest == digest);
        let target = match parsed {
            Some(d) => d,
            // An exporter that does not describe its result: the blob says what it is.
            None => {
                let blob = self.ctrd.read_blob(digest).await?;
                let m: Manifest = serde_json::from_slice(&blob).unwrap_or_default();
                Desc { media_type: m.media_type, digest: digest.into(), size: blob.len() as i64, platform: None, annotations: Default::default() }
            }
        };
        // `host:port/name` without a tag is `latest`, not the tag `port/name`.
        let r = crate::reference::Reference::parse(reference);
        let (name, tag) = (r.repository, r.tag_or_latest());
        let done = self.ctrd.finish_import(&self.lease, name, tag, &target, SNAPSHOTTER).await;
        self.ctrd.release(&self.lease).await;
        Ok(Imported {
            written: self.stats.written.load(Ordering::Relaxed),
            new_blobs: self.stats.new.lock().expect("not poisoned").len(),
            finish: started.elapsed(),
            ..done?
        })
    }
}
