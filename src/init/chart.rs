//! What a chart does with its values, learnt by rendering it (`helm template`): once as it is (the names and
//! ports of what it deploys), once with a marker in every string value of its values.yaml (which values reach
//! the image of which container). From the markers in a container's `image:`, [`map_image`] derives what
//! makes devloop's image land there: `image-values` for the common `<x>.repository`/`<x>.tag` shape, else
//! `set` templates (`registryServer = "{registry}"`, `imageBuildNumber = "{hash}"`) and an `[[image]] tag`
//! template for a fixed text around the tag's value — or why it cannot.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_yaml_ng::Value;

use super::scan::{self, Service, Workload};
use crate::config::TagTemplate;

/// A string value of values.yaml and the marker it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Its path as `--set` (and `helm.set`) writes it: `image.tag`, `a\.b.c`, `list[0].x`.
    pub path: String,
    /// Its marker.
    pub marker: String,
    /// Its value in values.yaml.
    pub default: String,
}

/// What makes devloop's image land in a chart's container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageMapping {
    /// `image-values` (repository path, tag path) for the `<x>.repository`/`<x>.tag` shape.
    pub split: Option<(String, String)>,
    /// `image-values.image`: one value takes the whole reference.
    pub full: Option<String>,
    /// `set` entries (value path, template or literal), in the image's order.
    pub set: Vec<(String, String)>,
    /// The image's name, when the chart fixes part of it (pinned values, literal text).
    pub name: Option<String>,
    /// The `[[image]] tag` template, when the chart writes text around the tag's value.
    pub tag: Option<String>,
    /// The container, as `kind/name container c`.
    pub container: String,
    /// The image line with each value's path in braces (`{{registryServer}}/…`), for the comment.
    pub shape: String,
    /// The image as the chart renders it by default.
    pub default: String,
    /// Why each decision, one sentence each.
    pub why: Vec<String>,
}

/// What rendering a chart gave.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Its workloads, rendered with its defaults.
    pub workloads: Vec<Workload>,
    /// Its Services, rendered with its defaults.
    pub services: Vec<Service>,
    /// The mapping of devloop's image, or why there is none.
    pub image: Option<Result<ImageMapping, String>>,
    /// The rendering with markers and the values they stand for: where another image of the project may
    /// land too (a chart with an api and a web), see [`map_image`].
    pub marked: Option<(String, Vec<Leaf>)>,
}

const MARK: &str = "dvlmark";

