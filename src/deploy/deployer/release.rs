//! Helm mode: `helm upgrade --install` the release with the reference in the chart's values, then watch the
//! release's workloads (Deployments, StatefulSets, DaemonSets, and custom resources with `ready-when`) that
//! run the image. A failed rollout's undo is `helm rollback` to the previous
//! revision (like `helm --atomic`, but judged by devloop's own rollout watch so the failure has its reason).

use std::io::Write;
use std::time::{Duration, Instant};

use super::{helm_scope, report, stopped_waiting, unless, Deployed, Deployer, Env, Rolled, Stop, Undo, Workload};
use crate::cluster::Target;
use crate::config::{Helm, ImageValues};
use crate::deploy::{custom, helm, images, manifests, Error};
use crate::interrupt::{until, Interrupt};

impl Deployer {
    /// Upgrades (or installs) the release with `reference` and watches its workloads that run the image,
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
        // The release is this deploy's until its rollout is judged (another image may share it).
        let _turn = helm::turn(&scope, &h.release).await;
        let tag = crate::reference::Reference::parse(reference).tag.unwrap_or_default();
        let vars = helm::Vars { registry: &self.env.registry, name: image, reference, hash: self.tag.hash_of(tag) };
        let upgrade = helm::upgrade(h, &self.env.root, &scope, &vars, self.env.secret.as_deref());
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
        let customs = customs(&self.env, image, &self.custom, &release.customs, &what);
        // A custom resource's image may sit where no `containers` list is (`image-paths`).
        let all: Vec<String> = release.images.iter().cloned().chain(customs.iter().flat_map(|(_, _, all)| all.clone())).collect();
        let rendered = rendered(&self.env, image, &all);
        // What the pods are to run: the reference, or the chart's own writing of it.
        let runs = match rendered.as_slice() {
            [one] if one != reference => format!("{reference}, rendered as {one}"),
            _ => reference.to_string(),
        };
        let _ = writeln!(out, "{image}: {what} upgraded to revision {} ({runs})", release.revision);
        if let Err(why) = took_image(image, reference, &all, &rendered, &h.image_values) {
            return Err(Error::Usage(format!("{what} (revision {}): {why}", release.revision)));
        }
        let mut deployed = Deployed { ok: true, ..Default::default() };
        let ours = ours(&self.env, image, &release.workloads);
        for (i, (kind, name, refs)) in ours.iter().enumerate() {
            let dep = format!("{} {}/{name}", kind.noun(), t.namespace);
            let started = Instant::now();
            super::unstick(t, *kind, name, image, out).await?;
            let Some((selector, v)) = self.watch(t, *kind, name, refs, intr).await? else {
                let intr = intr.expect("only a watch with an Interrupt stops early");
                let pending: Vec<(Workload, String)> = ours[i..].iter().map(|(k, n, _)| (*k, n.clone())).collect();
                return Err(self.interrupted(t, &pending, None, out, intr).await);
            };
            deployed.ok &= report(out, image, &dep, started, &v);
            deployed.rolled.push(Rolled::of(*kind, name, refs, selector, &v));
            if !deployed.ok {
                break;
            }
        }
        for (object, condition, _) in customs.iter().filter(|(o, _, _)| !o.refs.is_empty()) {
            if !deployed.ok {
                break;
            }
            let what = format!("{} {}/{}", object.kind().to_lowercase(), t.namespace, object.name());
            let Some(condition) = condition else {
                let _ = writeln!(out, "{image}: {what} runs the image; without `ready-when` for its kind it is not watched");
                continue;
            };
            let (ok, rolled) = self.watch_custom(t, object, &what, condition, out, intr).await?;
            deployed.ok &= ok;
            deployed.rolled.push(rolled);
        }
        if !deployed.ok {
            if release.revision <= 1 {
                let _ = writeln!(out, "{image}: {what} has no previous revision to roll back to");
            } else {
                deployed.undo.push(Undo::Revision { image: image.clone(), helm: h.clone(), timeout: self.timeout, custom: self.custom.clone(), revision: release.revision });
            }
        }
        Ok(deployed)
    }
}

