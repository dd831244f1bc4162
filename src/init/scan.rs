//! What `devloop init` finds in a project folder: Dockerfiles and their build contexts, Kubernetes manifests
//! and the images their workloads run, Helm charts and kustomizations. Pure file work, no cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// Directories never looked into: dependencies and build output, not the project's own files.
const SKIP_DIRS: &[&str] = &["node_modules", "target", "vendor", "__pycache__"];
/// How deep below the folder to look.
const MAX_DEPTH: usize = 8;

/// Everything found, with paths relative to the scanned folder (`/`-separated).
#[derive(Debug, Default)]
pub struct Found {
    /// Dockerfiles, in path order.
    pub dockerfiles: Vec<Dockerfile>,
    /// YAML files holding Kubernetes objects (outside charts), in path order.
    pub manifests: Vec<ManifestFile>,
    /// Helm charts (directories with a Chart.yaml).
    pub charts: Vec<Chart>,
    /// Kustomizations (directories with a kustomization.yaml).
    pub kustomizations: Vec<Kustomization>,
    /// Every `.yaml`/`.yml` file outside charts (Kubernetes or not).
    pub yaml_files: Vec<String>,
    /// YAML files that look like Kubernetes objects but do not parse.
    pub unreadable: Vec<(String, String)>,
}

/// A Dockerfile and the context it builds.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The Dockerfile's path.
    pub path: String,
    /// The build context directory (`.` for the folder itself).
    pub context: String,
    /// Why this context (one line, for the generated comment).
    pub context_why: String,
    /// `ARG`s with their defaults (empty when none), in file order.
    pub args: Vec<(String, String)>,
    /// What the final stage copies from the context after its last `RUN`: candidates for `[[image.sync]]`.
    pub sync: Vec<SyncProposal>,
    /// The final stage's base image (`FROM …`), as written.
    pub base: String,
}

/// A `COPY`/`ADD` of the final stage after its last `RUN`, as a sync rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncProposal {
    /// The `src` glob (relative to the context).
    pub src: String,
    /// The `dest` (absolute in the container).
    pub dest: String,
}

/// One YAML file of Kubernetes objects.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// Its path.
    pub path: String,
    /// The workloads in it (objects with a pod template).
    pub workloads: Vec<Workload>,
    /// How many objects it holds in all.
    pub objects: usize,
    /// The Services in it.
    pub services: Vec<Service>,
}

/// A Service: which pods it selects and its ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `metadata.name`.
    pub name: String,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// (`port`, `targetPort` as written: a number, a container port's name, or None for `port` itself).
    pub ports: Vec<(u16, Option<String>)>,
}

/// A Deployment, StatefulSet, … and its containers.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// (container name, image reference, container ports).
    pub containers: Vec<(String, String, Vec<u16>)>,
    /// The pod template's labels.
    pub labels: BTreeMap<String, String>,
    /// Named container ports (name, port), of every container.
    pub port_names: Vec<(String, u16)>,
}

impl Service {
    /// The Service port that reaches container port `remote` of a pod labelled `labels`, if this Service
    /// selects it.
    pub fn port_for(&self, labels: &BTreeMap<String, String>, port_names: &[(String, u16)], remote: u16) -> Option<u16> {
        if self.selector.is_empty() || !self.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return None;
        }
        self.ports.iter().find_map(|(port, target)| {
            let to = match target {
                None => Some(*port),
                Some(t) => t.parse().ok().or_else(|| port_names.iter().find(|(n, _)| n == t).map(|p| p.1)),
            };
            (to == Some(remote)).then_some(*port)
        })
    }
}

/// A Helm chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The chart's directory.
    pub dir: String,
    /// `name` from Chart.yaml.
    pub name: String,
    /// Where values.yaml takes an image: `Split(prefix)` for `<prefix>.repository` + `<prefix>.tag`,
    /// `Full(path)` for one string value; None when values.yaml has neither.
    pub image_values: Option<ImageValues>,
    /// values.yaml, parsed (Null when missing or unreadable).
    pub values: Value,
}

/// Where a chart's values take the image.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageValues {
    /// `<prefix>.repository` and `<prefix>.tag`.
    Split(String),
    /// One value taking the whole reference.
    Full(String),
}

/// A kustomization directory.
#[derive(Debug, Clone)]
pub struct Kustomization {
    /// Its directory.
    pub dir: String,
    /// Its `resources` and `bases`, resolved to folder-relative paths (those that stay inside the folder).
    pub resources: Vec<String>,
}

