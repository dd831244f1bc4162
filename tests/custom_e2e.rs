//! A custom resource with `image-paths` and `ready-when` (issue 22 item 1), on the stack: a small CRD
//! (`Widget`, its image at `spec.image`) and a controller written here — a thread that runs each Widget as a
//! Deployment and writes the Widget's `Ready` condition for the generation it saw, the way Argo Rollouts or
//! Knative report theirs. devloop puts its reference at `spec.image`, waits for `Ready=True`, and reports
//! the controller's `Ready=False` (a crashing pod) as the rollout's failure. Run through scripts/test.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.devloop.dev
spec:
  group: e2e.devloop.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// One pass of the test's controller over namespace `ns`: each Widget runs as Deployment `widget-<name>`
/// with the Widget's image; its `Ready` condition is True once that Deployment has rolled out, False when a
/// pod of it keeps failing, Unknown meanwhile — always for the generation this pass read.
fn reconcile(ns: &str) {
    let Ok(list) = try_kubectl(&["-n", ns, "get", "widgets", "-o", "json"]) else { return };
    let list: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
    for w in list["items"].as_array().into_iter().flatten() {
        let (name, image, generation) = (w["metadata"]["name"].as_str().unwrap(), w["spec"]["image"].as_str().unwrap_or(""), w["metadata"]["generation"].as_i64().unwrap_or(0));
        let app = format!("widget-{name}");
        let dep = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}}}}}\n  \
             template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n        - name: web\n          image: {image}\n          \
             readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}\n"
        );
        let _ = std::process::Command::new("sh").arg("-c").arg(format!("printf '%s' \"$0\" | kubectl -n {ns} apply -f - >/dev/null")).arg(&dep).status();
        let d: serde_json::Value = try_kubectl(&["-n", ns, "get", "deployment", &app, "-o", "json"]).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        let st = &d["status"];
        let rolled = st["observedGeneration"] == d["metadata"]["generation"] && st["updatedReplicas"] == 1 && st["availableReplicas"] == 1 && st["replicas"] == 1;
        let pods: serde_json::Value = try_kubectl(&["-n", ns, "get", "pods", "-l", &format!("app={app}"), "-o", "json"]).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        // A pod that restarted (the stack's pods start once unless they crash) is a failing rollout.
        let failing = pods["items"].as_array().into_iter().flatten().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).any(|p| {
            p["status"]["containerStatuses"].as_array().into_iter().flatten().any(|c| c["restartCount"].as_i64().unwrap_or(0) > 0)
        });
        let (status, reason) = match (rolled, failing) {
            (_, true) => ("False", "PodFailing"),
            (true, false) => ("True", "RolledOut"),
            _ => ("Unknown", "Progressing"),
        };
        let patch = serde_json::json!({"status": {"observedGeneration": generation, "conditions": [
            {"type": "Ready", "status": status, "reason": reason, "message": format!("deployment {app}: {status}")}]}});
        let _ = try_kubectl(&["-n", ns, "patch", "widget", name, "--subresource=status", "--type=merge", "-p", &patch.to_string()]);
    }
}

