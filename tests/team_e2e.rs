//! The team setup of the README, end to end on the real stack: an admin installs BuildKit into the cluster
//! (`devloop buildkit install`) and applies `examples/team/rbac.yaml`; two developers, each a real
//! Kubernetes user (a client certificate from the stack's CA) holding only those roles, run `devloop up`
//! with the same image name and the same sources, against the same in-cluster BuildKit (reached through the
//! API server), pushing to the authenticated registry and pulling through the pull Secret devloop creates.
//! The second developer builds nothing (the registry is the team's cache), neither touches the other's pods,
//! and `down` removes only one's own objects.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

#[path = "../benches/common/mod.rs"]
mod bench;
use bench::team::{apply_rbac, team_config, Developer as Dev};

/// What a developer runs, in a project.
trait Runs {
    /// `devloop ARGS` as this developer in project `p`; returns (success, stdout, stderr).
    fn devloop(&self, p: &Project, args: &[&str]) -> (bool, String, String);
    /// `devloop ARGS`, which must succeed and print no password; its stdout.
    fn ok(&self, p: &Project, args: &[&str]) -> String;
    /// `devloop up --json` as this developer.
    fn up(&self, p: &Project) -> Up;
}

impl Runs for Dev {
    fn devloop(&self, p: &Project, args: &[&str]) -> (bool, String, String) {
        let envs = self.envs();
        let envs: Vec<(&str, &Path)> = envs.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let out = p.devloop_at(p.dir.path(), args, &envs);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn ok(&self, p: &Project, args: &[&str]) -> String {
        let (ok, o, e) = self.devloop(p, args);
        assert!(ok, "devloop {args:?} as {} failed:\n{o}\n{e}", self.user);
        assert_no_password(&o);
        assert_no_password(&e);
        o
    }

    fn up(&self, p: &Project) -> Up {
        let envs = self.envs();
        let envs: Vec<(&str, &Path)> = envs.iter().map(|(k, v)| (*k, v.as_path())).collect();
        Up::start_env(p, &[], &envs)
    }
}

fn assert_no_password(text: &str) {
    let password = std::fs::read_to_string(env("DEVLOOP_STACK_AUTH_PASSWORD_FILE")).unwrap();
    assert!(!text.contains(password.trim()), "the registry password was printed:\n{text}");
}

/// The hello example under image `name` (same sources for both developers), deployed from its manifests
/// into `dev-{user}` through the in-cluster BuildKit in `bk`, pushed to the authenticated registry.
fn team_project(name: &str, bk: &str) -> Project {
    let mut p = Project::hello(&env("DEVLOOP_STACK_AUTH_REGISTRY"));
    p.name = name.to_string();
    std::fs::write(p.path("app/www/nonce.txt"), name).unwrap();
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {name}"));
        std::fs::write(p.path(f), text).unwrap();
    }
    std::fs::write(p.path("devloop.toml"), team_config(name, bk, "")).unwrap();
    p
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn two_developers_share_in_cluster_buildkit_and_an_authenticated_registry() {
    let n = nonce();
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    let bk = Namespace::new("team-bk");
    let (alice, bob) = (Dev::new(&format!("alice-{n}"), &reg), Dev::new(&format!("bob-{n}"), &reg));
    // The admin's part: BuildKit in the cluster, trusting the registries it pulls from and pushes to.
    let admin = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (o, _) = admin.ok(&[
        "buildkit", "install", "--namespace", &bk.0, "--image", &env("DEVLOOP_STACK_BUILDKIT_IMAGE"),
        "--insecure-registry", &env("DEVLOOP_REGISTRY"), "--registry-ca", &format!("{reg}={}", env("DEVLOOP_STACK_CA")),
    ]);
    assert!(o.contains(&format!("kube-deployment://buildkitd?namespace={}", bk.0)), "{o}");
    apply_rbac(&[&alice.user, &bob.user], &bk.0);
    let (_alice_ns, _bob_ns) = (Namespace(alice.namespace()), Namespace(bob.namespace()));

    // The roles are all they have: nothing outside their namespaces.
    let forbidden = Command::new("kubectl")
        .args(["--kubeconfig", alice.home.path().join("kubeconfig").to_str().unwrap(), "-n", "default", "get", "pods"])
        .output()
        .unwrap();
    assert!(!forbidden.status.success() && String::from_utf8_lossy(&forbidden.stderr).contains("forbidden"));

    let name = format!("team-{n}");
    let (pa, pb) = (team_project(&name, &bk.0), team_project(&name, &bk.0));
    assert_eq!(pa.tag(), pb.tag(), "same sources, same tag");

    // Alice is first: her `up` builds in the cluster and pushes.
    let mut up_a = alice.up(&pa);
    let it = up_a.wait("iteration", 300);
    assert_eq!(it["registry_hit"], false, "{it}");
    let alice_pods = live_pods(&alice.namespace(), "hello");
    assert_eq!(alice_pods.len(), 1, "{alice_pods:?}");
    assert!(page(&alice.namespace(), &alice_pods[0]).unwrap().contains("Hello from devloop"));

    // Bob's build finds the tag alice pushed: the registry is the team's cache.
    let out = bob.ok(&pb, &["build"]);
    assert!(out.contains("is already in") && out.contains("teammate") && out.contains("nothing to build"), "{out}");
    let mut up_b = bob.up(&pb);
    let it = up_b.wait("iteration", 300);
    assert_eq!(it["registry_hit"], true, "{it}");
    let bob_pods = live_pods(&bob.namespace(), "hello");
    assert_eq!(bob_pods.len(), 1, "{bob_pods:?}");

    // Both pods run the image from the authenticated registry, pulled with the Secret devloop made.
    for (dev, pods) in [(&alice, &alice_pods), (&bob, &bob_pods)] {
        let ns = dev.namespace();
        let image = kubectl(&["-n", &ns, "get", "pod", &pods[0], "-o", "jsonpath={.spec.containers[0].image}"]);
        assert!(image.starts_with(&format!("{reg}/{name}:")) && image.contains("@sha256:"), "{image}");
        let secrets = kubectl(&["-n", &ns, "get", "pod", &pods[0], "-o", "jsonpath={.spec.imagePullSecrets[*].name}"]);
        assert!(!secrets.trim().is_empty(), "no imagePullSecrets on {ns}/{}", pods[0]);
        for s in secrets.split_whitespace() {
            let ty = kubectl(&["-n", &ns, "get", "secret", s, "-o", "jsonpath={.type}"]);
            assert_eq!(ty, "kubernetes.io/dockerconfigjson");
        }
    }
    // Neither run touched the other's namespace.
    assert_eq!(live_pods(&alice.namespace(), "hello"), alice_pods);
    up_a.interrupt();
    up_b.interrupt();
    for e in up_a.seen.iter().chain(up_b.seen.iter()) {
        assert_no_password(&e.to_string());
    }

    // Alice's `down` deletes her objects (her namespace was the admin's: kept); Bob's pod keeps serving.
    let out = alice.ok(&pa, &["down"]);
    assert!(out.contains(&format!("deployment {}/hello deleted", alice.namespace())), "{out}");
    assert!(out.contains(&format!("namespace {} kept", alice.namespace())), "{out}");
    eventually("alice's pods are gone", 120, || {
        let left = live_pods(&alice.namespace(), "hello");
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    });
    assert_eq!(live_pods(&bob.namespace(), "hello"), bob_pods);
    assert!(page(&bob.namespace(), &bob_pods[0]).unwrap().contains("Hello from devloop"));
}
