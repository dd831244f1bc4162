//! From devloop.toml to what this run uses, in one place: the file read and checked (`config::load`, which
//! touches nothing but the file and the environment's overrides), then what depends on the machine and the
//! cluster around it — every build context there, the registry's CA read (a missing context or an unreadable
//! CA is a config error, exit 2, not a failure in the middle of a build), Docker Engine's BuildKit and image
//! store picked up when nothing else is set (and the engine images are loaded into found once), the
//! namespace's `{user}` / `{git-user}` filled in — and, for the commands that push, the registry the cluster
//! advertises when devloop.toml names none ([`registry`]). What it yields is what every consumer reads:
//! `deliver::Destination::of` only reads the resolved config.

use std::path::Path;

use crate::config::{self, located, Config, Load};
use crate::registry::discover;

/// Errors finding where images go.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Images have nowhere to go: no `[registry] host`, no `load`, no registry advertised by the cluster.
    #[error("{0}")]
    NoRegistry(String),
    /// The cluster's `local-registry-hosting` ConfigMap could not be read or used.
    #[error(transparent)]
    Discovery(#[from] discover::Error),
}

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
    docker_engine(&mut cfg, &text, &crate::docker::Env::current())?;
    if let Some(ns) = &cfg.kube.namespace {
        let ns = crate::cluster::namespace::resolve(ns, &cfg.root).map_err(|m| located(path, "kube.namespace", m))?;
        cfg.kube.namespace = Some(ns);
    }
    Ok(cfg)
}

/// For `load = true`: the Docker Engine images are loaded into, found once (`env`: DOCKER_HOST and its TLS
/// files); a config error naming `registry.load` when BuildKit is not that engine's.
fn docker_engine(cfg: &mut Config, text: &str, env: &crate::docker::Env) -> Result<(), config::Error> {
    if cfg.registry.load != Load::Docker {
        return Ok(());
    }
    cfg.registry.engine = Some(match crate::docker::engine_of(&cfg.buildkit, env) {
        Some(Ok(engine)) => engine,
        Some(Err(m)) => return Err(located(&cfg.path, "buildkit.addr", m)),
        None => {
            let m = "load = true loads images into Docker Engine's image store, which only its own BuildKit can do: \
                     set [buildkit] addr = \"docker://\" (or leave addr unset with Docker Engine running), or push to a \
                     registry instead";
            return Err(config::located_in(&cfg.path, text, "registry", "load", m.into()));
        }
    });
    Ok(())
}

/// Loads the config again for a running `up` (`kube_context`: the context it runs on), keeping the registry
/// `old` discovered while the new file still names none (and still pushes): the cluster is not asked again.
pub fn reload(path: &Path, kube_context: &str, old: &Config) -> Result<Config, config::Error> {
    let mut new = load(path, Some(kube_context))?;
    keep_discovered(&mut new, old);
    Ok(new)
}

fn keep_discovered(new: &mut Config, old: &Config) {
    if new.registry.host.is_empty() && new.registry.load == Load::Push {
        new.registry.host = old.registry.host.clone();
        new.registry.pull_host = old.registry.pull_host.clone();
        new.registry.insecure = old.registry.insecure;
    }
}

/// Fills a missing `[registry] host` from the cluster's `local-registry-hosting` ConfigMap (read through the
/// same allow-listed context devloop deploys to), and says so; an error naming the ways out when there is none.
/// Nothing to do when the host is set (devloop.toml, `DEVLOOP_REGISTRY`) or images are loaded, not pushed.
pub async fn registry(cfg: &mut Config, kube: &crate::cluster::KubeOptions) -> Result<(), Error> {
    if cfg.registry.load != Load::Push || !cfg.registry.host.is_empty() {
        return Ok(());
    }
    let configmap = || format!("ConfigMap {}/{}", discover::NAMESPACE, discover::NAME);
    // Without a cluster to ask, say both what is missing and why the cluster could not be asked.
    let target = crate::cluster::connect(&cfg.kube, kube)
        .await
        .map_err(|e| Error::NoRegistry(discover::nowhere(&format!("the cluster could not be asked for a {} ({e})", configmap()))))?;
    match discover::read(target.client.clone()).await? {
        Some(found) => {
            discover::apply(&mut cfg.registry, &found).await;
            let http = if cfg.registry.insecure { ", plain HTTP" } else { "" };
            eprintln!("devloop: {}{http}", found.describe(&target.context));
            Ok(())
        }
        None => Err(Error::NoRegistry(discover::nowhere(&format!("context {} has no {}", target.context, configmap())))),
    }
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

    /// `up` reloads devloop.toml: a registry found in the cluster stays found unless the new file says otherwise.
    #[test]
    fn a_discovered_registry_survives_a_reload_that_does_not_replace_it() {
        let parse = |registry: &str| {
            crate::config::parse(std::path::Path::new("/p/devloop.toml"), &format!("{registry}[[image]]\nname = \"a\"\ncontext = \".\"\n")).unwrap()
        };
        let mut old = parse("");
        old.registry.host = "10.0.0.1:5000".into();
        old.registry.pull_host = Some("reg:5000".into());
        old.registry.insecure = true;
        // (new [registry], host after the reload)
        for (registry, host) in [
            ("", "10.0.0.1:5000"),
            ("[registry]\nauth-hosts = []\n", "10.0.0.1:5000"),
            ("[registry]\nhost = \"mine:5000\"\n", "mine:5000"),
            ("[registry]\nload = \"containerd\"\n", ""),
        ] {
            let mut new = parse(registry);
            super::keep_discovered(&mut new, &old);
            assert_eq!(new.registry.host, host, "{registry:?}");
            if host == "10.0.0.1:5000" {
                assert_eq!((new.registry.pull_host.as_deref(), new.registry.insecure), (Some("reg:5000"), true));
            }
        }
    }

    #[test]
    fn loading_into_docker_engine_without_its_buildkit_is_a_config_error_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("devloop.toml");
        let text = "[buildkit]\naddr = \"unix:///run/buildkit.sock\"\n[registry]\nload = true\n[[image]]\nname = \"a\"\ncontext = \".\"\n";
        // The file as read, without the environment's overrides (BUILDKIT_HOST): the check alone.
        let env = crate::docker::Env::default();
        let mut cfg = crate::config::parse(&path, text).unwrap();
        let msg = super::docker_engine(&mut cfg, text, &env).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}:4:1: ", path.display())) && msg.contains("key `registry.load`"), "{msg}");
        assert!(msg.contains("docker://"), "{msg}");
        // With the engine's BuildKit, the engine is found once and every destination reads it.
        let text = text.replace("unix:///run/buildkit.sock", "docker-unix:///run/e.sock");
        let mut cfg = crate::config::parse(&path, &text).unwrap();
        super::docker_engine(&mut cfg, &text, &env).unwrap();
        let want = crate::docker::Addr::Unix("/run/e.sock".into());
        assert_eq!(cfg.registry.engine.as_ref(), Some(&want));
        assert!(matches!(crate::deliver::Destination::of(&cfg), crate::deliver::Destination::Docker { engine } if engine == want));
    }
}
