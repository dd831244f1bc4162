//! The deployers' one route: what `up` deploys with manifests and a Helm chart together is exactly what
//! `up --cleanup` and `down` remove (nothing else in the namespace is touched); and a rollout that fails in
//! `up` is rolled back as the core decides, through the deployer that rolled it. Needs helm on PATH
//! (`scripts/stack env`). Run through scripts/test.

mod common;
use common::*;

/// One image deployed twice: by examples/hello's manifests (Deployment and Service `hello`) and by its chart
/// (release `p.name`: a Deployment and a Service of that name).
fn manifests_and_chart(ns: &str) -> Project {
    let p = manifest_project(ns, "");
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let helm = format!(
        "[[deploy]]\nimage = \"{name}\"\nrollout-timeout = \"60s\"\n\
         helm = {{ chart = \"app/chart\", release = \"{name}\", set = {{ replicas = 1 }}, \
         image-values = {{ repository = \"image.repository\", tag = \"image.tag\" }} }}\n",
        name = p.name
    );
    std::fs::write(p.path("devloop.toml"), format!("{cfg}{helm}")).unwrap();
    p
}

/// The objects devloop's deployers create here, as `kind/name`.
fn created(p: &Project) -> [String; 4] {
    ["deployment/hello".into(), "service/hello".into(), format!("deployment/{}", p.name), format!("service/{}", p.name)]
}

fn releases(ns: &str) -> String {
    let out = std::process::Command::new("helm").args(["list", "-n", ns, "--kube-context", "devloop-local", "-q"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn gone(ns: &str, obj: &str) {
    eventually(&format!("{obj} deleted"), 60, || match try_kubectl(&["-n", ns, "get", obj]) {
        Err(e) if e.contains("NotFound") || e.contains("not found") => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// `up` until both deployers' rollouts are done.
fn up_until_deployed(p: &Project, args: &[&str]) -> Up {
    let mut up = Up::start_with(p, args);
    up.wait("iteration", 180);
    for obj in created(p) {
        assert!(try_kubectl(&["-n", &manifest_ns(p), "get", &obj]).is_ok(), "{obj} is not there after the iteration");
    }
    up
}

fn manifest_ns(p: &Project) -> String {
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    cfg.split("namespace = \"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_cleanup_and_down_remove_exactly_what_up_deployed_with_manifests_and_a_chart() {
    let ns = Namespace::new("deployers");
    // Something devloop did not create: neither route may touch it.
    kubectl(&["-n", &ns.0, "create", "configmap", "not-devloops", "--from-literal=k=v"]);
    let p = manifests_and_chart(&ns.0);

    // `up --cleanup`: each deployer removes what it created, the release first.
    let mut up = up_until_deployed(&p, &["--cleanup"]);
    assert_eq!(releases(&ns.0), p.name);
    up.interrupt();
    up.quiet_for(std::time::Duration::from_millis(200));
    let said: Vec<String> = up.seen.iter().filter(|v| v["event"] == "cleanup").map(|v| v["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        said,
        [format!("helm release {}/{} uninstalled", ns.0, p.name), format!("deleted 2 object(s) of app/k8s/*.yaml from namespace {}", ns.0)],
        "{:#?}",
        up.seen
    );
    for obj in created(&p) {
        gone(&ns.0, &obj);
    }
    assert_eq!(releases(&ns.0), "", "the release is still listed");
    assert!(try_kubectl(&["-n", &ns.0, "get", "configmap", "not-devloops"]).is_ok(), "up --cleanup deleted what it did not create");

    // `up` without --cleanup leaves it all; `down` removes the same, and says each.
    let mut up = up_until_deployed(&p, &[]);
    up.interrupt();
    up.quiet_for(std::time::Duration::from_millis(200));
    assert!(!up.seen.iter().any(|v| v["event"] == "cleanup"), "{:#?}", up.seen);
    for obj in created(&p) {
        assert!(try_kubectl(&["-n", &ns.0, "get", &obj]).is_ok(), "{obj} went with a plain `up`'s exit");
    }
    let (out, _) = p.ok(&["down"]);
    for line in [
        format!("down: deployment {}/hello deleted", ns.0),
        format!("down: service {}/hello deleted", ns.0),
        format!("down: helm release {}/{} uninstalled", ns.0, p.name),
        format!("down: namespace {} kept: devloop did not create it", ns.0),
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    }
    assert_eq!(out.lines().filter(|l| l.contains(" deleted") || l.contains(" uninstalled")).count(), 3, "{out}");
    for obj in created(&p) {
        gone(&ns.0, &obj);
    }
    assert_eq!(releases(&ns.0), "");
    assert!(try_kubectl(&["-n", &ns.0, "get", "configmap", "not-devloops"]).is_ok(), "down deleted what devloop did not create");
}

/// A save whose server exits at once: the rollout fails, the failure is reported, and then — the core's
/// decision, carried out by the patch deployer — the previous image is put back; the next good save rolls out.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_failed_rollout_in_up_is_rolled_back_after_it_is_reported() {
    let ns = Namespace::new("deployers-undo");
    let p = running_patch_project(&ns, "60s", "rollback-on-failure = true\n");
    let mut up = Up::start(&p);
    up.wait("iteration", 180);
    let before = template_image(&ns.0, &p.name);

    p.write("app/serve.sh", "#!/bin/sh\necho undo-marker: broken on purpose >&2\nexit 1\n");
    let failed = up.wait_for("the failed rollout", 180, |v| v["event"] == "rollout-failed" || v["event"] == "iteration");
    assert_eq!(failed["event"], "rollout-failed", "{failed}");
    let back = up.wait_for("the rollback", 120, |v| {
        v["event"] == "deploy" && v["message"].as_str().is_some_and(|m| m.contains("rolled back: it is back on"))
    });
    assert!(back["message"].as_str().unwrap().ends_with(&before), "{back}");
    assert_eq!(template_image(&ns.0, &p.name), before, "the previous image is back");
    let broken = up.seen.iter().position(|v| v["event"] == "rollout-failed").unwrap();
    let rolling = up.seen.iter().position(|v| v["message"].as_str().is_some_and(|m| m.contains(" back to "))).unwrap();
    assert!(broken < rolling, "the failure is said before the rollback: {:#?}", up.seen);

    // A good save afterwards is one more iteration (the rollback held no rollout back).
    p.write("app/serve.sh", &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/serve.sh")).unwrap());
    p.write("app/www/index.html", "<p>after the rollback</p>\n");
    up.wait("iteration", 180);
    assert_ne!(template_image(&ns.0, &p.name), before);
}
