//! `[[deploy]] helm = { … }`: a Helm chart installed or upgraded as a release with the built image.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::{Template, Var};

/// A `[[deploy]]`'s Helm release.
#[derive(Debug, Clone, PartialEq)]
pub struct Helm {
    /// The chart: a directory relative to devloop.toml when one exists there, else passed to helm as is
    /// (`repo/name`, `oci://…`).
    pub chart: String,
    /// The release name.
    pub release: String,
    /// Values files (`-f`), relative to devloop.toml, in order.
    pub values: Vec<String>,
    /// `--set` pairs: strings go as `--set-string`, numbers and booleans as `--set`.
    pub set: BTreeMap<String, SetValue>,
    /// Where the chart's values take the image.
    pub image_values: ImageValues,
    /// The value path of the chart's `imagePullSecrets` list (`image-values.pull-secrets`): with
    /// `[registry] pull-secret`, devloop sets `<path>[0].name` to its Secret.
    pub pull_secrets: Option<String>,
    /// Another `[[deploy]]` (another image) upgrades the same release: each upgrade keeps the values the
    /// release has (`--reset-then-reuse-values`), so one image's upgrade does not put the other's back to
    /// the chart's default, and upgrades of the release take turns.
    pub shared: bool,
}

/// One `set` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    /// A string, passed with `--set-string` so helm does not retype it.
    String(String),
    /// A string with placeholders (`{registry}`, `{tag}`, … see [`Var`]), expanded for each deploy and passed
    /// with `--set-string`.
    Template(Template),
    /// A number or boolean, passed with `--set`.
    Literal(String),
}

/// The value paths the built image goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageValues {
    /// `<pull host>/<name>` into `repository`, `<tag>@<digest>` into `tag` (the default: `image.repository`,
    /// `image.tag`).
    Split {
        /// Value path of the repository.
        repository: String,
        /// Value path of the tag.
        tag: String,
    },
    /// The full `repo:tag@digest` reference into one value.
    Full(String),
    /// None: `set` templates name the build (`{tag}`, `{hash}`, `{digest}` or `{image}`) and no
    /// `image-values` was given, so the templates are how the chart takes the image.
    InSet,
}

impl Default for ImageValues {
    fn default() -> Self {
        ImageValues::Split { repository: "image.repository".into(), tag: "image.tag".into() }
    }
}

/// `helm = { … }` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct RawHelm {
    chart: Option<String>,
    release: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, toml::Spanned<toml::Value>>,
    image_values: Option<RawImageValues>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawImageValues {
    repository: Option<String>,
    tag: Option<String>,
    image: Option<String>,
    pull_secrets: Option<String>,
}

/// A `helm` table's error: the key below `helm.`, the message, and where the key's value is when known.
pub(super) type Bad = (String, String, Option<std::ops::Range<usize>>);

/// Validates a `helm` table.
pub(super) fn validate(raw: RawHelm) -> Result<Helm, Bad> {
    let bad = |k: &str, m: String| (k.to_string(), m, None);
    let chart = raw.chart.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
        bad("chart", "missing: name the chart's directory (relative to devloop.toml) or a chart reference".into())
    })?;
    let release = raw.release.ok_or_else(|| bad("release", "missing: name the Helm release".into()))?;
    // Helm's own rule for release names (DNS-1123 label-ish, at most 53 characters).
    let valid = !release.is_empty()
        && release.len() <= 53
        && release.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && release.starts_with(|c: char| c.is_ascii_alphanumeric())
        && release.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(bad("release", format!("`{release}` is not a release name: lowercase letters, digits, `-` and `.`, at most 53")));
    }
    if let Some(v) = raw.values.iter().find(|v| v.trim().is_empty()) {
        return Err(bad("values", format!("`{v}` is an empty path")));
    }
    let mut set = BTreeMap::new();
    for (k, v) in raw.set {
        let span = v.span();
        let at = |m: String| (format!("set.{k}"), m, Some(span.clone()));
        let v = match v.into_inner() {
            toml::Value::String(s) => match Template::parse(&s, &Var::ALL).map_err(at)? {
                t if t.is_plain() => SetValue::String(s),
                t => SetValue::Template(t),
            },
            toml::Value::Integer(i) => SetValue::Literal(i.to_string()),
            toml::Value::Float(f) => SetValue::Literal(f.to_string()),
            toml::Value::Boolean(b) => SetValue::Literal(b.to_string()),
            other => return Err(at(format!("a {} : set takes strings, numbers and booleans", other.type_str()))),
        };
        set.insert(k, v);
    }
    // A template naming the build is how the chart takes the image, unless image-values says where else.
    let pinned = set.values().any(|v| matches!(v, SetValue::Template(t) if t.vars().any(Var::pins_build)));
    let pull_secrets = raw.image_values.as_ref().and_then(|v| v.pull_secrets.clone());
    if pull_secrets.as_ref().is_some_and(|p| p.trim().is_empty()) {
        return Err(bad("image-values.pull-secrets", "an empty value path: name the chart's list, like \"imagePullSecrets\"".into()));
    }
    let named = raw.image_values.as_ref().is_some_and(|v| v.image.is_some() || v.repository.is_some() || v.tag.is_some());
    let image_values = match raw.image_values {
        _ if pinned && !named => ImageValues::InSet,
        None => ImageValues::default(),
        Some(RawImageValues { image: Some(_), repository: Some(_), .. } | RawImageValues { image: Some(_), tag: Some(_), .. }) => {
            return Err(bad("image-values", "set either `image` (one full reference) or `repository` and `tag`, not both".into()))
        }
        Some(RawImageValues { image: Some(path), .. }) => ImageValues::Full(path),
        Some(RawImageValues { repository, tag, .. }) => ImageValues::Split {
            repository: repository.unwrap_or_else(|| "image.repository".into()),
            tag: tag.unwrap_or_else(|| "image.tag".into()),
        },
    };
    if let Some(p) = match &image_values {
        ImageValues::Split { repository, tag } => [repository, tag].into_iter().find(|p| p.trim().is_empty()),
        ImageValues::Full(p) => Some(p).filter(|p| p.trim().is_empty()),
        ImageValues::InSet => None,
    } {
        return Err(bad("image-values", format!("`{p}` is not a value path like \"image.repository\"")));
    }
    Ok(Helm { chart, release, values: raw.values, set, image_values, pull_secrets, shared: false })
}
