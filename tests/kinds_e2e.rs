//! Workload kinds besides Deployments (issue 22 item 1): examples/hello as a StatefulSet and as a DaemonSet,
//! deployed from manifests and from a chart. Each rollout is watched and judged like a Deployment's: the new
//! pods run the new reference, a server exiting 3 is reported with its exit code and last log line, a chart's
//! failed rollout is rolled back with `helm rollback` (a StatefulSet's stuck pod deleted so that it rolls
//! back), and an `OnDelete` StatefulSet says which pods wait to be deleted. Needs helm on PATH
//! (`scripts/stack env`). Run through scripts/test.

mod common;
use common::*;

/// examples/hello's Deployment manifest turned into a `kind` (the stack has one node: a DaemonSet has one
/// pod), `spec_extra` added to its spec.
fn as_kind(p: &Project, kind: &str, spec_extra: &str) {
    let dep = std::fs::read_to_string(p.path("app/k8s/deployment.yaml")).unwrap();
    let mut text = dep.replace("kind: Deployment", &format!("kind: {kind}"));
    if kind == "DaemonSet" {
        text = text.replace("  replicas: 1\n", "");
    }
    text = text.replacen("\nspec:\n", &format!("\nspec:\n{spec_extra}"), 1);
    std::fs::remove_file(p.path("app/k8s/deployment.yaml")).unwrap();
    p.write(&format!("app/k8s/{}.yaml", kind.to_lowercase()), &text);
}

/// (name, image) of the live pods with label app=hello.
fn pod_images(ns: &str) -> Vec<(String, String)> {
    pod_images_of(ns, "hello")
}

/// The first container's image of the `kind` workload `name`'s template.
fn template(ns: &str, kind: &str, name: &str) -> String {
    kubectl(&["-n", ns, "get", kind, name, "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
}

/// Eventually `n` live pods, all running `image`.
fn all_run(ns: &str, n: usize, image: &str) -> Vec<String> {
    eventually(&format!("{n} pod(s) on {image}"), 90, || {
        let pods = pod_images(ns);
        if pods.len() == n && pods.iter().all(|(_, i)| i == image) {
            Ok(pods.into_iter().map(|(p, _)| p).collect())
        } else {
            Err(format!("{pods:?}"))
        }
    })
}

/// `devloop deploy` expected to fail: its stdout.
fn deploy_fails(p: &Project) -> String {
    let run = p.devloop(&["deploy"]);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status.code(), Some(1), "{}: {out}\n{}", run.status, String::from_utf8_lossy(&run.stderr));
    out
}

const BROKEN: &str = "#!/bin/sh\necho kinds-marker: no config >&2\nexit 3\n";

/// Manifests with a StatefulSet of 2: rolled (both pods on the new reference), a server exiting 3 reported
/// with its code and log line (manifests: no rollback), and the fix rolls although the failed pod never
/// became Ready (devloop deletes it: the controller would wait for it forever).
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_stateful_set_from_manifests_rolls_reports_its_crash_and_rolls_the_fix() {
    let ns = Namespace::new("kinds-sts");
    let p = manifest_project(&ns.0, "rollout-timeout = \"90s\"\n");
    as_kind(&p, "StatefulSet", "  serviceName: hello\n");
    std::fs::write(p.path("app/k8s/statefulset.yaml"), std::fs::read_to_string(p.path("app/k8s/statefulset.yaml")).unwrap().replace("replicas: 1", "replicas: 2")).unwrap();

    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of statefulset {}/hello done", ns.0)), "{out}\n{err}");
    let first = template(&ns.0, "statefulset", "hello");
    assert!(first.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "{first}");
    assert_eq!(all_run(&ns.0, 2, &first), ["hello-0", "hello-1"]);

    p.write("app/www/index.html", "<p>a stateful hello</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of statefulset {}/hello done", ns.0)), "{out}");
    let second = template(&ns.0, "statefulset", "hello");
    assert_ne!(second, first);
    for pod in all_run(&ns.0, 2, &second) {
        assert_eq!(eventually("the new page", 30, || page(&ns.0, &pod)), "<p>a stateful hello</p>\n", "{pod}");
    }

    p.write("app/serve.sh", BROKEN);
    let out = deploy_fails(&p);
    assert!(out.contains(&format!("rollout of statefulset {}/hello FAILED after", ns.0)), "{out}");
    assert!(out.contains("(pod hello-1, container web)") && out.contains("exited with code 3"), "{out}");
    assert!(out.contains("kinds-marker: no config"), "no log line in:\n{out}");
    assert!(!out.contains("rolling"), "manifests are not rolled back: {out}");
    let broken = template(&ns.0, "statefulset", "hello");

    p.write("app/serve.sh", &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/serve.sh")).unwrap());
    p.write("app/www/index.html", "<p>fixed</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("statefulset {}/hello: deleted pod hello-1: the failed template left it not Ready", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of statefulset {}/hello done", ns.0)), "{out}");
    let fixed = template(&ns.0, "statefulset", "hello");
    assert_ne!(fixed, broken);
    all_run(&ns.0, 2, &fixed);
}

