use super::*;
use serde_json::json;

const NEW: &str = "reg/app:new@sha256:1";
const OLD: &str = "reg/app:old@sha256:0";

fn deployment(generation: i64, observed: i64, replicas: i32, updated: i32, available: i32, total: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "app", "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}}, "template": {}},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available, "replicas": total}
    }))
    .unwrap()
}

fn pod(name: &str, image: &str, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": status
    }))
    .unwrap()
}

fn waiting(reason: &str) -> serde_json::Value {
    json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 1,
        "state": {"waiting": {"reason": reason, "message": "details"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]})
}

fn reason(v: &Verdict) -> &str {
    match v {
        Verdict::Failed(f) => &f.reason,
        Verdict::Done { .. } => "done",
        Verdict::Progressing(_) => "progressing",
    }
}

#[test]
fn verdicts() {
    let refs = vec![NEW.to_string()];
    let running = json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    // (name, deployment, pods, verdict)
    let cases: Vec<(&str, Deployment, Vec<Pod>, &str)> = vec![
        ("not observed yet", deployment(2, 1, 1, 1, 1, 1), vec![], "progressing"),
        ("done", deployment(2, 2, 1, 1, 1, 1), vec![pod("n", NEW, running.clone())], "done"),
        ("old replica left", deployment(2, 2, 1, 1, 1, 2), vec![pod("n", NEW, running.clone()), pod("o", OLD, running.clone())], "progressing"),
        ("crash loop", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("CrashLoopBackOff"))], "CrashLoopBackOff"),
        ("pull backoff", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("ImagePullBackOff"))], "ImagePullBackOff"),
        ("pull error", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("ErrImagePull"))], "ErrImagePull"),
        ("config error", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("CreateContainerConfigError"))], "CreateContainerConfigError"),
        ("still creating", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("ContainerCreating"))], "progressing"),
        // An old pod that was crashing before this rollout is not this rollout's failure.
        ("old pod failing", deployment(2, 2, 1, 1, 1, 1), vec![pod("o", OLD, waiting("CrashLoopBackOff")), pod("n", NEW, running.clone())], "done"),
        ("unschedulable", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}))], "Unschedulable"),
    ];
    for (name, dep, pods, want) in cases {
        assert_eq!(reason(&assess(&dep, &pods, &refs)), want, "{name}");
    }
}

#[test]
fn progress_deadline_and_crash_details() {
    let refs = vec![NEW.to_string()];
    let mut dep = deployment(2, 2, 1, 1, 0, 2);
    dep.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(json!({
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "took too long"
    })).unwrap()]);
    assert_eq!(reason(&assess(&dep, &[], &refs)), "ProgressDeadlineExceeded");

    let v = assess(&deployment(2, 2, 1, 1, 0, 2), &[pod("n", NEW, waiting("CrashLoopBackOff"))], &refs);
    let Verdict::Failed(f) = v else { panic!("{v:?}") };
    assert_eq!((f.pod.as_deref(), f.container.as_deref(), f.previous_logs), (Some("n"), Some("web"), true));
    assert!(f.message.starts_with("exited with code 1"), "{}", f.message);
}

#[test]
fn a_deployment_is_described_by_its_template_images_and_replica_counts() {
    let mut d = deployment(3, 3, 2, 1, 1, 3);
    d.spec.as_mut().unwrap().template.spec = Some(serde_json::from_value(json!({"containers": [{"name": "web", "image": NEW}]})).unwrap());
    d.status.as_mut().unwrap().ready_replicas = Some(2);
    assert_eq!(describe(&d), format!("template image {NEW}; 2 desired, 1 updated, 2 ready, 1 available, 3 total"));
    d.spec.as_mut().unwrap().template.spec =
        Some(serde_json::from_value(json!({"containers": [{"name": "web", "image": NEW}, {"name": "log", "image": OLD}]})).unwrap());
    d.metadata.generation = Some(4);
    let line = describe(&d);
    assert!(line.starts_with(&format!("template images web={NEW}, log={OLD}; ")), "{line}");
    assert!(line.ends_with("(the controller has not seen the latest template yet)"), "{line}");
}

#[test]
fn adding_a_pull_secret_rolls_without_a_new_image_and_the_old_pods_that_could_not_pull_are_not_blamed() {
    let refs = vec![NEW.to_string()];
    let mut dep = deployment(3, 3, 1, 1, 0, 2);
    dep.spec.as_mut().unwrap().template.spec =
        Some(serde_json::from_value(json!({"containers": [{"name": "web", "image": NEW}], "imagePullSecrets": [{"name": "s"}]})).unwrap());
    let old = pod("o", NEW, waiting("ImagePullBackOff"));
    let mut new = pod("n", NEW, json!({}));
    new.spec.as_mut().unwrap().image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "s".into() }]);
    assert_eq!(reason(&assess(&dep, &[old.clone(), new.clone()], &refs)), "progressing");
    let mut failing = new.clone();
    failing.status = serde_json::from_value(waiting("ErrImagePull")).unwrap();
    assert_eq!(reason(&assess(&dep, &[old, failing], &refs)), "ErrImagePull", "a new pod that cannot pull is");
}

#[test]
fn a_refused_pull_of_a_pod_with_pull_secrets_may_wait_for_the_kubelets_retry() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 0, 1);
    let refused = json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "failed to resolve reference: pulling from host r failed with status code [manifests sha256:1]: 401 Unauthorized"}}}]});
    let mut with_secret = pod("n", NEW, refused.clone());
    with_secret.spec.as_mut().unwrap().image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "s".into() }]);
    assert_eq!(reason(&assess_with(&dep, std::slice::from_ref(&with_secret), &refs, &|p, r| p == "n" && r == "refused pull")), "progressing");
    assert_eq!(reason(&assess_with(&dep, &[with_secret], &refs, &|_, _| false)), "ErrImagePull", "after the grace");
    // Without pull secrets there is nothing to wait for; other pull errors are not refusals.
    assert_eq!(reason(&assess_with(&dep, &[pod("n", NEW, refused)], &refs, &|_, _| true)), "ErrImagePull");
    let mut not_found = pod("n", NEW, waiting("ErrImagePull"));
    not_found.spec.as_mut().unwrap().image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "s".into() }]);
    assert_eq!(reason(&assess_with(&dep, &[not_found], &refs, &|_, _| true)), "ErrImagePull");
}

#[test]
fn a_pod_unschedulable_for_a_nodes_taint_waits_for_it_to_clear_and_other_reasons_do_not() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 0, 2);
    let unschedulable = |message: &str| {
        pod("n", NEW, json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}))
    };
    // The message 1.34's scheduler gives while the node lifecycle controller has tainted a node it lost touch with.
    let tainted = unschedulable("0/1 nodes are available: 1 node(s) had untolerated taint(s). no new claims to deallocate");
    assert_eq!(reason(&assess_with(&dep, std::slice::from_ref(&tainted), &refs, &|p, r| p == "n" && r == "tainted node")), "progressing");
    assert_eq!(reason(&assess_with(&dep, &[tainted], &refs, &|_, _| false)), "Unschedulable", "after the grace");
    let full = unschedulable("0/1 nodes are available: 1 Insufficient cpu.");
    assert_eq!(reason(&assess_with(&dep, &[full], &refs, &|_, _| true)), "Unschedulable", "no grace for a pod too big for any node");
}
