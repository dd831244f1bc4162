//! From devloop.toml to what this run uses, in one place: the file read and checked (`config::load`, which
//! touches nothing but the file and the environment's overrides), then what depends on the machine and the
//! cluster around it — the registry's CA read (an unreadable one is a config error, exit 2, not a failure in
//! the middle of a build), Docker Engine's BuildKit and image store picked up when nothing else is set, and
//! the namespace's `{user}` / `{git-user}` filled in.

use std::path::Path;

use crate::config::{self, located, Config};

/// Loads the config at `path` for a run on `kube_context` (`--kube-context`, when it is not `[kube] context`:
/// whether images are loaded into a Docker Engine's store depends on which cluster they are for).
pub fn load(path: &Path, kube_context: Option<&str>) -> Result<Config, config::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| config::Error::Read { path: path.into(), source })?;
    let mut cfg = config::load_text(path, &text, |k| std::env::var(k).ok())?;
    if let Some(ca) = &cfg.registry.ca {
        crate::registry::ca_certificates(ca).map_err(|e| {
            let message = e.to_string();
            located(path, "registry.ca", message.trim_start_matches("key `registry.ca`: ").to_string())
        })?;
    }
    crate::docker::settle(&mut cfg, &text, kube_context);
    if let Some(ns) = &cfg.kube.namespace {
        let ns = crate::cluster::namespace::resolve(ns, &cfg.root).map_err(|m| located(path, "kube.namespace", m))?;
        cfg.kube.namespace = Some(ns);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreadable_registry_ca_is_a_config_error_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("devloop.toml");
        std::fs::write(&path, "[registry]\nhost = \"r:5443\"\nca = \"missing.pem\"\n").unwrap();
        let msg = super::load(&path, None).unwrap_err().to_string();
        // The file alone is fine: reading the CA is the resolving step's.
        assert!(crate::config::load(&path).is_ok());
        assert!(msg.contains("key `registry.ca`") && msg.contains("missing.pem") && msg.contains("cannot read"), "{msg}");
    }
}
