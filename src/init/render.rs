//! The commented `devloop.toml` text for a [`Plan`] and what was learnt about the cluster.

use std::fmt::Write;

use super::plan::{ChartImage, Plan, Target};
use super::scan::ImageValues;
use super::{Buildkit, Cluster, Registry};

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

/// Renders the file. Every line that is not a comment is something devloop reads.
pub fn render(plan: &Plan, cluster: &Cluster) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# devloop.toml, written by `devloop init`. Paths are relative to this file. Every key is described in");
    let _ = writeln!(w, "# devloop's README (\"Configuration\"). Next: `devloop up` (watch, build, deploy, forward), `devloop hash`.");
    if !plan.undecided.is_empty() {
        let _ = writeln!(w, "#\n# Not decided (look at these):");
        for u in &plan.undecided {
            comment_wrapped(w, "#   - ", "#     ", u);
        }
    }

    let _ = writeln!(w, "\n[buildkit]");
    match &cluster.buildkit {
        Buildkit::FromEnv(addr) if addr.starts_with("tcp://") => {
            let _ = writeln!(w, "# BUILDKIT_HOST was {} at init: plain TCP needs TLS (tls-ca, tls-cert, tls-key) or insecure = true.", addr);
            let _ = writeln!(w, "# addr = {}", q(addr));
        }
        Buildkit::FromEnv(addr) => {
            let _ = writeln!(w, "# From BUILDKIT_HOST at init (which, when set, overrides this).");
            let _ = writeln!(w, "addr = {}", q(addr));
        }
        Buildkit::Unset => {
            let _ = writeln!(w, "# Unset: a Docker Engine answering at DOCKER_HOST or /var/run/docker.sock is used (its BuildKit), else");
            let _ = writeln!(w, "# buildkitd's default socket. BUILDKIT_HOST overrides it.");
            let _ = writeln!(w, "# addr = \"unix:///run/buildkit/buildkitd.sock\"   # or tcp://host:port (TLS), kube-deployment://buildkitd?namespace=buildkit");
        }
    }

    let _ = writeln!(w, "\n[kube]");
    match &cluster.context {
        Some((ctx, true)) => {
            let _ = writeln!(w, "# The kubeconfig's current context at init, a local cluster devloop deploys to. --kube-context overrides.");
            let _ = writeln!(w, "context = {}", q(ctx));
        }
        Some((ctx, false)) => {
            let _ = writeln!(w, "# The kubeconfig's current context at init is `{ctx}`, which is not a known local cluster: devloop refuses");
            let _ = writeln!(w, "# to deploy to it unless it is allow-listed. If it is yours to deploy to, uncomment both lines.");
            let _ = writeln!(w, "# context = {}", q(ctx));
            let _ = writeln!(w, "# allow-contexts = [{}]", q(ctx));
        }
        None => {
            let _ = writeln!(w, "# No kubeconfig context at init: devloop uses the current context when it runs (local clusters only,");
            let _ = writeln!(w, "# unless allow-listed).");
            let _ = writeln!(w, "# context = \"kind-dev\"");
        }
    }
    let _ = writeln!(w, "# namespace = \"dev-{{user}}\"          # default: the context's namespace, else `default`; created on first use");

    let _ = writeln!(w, "\n[registry]");
    match &cluster.registry {
        Registry::Found { host, pull_host, insecure, from } => {
            let _ = writeln!(w, "# {from}. DEVLOOP_REGISTRY overrides it; without `host`, devloop asks the cluster each run.");
            let _ = writeln!(w, "host = {}", q(host));
            if *insecure {
                let _ = writeln!(w, "insecure = true                     # it answers plain HTTP only");
            }
            if let Some(p) = pull_host {
                let _ = writeln!(w, "pull-host = {}               # the registry's name as the nodes see it", q(p));
            }
        }
        Registry::EngineStore(ctx) => {
            let _ = writeln!(w, "# Context `{ctx}` shares Docker Engine's image store: devloop builds there and loads images into it,");
            let _ = writeln!(w, "# no registry needed. To push instead: host = \"registry.example.com\"");
        }
        Registry::None(why) => {
            let _ = writeln!(w, "# No registry found ({why}). Set one (credentials come from ~/.docker/config.json),");
            let _ = writeln!(w, "# or load images into the cluster's image store instead:");
            let _ = writeln!(w, "# host = \"registry.example.com\"");
            let _ = writeln!(w, "# load = \"containerd\"               # k3s or one containerd node; load = true: Docker Engine's store");
        }
    }

    for img in &plan.images {
        let _ = writeln!(w, "\n[[image]]");
        let _ = writeln!(w, "# {}; context: {}.", img.name_why, img.context_why);
        let _ = writeln!(w, "name = {}", q(&img.name));
        let _ = writeln!(w, "context = {}", q(&img.context));
        if let Some(t) = &img.tag {
            let _ = writeln!(w, "tag = {}                  # the tag the chart's image line makes: the content hash and its fixed text", q(t));
        }
        if img.dockerfile != "Dockerfile" {
            let _ = writeln!(w, "dockerfile = {}", q(&img.dockerfile));
        }
        if !img.args.is_empty() {
            let args: Vec<String> = img.args.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
            let _ = writeln!(w, "# build-args = {{ {} }}   # the Dockerfile's ARGs and defaults", args.join(", "));
        }
        let _ = writeln!(w, "# ignore = [\"*.log\"]                 # on top of .dockerignore (and editor temp files, .git)");
        sync(w, img);
    }

    for d in &plan.deploys {
        // A chart whose image line init could not map: the whole table commented, so nothing deploys the
        // chart's own image by mistake.
        let off = matches!(&d.target, Target::Helm { image: ChartImage::Unmapped(_), .. });
        let _ = writeln!(w, "\n{}[[deploy]]", if off { "# " } else { "" });
        let _ = writeln!(w, "{}image = {}", if off { "# " } else { "" }, q(&d.image));
        match &d.target {
            Target::Manifests(files) => {
                let _ = writeln!(w, "# Server-side applied, with `image: {}` replaced by the built <registry>/{}:<tag>@<digest>.", d.image, d.image);
                let _ = writeln!(w, "manifests = {}", list(files));
            }
            Target::Kustomize(dir) => {
                let _ = writeln!(w, "# Rendered by kustomize (or kubectl kustomize), `image: {}` replaced, server-side applied.", d.image);
                let _ = writeln!(w, "kustomize = {}", q(dir));
            }
            Target::Helm { chart, release, image } => {
                if helm(w, chart, release, image) {
                    continue;
                }
            }
        }
        for n in &d.notes {
            comment_wrapped(w, "# ", "#   ", n);
        }
        let _ = writeln!(w, "rollout-timeout = \"2m\"");
    }

    for f in &plan.forwards {
        let _ = writeln!(w, "\n[[port-forward]]");
        let local = if f.local == 0 { "<free port>".to_string() } else { f.local.to_string() };
        let _ = writeln!(w, "{} = {}                # `devloop up` forwards 127.0.0.1:{local} to its newest pod that answers", f.kind.noun(), q(&f.name));
        if let Some(s) = &f.service {
            let _ = writeln!(w, "# The local port is Service {s}'s port, which reaches this container port.");
        }
        let _ = writeln!(w, "local = {}", f.local);
        let _ = writeln!(w, "remote = {}", f.remote);
    }

    let _ = writeln!(w, "\n[watch]");
    let _ = writeln!(w, "debounce = \"50ms\"                   # a burst of saves closes after this much quiet…");
    let _ = writeln!(w, "max-wait = \"1s\"                     # …or this long after its first change");
    let _ = writeln!(w, "\n# [check]                           # `devloop check`: run these against a throwaway deployment");
    let _ = writeln!(w, "# commands = [\"curl -sf $DEVLOOP_URL_<DEPLOYMENT>\"]");
    o
}

