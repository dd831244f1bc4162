//! What `devloop init` finds in a project folder: Dockerfiles and their build contexts, Kubernetes manifests
//! and the images their workloads run, Helm charts and kustomizations. Pure file work, no cluster.

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
            found.dockerfiles.push(Dockerfile { path: rel.clone(), context, context_why, args: args_of(&text) });
        } else if name == "Chart.yaml" {
            found.charts.push(chart(root, rel));
        } else if matches!(name, "kustomization.yaml" | "kustomization.yml" | "Kustomization") {
            found.kustomizations.push(kustomization(root, rel));
        } else if (name.ends_with(".yaml") || name.ends_with(".yml")) && !in_chart(rel) {
            let text = std::fs::read_to_string(&abs).unwrap_or_default();
            match objects(&text) {
                Ok(objs) if !objs.is_empty() => {
                    let workloads = objs.iter().filter_map(workload).collect();
                    found.manifests.push(ManifestFile { path: rel.clone(), workloads, objects: objs.len() });
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
fn objects(text: &str) -> Result<Vec<Value>, String> {
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

fn workload(v: &Value) -> Option<Workload> {
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
    for key in ["initContainers", "containers"] {
        for c in pod.get(key).and_then(Value::as_sequence).into_iter().flatten() {
            let Some(image) = c.get("image").and_then(Value::as_str) else { continue };
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let ports = c
                .get("ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .collect();
            containers.push((cname, image.to_string(), ports));
        }
    }
    Some(Workload { kind, name, containers })
}

fn chart(root: &Path, rel: &str) -> Chart {
    let dir = parent_of(rel).to_string();
    let meta: Value = std::fs::read_to_string(root.join(rel)).ok().and_then(|t| serde_yaml_ng::from_str(&t).ok()).unwrap_or(Value::Null);
    let name = meta.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| name_of(&dir).to_string());
    let values: Value =
        std::fs::read_to_string(root.join(&dir).join("values.yaml")).ok().and_then(|t| serde_yaml_ng::from_str(&t).ok()).unwrap_or(Value::Null);
    Chart { dir: dot(&dir), name, image_values: image_values(&values, "", 0) }
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
