//! Per-developer namespaces against the real stack: `namespace = "dev-{user}"` puts two developers (two
//! projects, two $USERs) into two namespaces devloop creates and labels; `devloop down` removes one's objects
//! and namespace and leaves the other's pods running, and keeps a namespace devloop did not create.

mod common;
use common::*;
use std::path::Path;

/// Runs devloop in `p` as OS user `user`; asserts success and returns stdout.
fn as_user(p: &Project, user: &str, args: &[&str]) -> String {
    let out = p.devloop_at(p.dir.path(), args, &[("USER", Path::new(user))]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "devloop {args:?} as {user} failed ({}):\n{o}\n{e}", out.status);
    o
}

fn label(ns: &str) -> String {
    kubectl(&["get", "namespace", ns, "-o", "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}"])
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn two_users_get_their_own_namespaces_and_down_removes_only_ones_own() {
    let n = nonce();
    let (alice, bob) = (format!("alice-{n}"), format!("bob-{n}"));
    // Deleted on drop whatever happens (the test deletes alice's itself).
    let (alice_ns, bob_ns) = (Namespace(format!("dev-{alice}")), Namespace(format!("dev-{bob}")));
    let pa = manifest_project("dev-{user}", "");
    let pb = manifest_project("dev-{user}", "");

    let out = as_user(&pa, &alice, &["deploy"]);
    assert!(out.contains(&format!("namespace {} created", alice_ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/hello done", alice_ns.0)), "{out}");
    let out = as_user(&pb, &bob, &["deploy"]);
    assert!(out.contains(&format!("namespace {} created", bob_ns.0)), "{out}");
    for ns in [&alice_ns.0, &bob_ns.0] {
        assert_eq!(label(ns), "devloop", "namespace {ns}");
        let who = kubectl(&["get", "namespace", ns, "-o", "jsonpath={.metadata.annotations.devloop\\.dev/created-by}"]);
        assert!(who.contains("devloop deploy") && who.contains(ns.trim_start_matches("dev-")), "{who}");
    }
    let bob_pods = live_pods(&bob_ns.0, "hello");
    assert_eq!(bob_pods.len(), 1, "{bob_pods:?}");
    // The namespace exists now: a second deploy does not claim to create it.
    let out = as_user(&pa, &alice, &["deploy"]);
    assert!(!out.contains(&format!("namespace {} created", alice_ns.0)), "{out}");

    let out = as_user(&pa, &alice, &["down"]);
    assert!(out.contains(&format!("deployment {}/hello deleted", alice_ns.0)), "{out}");
    assert!(out.contains(&format!("service {}/hello deleted", alice_ns.0)), "{out}");
    assert!(out.contains(&format!("namespace {} deleted", alice_ns.0)), "{out}");
    eventually("alice's namespace is gone", 120, || match try_kubectl(&["get", "namespace", &alice_ns.0]) {
        Err(e) if e.contains("NotFound") || e.contains("not found") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    // Bob's pod kept running through all of it.
    assert_eq!(live_pods(&bob_ns.0, "hello"), bob_pods);
    assert!(page(&bob_ns.0, &bob_pods[0]).is_ok());
    // A second down finds nothing and says so.
    let out = as_user(&pa, &alice, &["down"]);
    assert!(out.contains("does not exist") && !out.contains(" deleted"), "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn git_user_comes_from_the_repositorys_own_git_email() {
    let n = nonce();
    let ns = Namespace(format!("dev-carol-smith-{n}"));
    let p = manifest_project("dev-{git-user}", "");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(p.dir.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    // The repository's own setting (not the machine's global one): a mixed-case, dotted local part.
    git(&["config", "user.email", &format!("Carol.Smith+{n}@example.com")]);
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("namespace {} created", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{out}");
    assert_eq!(label(&ns.0), "devloop");
    let (out, _) = p.ok(&["down"]);
    assert!(out.contains(&format!("namespace {} deleted", ns.0)), "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn down_keeps_a_namespace_devloop_did_not_create() {
    let ns = Namespace::new("devns-pre");
    let p = manifest_project(&ns.0, "");
    let (out, _) = p.ok(&["deploy"]);
    assert!(!out.contains(&format!("namespace {} created", ns.0)), "{out}");
    assert_eq!(label(&ns.0), "", "devloop labelled a namespace it did not create");

    let (out, _) = p.ok(&["down"]);
    assert!(out.contains(&format!("deployment {}/hello deleted", ns.0)), "{out}");
    assert!(out.contains(&format!("namespace {} kept", ns.0)), "{out}");
    assert_eq!(kubectl(&["get", "namespace", &ns.0, "-o", "jsonpath={.status.phase}"]), "Active");
    assert!(try_kubectl(&["-n", &ns.0, "get", "deployment", "hello"]).is_err(), "the Deployment is still there");
}

#[test]
fn an_unknown_placeholder_or_an_empty_name_is_a_config_error() {
    let p = Project::hello("127.0.0.1:1");
    p.write_config(&format!("[kube]\ncontext = \"devloop-local\"\nnamespace = \"dev-{{host}}\"\n[[deploy]]\nimage = \"{}\"\ndeployment = \"x\"\n", p.name));
    let out = p.devloop(&["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("kube.namespace") && err.contains("{host}"), "{err}");

    p.write_config(&format!("[kube]\ncontext = \"devloop-local\"\n[[deploy]]\nimage = \"{}\"\ndeployment = \"x\"\n", p.name));
    let out = p.devloop_at(p.dir.path(), &["down", "--namespace", "{user}"], &[("USER", Path::new("__"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--namespace") && err.contains("no valid namespace name"), "{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_creates_the_namespace_it_deploys_to_and_down_deletes_it() {
    let ns = Namespace(format!("devns-up-{}", nonce()));
    let p = manifest_project("unused", "");
    let mut up = Up::start_with(&p, &["--namespace", &ns.0]);
    let created = up.wait("namespace", 30);
    assert!(created["message"].as_str().unwrap().contains(&format!("namespace {} created", ns.0)), "{created}");
    up.wait("iteration", 90);
    assert_eq!(label(&ns.0), "devloop");
    assert_eq!(live_pods(&ns.0, "hello").len(), 1);
    up.interrupt();

    let (out, _) = p.ok(&["down", "--namespace", &ns.0]);
    assert!(out.contains(&format!("namespace {} deleted", ns.0)), "{out}");
}