/// A `set` key: bare when TOML allows it (a dotted value path must be quoted, or TOML would nest it).
fn set_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') { k.to_string() } else { q(k) }
}

/// The `helm = …` line of a [[deploy]] (already opened with `image = …`) and its comments. True when the
/// [[deploy]] was written commented out (the caller then writes nothing more of it).
fn helm(w: &mut String, chart: &str, release: &str, image: &ChartImage) -> bool {
    let head = format!("chart = {}, release = {}", q(chart), q(release));
    match image {
        ChartImage::Mapped(m) => {
            comment_wrapped(
                w,
                "# ",
                "# ",
                &format!(
                    "`helm upgrade --install`. Rendered with a marker in each string value (`helm template`), the chart builds \
                     the image of {} as `{}`: {}.",
                    m.container,
                    m.shape,
                    m.why.join("; ")
                ),
            );
            let mut extra = String::new();
            if let Some((r, t)) = &m.split {
                if r != "image.repository" || t != "image.tag" {
                    extra = format!(", image-values = {{ repository = {}, tag = {} }}", q(r), q(t));
                }
            }
            if let Some(p) = &m.full {
                extra = format!(", image-values = {{ image = {} }}", q(p));
            }
            if !m.set.is_empty() {
                let set: Vec<String> = m.set.iter().map(|(k, v)| format!("{} = {}", set_key(k), q(v))).collect();
                extra = format!(", set = {{ {} }}", set.join(", "));
            }
            let _ = writeln!(w, "helm = {{ {head}{extra} }}");
            false
        }
        ChartImage::Unchecked(iv, why) => {
            comment_wrapped(
                w,
                "# ",
                "# ",
                &format!("`helm upgrade --install` with the built image in the chart's values (from values.yaml; not checked by rendering the chart: {why})."),
            );
            let iv = match iv {
                ImageValues::Split(p) if p == "image" => String::new(),
                ImageValues::Split(p) => {
                    format!(", image-values = {{ repository = {}, tag = {} }}", q(&format!("{p}.repository")), q(&format!("{p}.tag")))
                }
                ImageValues::Full(p) => format!(", image-values = {{ image = {} }}", q(p)),
            };
            let _ = writeln!(w, "helm = {{ {head}{iv} }}");
            false
        }
        ChartImage::Unmapped(why) => {
            comment_wrapped(
                w,
                "# ",
                "# ",
                &format!(
                    "TODO: devloop init could not tell where this chart takes the image: {why}. As it is, `helm = {{ {head} }}` \
                     would deploy the chart's own image, not the one devloop builds, so this [[deploy]] is commented out. Make \
                     the chart's image line read values (`{{{{ .Values.image.repository }}}}:{{{{ .Values.image.tag }}}}`), or \
                     name them with `set` templates (README, \"A chart as it is\"), then uncomment it."
                ),
            );
            let _ = writeln!(w, "# helm = {{ {head} }}");
            let _ = writeln!(w, "# rollout-timeout = \"2m\"");
            true
        }
    }
}

