//! The build caches of one build: the image's `cache-from`/`cache-to` (and `build --cache-from/--cache-to`)
//! expanded for it, as the Solve request's cache imports and exports. BuildKit fetches and pushes them
//! itself, asking the session's Auth service for the registry's credentials (the same answer as a push).

use std::collections::{BTreeMap, HashMap};

use bollard_buildkit_proto::moby::buildkit::v1::{CacheOptions, CacheOptionsEntry};

use crate::config::{CacheSpec, Image, Registry, Var};

/// One cache importer or exporter, placeholders expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `registry`, `inline`, …
    pub kind: String,
    /// `ref`, `mode`, …
    pub attrs: BTreeMap<String, String>,
}

/// What one build reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    /// Imported before the build, in order.
    pub from: Vec<Entry>,
    /// Exported after it.
    pub to: Vec<Entry>,
}

/// Cache specs given on the command line (`devloop build`), for every image built.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--cache-from`: added to each image's `cache-from`.
    pub from: Vec<CacheSpec>,
    /// `--cache-to`: replaces each image's `cache-to` (CI decides where its export goes; two exports would
    /// cost two).
    pub to: Vec<CacheSpec>,
}

/// The caches of `image`: its own specs with `flags` applied, `{registry}`/`{name}`/`{repository}`
/// expanded. A ref on an `insecure` registry gets `registry.insecure`, as the push does. Err: a spec that
/// names a placeholder with no value (no registry host).
pub fn for_image(image: &Image, registry: &Registry, flags: &Flags) -> Result<Cache, String> {
    let value = |v: Var| match v {
        Var::Registry if registry.host.is_empty() => Err(format!("{v} has no value: set [registry] host (or DEVLOOP_REGISTRY)")),
        Var::Registry => Ok(registry.host.clone()),
        Var::Name => Ok(image.name.clone()),
        Var::Repository if registry.host.is_empty() => Err(format!("{v} has no value: set [registry] host (or DEVLOOP_REGISTRY)")),
        Var::Repository => Ok(format!("{}/{}", registry.host, image.name)),
        other => Err(format!("{other} is not known in a cache spec")),
    };
    let expand = |specs: &[CacheSpec], key: &str| -> Result<Vec<Entry>, String> {
        specs
            .iter()
            .map(|s| {
                let mut attrs = s.expand(&value).map_err(|e| format!("{}: {key} `{s}`: {e}", image.name))?;
                let on_registry = attrs.get("ref").is_some_and(|r| !registry.host.is_empty() && r.starts_with(&format!("{}/", registry.host)));
                if registry.insecure && on_registry {
                    attrs.entry("registry.insecure".into()).or_insert_with(|| "true".into());
                }
                Ok(Entry { kind: s.kind.clone(), attrs })
            })
            .collect()
    };
    let mut from = expand(&image.cache_from, "cache-from")?;
    from.extend(expand(&flags.from, "--cache-from")?);
    let to = if flags.to.is_empty() { expand(&image.cache_to, "cache-to")? } else { expand(&flags.to, "--cache-to")? };
    Ok(Cache { from, to })
}

fn entry(e: &Entry) -> CacheOptionsEntry {
    CacheOptionsEntry { r#type: e.kind.clone(), attrs: e.attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect() }
}

impl Cache {
    /// The Solve request's `cache` field (None: no cache configured).
    pub fn options(&self) -> Option<CacheOptions> {
        (!self.from.is_empty() || !self.to.is_empty()).then(|| CacheOptions {
            imports: self.from.iter().map(entry).collect(),
            exports: self.to.iter().map(entry).collect(),
            ..Default::default()
        })
    }

    /// The frontend attributes the imports also go in: the Dockerfile (and gateway) frontend solves its own
    /// definition and loads only the caches named in its `cache-imports` option (a JSON list of
    /// `{"Type", "Attrs"}`), not the request's.
    pub fn frontend_attrs(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if !self.from.is_empty() {
            let list: Vec<serde_json::Value> = self.from.iter().map(|e| serde_json::json!({ "Type": e.kind, "Attrs": e.attrs })).collect();
            out.insert("cache-imports".to_string(), serde_json::Value::Array(list).to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cache::Direction;

    fn spec(text: &str, dir: Direction) -> CacheSpec {
        CacheSpec::parse(text, dir).unwrap()
    }

    #[test]
    fn specs_expand_per_image_and_flags_add_imports_and_replace_exports() {
        let mut img = Image::new("team/api", std::path::Path::new("/x"));
        img.cache_from = vec![spec("type=registry,ref={registry}/cache/{name}", Direction::From)];
        img.cache_to = vec![spec("type=inline", Direction::To)];
        let reg = Registry { host: "r:5000".into(), insecure: true, ..Default::default() };
        let c = for_image(&img, &reg, &Flags::default()).unwrap();
        let ref_attrs = BTreeMap::from([("ref".to_string(), "r:5000/cache/team/api".to_string()), ("registry.insecure".to_string(), "true".to_string())]);
        assert_eq!(c.from, [Entry { kind: "registry".into(), attrs: ref_attrs.clone() }]);
        assert_eq!(c.to, [Entry { kind: "inline".into(), attrs: BTreeMap::new() }]);

        let flags = Flags {
            from: vec![spec("other:5000/c/{name}", Direction::From)],
            to: vec![spec("type=registry,ref={repository}:buildcache,mode=max", Direction::To)],
        };
        let c = for_image(&img, &reg, &flags).unwrap();
        assert_eq!(c.from.len(), 2, "the flag adds an import");
        assert_eq!(c.from[1].attrs, BTreeMap::from([("ref".to_string(), "other:5000/c/team/api".to_string())]), "another host: not marked insecure");
        assert_eq!(c.to.len(), 1, "the flag replaces the export");
        assert_eq!(c.to[0].attrs["ref"], "r:5000/team/api:buildcache");
        assert_eq!(c.to[0].attrs["mode"], "max");

        let none = Registry::default();
        let e = for_image(&img, &none, &Flags::default()).unwrap_err();
        assert!(e.contains("team/api: cache-from `type=registry,ref={registry}/cache/{name}`: {registry} has no value"), "{e}");
        assert_eq!(for_image(&Image::new("a", std::path::Path::new("/x")), &none, &Flags::default()).unwrap(), Cache::default());
    }

    #[test]
    fn the_request_carries_imports_and_exports_and_the_frontend_the_imports() {
        assert_eq!(Cache::default().options(), None);
        assert!(Cache::default().frontend_attrs().is_empty());
        let reg = Entry { kind: "registry".into(), attrs: BTreeMap::from([("ref".to_string(), "r/c".to_string())]) };
        let c = Cache { from: vec![reg.clone()], to: vec![reg, Entry { kind: "inline".into(), attrs: BTreeMap::new() }] };
        let o = c.options().unwrap();
        assert_eq!(o.imports.len(), 1);
        assert_eq!((o.imports[0].r#type.as_str(), o.imports[0].attrs["ref"].as_str()), ("registry", "r/c"));
        assert_eq!(o.exports.iter().map(|e| e.r#type.as_str()).collect::<Vec<_>>(), ["registry", "inline"]);
        assert!(o.export_ref_deprecated.is_empty() && o.import_refs_deprecated.is_empty());
        let attrs = c.frontend_attrs();
        let v: serde_json::Value = serde_json::from_str(&attrs["cache-imports"]).unwrap();
        assert_eq!(v, serde_json::json!([{ "Type": "registry", "Attrs": { "ref": "r/c" } }]));
    }
}