/// With `updateStrategy: OnDelete` the controller rolls nothing: the deploy says which pod waits to be
/// deleted, and neither fails nor waits for the timeout.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn an_on_delete_stateful_set_says_what_it_waits_for() {
    let ns = Namespace::new("kinds-ondelete");
    let p = manifest_project(&ns.0, "rollout-timeout = \"90s\"\n");
    as_kind(&p, "StatefulSet", "  serviceName: hello\n  updateStrategy: {type: OnDelete}\n");
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of statefulset {}/hello done", ns.0)), "a first install creates its pods: {out}\n{err}");
    let first = template(&ns.0, "statefulset", "hello");

    p.write("app/www/index.html", "<p>not rolled</p>\n");
    let started = std::time::Instant::now();
    let (out, _) = p.ok(&["deploy"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "waited for the timeout: {out}");
    assert!(out.contains(&format!("statefulset {}/hello: template updated after", ns.0)), "{out}");
    assert!(out.contains("pods not rolled: updateStrategy OnDelete: the StatefulSet controller replaces no pod by itself; pod(s) hello-0 still run the previous template"), "{out}");
    assert!(out.contains("(kubectl delete pod hello-0)"), "{out}");
    assert_eq!(pod_images(&ns.0), [("hello-0".to_string(), first)], "nothing rolled");
}

/// Manifests with a DaemonSet (one node: one pod): rolled to the new reference, a server exiting 3 reported
/// with its code and log line.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_daemon_set_from_manifests_rolls_and_reports_its_crash() {
    let ns = Namespace::new("kinds-ds");
    let p = manifest_project(&ns.0, "rollout-timeout = \"90s\"\n");
    as_kind(&p, "DaemonSet", "");
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of daemonset {}/hello done", ns.0)), "{out}\n{err}");
    let first = template(&ns.0, "daemonset", "hello");
    assert!(first.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "{first}");
    let old = all_run(&ns.0, 1, &first);

    p.write("app/www/index.html", "<p>a hello on every node</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of daemonset {}/hello done", ns.0)), "{out}");
    let second = template(&ns.0, "daemonset", "hello");
    let new = all_run(&ns.0, 1, &second);
    assert_ne!(new, old, "a new pod");
    assert_eq!(eventually("the new page", 30, || page(&ns.0, &new[0])), "<p>a hello on every node</p>\n");

    p.write("app/serve.sh", BROKEN);
    let out = deploy_fails(&p);
    assert!(out.contains(&format!("rollout of daemonset {}/hello FAILED after", ns.0)), "{out}");
    assert!(out.contains("exited with code 3") && out.contains("kinds-marker: no config"), "{out}");
}

/// A chart whose workload is a StatefulSet: installed and rolled; a crashing upgrade reported with its exit
/// code and rolled back with `helm rollback`, the crashed pod deleted so that the StatefulSet goes back.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_chart_s_stateful_set_is_rolled_and_a_crashing_upgrade_rolled_back() {
    let ns = Namespace::new("kinds-helm");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let chart = p.path("app/chart/templates/deployment.yaml");
    let text = std::fs::read_to_string(&chart).unwrap().replace("kind: Deployment", "kind: StatefulSet").replace("spec:\n  replicas", "spec:\n  serviceName: {{ .Release.Name }}\n  replicas");
    std::fs::write(&chart, text).unwrap();
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n[[deploy]]\nimage = \"{name}\"\nrollout-timeout = \"90s\"\n\
         helm = {{ chart = \"app/chart\", release = \"{name}\", set = {{ replicas = 1 }}, \
         image-values = {{ repository = \"image.repository\", tag = \"image.tag\" }} }}\n",
        ns = ns.0,
        name = p.name
    ));
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of statefulset {}/{} done", ns.0, p.name)), "{out}\n{err}");
    p.write("app/www/index.html", "<p>a stateful release</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains("upgraded to revision 2") && out.contains(&format!("rollout of statefulset {}/{} done", ns.0, p.name)), "{out}");
    let good = template(&ns.0, "statefulset", &p.name);
    let pod = format!("{}-0", p.name);
    assert_eq!(eventually("the new page", 30, || page(&ns.0, &pod)), "<p>a stateful release</p>\n");

    p.write("app/serve.sh", BROKEN);
    let out = deploy_fails(&p);
    assert!(out.contains(&format!("rollout of statefulset {}/{} FAILED after", ns.0, p.name)), "{out}");
    assert!(out.contains("exited with code 3") && out.contains("kinds-marker: no config"), "{out}");
    assert!(out.contains(&format!("deleted pod {pod}: the failed template left it not Ready")), "{out}");
    assert!(out.contains(&format!("rollout of statefulset {}/{} (rollback) done", ns.0, p.name)), "{out}");
    assert!(out.contains(&format!("rolled back: statefulset {} is back on", p.name)), "{out}");
    assert_eq!(template(&ns.0, "statefulset", &p.name), good, "revision 2's image is back");
    eventually("the pod back on revision 2", 60, || match pod_images_of(&ns.0, &p.name).as_slice() {
        [(name, image)] if *name == pod && *image == good => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(eventually("the page again", 30, || page(&ns.0, &pod)), "<p>a stateful release</p>\n");
}

/// (name, first container's image) of the live pods (not being deleted) with label app=`app`.
fn pod_images_of(ns: &str, app: &str) -> Vec<(String, String)> {
    let out = kubectl(&["-n", ns, "get", "pods", "-l", &format!("app={app}"), "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.metadata.deletionTimestamp}{\"\\n\"}{end}"]);
    out.lines()
        .filter(|l| l.split_whitespace().count() == 2)
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect()
}
