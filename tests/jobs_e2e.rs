//! The kinds devloop replaces rather than rolls (issue 22 item 1): a Job and a bare Pod, whose pod templates
//! the API server does not change in place, are deleted and created anew when the build changes them, then
//! judged (a Job: succeeded or failed with its reason and its pod's last log line; a Pod: Running and Ready,
//! or its crash); a CronJob's template is updated and nothing is waited for. examples/hello's image, deployed
//! from manifests with `devloop deploy`. Run through scripts/test.

mod common;
use common::*;

/// examples/hello deployed from manifests into `ns`, its own Deployment and Service replaced by `manifest`
/// (`IMAGE` stands for the project's image name).
fn project(ns: &str, manifest: &str) -> Project {
    let p = manifest_project(ns, "rollout-timeout = \"60s\"\n");
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        std::fs::remove_file(p.path(f)).unwrap();
    }
    p.write("app/k8s/kinds.yaml", &manifest.replace("IMAGE", &p.name));
    p
}

/// `devloop deploy`: (exit code, stdout and stderr).
fn deploy(p: &Project) -> (Option<i32>, String) {
    let run = p.devloop(&["deploy"]);
    (run.status.code(), format!("{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr)))
}

/// `kubectl get` of one field (a jsonpath) of `what` in `ns`.
fn field(ns: &str, what: &str, path: &str) -> String {
    kubectl(&["-n", ns, "get", what, "-o", &format!("jsonpath={{{path}}}")])
}

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata: {name: task}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {app: task}}
    spec:
      restartPolicy: Never
      containers:
        - {name: task, image: IMAGE, command: [sh, /www/job.sh]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '0 3 1 1 *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - {name: nightly, image: IMAGE, command: [sh, /www/job.sh]}
";

/// A Job whose command exits 0 is reported succeeded and a CronJob's template updated; deployed again
/// unchanged, the Job is left alone; an edit that makes it exit 1 replaces it (a new Job), which is reported
/// failed with the Job's reason and its pod's last log line, and not rolled back.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_job_is_replaced_when_its_image_changes_and_reported_succeeded_or_failed_with_its_log() {
    let ns = Namespace::new("kinds-job");
    let p = project(&ns.0, JOB);
    p.write("app/www/job.sh", "echo jobs-marker: all good\nexit 0\n");
    let (code, out) = deploy(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("job {}/task succeeded in", ns.0)) && out.contains("(1 pod(s) succeeded"), "{out}");
    assert!(out.contains(&format!("cronjob {}/nightly: template updated; next run at its schedule (nothing to wait for)", ns.0)), "{out}");
    let built = field(&ns.0, "cronjob/nightly", ".spec.jobTemplate.spec.template.spec.containers[0].image");
    assert!(built.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "the CronJob runs the build: {built}");
    assert_eq!(field(&ns.0, "job/task", ".spec.template.spec.containers[0].image"), built);
    let first = field(&ns.0, "job/task", ".metadata.uid");

    let (code, out) = deploy(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("job {}/task unchanged", ns.0)) && !out.contains("succeeded in"), "left alone: {out}");
    assert_eq!(field(&ns.0, "job/task", ".metadata.uid"), first, "the same Job");

    p.write("app/www/job.sh", "echo jobs-marker: no input >&2\nexit 1\n");
    let (code, out) = deploy(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("job {}/task replaced (its pod template is immutable", ns.0)), "{out}");
    assert!(out.contains(&format!("job {}/task FAILED after", ns.0)) && out.contains("BackoffLimitExceeded (pod task-"), "{out}");
    assert!(out.contains("container task exited with code 1 (Error)"), "{out}");
    assert!(out.contains("last log lines:") && out.contains("jobs-marker: no input"), "no log line in:\n{out}");
    assert!(out.contains(&format!("job {}/task: no rollback for a Job", ns.0)), "{out}");
    assert!(out.contains(&format!("cronjob {}/nightly: template updated", ns.0)), "kept going: {out}");
    assert_ne!(field(&ns.0, "job/task", ".metadata.uid"), first, "a new Job");
    let second = field(&ns.0, "job/task", ".spec.template.spec.containers[0].image");
    assert!(second != built && field(&ns.0, "cronjob/nightly", ".spec.jobTemplate.spec.template.spec.containers[0].image") == second, "{second}");
    let pods = kubectl(&["-n", &ns.0, "get", "pods", "-l", "app=task", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    assert_eq!(pods.split_whitespace().collect::<Vec<_>>(), [second.as_str()], "the first Job's pod went with it");

    // `down` deletes the Job with its pods (the API's default for a Job would leave them).
    p.ok(&["down"]);
    eventually("the Job's pods gone", 30, || match all_pods(&ns.0, "task").as_slice() {
        [] => Ok(()),
        left => Err(format!("{left:?}")),
    });
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: web
      image: IMAGE
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
";

/// A bare Pod is waited for until Running and Ready; a new build replaces it (a new pod on the new image,
/// serving the new page); a crashing one is reported as a Deployment's pod is, with its log line.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_bare_pod_is_replaced_by_a_new_build_and_its_crash_reported() {
    let ns = Namespace::new("kinds-pod");
    let p = project(&ns.0, POD);
    let (code, out) = deploy(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("rollout of pod {}/solo done", ns.0)), "{out}");
    let first = field(&ns.0, "pod/solo", ".metadata.uid");

    p.write("app/www/index.html", "<p>a solo hello</p>\n");
    let (code, out) = deploy(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("pod {}/solo replaced (its pod template is immutable", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of pod {}/solo done", ns.0)), "{out}");
    assert_ne!(field(&ns.0, "pod/solo", ".metadata.uid"), first, "a new pod");
    let image = field(&ns.0, "pod/solo", ".spec.containers[0].image");
    assert!(image.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "{image}");
    assert_eq!(page(&ns.0, "solo").unwrap(), "<p>a solo hello</p>\n");

    p.write("app/serve.sh", "#!/bin/sh\necho kinds-marker: no config >&2\nexit 3\n");
    let (code, out) = deploy(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("pod {}/solo replaced", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of pod {}/solo FAILED after", ns.0)), "{out}");
    assert!(out.contains("(pod solo, container web)") && out.contains("exited with code 3"), "{out}");
    assert!(out.contains("kinds-marker: no config"), "no log line in:\n{out}");
}

/// Under `up` a Job's success is an iteration like a rollout's, and its ended pod is not then taken for a
/// crash; a save that makes it fail is a failed rollout with the Job's reason.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_reports_a_job_succeeded_without_taking_its_ended_pod_for_a_crash_then_its_failure() {
    let ns = Namespace::new("kinds-upjob");
    let p = project(&ns.0, JOB);
    p.write("app/www/job.sh", "echo jobs-marker: all good\nexit 0\n");
    let mut up = Up::start(&p);
    up.wait("iteration", 90);
    let said = |up: &Up, text: &str| up.seen.iter().any(|e| e["event"] == "deploy" && e["message"].as_str().is_some_and(|m| m.contains(text)));
    assert!(said(&up, &format!("job {}/task succeeded in", ns.0)), "{:#?}", up.seen);
    let after = up.quiet_for(std::time::Duration::from_secs(7));
    assert!(after.iter().all(|e| e["event"] != "crashed"), "the Job's ended pod taken for a crash: {after:#?}");

    p.write("app/www/job.sh", "echo jobs-marker: no input >&2\nexit 1\n");
    let failed = up.wait_for("the failed Job", 90, |v| v["event"] == "rollout-failed" || v["event"] == "iteration");
    assert_eq!(failed["event"], "rollout-failed", "{failed}");
    assert!(failed["reason"].as_str().unwrap_or_default().starts_with("BackoffLimitExceeded (pod task-"), "{failed}");
    assert!(said(&up, "jobs-marker: no input"), "no log line: {:#?}", up.seen);
}
