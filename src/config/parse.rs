//! devloop.toml's text into the config's types: the raw serde shapes (every key as written, with its span)
//! and the checks that turn them into a [`Config`], each failure naming the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    addr, cache, custom, default_buildkit_addr, CacheSpec, helm, registry, sync, unset_buildkit, Buildkit, Check, Config, Deploy, DeployTarget, Error, Forward, Image,
    Kube, Located, ManifestSource, PullSecret, Registry, TagTemplate, Trigger, WatchConfig, WorkloadKind, DEFAULT_CHECK_TIMEOUT,
};

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    commands: Vec<String>,
    timeout: Option<toml::Spanned<String>>,
}


#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "unset_buildkit")]
    buildkit: Buildkit,
    #[serde(default)]
    registry: Registry,
    #[serde(default, rename = "image")]
    images: Vec<toml::Spanned<RawImage>>,
    #[serde(default)]
    kube: Kube,
    #[serde(default, rename = "deploy")]
    deploys: Vec<toml::Spanned<RawDeploy>>,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default, rename = "port-forward")]
    forwards: Vec<toml::Spanned<RawForward>>,
    #[serde(default)]
    check: RawCheck,
}

/// One `[[port-forward]]` as written: exactly one of the workload keys is set.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawForward {
    deployment: Option<String>,
    statefulset: Option<String>,
    daemonset: Option<String>,
    #[serde(default)]
    local: u16,
    remote: u16,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawWatch {
    debounce: Option<toml::Spanned<String>>,
    max_wait: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawDeploy {
    image: toml::Spanned<String>,
    deployment: Option<String>,
    container: Option<String>,
    #[serde(default)]
    manifests: Vec<String>,
    kustomize: Option<String>,
    helm: Option<helm::RawHelm>,
    rollout_timeout: Option<toml::Spanned<String>>,
    #[serde(default)]
    rollback_on_failure: bool,
    image_paths: Option<BTreeMap<String, custom::OneOrMore>>,
    ready_when: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawImage {
    name: toml::Spanned<String>,
    context: toml::Spanned<String>,
    #[serde(default = "default_dockerfile")]
    dockerfile: toml::Spanned<String>,
    #[serde(default)]
    target: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    gitignore: bool,
    #[serde(default = "default_frontend")]
    frontend: toml::Spanned<String>,
    #[serde(default)]
    frontend_source: String,
    #[serde(default)]
    frontend_opts: BTreeMap<String, String>,
    #[serde(default)]
    sync: Vec<toml::Spanned<sync::RawSync>>,
    tag: Option<toml::Spanned<String>>,
    trigger: Option<toml::Spanned<String>>,
    depends_on: Option<toml::Spanned<Vec<String>>>,
    cache_from: Option<toml::Spanned<custom::OneOrMore>>,
    cache_to: Option<toml::Spanned<custom::OneOrMore>>,
}

fn default_dockerfile() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "Dockerfile".into())
}
fn default_frontend() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "dockerfile.v0".into())
}