/// Escapes a key for a `--set` path (`.`, `[`, `,` and `=` are syntax there).
fn key(k: &str) -> String {
    k.chars().flat_map(|c| if ".[],=\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

/// `values` with every string leaf replaced by a marker of its own, and the leaves.
pub fn mark(values: &Value) -> (Value, Vec<Leaf>) {
    mark_where(values, &|_| true)
}

/// Whether a value's path looks like part of an image reference: the values marked when marking them all
/// breaks the chart (a schema's enum, a value compared in a template).
fn imageish(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    ["image", "registry", "repo", "tag", "version", "build", "digest"].iter().any(|w| p.contains(w))
}

/// [`mark`], for the string leaves whose path `pick` accepts.
fn mark_where(values: &Value, pick: &dyn Fn(&str) -> bool) -> (Value, Vec<Leaf>) {
    fn walk(v: &Value, path: &str, leaves: &mut Vec<Leaf>, pick: &dyn Fn(&str) -> bool) -> Value {
        match v {
            Value::String(s) if pick(path) => {
                let marker = format!("{MARK}{}x", leaves.len());
                leaves.push(Leaf { path: path.to_string(), marker: marker.clone(), default: s.clone() });
                Value::String(marker)
            }
            Value::Mapping(m) => {
                let mut out = serde_yaml_ng::Mapping::new();
                for (k, sub) in m {
                    let Some(ks) = k.as_str() else {
                        out.insert(k.clone(), sub.clone());
                        continue;
                    };
                    let p = if path.is_empty() { key(ks) } else { format!("{path}.{}", key(ks)) };
                    out.insert(k.clone(), walk(sub, &p, leaves, pick));
                }
                Value::Mapping(out)
            }
            Value::Sequence(items) => Value::Sequence(items.iter().enumerate().map(|(i, sub)| walk(sub, &format!("{path}[{i}]"), leaves, pick)).collect()),
            other => other.clone(),
        }
    }
    let mut leaves = Vec::new();
    let marked = walk(values, "", &mut leaves, pick);
    (marked, leaves)
}

/// A rendered image, cut into literal text and the values that made the rest.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Text(String),
    Value(usize),
}

fn segments(image: &str, leaves: &[Leaf]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = image;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        let leaf = after[..digits].parse::<usize>().ok().filter(|&i| after[digits..].starts_with('x') && i < leaves.len());
        match leaf {
            Some(i) => {
                text.push_str(&rest[..at]);
                if !text.is_empty() {
                    out.push(Seg::Text(std::mem::take(&mut text)));
                }
                out.push(Seg::Value(i));
                rest = &after[digits + 1..];
            }
            None => {
                text.push_str(&rest[..at + MARK.len()]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Seg::Text(text));
    }
    out
}

/// The segments as text, each value by `f`.
fn join(segs: &[Seg], f: &dyn Fn(usize) -> String) -> String {
    segs.iter().map(|s| match s { Seg::Text(t) => t.clone(), Seg::Value(i) => f(*i) }).collect()
}

/// Splits `segs` at the first `c` in their text: (before, after), or None when no text has it.
fn split_at(segs: &[Seg], c: char, last: bool) -> Option<(Vec<Seg>, Vec<Seg>)> {
    let idx = if last {
        segs.iter().rposition(|s| matches!(s, Seg::Text(t) if t.contains(c)))?
    } else {
        segs.iter().position(|s| matches!(s, Seg::Text(t) if t.contains(c)))?
    };
    let Seg::Text(t) = &segs[idx] else { unreachable!("a text segment") };
    let (a, b) = if last { t.rsplit_once(c)? } else { t.split_once(c)? };
    let mut before = segs[..idx].to_vec();
    if !a.is_empty() {
        before.push(Seg::Text(a.to_string()));
    }
    let mut after = Vec::new();
    if !b.is_empty() {
        after.push(Seg::Text(b.to_string()));
    }
    after.extend_from_slice(&segs[idx + 1..]);
    Some((before, after))
}

/// The container of `rendered` (a marked rendering) whose image is devloop's, and how to put devloop's image
/// there. `hint` names the image (or chart): among several containers whose image comes from values, the one
/// whose repository ends with it. Err: why not, in a sentence.
pub fn map_image(rendered: &str, leaves: &[Leaf], hints: &[&str]) -> Result<ImageMapping, String> {
    let objs = scan::objects(rendered).map_err(|e| format!("its rendering does not parse ({e})"))?;
    let workloads: Vec<Workload> = objs.iter().filter_map(scan::workload).collect();
    let all: Vec<(String, String, Vec<Seg>)> = workloads
        .iter()
        .flat_map(|w| w.containers.iter().map(move |c| (format!("{}/{} container {}", w.kind, w.name, c.0), c.1.clone())))
        .map(|(at, image)| {
            let segs = segments(&image, leaves);
            (at, image, segs)
        })
        .collect();
    if all.is_empty() {
        return Err("it renders no container".into());
    }
    let default = |segs: &[Seg]| join(segs, &|i| leaves[i].default.clone());
    let valued: Vec<&(String, String, Vec<Seg>)> = all.iter().filter(|(_, _, s)| s.iter().any(|s| matches!(s, Seg::Value(_)))).collect();
    if valued.is_empty() {
        let images: Vec<&str> = all.iter().map(|(_, i, _)| i.as_str()).collect();
        return Err(format!("no value of its values.yaml reaches a container's image: its templates write {}", images.join(", ")));
    }
    let mut shapes: Vec<&(String, String, Vec<Seg>)> = Vec::new();
    for v in &valued {
        if !shapes.iter().any(|s| s.2 == v.2) {
            shapes.push(v);
        }
    }
    let chosen = if shapes.len() == 1 {
        shapes[0]
    } else {
        let named: Vec<_> = shapes
            .iter()
            .filter(|(_, _, segs)| {
                let d = default(segs);
                let repo = crate::deploy::images::repository(&d);
                let last = repo.rsplit('/').next().unwrap_or(repo);
                hints.contains(&last)
            })
            .collect();
        match named.as_slice() {
            [one] => **one,
            _ => {
                let list: Vec<String> = shapes.iter().map(|(at, _, segs)| format!("{at} ({})", default(segs))).collect();
                return Err(format!("values reach several images and none is named like the image: {}", list.join(", ")));
            }
        }
    };
    let (at, _, segs) = chosen;
    let shape = join(segs, &|i| format!("{{{{{}}}}}", leaves[i].path));
    let mut m = ImageMapping { container: at.clone(), shape: shape.clone(), default: default(segs), ..Default::default() };
    let fail = |why: String| Err(format!("{at} runs `{shape}`: {why}"));

    let (main, digest) = split_at(segs, '@', false).unwrap_or((segs.clone(), Vec::new()));
    if let [Seg::Value(i)] = main.as_slice() {
        if digest.is_empty() {
            m.full = Some(leaves[*i].path.clone());
            m.why.push(format!("`{}` is the whole image reference", leaves[*i].path));
            return Ok(m);
        }
    }
    if !digest.is_empty() {
        return fail("a digest written after the tag; devloop cannot fill it in".into());
    }
    // The tag: after the last `:` that follows the last `/` (a registry's port comes before a `/`).
    let tag_split = split_at(&main, ':', true);
    let Some((repo, tag)) = tag_split.filter(|(_, t)| !join(t, &|_| "v".into()).contains('/')) else {
        return fail("no tag after the repository, so it would not change with each build".into());
    };
    // The repository.
    let mut name: Option<String> = None;
    match repo.as_slice() {
        [Seg::Value(i)] => {
            if let [Seg::Value(t)] = tag.as_slice() {
                m.split = Some((leaves[*i].path.clone(), leaves[*t].path.clone()));
                m.why.push(format!("`{}` and `{}` take the repository and the tag", leaves[*i].path, leaves[*t].path));
                return Ok(m);
            }
            m.set.push((leaves[*i].path.clone(), "{repository}".into()));
            m.why.push(format!("`{}` takes the repository", leaves[*i].path));
        }
        // A registry: its default names a host (`docker.io`, `r:5000`, `localhost`), or is empty; a Docker Hub
        // user (`kiamol/…`) is not one.
        [Seg::Value(r), Seg::Text(t), rest @ ..] if t.starts_with('/') && looks_like_host(&leaves[*r].default) => {
            m.set.push((leaves[*r].path.clone(), "{registry}".into()));
            m.why.push(format!("`{}` takes the registry", leaves[*r].path));
            let mut rest: Vec<Seg> = rest.to_vec();
            if t.len() > 1 {
                rest.insert(0, Seg::Text(t[1..].to_string()));
            }
            match rest.as_slice() {
                [Seg::Value(n)] => {
                    m.set.push((leaves[*n].path.clone(), "{name}".into()));
                    m.why.push(format!("`{}` takes the image's name", leaves[*n].path));
                }
                [] => return fail("nothing after the registry".into()),
                _ => {
                    let n = default(&rest);
                    for s in &rest {
                        if let Seg::Value(i) = s {
                            m.set.push((leaves[*i].path.clone(), leaves[*i].default.clone()));
                            m.why.push(format!(
                                "`{}` is part of the image's name (`{n}`): it is pinned to its default `{}` (change both together)",
                                leaves[*i].path, leaves[*i].default
                            ));
                        }
                    }
                    name = Some(n);
                }
            }
        }
        _ => {
            let r = default(&repo);
            let host = r.split('/').next().unwrap_or("");
            let why = if r.contains('/') && looks_like_host(host) && !host.is_empty() {
                format!("the registry `{host}` is written in the template, and no value points it at devloop's registry")
            } else {
                format!("the repository `{r}` names no registry a value sets (it pulls from Docker Hub)")
            };
            return fail(why);
        }
    }
    if let Some(n) = &name {
        let valid = n.split('/').all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && p.starts_with(|c: char| c.is_ascii_alphanumeric())
                && p.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
        if !valid {
            return fail(format!("its repository by default is `{n}`, not a valid image name"));
        }
        m.name = Some(n.clone());
    }
    // The tag: the first value in it is the content hash (the whole tag when it is alone); any other value
    // is pinned to its default, part of the fixed text around it.
    let Some(first) = tag.iter().position(|s| matches!(s, Seg::Value(_))) else {
        return fail(format!("the tag `{}` is written in the template", default(&tag)));
    };
    let Seg::Value(t) = tag[first] else { unreachable!("a value") };
    for s in &tag[first + 1..] {
        if let Seg::Value(i) = s {
            m.set.push((leaves[*i].path.clone(), leaves[*i].default.clone()));
            m.why.push(format!("`{}` is part of the tag: pinned to its default `{}`", leaves[*i].path, leaves[*i].default));
        }
    }
    if tag.len() == 1 {
        m.set.push((leaves[t].path.clone(), "{tag}".into()));
        m.why.push(format!("`{}` takes the tag", leaves[t].path));
    } else {
        let fixed = |segs: &[Seg]| default(segs);
        let template = format!("{}{{hash}}{}", fixed(&tag[..first]), fixed(&tag[first + 1..]));
        TagTemplate::parse(&template).map_err(|e| format!("{at} runs `{shape}`: the tag template it needs is not valid: {e}"))?;
        m.set.push((leaves[t].path.clone(), "{hash}".into()));
        m.why.push(format!(
            "`{}` takes the content hash, and the [[image]] tag `{template}` adds the text the template writes around it",
            leaves[t].path
        ));
        m.tag = Some(template);
    }
    Ok(m)
}

fn looks_like_host(s: &str) -> bool {
    s.is_empty() || s.contains('.') || s.contains(':') || s == "localhost"
}

/// `helm template RELEASE CHART [-f -]` with `values` (YAML) on stdin; its output, or why not.
fn helm_template(chart: &Path, release: &str, values: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("helm");
    cmd.args(["template", release]).arg(chart);
    if values.is_some() {
        cmd.args(["-f", "-"]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { crate::deploy::helm::Error::NotFound.to_string() } else { format!("running helm: {e}") }
    })?;
    if let (Some(v), Some(mut stdin)) = (values, child.stdin.take()) {
        let _ = stdin.write_all(v.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("running helm: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`helm template` failed: {}", err.trim().lines().last().unwrap_or("")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Renders the chart in `dir` as release `release`: as it is, and with markers (see [`map_image`]). Err: why
/// it could not be rendered.
pub fn render(dir: &Path, release: &str, values: &Value, hints: &[&str]) -> Result<Rendered, String> {
    let plain = helm_template(dir, release, None)?;
    let objs = scan::objects(&plain).map_err(|e| format!("its rendering does not parse ({e})"))?;
    let mut r = Rendered {
        workloads: objs.iter().filter_map(scan::workload).collect(),
        services: objs.iter().filter_map(scan::service).collect(),
        image: None,
        marked: None,
    };
    let (marked, leaves) = mark(values);
    if leaves.is_empty() {
        r.image = Some(Err("its values.yaml has no string value, so no value can take the image".into()));
        return Ok(r);
    }
    let rendered = |marked: &Value| serde_yaml_ng::to_string(marked).map_err(|e| e.to_string()).and_then(|t| helm_template(dir, release, Some(&t)));
    let out = match rendered(&marked) {
        Ok(out) => Ok((out, leaves)),
        // Markers everywhere broke it: markers only where an image's parts usually are.
        Err(e) => match mark_where(values, &imageish) {
            (some, few) if !few.is_empty() && few.len() < leaves.len() => rendered(&some).map(|out| (out, few)).map_err(|_| e),
            _ => Err(e),
        },
    };
    r.image = Some(match out {
        Ok((out, leaves)) => {
            let mapped = map_image(&out, &leaves, hints);
            r.marked = Some((out, leaves));
            mapped
        }
        Err(e) => Err(format!("with a marker in each string value, {e}")),
    });
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Deployment (and a sidecar when given) rendered from `values` with markers: each `{{path}}` of the
    /// image lines is that value's marker, as helm would render it.
    fn rendered(values: &str, image: &str, sidecar: Option<&str>) -> (String, Vec<Leaf>) {
        let (_, leaves) = mark(&serde_yaml_ng::from_str(values).unwrap());
        let fill = |line: &str| {
            let mut l = line.to_string();
            for leaf in &leaves {
                l = l.replace(&format!("{{{{{}}}}}", leaf.path), &leaf.marker);
            }
            l
        };
        let mut text = format!(
            "---\n# Source: x/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: main\n          image: \"{}\"\n",
            fill(image)
        );
        if let Some(s) = sidecar {
            text.push_str(&format!("        - name: proxy\n          image: {}\n", fill(s)));
        }
        text.push_str("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n");
        (text, leaves)
    }

    #[test]
    fn markers_in_the_image_line_say_which_values_take_devloop_s_image() {
        const BOOK: &str = "servicePort: 8012\nserviceType: LoadBalancer\nregistryServer: docker.io\nregistryUser: kiamol\nimageBuildNumber: dev\nregistrySecretName: registry-creds\n";
        // (case, values.yaml, image line, sidecar, want: (split, full, set, name, tag))
        type Want<'a> = (Option<(&'a str, &'a str)>, Option<&'a str>, Vec<(&'a str, &'a str)>, Option<&'a str>, Option<&'a str>);
        let cases: Vec<(&str, &str, &str, Option<&str>, Want)> = vec![
            (
                "the book's chart: three values and a fixed suffix",
                BOOK,
                "{{registryServer}}/{{registryUser}}/bulletin-board:{{imageBuildNumber}}-kiamol",
                None,
                (None, None, vec![("registryServer", "{registry}"), ("registryUser", "kiamol"), ("imageBuildNumber", "{hash}")], Some("kiamol/bulletin-board"), Some("{hash}-kiamol")),
            ),
            (
                "the common shape",
                "image:\n  repository: nginx\n  tag: \"\"\nname: x\n",
                "{{image.repository}}:{{image.tag}}",
                None,
                (Some(("image.repository", "image.tag")), None, vec![], None, None),
            ),
            (
                "registry, repository and tag values (bitnami's shape): the name stays devloop's",
                "image:\n  registry: docker.io\n  repository: bitnami/nginx\n  tag: 1.25.3\n",
                "{{image.registry}}/{{image.repository}}:{{image.tag}}",
                None,
                (None, None, vec![("image.registry", "{registry}"), ("image.repository", "{name}"), ("image.tag", "{tag}")], None, None),
            ),
            ("one value for the whole reference", "app:\n  image: nginx:1\n", "{{app.image}}", None, (None, Some("app.image"), vec![], None, None)),
            (
                "a sidecar's image from values too: the one named like the chart",
                "image:\n  repository: shop\n  tag: v1\nproxy:\n  image: envoy:1\n",
                "{{image.repository}}:{{image.tag}}",
                Some("{{proxy.image}}"),
                (Some(("image.repository", "image.tag")), None, vec![], None, None),
            ),
            (
                "a version prefix and a repository value",
                "repo: r.example/shop\nversion: \"1\"\n",
                "{{repo}}:v{{version}}",
                None,
                (None, None, vec![("repo", "{repository}"), ("version", "{hash}")], None, Some("v{hash}")),
            ),
        ];
        for (case, values, image, sidecar, want) in cases {
            let (text, leaves) = rendered(values, image, sidecar);
            let m = map_image(&text, &leaves, &["shop", "x"]).unwrap_or_else(|e| panic!("{case}: {e}"));
            let set: Vec<(&str, &str)> = m.set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let split = m.split.as_ref().map(|(r, t)| (r.as_str(), t.as_str()));
            assert_eq!((split, m.full.as_deref(), set, m.name.as_deref(), m.tag.as_deref()), want, "{case}: {m:?}");
            assert_eq!(m.container, "Deployment/web container main", "{case}");
        }
        let (text, leaves) = rendered(BOOK, "{{registryServer}}/{{registryUser}}/bulletin-board:{{imageBuildNumber}}-kiamol", None);
        let m = map_image(&text, &leaves, &[]).unwrap();
        assert_eq!(m.shape, "{{registryServer}}/{{registryUser}}/bulletin-board:{{imageBuildNumber}}-kiamol");
        assert_eq!(m.default, "docker.io/kiamol/bulletin-board:dev-kiamol", "the image the chart runs by default");
    }

    #[test]
    fn an_image_devloop_cannot_reach_is_said_plainly() {
        let cases: &[(&str, &str, &str)] = &[
            ("tag: \"1\"\n", "ghcr.io/acme/app:{{tag}}", "the registry `ghcr.io` is written in the template"),
            ("repository: app\n", "{{repository}}:1.0", "the tag `1.0` is written in the template"),
            ("name: x\n", "nginx:1.25", "no value of its values.yaml reaches a container's image: its templates write nginx:1.25"),
            ("registry: r.example\n", "{{registry}}/app", "no tag after the repository"),
            ("user: acme\ntag: \"1\"\n", "{{user}}/app:{{tag}}", "the repository `acme/app` names no registry a value sets"),
            ("registry: r.example\nuser: Acme\ntag: \"1\"\n", "{{registry}}/{{user}}/app:{{tag}}", "its repository by default is `Acme/app`, not a valid image name"),
        ];
        for (values, image, want) in cases {
            let (text, leaves) = rendered(values, image, None);
            let e = map_image(&text, &leaves, &[]).unwrap_err();
            assert!(e.contains(want), "{image}: {e}");
            assert!(e.starts_with("Deployment/web container main runs `") || !e.contains("runs"), "{e}");
        }
        let (text, leaves) = rendered("a:\n  image: x:1\nb:\n  image: y:1\n", "{{a.image}}", Some("{{b.image}}"));
        let e = map_image(&text, &leaves, &["z"]).unwrap_err();
        assert!(e.contains("values reach several images and none is named like the image"), "{e}");
        assert!(map_image("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", &leaves, &[]).unwrap_err().contains("renders no container"));
    }

    #[test]
    fn every_string_value_gets_a_marker_of_its_own_with_its_set_path() {
        let values: Value = serde_yaml_ng::from_str("a.b:\n  tag: x\nlist:\n  - name: n\nport: 80\nempty: \"\"\n").unwrap();
        let (marked, leaves) = mark(&values);
        let paths: Vec<(&str, &str)> = leaves.iter().map(|l| (l.path.as_str(), l.default.as_str())).collect();
        assert_eq!(paths, [("a\\.b.tag", "x"), ("list[0].name", "n"), ("empty", "")]);
        assert_eq!(marked["port"].as_u64(), Some(80), "numbers stay");
        assert_eq!(marked["a.b"]["tag"].as_str(), Some(leaves[0].marker.as_str()));
        // A marker is found in text, and one marker is not taken for a longer one.
        let many: Vec<Leaf> = (0..12).map(|i| Leaf { path: format!("v{i}"), marker: format!("{MARK}{i}x"), default: String::new() }).collect();
        assert_eq!(segments(&format!("a{MARK}1x/{MARK}11x:{MARK}9"), &many), [
            Seg::Text("a".into()),
            Seg::Value(1),
            Seg::Text("/".into()),
            Seg::Value(11),
            Seg::Text(format!(":{MARK}9")),
        ]);
    }
}
