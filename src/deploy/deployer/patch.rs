//! Patch mode: one container of an existing Deployment gets the new image (and the pull policy and pull
//! secret it needs); a failed rollout's undo is the image it ran before.

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{report, state_of, stopped_waiting, unless, Deployed, Deployer, Env, Rolled, Stop, Undo, Workload};
use crate::cluster::{selector_labels, Target};
use crate::deploy::{self, images, Error};
use crate::interrupt::Interrupt;

impl Deployer {
    /// Patches `name`'s container to run `reference` and watches the rollout.
    pub(super) async fn patch(
        &self,
        t: &Target,
        name: &str,
        container: Option<&str>,
        reference: &str,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
    ) -> Result<Deployed, Error> {
        let image = &self.image;
        let what = format!("deployment {}/{name}", t.namespace);
        let api: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
        let (dep, container, previous) = self.target(t, name, container).await?;
        let env = &self.env;
        let policy = deploy::pull_policy_of(&dep, &container);
        let set_policy = images::managed_pull_policy(reference, policy.as_deref(), env.pull, &env.store);
        let secret = env.secret.clone().filter(|s| !deploy::has_pull_secret(&dep, s));
        let refs = vec![reference.to_string()];
        if previous == reference && set_policy.is_none() && secret.is_none() {
            let _ = writeln!(out, "{image}: {what} already runs {reference}, nothing to do");
            let rolled = Rolled { name: name.into(), refs, selector: selector_labels(&dep), ..Default::default() };
            return Ok(Deployed { ok: true, rolled: vec![rolled], undo: vec![] });
        }
        if let Some(h) = &set_policy {
            let _ = writeln!(out, "{image}: hint: {h}");
        }
        let wanted = set_policy.is_some().then_some(env.pull).flatten();
        deploy::patch_image_and_policy(&api, name, &container, reference, wanted, secret.as_deref()).await?;
        if let Some(s) = &secret {
            let _ = writeln!(out, "{image}: {what}: imagePullSecrets += {s}");
        }
        let _ = writeln!(out, "{image}: {what} container {container}: {previous} -> {reference}");
        let undo = (self.rollback_on_failure && !previous.is_empty()).then(|| Undo::Image {
            image: image.clone(),
            deployment: name.into(),
            container: container.clone(),
            previous: previous.clone(),
            timeout: self.timeout,
        });
        let started = Instant::now();
        let Some((selector, verdict)) = self.watch(t, Workload::Deployment, name, &refs, intr).await? else {
            let intr = intr.expect("only a watch with an Interrupt stops early");
            return Err(self.interrupted(t, &[(Workload::Deployment, name.to_string())], undo, out, intr).await);
        };
        let ok = report(out, image, &what, started, &verdict);
        let rolled = Rolled::of(Workload::Deployment, name, &refs, selector, &verdict);
        Ok(Deployed { ok, rolled: vec![rolled], undo: undo.filter(|_| !ok).into_iter().collect() })
    }

    /// The Deployment `name` that this deployer patches, the container to patch and its current image. A
    /// missing Deployment is [`Error::Usage`], a container that cannot be told [`Error::Container`].
    pub(super) async fn target(&self, t: &Target, name: &str, container: Option<&str>) -> Result<(Deployment, String, String), Error> {
        let ns = &t.namespace;
        let what = format!("deployment {ns}/{name}");
        let api: Api<Deployment> = Api::namespaced(t.client.clone(), ns);
        let dep = api
            .get_opt(name)
            .await
            .map_err(|e| Error::Api { what: format!("reading {what}"), source: e })?
            .ok_or_else(|| Error::Usage(format!("{what} does not exist in context {}: create it, or use `manifests`", t.context)))?;
        let env: &Env = &self.env;
        let ours = |i: &str| env.ours(i, &self.image);
        let (container, current) = deploy::pick_container(&dep, container, &ours)
            .map_err(|message| Error::Container { namespace: ns.clone(), deployment: name.into(), message })?;
        Ok((dep, container, current))
    }
}

impl super::Deployers {
    /// Before any build: every Deployment a `[[deploy]]` patches exists in `t`'s namespace and has the
    /// container to patch — else the build and push would be for nothing. Not when the config also applies
    /// manifests or a chart (one of them may create it).
    pub async fn check_patch_targets(&self, t: &Target) -> Result<(), Error> {
        if self.iter().any(|d| !matches!(d.kind, super::Kind::Patch { .. })) {
            return Ok(());
        }
        for d in self.iter() {
            if let super::Kind::Patch { deployment, container } = &d.kind {
                d.target(t, deployment, container.as_deref()).await?;
            }
        }
        Ok(())
    }
}

/// Puts `previous` back into the Deployment's container and watches that rollout (see
/// [`super::Deployers::rollback`]).
#[allow(clippy::too_many_arguments)]
pub(super) async fn roll_back(
    t: &Target,
    image: &str,
    name: &str,
    container: &str,
    previous: &str,
    timeout: Duration,
    out: &mut (dyn Write + Send),
    stop: Option<&Stop<'_>>,
) -> Result<Option<bool>, Error> {
    let what = format!("deployment {}/{name}", t.namespace);
    let hint = if matches!(stop, Some(Stop::Second(_))) { " (a second signal stops waiting)" } else { "" };
    let _ = writeln!(out, "{image}: rolling {what} back to {previous}{hint}");
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    deploy::patch_image(&api, name, container, previous).await?;
    let started = Instant::now();
    let refs = [previous.to_string()];
    let Some(verdict) = unless(stop, deploy::watch_rollout(t, Workload::Deployment, name, &refs, timeout)).await.transpose()? else {
        stopped_waiting(out, image, stop, &what);
        let _ = writeln!(out, "{image}: {}; rollback NOT finished", state_of(t, Workload::Deployment, name).await);
        return Ok(None);
    };
    let back = report(out, image, &format!("{what} (rollback)"), started, &verdict.1);
    if back {
        let _ = writeln!(out, "{image}: {what} rolled back: it is back on {previous}");
    }
    Ok(Some(back))
}
