//! Helm mode: `helm upgrade --install` the release with the reference in the chart's values, then watch the
//! release's Deployments that run the image. A failed rollout's undo is `helm rollback` to the previous
//! revision (like `helm --atomic`, but judged by devloop's own rollout watch so the failure has its reason).

use std::io::Write;
use std::time::{Duration, Instant};

use super::{helm_scope, report, stopped_waiting, unless, Deployed, Deployer, Env, Rolled, Stop, Undo};
use crate::cluster::Target;
use crate::config::Helm;
use crate::deploy::{helm, Error};
use crate::interrupt::{until, Interrupt};

impl Deployer {
    /// Upgrades (or installs) the release with `reference` and watches its Deployments that run the image,
    /// until the first that fails.
    pub(super) async fn release(
        &self,
        t: &Target,
        h: &Helm,
        reference: &str,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
    ) -> Result<Deployed, Error> {
        let image = &self.image;
        let what = format!("helm release {}/{}", t.namespace, h.release);
        let scope = helm_scope(t);
        let upgrade = helm::upgrade(h, &self.env.root, &scope, reference, self.env.secret.as_deref());
        let upgraded = match intr {
            Some(i) => until(i.stop(), upgrade).await,
            None => Some(upgrade.await),
        };
        let Some(release) = upgraded else {
            let intr = intr.expect("only an upgrade with an Interrupt stops early");
            let _ = writeln!(out, "{image}: interrupted ({}) during the upgrade of {what}: stopping helm", intr.name());
            for said in helm::stopped().await {
                let _ = writeln!(out, "{image}: {said}");
            }
            return Err(Error::Interrupted(intr.name()));
        };
        let release = release?;
        let _ = writeln!(out, "{image}: {what} upgraded to revision {} ({reference})", release.revision);
        let mut deployed = Deployed { ok: true, ..Default::default() };
        let ours = ours(&self.env, image, &release.deployments);
        for (i, (name, refs)) in ours.iter().enumerate() {
            let dep = format!("deployment {}/{name}", t.namespace);
            let started = Instant::now();
            let Some((selector, v)) = self.watch(t, name, refs, intr).await? else {
                let intr = intr.expect("only a watch with an Interrupt stops early");
                let pending: Vec<String> = ours[i..].iter().map(|(n, _)| n.clone()).collect();
                return Err(self.interrupted(t, &pending, None, out, intr).await);
            };
            deployed.ok &= report(out, image, &dep, started, &v);
            deployed.rolled.push(Rolled::of(name, refs, selector, &v));
            if !deployed.ok {
                break;
            }
        }
        if !deployed.ok {
            if release.revision <= 1 {
                let _ = writeln!(out, "{image}: {what} has no previous revision to roll back to");
            } else {
                deployed.undo.push(Undo::Revision { image: image.clone(), helm: h.clone(), timeout: self.timeout });
            }
        }
        Ok(deployed)
    }
}

/// The Deployments (of a release's manifest) that run `image`, each with its references to it.
fn ours(env: &Env, image: &str, deployments: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    deployments
        .iter()
        .filter_map(|(name, imgs)| {
            let refs: Vec<String> = imgs.iter().filter(|i| env.ours(i, image)).cloned().collect();
            (!refs.is_empty()).then(|| (name.clone(), refs))
        })
        .collect()
}

/// Rolls the release back to its previous revision and watches its Deployments that run `image` (see
/// [`super::Deployers::rollback`]).
pub(super) async fn roll_back(
    env: &Env,
    t: &Target,
    image: &str,
    h: &Helm,
    timeout: Duration,
    out: &mut (dyn Write + Send),
    stop: Option<&Stop<'_>>,
) -> Result<Option<bool>, Error> {
    let what = format!("helm release {}/{}", t.namespace, h.release);
    let _ = writeln!(out, "{image}: rolling {what} back to its previous revision (helm rollback)");
    let back = helm::rollback(h, &helm_scope(t)).await?;
    let mut all = true;
    for (name, refs) in &ours(env, image, &back) {
        let dep = format!("deployment {}/{name} (rollback)", t.namespace);
        let started = Instant::now();
        // Bounded by the rollout timeout; a stop ends only the waiting (the rollback is already done).
        let Some(v) = unless(stop, crate::deploy::watch_rollout(t, name, refs, timeout)).await.transpose()? else {
            stopped_waiting(out, image, stop, &what);
            return Ok(None);
        };
        if report(out, image, &dep, started, &v.1) {
            let _ = writeln!(out, "{image}: {what} rolled back: deployment {name} is back on {}", refs.join(", "));
        } else {
            all = false;
        }
    }
    Ok(Some(all))
}
