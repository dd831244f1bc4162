//! `devloop down`: delete what devloop put in the namespace — the objects of the `[[deploy]] manifests` (or
//! `kustomize`), its Helm releases — and the namespace itself when devloop created it (it carries devloop's
//! label), and the pull secrets devloop made (their labels say so). Patched Deployments existed before
//! devloop touched them: they are left, and `down` says so.

use std::io::Write;

use super::Error;
use crate::cluster::namespace::{self, Down};
use crate::cluster::{self, KubeOptions};
use crate::config::Config;
use crate::deploy;
use crate::deploy::deployer::{Cleaned, Deployers, Kind};

/// Runs `down` against the configured (or overridden) context and namespace, one line per deleted or kept
/// thing on `out`. The allow-list is checked before any request, as for `deploy`.
pub async fn down(cfg: &Config, kube: &KubeOptions, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let target = cluster::connect(&cfg.kube, kube).await?;
    let ns = &target.namespace;
    // Each deployer's own cleanup, once per thing it created (two [[deploy]] tables may share a manifest set).
    for d in Deployers::of(cfg).distinct() {
        match (d.cleanup(&target).await?, &d.kind) {
            (Cleaned::Deleted(deleted), _) => {
                for what in deleted {
                    let _ = writeln!(out, "down: {what} deleted");
                }
            }
            (Cleaned::Uninstalled(was), Kind::Helm(h)) => {
                let what = format!("helm release {ns}/{}", h.release);
                let _ = writeln!(out, "down: {what} {}", if was { "uninstalled" } else { "is not installed" });
            }
            (Cleaned::Kept, Kind::Patch { deployment, .. }) => {
                let _ = writeln!(out, "down: deployment {ns}/{deployment} kept: devloop patched it but did not create it");
            }
            _ => {}
        }
    }
    for name in deploy::pull_secret::delete_ours(&target).await? {
        let _ = writeln!(out, "down: pull secret {ns}/{name} deleted (devloop created it)");
    }
    let _ = match namespace::delete_if_ours(&target).await? {
        Down::Deleted => writeln!(out, "down: namespace {ns} deleted (devloop created it)"),
        Down::Kept => writeln!(out, "down: namespace {ns} kept: devloop did not create it"),
        Down::Absent => writeln!(out, "down: namespace {ns} does not exist"),
    };
    Ok(())
}