/// The Widget kind installed, and the test's controller running over `ns` until the flag is set.
fn controller(ns: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let _ = std::process::Command::new("sh").arg("-c").arg("printf '%s' \"$0\" | kubectl apply -f - >/dev/null").arg(CRD).status();
    eventually("the Widget kind served", 30, || try_kubectl(&["get", "--raw", "/apis/e2e.devloop.dev/v1"]).map(|_| ()));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (stop, ns) = (stop.clone(), ns.to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reconcile(&ns);
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        })
    };
    (stop, handle)
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_custom_resource_gets_the_image_at_its_path_and_is_judged_by_its_ready_condition() {
    let ns = Namespace::new("custom");
    let (stop, controller) = controller(&ns.0);

    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("app/k8s-widget/widget.yaml", &format!("apiVersion: e2e.devloop.dev/v1\nkind: Widget\nmetadata:\n  name: hello\nspec:\n  image: {}\n  note: {}\n", p.name, p.name));
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s-widget/*.yaml\"]\n\
         image-paths = {{ \"e2e.devloop.dev/Widget\" = \"spec.image\" }}\nready-when = {{ \"e2e.devloop.dev/Widget\" = \"Ready\" }}\nrollout-timeout = \"60s\"\n",
        ns.0, p.name
    ));
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of widget {}/hello done", ns.0)) && out.contains("(condition Ready True)"), "{out}");
    let tag = p.tag();
    let spec_image = kubectl(&["-n", &ns.0, "get", "widget", "hello", "-o", "jsonpath={.spec.image}"]);
    assert!(spec_image.contains(&format!("/{}:{tag}@sha256:", p.name)), "the reference at spec.image: {spec_image}");
    assert_eq!(kubectl(&["-n", &ns.0, "get", "widget", "hello", "-o", "jsonpath={.spec.note}"]), p.name, "only the named path");
    assert_eq!(kubectl(&["-n", &ns.0, "get", "deployment", "widget-hello", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), spec_image);

    // A crashing build: the controller says Ready=False, and that is the rollout's failure.
    p.write("app/serve.sh", "#!/bin/sh\necho custom-marker: no config >&2\nexit 3\n");
    let run = p.devloop(&["deploy"]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{out}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains(&format!("rollout of widget {}/hello FAILED", ns.0)) && out.contains("PodFailing: deployment widget-hello: False"), "{out}");


    // Under `up`, the logs of the pods its controller made (whatever owns them: they run the reference)
    // are followed like a Deployment's.
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/serve.sh"), p.path("app/serve.sh")).unwrap();
    let mut up = Up::start(&p);
    let it = up.wait_for("the widget's iteration", 120, |v| v["event"] == "iteration" || v["event"] == "rollout-failed");
    assert_eq!(it["event"], "iteration", "{:#?}", up.seen);
    let log = up.seen_or_wait_for("a log line of the controller's pod", 60, |v| v["event"] == "log" && v["message"].as_str().unwrap_or("").contains("hello: serving /www"));
    assert!(log["message"].as_str().unwrap().contains("widget-hello-"), "{log}");
    up.interrupt();

    stop.store(true, Ordering::Relaxed);
    controller.join().unwrap();
}

/// A chart's custom resource (the chart puts the image at `spec.image`, from a value): judged by its
/// `ready-when` condition after the upgrade, and a `False` is the upgrade's failure, rolled back by helm.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_charts_custom_resource_is_judged_by_its_ready_condition_and_a_failure_rolls_the_release_back() {
    let ns = Namespace::new("custom-helm");
    let (stop, controller) = controller(&ns.0);
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("app/chart-widget/Chart.yaml", "apiVersion: v2\nname: widget\nversion: 0.1.0\n");
    p.write("app/chart-widget/values.yaml", "image: nginx:not-ours\n");
    p.write("app/chart-widget/templates/widget.yaml", "apiVersion: e2e.devloop.dev/v1\nkind: Widget\nmetadata:\n  name: hello\nspec:\n  image: {{ .Values.image }}\n");
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\n\
         helm = {{ chart = \"app/chart-widget\", release = \"widget\", image-values = {{ image = \"image\" }} }}\n\
         image-paths = {{ \"e2e.devloop.dev/Widget\" = \"spec.image\" }}\nready-when = {{ \"e2e.devloop.dev/Widget\" = \"Ready\" }}\nrollout-timeout = \"60s\"\n",
        ns.0, p.name
    ));
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("helm release {}/widget upgraded to revision 1", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of widget {}/hello done", ns.0)) && out.contains("(condition Ready True)"), "{out}");
    let first = kubectl(&["-n", &ns.0, "get", "widget", "hello", "-o", "jsonpath={.spec.image}"]);
    assert!(first.contains(&format!("/{}:{}", p.name, p.tag())), "the chart put the build at spec.image: {first}");

    // A crashing build: Ready=False is the upgrade's failure; helm puts revision 1's Widget back.
    p.write("app/serve.sh", "#!/bin/sh\necho custom-marker: no config >&2\nexit 3\n");
    let run = p.devloop(&["deploy"]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{out}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains(&format!("rollout of widget {}/hello FAILED", ns.0)) && out.contains("PodFailing"), "{out}");
    assert!(out.contains("(helm rollback)"), "{out}");
    // The rollback is judged as the upgrade was: by the Widget's condition, for the generation put back.
    assert!(out.contains(&format!("helm release {}/widget rolled back: widget hello is back on {first} (Ready True)", ns.0)), "{out}");
    assert_eq!(kubectl(&["-n", &ns.0, "get", "widget", "hello", "-o", "jsonpath={.spec.image}"]), first, "the Widget is back on the good build");
    stop.store(true, Ordering::Relaxed);
    controller.join().unwrap();
}
