//! Registry discovery against the real stack: with no `[registry] host`, devloop pushes to and deploys from
//! the registry the cluster advertises in its `local-registry-hosting` ConfigMap (which `scripts/stack up`
//! writes, as kind's, k3d's and minikube's local-registry setups do). Run through scripts/test.

mod common;
use common::*;

/// Puts the stack's ConfigMap back when the test ends, however it ends.
struct Restore(std::path::PathBuf);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = try_kubectl(&["apply", "-f", self.0.to_str().unwrap()]);
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn without_a_registry_host_the_clusters_advertised_registry_is_used_and_said() {
    let ns = Namespace::new("discover");
    let p = manifest_project(&ns.0, "");
    // The same project, but nothing about a registry in devloop.toml (and no DEVLOOP_REGISTRY: the helpers
    // remove it). The Dockerfile's REGISTRY build arg is only where its base image comes from.
    let text = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let start = text.find("[registry]").unwrap();
    let end = text.find("[[image]]").unwrap();
    std::fs::write(p.path("devloop.toml"), format!("{}{}", &text[..start], &text[end..])).unwrap();

    let (out, err) = p.ok(&["deploy"]);
    assert!(
        err.contains(
            "devloop: registry 10.201.0.2:5000, pulled as 127.0.0.1:5000 (from ConfigMap \
             kube-public/local-registry-hosting in context devloop-local), plain HTTP"
        ),
        "{err}"
    );
    assert!(out.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{out}\n{err}");
    // Pushed where the ConfigMap's `host` says, deployed under the runtime's name for the same registry.
    let tag = p.tag();
    let digest = registry_digest("10.201.0.2:5000", &p.name, &tag).expect("the image is in the registry");
    assert_eq!(template_image(&ns.0, "hello"), format!("127.0.0.1:5000/{}:{tag}@{digest}", p.name));
    assert_eq!(live_pods(&ns.0, "hello").len(), 1);

    // No host and nothing advertised: exit 2 with the ways out, before anything is built.
    let saved = p.path("local-registry-hosting.yaml");
    let yaml = kubectl(&["-n", "kube-public", "get", "configmap", "local-registry-hosting", "-o", "yaml"]);
    std::fs::write(&saved, yaml).unwrap();
    let _restore = Restore(saved);
    kubectl(&["-n", "kube-public", "delete", "configmap", "local-registry-hosting"]);
    p.write("app/www/index.html", "<p>never built</p>\n");
    let run = p.devloop(&["build"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    for says in ["no registry", "context devloop-local has no ConfigMap kube-public/local-registry-hosting", "1. set `host", "2. load images", "3. give the cluster"] {
        assert!(err.contains(says), "missing {says:?} in:\n{err}");
    }
    assert!(!err.contains("building"), "{err}");
}