/// Parses and validates config text; `path` names the file in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
    let err = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
        Error::Invalid(Box::new(Located {
            path: path.to_path_buf(),
            line_col: span.filter(|s| s.end > 0 || s.start > 0).map(|s| line_col(text, s.start)),
            key,
            message,
        }))
    };

    let de = toml::de::Deserializer::parse(text).map_err(|e| err(e.span(), String::new(), e.message().into()))?;
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = key_path(e.path());
        let inner = e.into_inner();
        err(inner.span(), key, did_you_mean(inner.message()))
    })?;

    let mut registry = raw.registry;
    registry.ca = registry.ca.map(|ca| root.join(ca));
    if let PullSecret::Named(name) = &registry.pull_secret {
        registry::validate_secret_name(name).map_err(|m| err(None, "registry.pull-secret".into(), m))?;
    }
    if !registry.host.is_empty() && (registry.host.trim().is_empty() || registry.host.contains('/') || registry.host.contains("://")) {
        return Err(err(None, "registry.host".into(), format!("`{}` is not a registry host[:port]", registry.host)));
    }
    let mut buildkit = raw.buildkit;
    if buildkit.parallel == Some(0) {
        return Err(err(None, "buildkit.parallel".into(), "must be at least 1 (builds at once)".into()));
    }
    if buildkit.addr.is_empty() {
        buildkit.addr = default_buildkit_addr();
    } else {
        validate_addr(&buildkit.addr).map_err(|m| err(None, "buildkit.addr".into(), m))?;
        buildkit.addr_set = true;
    }

    let mut images: Vec<Image> = Vec::new();
    // (index, span, image, what it depends on): checked once every image is known.
    let mut depends = Vec::new();
    for (i, img) in raw.images.into_iter().enumerate() {
        let img_span = img.span();
        let img = img.into_inner();
        let key = |k: &str| format!("image[{i}].{k}");
        let name = img.name.get_ref();
        if let Some(m) = invalid_repo_name(name) {
            return Err(err(Some(img.name.span()), key("name"), m));
        }
        if images.iter().any(|o| &o.name == name) {
            return Err(err(Some(img.name.span()), key("name"), format!("image `{name}` is defined twice")));
        }
        let frontend = img.frontend.get_ref().as_str();
        match frontend {
            "dockerfile.v0" => {}
            "gateway.v0" if img.frontend_source.is_empty() => {
                return Err(err(
                    Some(img.frontend.span()),
                    key("frontend-source"),
                    "frontend = \"gateway.v0\" needs frontend-source = \"<frontend image>\"".into(),
                ))
            }
            "gateway.v0" => {}
            other => {
                return Err(err(
                    Some(img.frontend.span()),
                    key("frontend"),
                    format!("unknown frontend `{other}`: use \"dockerfile.v0\" or \"gateway.v0\""),
                ))
            }
        }
        for p in &img.ignore {
            if let Err(e) = crate::filter::Pattern::parse(p) {
                return Err(err(Some(img_span.clone()), key("ignore"), e.to_string()));
            }
        }
        let mut rules = Vec::new();
        for (j, r) in img.sync.into_iter().enumerate() {
            let span = r.span();
            let rule = sync::validate(r.into_inner()).map_err(|(sub, m)| err(Some(span), key(&format!("sync[{j}].{sub}")), m))?;
            rules.push(rule);
        }
        let tag = match &img.tag {
            None => TagTemplate::default(),
            Some(t) => TagTemplate::parse(t.get_ref()).map_err(|m| err(Some(t.span()), key("tag"), m))?,
        };
        let trigger = match img.trigger.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("auto") => Trigger::Auto,
            Some("manual") => Trigger::Manual,
            Some(other) => {
                let span = img.trigger.as_ref().map(|t| t.span());
                return Err(err(span, key("trigger"), format!("`{other}` is not a trigger: use \"auto\" (build on every change) or \"manual\" (build when asked)")));
            }
        };
        let cache_from = cache_specs(&img.cache_from, cache::Direction::From).map_err(|(span, j, m)| err(Some(span), key(&format!("cache-from{j}")), m))?;
        let cache_to = cache_specs(&img.cache_to, cache::Direction::To).map_err(|(span, j, m)| err(Some(span), key(&format!("cache-to{j}")), m))?;
        let depends_on: Vec<String> = img.depends_on.as_ref().map(|d| d.get_ref().clone()).unwrap_or_default();
        depends.push((i, img.depends_on.as_ref().map_or(img_span.clone(), |d| d.span()), name.clone(), depends_on.clone()));
        let context = root.join(img.context.get_ref());
        images.push(Image {
            name: name.clone(),
            dockerfile: context.join(img.dockerfile.get_ref()),
            context,
            target: img.target,
            platform: img.platform,
            build_args: img.build_args,
            ignore: img.ignore,
            gitignore: img.gitignore,
            frontend: frontend.to_string(),
            frontend_source: img.frontend_source,
            frontend_opts: img.frontend_opts,
            sync: rules,
            tag,
            trigger,
            depends_on,
            cache_from,
            cache_to,
        });
    }
    check_depends(&images, &depends).map_err(|(i, span, m)| err(Some(span), format!("image[{i}].depends-on"), m))?;
    let mut deploys = Vec::new();
    for (i, d) in raw.deploys.into_iter().enumerate() {
        let span = d.span();
        let d = d.into_inner();
        let key = |k: &str| format!("deploy[{i}].{k}");
        if !images.iter().any(|img| &img.name == d.image.get_ref()) {
            let known = images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(err(
                Some(d.image.span()),
                key("image"),
                format!("no [[image]] named `{}` (configured: {known})", d.image.get_ref()),
            ));
        }
        let source = match (d.manifests.is_empty(), d.kustomize) {
            (true, None) => None,
            (false, None) => Some(ManifestSource::Files(d.manifests)),
            (true, Some(dir)) if dir.trim().is_empty() => {
                return Err(err(Some(span), key("kustomize"), "an empty path: name the kustomization's directory".into()))
            }
            (true, Some(dir)) => Some(ManifestSource::Kustomize(dir)),
            (false, Some(_)) => {
                return Err(err(Some(span), key("kustomize"), "set either `manifests` or `kustomize`, not both".into()))
            }
        };
        let helm = match d.helm {
            None => None,
            Some(h) => {
                let k = |sub: &str| key(&format!("helm.{sub}"));
                if d.deployment.is_some() || source.is_some() || d.container.is_some() {
                    return Err(err(Some(span), key("helm"), "set `helm` alone: not with `deployment`, `container`, `manifests` or `kustomize`".into()));
                }
                Some(helm::validate(h).map_err(|(sub, m, at)| err(Some(at.unwrap_or_else(|| span.clone())), k(&sub), m))?)
            }
        };
        let target = match (d.deployment, source) {
            _ if helm.is_some() => DeployTarget::Helm(helm.expect("checked")),
            (Some(deployment), None) => DeployTarget::Patch { deployment, container: d.container },
            (None, Some(source)) if d.container.is_none() => DeployTarget::Manifests(source),
            (None, Some(_)) => {
                return Err(err(Some(span), key("container"), "`container` goes with `deployment`, not `manifests`".into()))
            }
            (Some(_), Some(_)) => {
                return Err(err(Some(span), key("manifests"), "set either `deployment` or `manifests`/`kustomize`, not both".into()))
            }
            (None, None) => {
                return Err(err(
                    Some(span),
                    key("deployment"),
                    "set `deployment = \"<name>\"` (patch it), `manifests = [\"k8s/*.yaml\"]`, `kustomize = \"k8s/overlays/dev\"` \
                     (apply them) or `helm = { chart = \"chart\", release = \"<name>\" }`"
                        .into(),
                ))
            }
        };
        let has_custom = d.image_paths.is_some() || d.ready_when.is_some();
        if has_custom && matches!(target, DeployTarget::Patch { .. }) {
            let k = if d.image_paths.is_some() { "image-paths" } else { "ready-when" };
            return Err(err(Some(span), key(k), "custom resources are read from manifests or a chart: set it with `manifests`, `kustomize` or `helm`".into()));
        }
        let custom = custom::validate(d.image_paths.unwrap_or_default(), d.ready_when.unwrap_or_default()).map_err(|(k, m)| err(Some(span.clone()), key(&k), m))?;
        let rollout_timeout = match &d.rollout_timeout {
            None => std::time::Duration::from_secs(120),
            Some(t) => humantime::parse_duration(t.get_ref()).map_err(|e| {
                err(Some(t.span()), key("rollout-timeout"), format!("`{}` is not a duration like \"90s\" or \"2m\": {e}", t.get_ref()))
            })?,
        };
        let mut target = target;
        if let DeployTarget::Helm(h) = &mut target {
            // One release, several images (a chart with an api and a web): each [[deploy]] upgrades it with
            // its own image, and keeps the others'.
            for (j, other) in deploys.iter_mut().enumerate() {
                let Deploy { target: DeployTarget::Helm(o), .. } = other else { continue };
                if o.release != h.release {
                    continue;
                }
                if o.chart != h.chart {
                    let m = format!("release `{}` is also deploy[{j}]'s, with chart `{}`: one release is one chart", h.release, o.chart);
                    return Err(err(Some(span), key("helm.release"), m));
                }
                (o.shared, h.shared) = (true, true);
            }
        }
        deploys.push(Deploy {
            image: d.image.into_inner(),
            target,
            rollout_timeout,
            rollback_on_failure: d.rollback_on_failure,
            custom,
        });
    }
    let duration = |v: &Option<toml::Spanned<String>>, key: &str, default_ms: u64, like: &str| match v {
        None => Ok(std::time::Duration::from_millis(default_ms)),
        Some(t) => humantime::parse_duration(t.get_ref()).map_err(|e| {
            err(Some(t.span()), key.to_string(), format!("`{}` is not a duration like \"{like}\": {e}", t.get_ref()))
        }),
    };
    let watch = WatchConfig {
        debounce: duration(&raw.watch.debounce, "watch.debounce", 50, "100ms")?,
        max_wait: duration(&raw.watch.max_wait, "watch.max-wait", 1000, "100ms")?,
    };
    let check_timeout = duration(&raw.check.timeout, "check.timeout", DEFAULT_CHECK_TIMEOUT.as_millis() as u64, "5m")?;
    if check_timeout.is_zero() {
        let span = raw.check.timeout.as_ref().map(|t| t.span());
        return Err(err(span, "check.timeout".into(), "must be more than 0s".into()));
    }
    let check = Check { commands: raw.check.commands, timeout: check_timeout };
    let mut forwards = Vec::new();
    for (i, f) in raw.forwards.into_iter().enumerate() {
        let span = f.span();
        let f = f.into_inner();
        let named = [(WorkloadKind::Deployment, f.deployment), (WorkloadKind::StatefulSet, f.statefulset), (WorkloadKind::DaemonSet, f.daemonset)];
        let named: Vec<(WorkloadKind, String)> = named.into_iter().filter_map(|(k, n)| Some((k, n?))).collect();
        let (kind, name) = match named.as_slice() {
            [one] => one.clone(),
            [] => return Err(err(Some(span), format!("port-forward[{i}].deployment"), "name the workload forwarded to: `deployment = \"<name>\"` (or `statefulset`, `daemonset`)".into())),
            [first, second, ..] => {
                let msg = format!("set one of `deployment`, `statefulset` or `daemonset`, not both `{}` and `{}`", first.0.noun(), second.0.noun());
                return Err(err(Some(span), format!("port-forward[{i}].{}", second.0.noun()), msg));
            }
        };
        forwards.push(Forward { kind, name, local: f.local, remote: f.remote });
    }
    Ok(Config {
        path: path.to_path_buf(),
        root,
        buildkit,
        registry,
        images,
        kube: raw.kube,
        deploys,
        watch,
        forwards,
        check,
        left_out: vec![],
    })
}