/// A release's custom resources of the kinds `image-paths`/`ready-when` name (`kinds`): each as an object
/// whose `refs` are its references to `image` (at the named paths or in any `containers` list), with the
/// condition that judges it and all the images it names.
fn customs(env: &Env, image: &str, kinds: &Kinds, objects: &[serde_json::Value], what: &str) -> Vec<(manifests::Object, Option<String>, Vec<String>)> {
    objects
        .iter()
        .filter_map(|v| {
            let c = kinds.get(&custom::kind_key(v))?;
            let all: Vec<String> = custom::images_at(v, &c.image_paths).into_iter().chain(manifests::images_of(v)).collect();
            let refs = all.iter().filter(|i| env.ours(i, image)).cloned().collect();
            let object = manifests::Object { file: what.to_string(), value: v.clone(), refs };
            Some((object, c.ready_when.clone(), all))
        })
        .collect()
}

/// The custom kinds of a `[[deploy]]`, by `<group>/<Kind>`.
type Kinds = std::collections::BTreeMap<String, crate::config::Custom>;

/// The distinct references to `image` among a release's pod images, in order.
fn rendered(env: &Env, image: &str, images: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in images.iter().filter(|i| env.ours(i, image)) {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// Whether the chart took the image: its pod templates run the build deployed as `reference` (`rendered`:
/// their references to `image`, out of `all` their images), written as devloop gave it or the chart's own way
/// (the same tag, without the digest). Err says what the chart runs instead, and what to change.
fn took_image(image: &str, reference: &str, all: &[String], rendered: &[String], how: &ImageValues) -> Result<(), String> {
    let given = match how {
        ImageValues::Split { repository, tag } => format!("devloop set `{repository}` and `{tag}`"),
        ImageValues::Full(path) => format!("devloop set `{path}`"),
        ImageValues::InSet => "devloop set it through the `set` templates".into(),
    };
    if rendered.is_empty() {
        let runs = if all.is_empty() { "no container at all".to_string() } else { all.join(", ") };
        return Err(format!(
            "the chart did not take image {image} ({given}): its containers run {runs}. Tell devloop where the chart \
             takes the image: `image-values = {{ repository = \"…\", tag = \"…\" }}`, `image-values = {{ image = \"…\" }}`, \
             or placeholders in `set` (`{{registry}}`, `{{repository}}`, `{{tag}}`, `{{hash}}`, `{{image}}`: see the README)"
        ));
    }
    if let Some(other) = rendered.iter().find(|r| !images::same_build(r, reference)) {
        return Err(format!(
            "the chart runs {other}, not the build deployed, {reference} ({given}): compare the chart's image line with \
             the `set` templates; a suffix the chart adds to the tag belongs in the image's `tag` template \
             (`tag = \"{{hash}}-suffix\"` with `{{hash}}` in `set`)"
        ));
    }
    Ok(())
}

/// The workloads (of a release's manifest) that run `image`, each with its references to it.
fn ours(env: &Env, image: &str, workloads: &[helm::Rendered]) -> Vec<helm::Rendered> {
    workloads
        .iter()
        .filter_map(|(kind, name, imgs)| {
            let refs: Vec<String> = imgs.iter().filter(|i| env.ours(i, image)).cloned().collect();
            (!refs.is_empty()).then(|| (*kind, name.clone(), refs))
        })
        .collect()
}

/// Rolls the release back to its previous revision and watches its workloads that run `image` (see
/// [`super::Deployers::rollback`]); a StatefulSet's pods that the failed revision left not Ready are deleted
/// (its controller would wait for them forever, see [`super::unstick`]).
pub(super) async fn roll_back(
    env: &Env,
    t: &Target,
    (image, kinds): (&str, &Kinds),
    (h, revision): (&Helm, u64),
    timeout: Duration,
    out: &mut (dyn Write + Send),
    stop: Option<&Stop<'_>>,
) -> Result<Option<bool>, Error> {
    let what = format!("helm release {}/{}", t.namespace, h.release);
    let _ = writeln!(out, "{image}: rolling {what} back to its previous revision (helm rollback)");
    let (back, back_customs) = match helm::rollback(h, &helm_scope(t), revision).await {
        Err(e @ helm::Error::MovedOn { .. }) => {
            let _ = writeln!(out, "{image}: {e}");
            return Ok(Some(false));
        }
        other => other?,
    };
    let mut all = true;
    for (kind, name, refs) in &ours(env, image, &back) {
        let dep = format!("{} {}/{name} (rollback)", kind.noun(), t.namespace);
        let started = Instant::now();
        super::unstick(t, *kind, name, image, out).await?;
        // Bounded by the rollout timeout; a stop ends only the waiting (the rollback is already done).
        let Some(v) = unless(stop, crate::deploy::watch_rollout(t, *kind, name, refs, timeout)).await.transpose()? else {
            stopped_waiting(out, image, stop, &what);
            return Ok(None);
        };
        if report(out, image, &dep, started, &v.1) {
            let _ = writeln!(out, "{image}: {what} rolled back: {} {name} is back on {}", kind.noun(), refs.join(", "));
        } else {
            all = false;
        }
    }
    for (object, condition, _) in customs(env, image, kinds, &back_customs, &what) {
        let (Some(condition), false) = (condition, object.refs.is_empty()) else { continue };
        let dep = format!("{} {}/{} (rollback)", object.kind().to_lowercase(), t.namespace, object.name());
        let started = Instant::now();
        let api = manifests::api_for(t, &object).await?;
        let Some(v) = unless(stop, custom::watch(&api, object.name(), &condition, timeout)).await else {
            stopped_waiting(out, image, stop, &what);
            return Ok(None);
        };
        let v = v.map_err(Error::api(format!("reading {dep}")))?;
        if report(out, image, &dep, started, &v) {
            let _ = writeln!(out, "{image}: {what} rolled back: {} {} is back on {} ({condition} True)", object.kind().to_lowercase(), object.name(), object.refs.join(", "));
        } else {
            all = false;
        }
    }
    Ok(Some(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chart whose image is spread over values is judged by what it rendered: devloop's build, or a clear
    /// error saying what it runs instead.
    #[test]
    fn a_chart_that_did_not_take_the_image_is_an_error_saying_what_it_runs() {
        let env = Env { host: "reg:5000".into(), pull_host: "reg:5000".into(), ..Env::default() };
        let reference = "reg:5000/kiamol/bb:abc-kiamol@sha256:1";
        let judge = |images: &[&str]| {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            let r = rendered(&env, "kiamol/bb", &images);
            took_image("kiamol/bb", reference, &images, &r, &ImageValues::InSet)
        };
        assert_eq!(judge(&["reg:5000/kiamol/bb:abc-kiamol", "envoy:1"]), Ok(()), "the chart's own writing, no digest");
        assert_eq!(judge(&[reference, reference]), Ok(()));
        let e = judge(&["docker.io/kiamol/bb:dev-kiamol", "envoy:1"]).unwrap_err();
        assert!(e.starts_with("the chart did not take image kiamol/bb (devloop set it through the `set` templates): its containers run docker.io/kiamol/bb:dev-kiamol, envoy:1."), "{e}");
        assert!(judge(&[]).unwrap_err().contains("its containers run no container at all"));
        let e = judge(&["reg:5000/kiamol/bb:abc-kiamol-kiamol"]).unwrap_err();
        assert!(e.starts_with("the chart runs reg:5000/kiamol/bb:abc-kiamol-kiamol, not the build deployed, reg:5000/kiamol/bb:abc-kiamol@sha256:1"), "{e}");
        assert!(e.contains("tag = \"{hash}-suffix\""), "{e}");
        let split = ImageValues::Split { repository: "image.repository".into(), tag: "image.tag".into() };
        let e = took_image("kiamol/bb", reference, &["nginx".into()], &[], &split).unwrap_err();
        assert!(e.contains("(devloop set `image.repository` and `image.tag`)"), "{e}");
    }

    /// With an image loaded into a node's store, `{registry}` is `docker.io`: the chart's `docker.io/<name>`
    /// is devloop's image.
    #[test]
    fn a_loaded_image_is_known_by_the_runtime_s_name_too() {
        let env = Env { pull: Some("Never"), registry: "docker.io".into(), ..Env::default() };
        let images = vec!["docker.io/kiamol/bb:t".to_string(), "docker.io/library/hello:t".to_string(), "docker.io/other/bb:t".to_string()];
        assert_eq!(rendered(&env, "kiamol/bb", &images), ["docker.io/kiamol/bb:t"]);
        assert_eq!(rendered(&env, "hello", &images), ["docker.io/library/hello:t"]);
        let registry = Env { host: "reg:5000".into(), pull_host: "reg:5000".into(), ..Env::default() };
        assert!(rendered(&registry, "kiamol/bb", &images).is_empty(), "a registry's images are named by its host");
    }
}
