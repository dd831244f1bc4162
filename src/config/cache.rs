//! `[[image]] cache-from` / `cache-to` and `devloop build --cache-from/--cache-to`: BuildKit cache specs
//! (`type=registry,ref=<registry>/cache/api,mode=max`, `type=inline`), so a build cache CI exported is what a
//! developer's first build (or a fresh BuildKit's) starts from. Checked when the config loads; the
//! placeholders (`{registry}`, `{name}`, `{repository}`) are expanded per image when it is built.

use std::collections::BTreeMap;

use super::template::{Template, Var};

/// The placeholders a cache spec's values may name: where the image lives, not which build it is (a cache
/// is shared across builds).
pub const CACHE_VARS: [Var; 3] = [Var::Registry, Var::Name, Var::Repository];

/// Whether a spec imports a cache (`cache-from`) or exports one (`cache-to`): they allow different types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `cache-from`: read before the build.
    From,
    /// `cache-to`: written after it.
    To,
}

/// One checked cache spec: a BuildKit cache importer/exporter type and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// `registry`, `inline`, `gha`, `s3`, `azblob`.
    pub kind: String,
    /// Its attributes (`ref`, `mode`, …), values with placeholders.
    pub attrs: BTreeMap<String, Template>,
}

/// The types BuildKit resolves on the daemon side. `local` is left out: it needs a content store served by
/// the client, which devloop does not serve.
const TYPES: [&str; 5] = ["registry", "inline", "gha", "s3", "azblob"];

impl CacheSpec {
    /// Parses `type=…,key=value,…` (a bare `<ref>` is `type=registry,ref=<ref>`, as buildx reads it). Err:
    /// what is wrong and what to write instead.
    pub fn parse(text: &str, direction: Direction) -> Result<CacheSpec, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty cache spec: write e.g. \"type=registry,ref={registry}/cache/{name}\"".into());
        }
        let mut kind = None;
        let mut attrs = BTreeMap::new();
        if !text.contains('=') {
            kind = Some("registry".to_string());
            attrs.insert("ref".to_string(), Template::parse(text, &CACHE_VARS).map_err(|e| format!("ref {e}"))?);
        } else {
            for field in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let Some((k, v)) = field.split_once('=') else {
                    return Err(format!("`{field}` in `{text}` is not key=value"));
                };
                let (k, v) = (k.trim(), v.trim());
                if k == "type" {
                    kind = Some(v.to_string());
                } else if attrs.insert(k.to_string(), Template::parse(v, &CACHE_VARS).map_err(|e| format!("{k} {e}"))?).is_some() {
                    return Err(format!("`{k}` is set twice in `{text}`"));
                }
            }
        }
        let Some(kind) = kind else {
            return Err(format!("`{text}` has no type: start it with type=registry (or inline, gha, s3, azblob)"));
        };
        if !TYPES.contains(&kind.as_str()) {
            let hint = if kind == "local" { " (a local cache needs a directory on the daemon's client, which devloop does not serve: use type=registry)" } else { "" };
            return Err(format!("unknown cache type `{kind}`{hint}: use one of {}", TYPES.join(", ")));
        }
        if kind == "inline" && direction == Direction::From {
            return Err("type=inline is a cache-to (the cache goes into the pushed image): read it back with cache-from = \"type=registry,ref=<that image>\"".into());
        }
        if kind == "registry" && attrs.get("ref").is_none_or(|r| r.as_str().is_empty()) {
            return Err(format!("`{text}`: type=registry needs ref=<registry>/<repository>[:tag], e.g. ref={{registry}}/cache/{{name}}"));
        }
        if let Some(mode) = attrs.get("mode").map(Template::as_str) {
            if direction == Direction::To && mode != "min" && mode != "max" {
                return Err(format!("mode=`{mode}`: use mode=min (the image's layers) or mode=max (every step's)"));
            }
        }
        Ok(CacheSpec { kind, attrs })
    }

    /// The attributes with placeholders replaced by `value`. Err: a placeholder that has no value.
    pub fn expand(&self, value: &dyn Fn(Var) -> Result<String, String>) -> Result<BTreeMap<String, String>, String> {
        self.attrs.iter().map(|(k, t)| Ok((k.clone(), t.expand(value)?))).collect()
    }
}

impl std::fmt::Display for CacheSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "type={}", self.kind)?;
        for (k, v) in &self.attrs {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_buildx_and_name_what_is_wrong() {
        let s = CacheSpec::parse("type=registry, ref={registry}/cache/{name},mode=max", Direction::To).unwrap();
        assert_eq!(s.kind, "registry");
        assert_eq!(s.to_string(), "type=registry,mode=max,ref={registry}/cache/{name}");
        let vals = |v: Var| match v {
            Var::Registry => Ok("r:5000".to_string()),
            Var::Name => Ok("api".to_string()),
            _ => Err("no".to_string()),
        };
        assert_eq!(s.expand(&vals).unwrap()["ref"], "r:5000/cache/api");
        let bare = CacheSpec::parse("r:5000/cache/api:ci", Direction::From).unwrap();
        assert_eq!((bare.kind.as_str(), bare.attrs["ref"].as_str()), ("registry", "r:5000/cache/api:ci"));
        assert_eq!(CacheSpec::parse("type=inline", Direction::To).unwrap().attrs.len(), 0);
        assert!(CacheSpec::parse("type=gha,scope=api", Direction::From).is_ok());

        let bad: &[(&str, Direction, &str)] = &[
            ("", Direction::To, "empty cache spec"),
            ("type=registri,ref=x", Direction::To, "unknown cache type `registri`"),
            ("type=local,dest=/tmp/c", Direction::To, "does not serve"),
            ("type=registry,mode=max", Direction::To, "needs ref="),
            ("type=registry,ref=", Direction::From, "needs ref="),
            ("ref=x", Direction::From, "has no type"),
            ("type=registry,ref=x,mode=all", Direction::To, "mode=`all`"),
            ("type=inline", Direction::From, "type=inline is a cache-to"),
            ("type=registry,ref=x,junk", Direction::To, "`junk` in"),
            ("type=registry,ref=x,ref=y", Direction::To, "`ref` is set twice"),
            ("type=registry,ref={registry}/c:{tag}", Direction::To, "{tag} is not known here"),
        ];
        for (text, dir, want) in bad {
            let e = CacheSpec::parse(text, *dir).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