/// Walks `root` and reads what it finds.
pub fn scan(root: &Path) -> std::io::Result<Found> {
    let mut found = Found::default();
    let mut files = Vec::new();
    walk(root, root, 0, &mut files)?;
    let chart_dirs: Vec<String> =
        files.iter().filter(|f| name_of(f) == "Chart.yaml").map(|f| parent_of(f).to_string()).collect();
    let in_chart = |f: &str| chart_dirs.iter().any(|d| d.is_empty() || f.starts_with(&format!("{d}/")));
    for rel in &files {
        let name = name_of(rel);
        let abs = root.join(rel);
        if (name.ends_with(".yaml") || name.ends_with(".yml")) && !in_chart(rel) {
            found.yaml_files.push(rel.clone());
        }
        if is_dockerfile(name) {
            let text = std::fs::read_to_string(&abs).unwrap_or_default();
            let (context, context_why) = context_of(root, rel, &text);
            let (base, sync) = sync_proposals(&text, &root.join(&context));
            found.dockerfiles.push(Dockerfile { path: rel.clone(), context, context_why, args: args_of(&text), sync, base });
        } else if name == "Chart.yaml" {
            found.charts.push(chart(root, rel));
        } else if matches!(name, "kustomization.yaml" | "kustomization.yml" | "Kustomization") {
            found.kustomizations.push(kustomization(root, rel));
        } else if (name.ends_with(".yaml") || name.ends_with(".yml")) && !in_chart(rel) {
            let text = std::fs::read_to_string(&abs).unwrap_or_default();
            match objects(&text) {
                Ok(objs) if !objs.is_empty() => {
                    let workloads = objs.iter().filter_map(workload).collect();
                    let services = objs.iter().filter_map(service).collect();
                    found.manifests.push(ManifestFile { path: rel.clone(), workloads, objects: objs.len(), services });
                }
                Ok(_) => {}
                Err(e) if text.contains("apiVersion") && text.contains("kind") => found.unreadable.push((rel.clone(), e)),
                Err(_) => {}
            }
        }
    }
    Ok(found)
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                walk(root, &e.path(), depth + 1, out)?;
            }
        } else if ft.is_file() {
            let rel = e.path().strip_prefix(root).unwrap_or(&e.path()).to_string_lossy().replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

fn name_of(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// The directory part of a relative path (`""` for the folder itself).
pub fn parent_of(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

/// `Dockerfile`, `Containerfile`, `Dockerfile.<variant>`, `<variant>.Dockerfile`.
pub fn is_dockerfile(name: &str) -> bool {
    name == "Dockerfile"
        || name == "Containerfile"
        || (name.starts_with("Dockerfile.") && !name.ends_with(".dockerignore"))
        || name.ends_with(".Dockerfile")
        || name.ends_with(".dockerfile")
}

/// The Dockerfile's variant (`dev` for `Dockerfile.dev` or `dev.Dockerfile`), if any.
pub fn variant(name: &str) -> Option<&str> {
    name.strip_prefix("Dockerfile.").or_else(|| name.strip_suffix(".Dockerfile")).or_else(|| name.strip_suffix(".dockerfile"))
}

/// The context rule: the nearest directory, from the Dockerfile's own up to the scanned folder, in which every
/// literal source of its `COPY`/`ADD` instructions (not `--from`, no variables or wildcards) exists; the
/// Dockerfile's own directory when none is.
fn context_of(root: &Path, rel: &str, text: &str) -> (String, String) {
    let sources = copy_sources(text);
    let own = parent_of(rel).to_string();
    if sources.is_empty() {
        return (dot(&own), "the Dockerfile's directory (it copies nothing from the context)".into());
    }
    let mut dir = own.clone();
    loop {
        let base = root.join(&dir);
        if sources.iter().all(|s| base.join(s.trim_start_matches('/')).exists()) {
            let why = if dir == own {
                "the Dockerfile's directory: every COPY/ADD source is there".to_string()
            } else {
                format!("the nearest directory above the Dockerfile where every COPY/ADD source ({}) exists", sources.join(", "))
            };
            return (dot(&dir), why);
        }
        if dir.is_empty() {
            break;
        }
        dir = parent_of(&dir).to_string();
    }
    (dot(&own), format!("the Dockerfile's directory, though some COPY/ADD sources ({}) exist in no directory up to here", sources.join(", ")))
}

fn dot(dir: &str) -> String {
    if dir.is_empty() { ".".into() } else { dir.into() }
}

/// Logical lines (continuations joined), instruction keyword upper-cased.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.starts_with('#') || t.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let full = std::mem::take(&mut cur);
        let (kw, rest) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

/// Literal context paths the Dockerfile copies from.
fn copy_sources(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (kw, rest) in instructions(text) {
        if kw != "COPY" && kw != "ADD" {
            continue;
        }
        let words: Vec<String> = if rest.starts_with('[') {
            serde_json::from_str::<Vec<String>>(&rest).unwrap_or_default()
        } else {
            rest.split_whitespace().map(str::to_string).collect()
        };
        if words.iter().any(|w| w.starts_with("--from")) || rest.contains("<<") {
            continue;
        }
        let args: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        let Some((_, srcs)) = args.split_last() else { continue };
        for s in srcs {
            let literal = !s.contains(['$', '*', '?', '[']) && !s.contains("://") && !s.starts_with("git@");
            if literal && !out.contains(*s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// The final stage's base image, and what that stage copies from the context after its last `RUN` (all its
/// context copies when it runs nothing): files a save could sync into the running container, since no
/// later step of the image derives anything from them. `context` tells a directory source from a file.
pub fn sync_proposals(text: &str, context: &Path) -> (String, Vec<SyncProposal>) {
    let all = instructions(text);
    let start = all.iter().rposition(|(kw, _)| kw == "FROM").map_or(0, |i| i + 1);
    let stage = &all[start..];
    let base = start.checked_sub(1).and_then(|i| all.get(i)).map(|(_, rest)| rest.split_whitespace().find(|w| !w.starts_with("--")).unwrap_or("").to_string()).unwrap_or_default();
    let after_run = stage.iter().rposition(|(kw, _)| kw == "RUN").map_or(0, |i| i + 1);
    // WORKDIR as it stands at each instruction: relative destinations resolve against it.
    let mut workdir = "/".to_string();
    let mut out: Vec<SyncProposal> = Vec::new();
    for (i, (kw, rest)) in stage.iter().enumerate() {
        if kw == "WORKDIR" {
            let w = rest.trim().trim_matches('"');
            workdir = if w.starts_with('/') { w.to_string() } else { format!("{}/{w}", workdir.trim_end_matches('/')) };
            continue;
        }
        if i < after_run || (kw != "COPY" && kw != "ADD") {
            continue;
        }
        let words: Vec<String> = if rest.starts_with('[') {
            serde_json::from_str::<Vec<String>>(rest).unwrap_or_default()
        } else {
            rest.split_whitespace().map(str::to_string).collect()
        };
        if words.iter().any(|w| w.starts_with("--from")) || rest.contains("<<") {
            continue;
        }
        let args: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        let Some((dest, srcs)) = args.split_last() else { continue };
        if dest.contains('$') {
            continue;
        }
        let dest_dir = dest.ends_with('/') || srcs.len() > 1 || *dest == ".";
        let dest = if dest.starts_with('/') { dest.to_string() } else { format!("{}/{}", workdir.trim_end_matches('/'), dest.trim_start_matches("./")) };
        let dest = dest.trim_end_matches(['/', '.']).to_string();
        let dest = if dest.is_empty() { "/".to_string() } else { dest };
        for s in srcs {
            // ADD unpacks a local archive: its bytes are not what the container holds.
            let archive = kw == "ADD" && [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip"].iter().any(|x| s.ends_with(x));
            if s.contains('$') || s.contains("://") || s.starts_with("git@") || archive {
                continue;
            }
            // Sources are relative to the context, a leading `/` included.
            let s = s.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            let glob = s.contains(['*', '?', '[']);
            let is_dir = !glob && (s.is_empty() || s == "." || context.join(s).is_dir());
            let p = if is_dir {
                // A directory's contents go under dest (Docker copies what is in it, not the directory).
                let src = if s.is_empty() || s == "." { "**".to_string() } else { format!("{s}/**") };
                SyncProposal { src, dest: dest.clone() }
            } else if glob || dest_dir {
                SyncProposal { src: s.to_string(), dest: format!("{}/", dest.trim_end_matches('/')) }
            } else {
                SyncProposal { src: s.to_string(), dest: dest.clone() }
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    (base, out)
}

/// `ARG NAME[=default]` lines.
fn args_of(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (kw, rest) in instructions(text) {
        if kw != "ARG" {
            continue;
        }
        for a in rest.split_whitespace() {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            if !out.iter().any(|(o, _)| o == k) {
                out.push((k.to_string(), v.trim_matches('"').to_string()));
            }
        }
    }
    out
}

/// The Kubernetes objects (mappings with `apiVersion` and `kind`) of a multi-document YAML text.
pub(super) fn objects(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        if v.get("apiVersion").is_some() && v.get("kind").and_then(Value::as_str).is_some() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The workload an object is (one with a pod template), with its containers.
pub(super) fn workload(v: &Value) -> Option<Workload> {
    let kind = v.get("kind")?.as_str()?.to_string();
    let spec = v.get("spec")?;
    let pod = match kind.as_str() {
        "Pod" => spec,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => spec.get("template")?.get("spec")?,
        "CronJob" => spec.get("jobTemplate")?.get("spec")?.get("template")?.get("spec")?,
        _ => return None,
    };
    let name = v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let mut containers = Vec::new();
    let mut port_names = Vec::new();
    for key in ["initContainers", "containers"] {
        for c in pod.get(key).and_then(Value::as_sequence).into_iter().flatten() {
            let Some(image) = c.get("image").and_then(Value::as_str) else { continue };
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let mut ports = Vec::new();
            for p in c.get("ports").and_then(Value::as_sequence).into_iter().flatten() {
                let Some(n) = p.get("containerPort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()) else { continue };
                ports.push(n);
                if let Some(pn) = p.get("name").and_then(Value::as_str) {
                    port_names.push((pn.to_string(), n));
                }
            }
            containers.push((cname, image.to_string(), ports));
        }
    }
    // The pod template's labels (a bare Pod's own).
    let meta = if kind == "Pod" { v.get("metadata") } else { template_of(&kind, spec).and_then(|t| t.get("metadata")) };
    let labels = string_map(meta.and_then(|m| m.get("labels")));
    Some(Workload { kind, name, containers, labels, port_names })
}

fn template_of<'a>(kind: &str, spec: &'a Value) -> Option<&'a Value> {
    match kind {
        "CronJob" => spec.get("jobTemplate")?.get("spec")?.get("template"),
        _ => spec.get("template"),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(m) = v.and_then(Value::as_mapping) else { return BTreeMap::new() };
    m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?))).collect()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Service object's selector and ports.
pub(super) fn service(v: &Value) -> Option<Service> {
    if v.get("kind")?.as_str()? != "Service" {
        return None;
    }
    let name = v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let spec = v.get("spec")?;
    let ports = spec
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
            Some((port, p.get("targetPort").and_then(scalar)))
        })
        .collect();
    Some(Service { name, selector: string_map(spec.get("selector")), ports })
}

fn chart(root: &Path, rel: &str) -> Chart {
    let dir = parent_of(rel).to_string();
    let meta: Value = std::fs::read_to_string(root.join(rel)).ok().and_then(|t| serde_yaml_ng::from_str(&t).ok()).unwrap_or(Value::Null);
    let name = meta.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| name_of(&dir).to_string());
    let values: Value =
        std::fs::read_to_string(root.join(&dir).join("values.yaml")).ok().and_then(|t| serde_yaml_ng::from_str(&t).ok()).unwrap_or(Value::Null);
    Chart { dir: dot(&dir), name, image_values: image_values(&values, "", 0), values }
}

/// The first `image` key (breadth of the file order, at most 3 levels deep) that is a string, or a mapping with
/// a `repository`.
fn image_values(v: &Value, prefix: &str, depth: usize) -> Option<ImageValues> {
    let map = v.as_mapping()?;
    let path = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    if let Some(img) = map.get("image") {
        if img.as_str().is_some() {
            return Some(ImageValues::Full(path("image")));
        }
        if img.get("repository").is_some() {
            return Some(ImageValues::Split(path("image")));
        }
    }
    if depth >= 2 {
        return None;
    }
    map.iter().find_map(|(k, sub)| image_values(sub, &path(k.as_str()?), depth + 1))
}

fn kustomization(root: &Path, rel: &str) -> Kustomization {
    let dir = parent_of(rel).to_string();
    let v: Value = std::fs::read_to_string(root.join(rel)).ok().and_then(|t| serde_yaml_ng::from_str(&t).ok()).unwrap_or(Value::Null);
    let mut resources = Vec::new();
    for key in ["resources", "bases"] {
        for r in v.get(key).and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str) {
            if let Some(p) = normalize(&PathBuf::from(&dir).join(r)) {
                resources.push(p);
            }
        }
    }
    Kustomization { dir: dot(&dir), resources }
}

/// `a/b/../c` → `a/c`; None when it leaves the folder.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(dot(&parts.join("/")))
}
