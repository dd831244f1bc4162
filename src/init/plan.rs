//! From what was found to what `devloop.toml` says: image names, which manifests, kustomization or chart
//! deploys each image, port-forwards, and what could not be decided.

use std::collections::BTreeSet;

use super::chart::{ImageMapping, Rendered};
use super::scan::{self, Found, SyncProposal};
use crate::deploy::images::repository;

/// One `[[image]]` to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The image's name (its repository under the registry host).
    pub name: String,
    /// How the name was chosen.
    pub name_why: String,
    /// The context, relative to the folder.
    pub context: String,
    /// Why that context.
    pub context_why: String,
    /// The Dockerfile, relative to the context.
    pub dockerfile: String,
    /// The Dockerfile's ARGs and defaults.
    pub args: Vec<(String, String)>,
    /// `tag`: a tag template the chart needs (None: the default).
    pub tag: Option<String>,
    /// Sync rules to propose (commented).
    pub sync: Vec<SyncProposal>,
    /// The final stage's base image.
    pub base: String,
}

/// How one `[[deploy]]` deploys.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `manifests = [...]`.
    Manifests(Vec<String>),
    /// `kustomize = "dir"`.
    Kustomize(String),
    /// `helm = { chart, release, image-values, set }`.
    Helm { chart: String, release: String, image: ChartImage },
}

/// How a chart takes devloop's image.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartImage {
    /// Learnt by rendering it.
    Mapped(Box<ImageMapping>),
    /// Not rendered (why), but its values.yaml has an `image` value, which devloop sets.
    Unchecked(scan::ImageValues, String),
    /// Not known (why): the `[[deploy]]` is written commented.
    Unmapped(String),
}

/// One `[[deploy]]` to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Deploy {
    /// Which `[[image]]`.
    pub image: String,
    /// How.
    pub target: Target,
    /// Comment lines (alternatives, warnings).
    pub notes: Vec<String>,
}

/// One `[[port-forward]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The workload's kind.
    pub kind: crate::config::WorkloadKind,
    /// Its name.
    pub name: String,
    /// Local port (0: any free one).
    pub local: u16,
    /// The container port.
    pub remote: u16,
    /// The Service whose port the local port is.
    pub service: Option<String>,
}

/// The whole plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// `[[image]]`s, in Dockerfile path order.
    pub images: Vec<Image>,
    /// `[[deploy]]`s.
    pub deploys: Vec<Deploy>,
    /// `[[port-forward]]`s.
    pub forwards: Vec<Forward>,
    /// What could not be decided, one sentence each (written as comments and to stderr).
    pub undecided: Vec<String>,
}

/// A valid registry repository name from a directory name: lowercase, other characters as `-`.
pub fn sanitize(raw: &str) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if s.is_empty() { "app".into() } else { s }
}

/// The last path component of a reference's repository (`ghcr.io/acme/api:1` → `api`).
fn last_component(reference: &str) -> &str {
    let repo = repository(reference);
    repo.rsplit('/').next().unwrap_or(repo)
}