type Span = std::ops::Range<usize>;

/// `cache-from`/`cache-to` (a spec or a list of them) checked; Err: (span, `[index]` or nothing, message).
fn cache_specs(v: &Option<toml::Spanned<custom::OneOrMore>>, dir: cache::Direction) -> Result<Vec<CacheSpec>, (Span, String, String)> {
    let Some(v) = v else { return Ok(vec![]) };
    let (texts, one) = match v.get_ref() {
        custom::OneOrMore::One(s) => (vec![s.as_str()], true),
        custom::OneOrMore::More(l) => (l.iter().map(String::as_str).collect(), false),
    };
    texts
        .iter()
        .enumerate()
        .map(|(j, t)| CacheSpec::parse(t, dir).map_err(|m| (v.span(), if one { String::new() } else { format!("[{j}]") }, m)))
        .collect()
}

/// `depends-on` names configured images, not the image itself, and makes no cycle (which no first
/// rollout could end).
fn check_depends(images: &[Image], depends: &[(usize, Span, String, Vec<String>)]) -> Result<(), (usize, Span, String)> {
    let known = || images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
    for (i, span, name, deps) in depends {
        for d in deps {
            if d == name {
                return Err((*i, span.clone(), format!("image `{name}` cannot depend on itself")));
            }
            if !images.iter().any(|img| &img.name == d) {
                return Err((*i, span.clone(), format!("no [[image]] named `{d}` (configured: {})", known())));
            }
        }
    }
    let of = |n: &str| images.iter().find(|i| i.name == n).map(|i| i.depends_on.as_slice()).unwrap_or_default();
    for (i, span, name, _) in depends {
        // Depth-first from `name`, the path so far kept to name the cycle.
        let mut stack: Vec<(String, Vec<String>)> = vec![(name.clone(), vec![name.clone()])];
        let mut seen = std::collections::BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for d in of(&at) {
                if d == name {
                    return Err((*i, span.clone(), format!("a cycle: {} -> {name}; no first rollout could start", path.join(" -> "))));
                }
                if seen.insert(d.clone()) {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn validate_addr(addr: &str) -> Result<(), String> {
    // Syntax only: docker:// depends on the environment at connect time, and TLS is checked there.
    let syntax = Buildkit { addr: addr.to_string(), insecure: true, ..Buildkit::default() };
    if let Some(engine) = addr::docker::engine_of(&syntax, &addr::docker::Env::default()) {
        return engine.map(|_| ());
    }
    if let Some(kube) = addr::kube::KubeAddr::parse(addr) {
        return kube.map(|_| ());
    }
    match addr.split_once("://") {
        Some(("unix", p)) if !p.is_empty() => Ok(()),
        Some(("tcp", hp)) if hp.contains(':') => Ok(()),
        _ => Err(format!(
            "`{addr}` is not a BuildKit address: use unix:///path/to/buildkitd.sock, tcp://host:port, Docker \
             Engine's BuildKit: docker://, docker-unix:///path/to/docker.sock or docker-tcp://host:port, or a \
             BuildKit in the cluster: kube-deployment://<name>?namespace=<ns> or kube-pod://<pod>?namespace=<ns>"
        )),
    }
}

/// Registry repository names: lowercase alphanumerics separated by `.`, `_`, `__`, `-` and `/`.
fn invalid_repo_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    (!ok).then(|| format!("`{name}` is not a valid image name (lowercase letters, digits, `.`, `_`, `-`, `/`)"))
}

fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            // toml::Spanned wraps values in a private map key: not part of the user's path.
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// serde says "unknown field `imgae`, expected one of `a`, `b`": add the closest known key.
fn did_you_mean(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((unknown, expected)) = rest.split_once('`') else { return message.to_string() };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::jaro_winkler(unknown, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("{message} (did you mean `{k}`?)"),
        None => message.to_string(),
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