/// Commented `[[image.sync]]` proposals: what the final stage copies after its last RUN.
fn sync(w: &mut String, img: &super::plan::Image) {
    if img.sync.is_empty() {
        return;
    }
    let srcs: Vec<&str> = img.sync.iter().map(|s| s.src.as_str()).collect();
    comment_wrapped(
        w,
        "# ",
        "# ",
        &format!(
            "Live update (README, \"Live update\"): the Dockerfile's final stage copies {} after its last RUN, so a save \
             there could be copied into the running containers (~100 ms) instead of building and rolling out. Before you \
             uncomment a rule, answer: does the server read these files on each request (then nothing more is needed), \
             or load them when it starts (then `restart = true`, which needs PID 1 to be a supervisor that starts the \
             server again, or a `run` command that makes it reload)?",
            srcs.join(", ")
        ),
    );
    let base = img.base.to_ascii_lowercase();
    if base == "scratch" || base.contains("distroless") {
        let _ = writeln!(w, "# Its base ({}) has no `sh` and `tar`, which a sync needs: devloop would build instead.", img.base);
    }
    for s in &img.sync {
        let _ = writeln!(w, "# [[image.sync]]");
        let _ = writeln!(w, "# src = {}", q(&s.src));
        let _ = writeln!(w, "# dest = {}", q(&s.dest));
        let _ = writeln!(w, "# restart = true                   # if the server loads these files at start");
    }
}

/// Writes `text` as comment lines of at most ~110 characters.
fn comment_wrapped(w: &mut String, first: &str, rest: &str, text: &str) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + word.len() > 110 {
            let _ = writeln!(w, "{line}");
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(w, "{line}");
}
