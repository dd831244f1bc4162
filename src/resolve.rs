//! From devloop.toml to what this run uses, in one place: the file read and checked (`config::load`, which
//! touches nothing but the file and the environment's overrides), then what depends on the machine and the
//! cluster around it — every build context there, the registry's CA read (a missing context or an unreadable
//! CA is a config error, exit 2, not a failure in the middle of a build), Docker Engine's BuildKit and image
//! store picked up when nothing else is set, and the namespace's `{user}` / `{git-user}` filled in.

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
    config::contexts::check(&cfg, &text)?;
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

    #[test]
    fn a_context_that_is_not_a_directory_is_a_config_error_naming_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("devloop.toml");
        std::fs::create_dir(d.path().join("app")).unwrap();
        std::fs::write(d.path().join("file"), "").unwrap();
        let text = "[registry]\nhost = \"r:5000\"\n[[image]]\nname = \"a\"\ncontext = \"app\"\n[[image]]\nname = \"b\"\n\ncontext = \"nowhere\"\n";
        std::fs::write(&path, text).unwrap();
        let msg = super::load(&path, None).unwrap_err().to_string();
        let at = format!("{}:9:11: key `image[1].context`: ", path.display());
        assert!(msg.starts_with(&at) && msg.contains(&d.path().join("nowhere").display().to_string()), "{msg}");
        assert!(msg.contains("`nowhere`") && msg.contains("does not exist") && !msg.contains("Dockerfile"), "{msg}");

        std::fs::write(&path, text.replace("nowhere", "file")).unwrap();
        let msg = super::load(&path, None).unwrap_err().to_string();
        assert!(msg.contains("key `image[1].context`") && msg.contains("not a directory"), "{msg}");
    }
}
