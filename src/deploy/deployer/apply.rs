//! Manifest mode (files or a kustomization): the objects with devloop's references substituted (and the pull
//! policy and pull secret they need), server-side applied; the workloads (Deployments, StatefulSets,
//! DaemonSets, Jobs and bare Pods, the last two replaced whole) that changed and run one of the references are
//! watched; a CronJob's template is only updated (its next run is at its schedule). There is no undo: the
//! files are what the user wrote.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use super::{report, Deployed, Deployer, Rolled, Workload};
use crate::cluster::Target;
use crate::config::ManifestSource;
use crate::deploy::{custom, manifests, pull_secret, Error};
use crate::interrupt::Interrupt;

impl Deployer {
    /// Applies `source`'s objects with `references` put in, and watches the workloads that roll.
    pub(super) async fn apply(
        &self,
        t: &Target,
        source: &ManifestSource,
        references: &HashMap<String, String>,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
    ) -> Result<Deployed, Error> {
        let (image, env) = (&self.image, &self.env);
        let objects = render(env, &self.custom, source, references, &mut |h| {
            let _ = writeln!(out, "{image}: hint: {h}");
        })?;
        let applied = manifests::apply(t, objects).await?;
        let mut deployed = Deployed { ok: true, ..Default::default() };
        let rolls = |a: &manifests::Applied| a.changed && Workload::of(a.object.kind()).is_some() && !a.object.refs.is_empty();
        for (i, a) in applied.iter().enumerate() {
            let scope = if a.cluster_scoped { String::new() } else { format!("{}/", t.namespace) };
            let what = format!("{} {scope}{}", a.object.kind().to_lowercase(), a.object.name());
            if a.replaced {
                let _ = writeln!(out, "{image}: {what} replaced (its pod template is immutable: deleted with its pods, created anew)");
            } else {
                let state = if a.changed { "applied" } else { "unchanged" };
                let _ = writeln!(out, "{image}: {what} {state} (server-side apply, field manager devloop)");
            }
            if a.object.kind() == "CronJob" && a.changed && !a.object.refs.is_empty() {
                let _ = writeln!(out, "{image}: {what}: template updated; next run at its schedule (nothing to wait for)");
            }
            let condition = self.custom.get(&custom::kind_key(&a.object.value)).and_then(|c| c.ready_when.as_deref());
            if let Some(condition) = condition.filter(|_| a.changed && !a.object.refs.is_empty()) {
                let (ok, rolled) = self.watch_custom(t, &a.object, &what, condition, out, intr).await?;
                deployed.ok &= ok;
                deployed.rolled.push(rolled);
                continue;
            }
            let Some(kind) = Workload::of(a.object.kind()).filter(|_| rolls(a)) else { continue };
            let started = Instant::now();
            super::unstick(t, kind, a.object.name(), image, out).await?;
            let Some((selector, v)) = self.watch(t, kind, a.object.name(), &a.object.refs, intr).await? else {
                let intr = intr.expect("only a watch with an Interrupt stops early");
                // This workload and the ones applied after it that were still to be watched.
                let pending: Vec<(Workload, String)> =
                    applied[i..].iter().filter(|a| rolls(a)).filter_map(|a| Some((Workload::of(a.object.kind())?, a.object.name().to_string()))).collect();
                return Err(self.interrupted(t, &pending, None, out, intr).await);
            };
            let ok = report(out, image, &what, started, &v);
            if !ok && kind == Workload::Job {
                let _ = writeln!(out, "{image}: {what}: no rollback for a Job (nothing to roll back to: its previous run is gone)");
            }
            deployed.ok &= ok;
            deployed.rolled.push(Rolled::of(kind, a.object.name(), &a.object.refs, selector, &v));
        }
        Ok(deployed)
    }

    /// Watches a custom resource until its `condition` says (`ready-when`); says how it ended.
    /// A signal stops the wait (`deploy`, `check`): the object is left as applied, and said so.
    pub(super) async fn watch_custom(
        &self,
        t: &Target,
        object: &manifests::Object,
        what: &str,
        condition: &str,
        out: &mut (dyn Write + Send),
        intr: Option<&Interrupt>,
    ) -> Result<(bool, Rolled), Error> {
        let started = Instant::now();
        let api = manifests::api_for(t, object).await?;
        let watch = custom::watch(&api, object.name(), condition, self.timeout);
        let watched = match intr {
            Some(i) => crate::interrupt::until(i.stop(), watch).await,
            None => Some(watch.await),
        };
        let Some(v) = watched else {
            let intr = intr.expect("only a watch with an Interrupt stops early");
            let _ = writeln!(out, "{}: interrupted ({}) while waiting for {what}'s {condition} condition: it is applied, not verified", self.image, intr.name());
            return Err(Error::Interrupted(intr.name()));
        };
        let v = v.map_err(Error::api(format!("reading {what}")))?;
        let image = &self.image;
        let took = started.elapsed().as_secs_f64();
        let ok = match &v {
            crate::deploy::rollout::Verdict::Failed(f) => {
                let _ = writeln!(out, "{image}: rollout of {what} FAILED after {took:.1}s: {}: {}", f.reason, f.message);
                false
            }
            _ => {
                let _ = writeln!(out, "{image}: rollout of {what} done in {took:.1}s (condition {condition} True)");
                true
            }
        };
        Ok((ok, Rolled::custom(&object.kind().to_lowercase(), object.name(), &object.refs, &v)))
    }
}

/// `source`'s objects, each image of devloop's replaced by its reference in `references`; `hint` is told what
/// the user may want to change (a pull policy, a tag-less image).
fn render(
    env: &super::Env,
    custom: &std::collections::BTreeMap<String, crate::config::Custom>,
    source: &ManifestSource,
    references: &HashMap<String, String>,
    hint: &mut dyn FnMut(&str),
) -> Result<Vec<manifests::Object>, Error> {
    let subst = |image: &str| references.iter().find(|(name, _)| env.ours(image, name)).map(|(_, r)| r.clone());
    let pull = env.pull.map(|p| (p, env.store.as_str()));
    let mut objects = Vec::new();
    for (file, mut value) in crate::util::off_runtime(|| manifests::load(&env.root, source))? {
        // An object running an image this session leaves out (`up IMAGE…`) would reset it to what the file
        // says: it stays as deployed.
        if let Some(out) = manifests::images_of(&value).iter().find_map(|i| env.left_out(i)) {
            let what = format!("{}/{}", value["kind"].as_str().unwrap_or("object"), value["metadata"]["name"].as_str().unwrap_or(""));
            hint(&format!("{file}: {what} left as deployed: it runs image {out}, which this `devloop up` leaves out"));
            continue;
        }
        let (mut refs, hints) = manifests::substitute_with_policy(&mut value, &subst, pull);
        if let Some(c) = custom.get(&custom::kind_key(&value)) {
            refs.extend(custom::substitute(&mut value, &c.image_paths, &subst));
        }
        for h in hints {
            hint(&h);
        }
        if let Some(s) = &env.secret {
            // After substitution: the pod specs that now run one of devloop's references.
            pull_secret::add_to_pod_specs(&mut value, s, &|i| refs.iter().any(|r| r == i));
        }
        objects.push(manifests::Object { file, value, refs });
    }
    Ok(objects)
}