/// Decides the plan. `folder_name` names the image built from a Dockerfile at the folder's top; `rendered`
/// holds what rendering each of `found.charts` gave (None: not rendered).
pub fn plan(found: &Found, folder_name: &str, rendered: &[Option<Result<Rendered, String>>]) -> Plan {
    let mut plan = Plan::default();
    // Names: the context directory's name (plus the Dockerfile's variant), unique.
    for d in &found.dockerfiles {
        let ctx_name = if d.context == "." { folder_name } else { d.context.rsplit('/').next().unwrap_or(&d.context) };
        let file = d.path.rsplit('/').next().unwrap_or(&d.path);
        let mut name = match scan::variant(file) {
            Some(v) => sanitize(&format!("{ctx_name}-{v}")),
            None => sanitize(ctx_name),
        };
        let base = name.clone();
        let mut n = 2;
        while plan.images.iter().any(|i| i.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let dockerfile = if d.context == "." { d.path.clone() } else { d.path[d.context.len() + 1..].to_string() };
        plan.images.push(Image {
            name_why: format!("Named after its context directory `{ctx_name}`"),
            name,
            context: d.context.clone(),
            context_why: d.context_why.clone(),
            dockerfile,
            args: d.args.clone(),
            tag: None,
            sync: d.sync.clone(),
            base: d.base.clone(),
        });
    }
    // Every container image reference in the manifests: (file, workload index, container image).
    let refs: Vec<(&str, &scan::Workload, &str)> = found
        .manifests
        .iter()
        .flat_map(|m| m.workloads.iter().flat_map(move |w| w.containers.iter().map(move |c| (m.path.as_str(), w, c.1.as_str()))))
        .collect();
    let matches = |name: &str, r: &str| last_component(r) == name;
    // One Dockerfile that no reference names, and one repository no Dockerfile names: they go together, and the
    // image takes the manifest's name (so devloop substitutes it).
    let unmatched_images: Vec<usize> =
        (0..plan.images.len()).filter(|&i| !refs.iter().any(|(_, _, r)| matches(&plan.images[i].name, r))).collect();
    // Only a bare name without a version (`hello`, `hello:latest`): `postgres:16` or `ghcr.io/x/y` is someone
    // else's image.
    let local_looking = |r: &str| !r.contains('/') && !r.contains('@') && (repository(r) == r || r.ends_with(":latest"));
    let unmatched_repos: BTreeSet<&str> = refs
        .iter()
        .map(|(_, _, r)| *r)
        .filter(|r| !plan.images.iter().any(|i| matches(&i.name, r)))
        .filter(|r| local_looking(r))
        .map(repository)
        .collect();
    if unmatched_images.len() == 1 && unmatched_repos.len() == 1 {
        let repo = *unmatched_repos.iter().next().expect("one");
        let i = unmatched_images[0];
        let new = sanitize(last_component(repo));
        if !plan.images.iter().any(|o| o.name == new) {
            plan.images[i].name_why = format!("Named after the only image the manifests run that no Dockerfile is named for (`{repo}`)");
            plan.images[i].name = new;
        }
    }

    // Each file goes to the first image it references.
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    let mut deploy_dirs: Vec<(String, String)> = Vec::new(); // (dir, image) of each deploy's manifest files
    let services: Vec<&scan::Service> = found.manifests.iter().flat_map(|m| m.services.iter()).collect();
    for (idx, img) in plan.images.clone().into_iter().enumerate() {
        let mine: Vec<(&str, &scan::Workload, &str)> = refs.iter().copied().filter(|(_, _, r)| matches(&img.name, r)).collect();
        let mut notes = Vec::new();
        for (file, _, r) in &mine {
            if repository(r) != img.name {
                notes.push(format!(
                    "{file}: `image: {r}` is not replaced by devloop, which replaces `{}` (or `<registry>/{}`): write `image: {}` there",
                    img.name, img.name, img.name
                ));
            }
        }
        let files: Vec<String> =
            mine.iter().map(|(f, _, _)| f.to_string()).filter(|f| !claimed.contains(f)).collect::<BTreeSet<_>>().into_iter().collect();
        let charts: Vec<&scan::Chart> =
            found.charts.iter().filter(|c| sanitize(&c.name) == img.name || c.dir.rsplit('/').next() == Some(img.name.as_str())).collect();
        let target = if !files.is_empty() {
            claimed.extend(files.iter().cloned());
            match kustomization_for(found, &files) {
                Some((dir, others)) => {
                    if !others.is_empty() {
                        notes.push(format!("other kustomizations with these manifests: {}", others.join(", ")));
                    }
                    Some(Target::Kustomize(dir))
                }
                None => {
                    for f in &files {
                        deploy_dirs.push((scan::parent_of(f).to_string(), img.name.clone()));
                    }
                    Some(Target::Manifests(files))
                }
            }
        } else if !mine.is_empty() {
            // Its manifests are applied by an earlier image's [[deploy]] (the same files), which substitutes
            // every configured image.
            for d in plan.deploys.iter_mut().filter(|d| matches!(&d.target, Target::Manifests(f) if mine.iter().any(|(m, _, _)| f.iter().any(|x| x == m)))) {
                d.notes.push(format!("these manifests also run image `{}`: devloop substitutes it here too", img.name));
            }
            None
        } else if let Some(c) = charts.first() {
            Some(helm_target(found, c, rendered))
        } else if found.charts.len() == 1 && plan.images.len() == 1 && found.manifests.iter().all(|m| m.workloads.is_empty()) {
            Some(helm_target(found, &found.charts[0], rendered))
        } else if let Some(target) = one_of_the_charts_images(found, rendered, &img.name) {
            Some(target)
        } else {
            plan.undecided.push(format!(
                "image `{}`: no manifest, kustomization or chart runs it, so it gets no [[deploy]] (devloop builds it; \
                 add a [[deploy]] with `manifests`, `kustomize`, `helm` or `deployment` to roll it out)",
                img.name
            ));
            None
        };
        if let Some(Target::Manifests(_) | Target::Kustomize(_)) = &target {
            if let Some(c) = charts.first() {
                notes.push(format!("or deploy its Helm chart instead: helm = {{ chart = \"{}\", release = \"{}\" }}", c.dir, release(&c.name)));
            }
        }
        for (_, w, _) in &mine {
            forward(&mut plan, w, &|image| matches(&img.name, image), &services);
        }
        let mut name = img.name.clone();
        if let Some(Target::Helm { chart, image, .. }) = &target {
            let at = found.charts.iter().position(|c| &c.dir == chart);
            let r = at.and_then(|i| rendered.get(i)).and_then(|r| r.as_ref()).and_then(|r| r.as_ref().ok());
            match image {
                ChartImage::Mapped(m) => {
                    if let Some(n) = m.name.as_ref().filter(|n| **n != name && !plan.images.iter().any(|o| &o.name == *n)) {
                        plan.images[idx].name_why = format!("Named as the chart's image is (`{}`)", m.default);
                        plan.images[idx].name = n.clone();
                        name = n.clone();
                    }
                    if let Some(n) = m.name.as_ref().filter(|n| **n != name) {
                        plan.undecided.push(format!("image `{name}`: chart {chart} runs it as `{n}`, a name another image has: rename one"));
                    }
                    plan.images[idx].tag = m.tag.clone();
                    if let Some(r) = r {
                        let chart_services: Vec<&scan::Service> = r.services.iter().collect();
                        for w in &r.workloads {
                            forward(&mut plan, w, &|image| image == m.default, &chart_services);
                        }
                    }
                }
                ChartImage::Unmapped(why) => plan.undecided.push(format!(
                    "image `{name}`: devloop init could not tell where chart {chart} takes the image ({why}); its [[deploy]] is \
                     written commented out"
                )),
                ChartImage::Unchecked(..) => {}
            }
        }
        if let Some(target) = target {
            plan.deploys.push(Deploy { image: name, target, notes });
        }
    }
    let releases: Vec<(String, String)> =
        plan.deploys.iter().filter_map(|d| if let Target::Helm { release, .. } = &d.target { Some((release.clone(), d.image.clone())) } else { None }).collect();
    for d in plan.deploys.iter_mut() {
        let Target::Helm { release, .. } = &d.target else { continue };
        let others: Vec<&str> = releases.iter().filter(|(r, i)| r == release && *i != d.image).map(|(_, i)| i.as_str()).collect();
        if !others.is_empty() {
            d.notes.push(format!("release {release} is shared with image {}: each upgrade keeps the other images' values", others.join(", ")));
        }
    }
    attach_objects(found, &mut plan, &claimed, &deploy_dirs);
    for (f, e) in &found.unreadable {
        plan.undecided.push(format!("{f} looks like Kubernetes YAML but does not parse ({e}); not considered"));
    }
    plan
}

/// The only chart of a project of several images, when a container of it runs an image named like `name`
/// from values: its `[[deploy]]` (the images of one chart share its release, each with its own values).
fn one_of_the_charts_images(found: &Found, rendered: &[Option<Result<Rendered, String>>], name: &str) -> Option<Target> {
    let ([chart], true) = (found.charts.as_slice(), found.manifests.iter().all(|m| m.workloads.is_empty())) else { return None };
    let Some(Some(Ok(Rendered { marked: Some((out, leaves)), .. }))) = rendered.first() else { return None };
    let m = super::chart::map_image(out, leaves, &[name]).ok()?;
    // Only a container named like this image: a chart of one image is not every image's.
    (sanitize(last_component(&m.default)) == name).then(|| Target::Helm { chart: chart.dir.clone(), release: release(&chart.name), image: ChartImage::Mapped(Box::new(m)) })
}

/// The release name for a chart named `chart_name`.
pub fn release(chart_name: &str) -> String {
    let r = sanitize(chart_name).replace('_', "-");
    let r: String = r.chars().take(53).collect();
    r.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn helm_target(found: &Found, c: &scan::Chart, rendered: &[Option<Result<Rendered, String>>]) -> Target {
    let at = found.charts.iter().position(|o| o.dir == c.dir);
    let image = match at.and_then(|i| rendered.get(i)).and_then(Option::as_ref) {
        Some(Ok(Rendered { image: Some(Ok(m)), .. })) => ChartImage::Mapped(Box::new(m.clone())),
        Some(Ok(Rendered { image: Some(Err(why)), .. })) => ChartImage::Unmapped(why.clone()),
        Some(Ok(Rendered { image: None, .. })) => ChartImage::Unmapped("it was not rendered with markers".into()),
        Some(Err(why)) => match &c.image_values {
            Some(iv) => ChartImage::Unchecked(iv.clone(), why.clone()),
            None => ChartImage::Unmapped(format!("it could not be rendered ({why}), and its values.yaml has no `image` value")),
        },
        None => match &c.image_values {
            Some(iv) => ChartImage::Unchecked(iv.clone(), "not rendered".into()),
            None => ChartImage::Unmapped("it was not rendered, and its values.yaml has no `image` value".into()),
        },
    };
    Target::Helm { chart: c.dir.clone(), release: release(&c.name), image }
}

/// A `[[port-forward]]` to workload `w`'s (a Deployment, StatefulSet or DaemonSet) first port of a container running the image (`is_image`): the
/// port of a Service that selects it and reaches that port as the local port when there is one and it is
/// not privileged (the port the project already knows it by), else the container port; 0 (any free port)
/// when that is taken or privileged.
fn forward(plan: &mut Plan, w: &scan::Workload, is_image: &dyn Fn(&str) -> bool, services: &[&scan::Service]) {
    let Some(kind) = crate::config::WorkloadKind::of(&w.kind) else { return };
    if plan.forwards.iter().any(|f| f.kind == kind && f.name == w.name) {
        return;
    }
    let Some(&remote) = w.containers.iter().filter(|c| is_image(&c.1)).flat_map(|c| c.2.iter()).next() else { return };
    // A privileged Service port (80) would need root locally: the container port then.
    let via = services.iter().find_map(|s| s.port_for(&w.labels, &w.port_names, remote).filter(|p| *p >= 1024).map(|p| (s.name.clone(), p)));
    let wanted = via.as_ref().map_or(remote, |v| v.1);
    let taken = plan.forwards.iter().any(|f| f.local == wanted);
    let local = if wanted >= 1024 && !taken { wanted } else { 0 };
    plan.forwards.push(Forward { kind, name: w.name.clone(), local, remote, service: via.map(|v| v.0) });
}

/// The kustomization that contains `files` (directly or through a resource directory), preferring an overlay of
/// it named dev, development or local; with the other candidates.
fn kustomization_for(found: &Found, files: &[String]) -> Option<(String, Vec<String>)> {
    let under = |dir: &str, f: &str| dir == "." || f.starts_with(&format!("{dir}/"));
    let base = found.kustomizations.iter().find(|k| {
        files.iter().all(|f| under(&k.dir, f) || k.resources.iter().any(|r| r == f || under(r, f)))
    })?;
    let overlays: Vec<&str> =
        found.kustomizations.iter().filter(|k| k.resources.iter().any(|r| r == &base.dir)).map(|k| k.dir.as_str()).collect();
    let dev = overlays.iter().find(|o| matches!(o.rsplit('/').next(), Some("dev" | "development" | "local")));
    let chosen = dev.copied().unwrap_or(&base.dir).to_string();
    let others = std::iter::once(base.dir.as_str()).chain(overlays).filter(|d| *d != chosen).map(str::to_string).collect();
    Some((chosen, others))
}

/// Objects without workloads (Services, ConfigMaps) join the [[deploy]] whose manifests share their directory
/// when only one does; whole directories become a `dir/*.yaml` glob.
fn attach_objects(found: &Found, plan: &mut Plan, claimed: &BTreeSet<String>, deploy_dirs: &[(String, String)]) {
    let in_kustomization = |f: &str| {
        found.kustomizations.iter().any(|k| k.dir == "." || f.starts_with(&format!("{}/", k.dir)) || k.resources.iter().any(|r| r == f))
    };
    for m in found.manifests.iter().filter(|m| !claimed.contains(&m.path)) {
        if in_kustomization(&m.path) {
            continue;
        }
        if !m.workloads.is_empty() {
            let images: BTreeSet<&str> = m.workloads.iter().flat_map(|w| w.containers.iter().map(|c| c.1.as_str())).collect();
            plan.undecided.push(format!(
                "{}: runs {} that no Dockerfile here builds; no [[deploy]] applies it (add it to a `manifests` list if \
                 devloop should)",
                m.path,
                images.into_iter().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        let dir = scan::parent_of(&m.path);
        let owners: BTreeSet<&str> = deploy_dirs.iter().filter(|(d, _)| d == dir).map(|(_, i)| i.as_str()).collect();
        let owner = (owners.len() == 1).then(|| *owners.iter().next().expect("one"));
        match owner.and_then(|o| plan.deploys.iter_mut().find(|d| d.image == o)) {
            Some(Deploy { target: Target::Manifests(files), .. }) => files.push(m.path.clone()),
            _ => plan.undecided.push(format!(
                "{}: {} object(s) that no [[deploy]] applies (add it to a `manifests` list if devloop should)",
                m.path, m.objects
            )),
        }
    }
    // A directory whose every YAML file this deploy applies: one glob, so new files there are applied too.
    for d in &mut plan.deploys {
        let Target::Manifests(files) = &mut d.target else { continue };
        let dirs: BTreeSet<String> = files.iter().map(|f| scan::parent_of(f).to_string()).collect();
        let mut out = Vec::new();
        for dir in dirs {
            let mine: Vec<&String> = files.iter().filter(|f| scan::parent_of(f) == dir).collect();
            let all_yaml = found.yaml_files.iter().filter(|f| scan::parent_of(f) == dir && f.ends_with(".yaml")).count();
            // Not the folder's top: a compose file or CI config saved there later must not be applied.
            let whole = !dir.is_empty() && all_yaml == mine.len() && mine.iter().all(|f| f.ends_with(".yaml"));
            if whole {
                out.push(format!("{dir}/*.yaml"));
            } else {
                out.extend(mine.into_iter().cloned());
            }
        }
        *files = out;
    }
}
