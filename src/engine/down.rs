//! `devloop down`: delete what devloop put in the namespace — the objects of the `[[deploy]] manifests` (or
//! `kustomize`), its Helm releases — and the namespace itself when devloop created it (it carries devloop's
//! label), and the pull secrets devloop made (their labels say so). Patched Deployments existed before
//! devloop touched them: they are left, and `down` says so.

use std::io::Write;

use super::Error;
use crate::config::{Config, DeployTarget, ManifestSource};
use crate::cluster::namespace::{self, Down};
use crate::cluster::{self, KubeOptions};
use crate::deploy;

/// Runs `down` against the configured (or overridden) context and namespace, one line per deleted or kept
/// thing on `out`. The allow-list is checked before any request, as for `deploy`.
pub async fn down(cfg: &Config, kube: &KubeOptions, out: &mut (dyn Write + Send)) -> Result<(), Error> {
    let target = cluster::connect(&cfg.kube, kube).await?;
    let ns = &target.namespace;
    let mut seen: Vec<&ManifestSource> = Vec::new();
    for d in &cfg.deploys {
        match &d.target {
            DeployTarget::Manifests(source) => {
                // Two [[deploy]] tables may share one manifest set: delete it once.
                if seen.contains(&source) {
                    continue;
                }
                seen.push(source);
                for what in super::deploy::delete_manifests(cfg, &target, source).await? {
                    let _ = writeln!(out, "down: {what} deleted");
                }
            }
            DeployTarget::Helm(h) => {
                let what = format!("helm release {ns}/{}", h.release);
                match deploy::helm::uninstall(h, ns, &target.context).await.map_err(deploy::Error::from)? {
                    true => writeln!(out, "down: {what} uninstalled"),
                    false => writeln!(out, "down: {what} is not installed"),
                }
                .ok();
            }
            DeployTarget::Patch { deployment, .. } => {
                let _ = writeln!(out, "down: deployment {ns}/{deployment} kept: devloop patched it but did not create it");
            }
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
