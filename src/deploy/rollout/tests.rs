use super::*;
use k8s_openapi::api::apps::v1::Deployment;
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

fn w(d: &Deployment) -> Workload {
    Workload::Deployment(d.clone())
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
        Verdict::Manual(_) => "manual",
        Verdict::Completed { .. } => "completed",
    }
}

#[test]
fn verdicts() {
    let refs = vec![NEW.to_string()];
    let running = json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    let creating = json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    // (name, deployment, pods, verdict)
    let cases: Vec<(&str, Deployment, Vec<Pod>, &str)> = vec![
        ("not observed yet", deployment(2, 1, 1, 1, 1, 1), vec![], "progressing"),
        ("done", deployment(2, 2, 1, 1, 1, 1), vec![pod("n", NEW, running.clone())], "done"),
        ("old replica left", deployment(2, 2, 1, 1, 1, 2), vec![pod("n", NEW, running.clone()), pod("o", OLD, running.clone())], "progressing"),
        ("crash loop", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("CrashLoopBackOff"))], "CrashLoopBackOff"),
        ("pull backoff", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("ImagePullBackOff"))], "ImagePullBackOff"),
        ("pull error", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("ErrImagePull"))], "ErrImagePull"),
        ("config error", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, waiting("CreateContainerConfigError"))], "CreateContainerConfigError"),
        ("still creating", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, creating.clone())], "progressing"),
        // An old pod that was crashing before this rollout is not this rollout's failure.
        ("old pod failing", deployment(2, 2, 1, 1, 1, 1), vec![pod("o", OLD, waiting("CrashLoopBackOff")), pod("n", NEW, running.clone())], "done"),
        ("unschedulable", deployment(2, 2, 1, 1, 0, 2), vec![pod("n", NEW, json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}))], "Unschedulable"),
    ];
    for (name, dep, pods, want) in cases {
        assert_eq!(reason(&assess(&w(&dep), &pods, &refs)), want, "{name}");
    }
}

#[test]
fn progress_deadline_and_crash_details() {
    let refs = vec![NEW.to_string()];
    let mut dep = deployment(2, 2, 1, 1, 0, 2);
    dep.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(json!({
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "took too long"
    })).unwrap()]);
    assert_eq!(reason(&assess(&w(&dep), &[], &refs)), "ProgressDeadlineExceeded");

    let v = assess(&w(&deployment(2, 2, 1, 1, 0, 2)), &[pod("n", NEW, waiting("CrashLoopBackOff"))], &refs);
    let Verdict::Failed(f) = v else { panic!("{v:?}") };
    assert_eq!((f.pod.as_deref(), f.container.as_deref(), f.previous_logs), (Some("n"), Some("web"), true));
    assert!(f.message.starts_with("exited with code 1"), "{}", f.message);
}

#[test]
fn a_deployment_is_described_by_its_template_images_and_replica_counts() {
    let mut d = deployment(3, 3, 2, 1, 1, 3);
    d.spec.as_mut().unwrap().template.spec = Some(serde_json::from_value(json!({"containers": [{"name": "web", "image": NEW}]})).unwrap());
    d.status.as_mut().unwrap().ready_replicas = Some(2);
    assert_eq!(w(&d).describe(), format!("template image {NEW}; 2 desired, 1 updated, 2 ready, 1 available, 3 total"));
    d.spec.as_mut().unwrap().template.spec =
        Some(serde_json::from_value(json!({"containers": [{"name": "web", "image": NEW}, {"name": "log", "image": OLD}]})).unwrap());
    d.metadata.generation = Some(4);
    let line = w(&d).describe();
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
    assert_eq!(reason(&assess(&w(&dep), &[old.clone(), new.clone()], &refs)), "progressing");
    let mut failing = new.clone();
    failing.status = serde_json::from_value(waiting("ErrImagePull")).unwrap();
    assert_eq!(reason(&assess(&w(&dep), &[old, failing], &refs)), "ErrImagePull", "a new pod that cannot pull is");
}

#[test]
fn a_refused_pull_of_a_pod_with_pull_secrets_may_wait_for_the_kubelets_retry() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 0, 1);
    let refused = json!({"containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "failed to resolve reference: pulling from host r failed with status code [manifests sha256:1]: 401 Unauthorized"}}}]});
    let mut with_secret = pod("n", NEW, refused.clone());
    with_secret.spec.as_mut().unwrap().image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "s".into() }]);
    assert_eq!(reason(&assess_with(&w(&dep), std::slice::from_ref(&with_secret), &refs, &|p, r| p == "n" && r == "refused pull")), "progressing");
    assert_eq!(reason(&assess_with(&w(&dep), &[with_secret], &refs, &|_, _| false)), "ErrImagePull", "after the grace");
    // Without pull secrets there is nothing to wait for; other pull errors are not refusals.
    assert_eq!(reason(&assess_with(&w(&dep), &[pod("n", NEW, refused)], &refs, &|_, _| true)), "ErrImagePull");
    let mut not_found = pod("n", NEW, waiting("ErrImagePull"));
    not_found.spec.as_mut().unwrap().image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "s".into() }]);
    assert_eq!(reason(&assess_with(&w(&dep), &[not_found], &refs, &|_, _| true)), "ErrImagePull");
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
    assert_eq!(reason(&assess_with(&w(&dep), std::slice::from_ref(&tainted), &refs, &|p, r| p == "n" && r == "tainted node")), "progressing");
    assert_eq!(reason(&assess_with(&w(&dep), &[tainted], &refs, &|_, _| false)), "Unschedulable", "after the grace");
    let full = unschedulable("0/1 nodes are available: 1 Insufficient cpu.");
    assert_eq!(reason(&assess_with(&w(&dep), &[full], &refs, &|_, _| true)), "Unschedulable", "no grace for a pod too big for any node");
}

/// A pod of the new image whose Ready condition changed at `since` (server time) and whose container `web`
/// is `state`, with `restarts` restarts and `last` as its last state.
fn ready_pod(name: &str, since: &str, state: serde_json::Value, restarts: i32, last: serde_json::Value) -> Pod {
    pod(name, NEW, json!({
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": since}],
        "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": restarts,
            "state": state, "lastState": last}]}))
}

fn wall(s: &str) -> k8s_openapi::jiff::Timestamp {
    s.parse().unwrap()
}

const T0: &str = "2026-12-06T15:00:00Z";

#[test]
fn a_container_that_exited_after_ready_fails_the_rollout_with_its_exit_code_though_the_deployment_counts_it_available() {
    // The race of issue 21: no readiness probe, so the pod was Ready (and the Deployment available) for the
    // moment before the kubelet saw the server exit.
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 1, 1);
    let exited = ready_pod("n", T0, json!({"terminated": {"exitCode": 3, "reason": "Error"}}), 0, json!({}));
    let v = assess(&w(&dep), &[exited], &refs);
    let Verdict::Failed(f) = v else { panic!("a container that exited was called {v:?}") };
    assert_eq!((f.reason.as_str(), f.pod.as_deref(), f.container.as_deref()), ("Exited", Some("n"), Some("web")));
    assert!(f.message.starts_with("exited with code 3 (Error)"), "{}", f.message);
    assert!(!f.previous_logs, "the exited instance is still the current one");

    // The kubelet has already started it again: running, Ready, one restart.
    let restarted = ready_pod("n", T0, json!({"running": {}}), 1, json!({"terminated": {"exitCode": 3, "reason": "Error"}}));
    let v = assess(&w(&dep), &[restarted], &refs);
    let Verdict::Failed(f) = v else { panic!("a restarted container was called {v:?}") };
    assert_eq!(f.reason, "Exited");
    assert!(f.message.starts_with("exited with code 3 (Error)") && f.message.contains("restarted 1 time"), "{}", f.message);
    assert!(f.previous_logs, "the logs are the crashed instance's");

    // An init container that completed is how pods start; one that failed is a failure.
    let mut init_ok = ready_pod("n", T0, json!({"running": {}}), 0, json!({}));
    init_ok.status.as_mut().unwrap().init_container_statuses = Some(vec![serde_json::from_value(json!({"name": "init", "image": "x",
        "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})).unwrap()]);
    assert_eq!(reason(&assess(&w(&dep), &[init_ok.clone()], &refs)), "done");
    let mut init_failed = init_ok;
    init_failed.status.as_mut().unwrap().init_container_statuses.as_mut().unwrap()[0].state =
        serde_json::from_value(json!({"terminated": {"exitCode": 1, "reason": "Error"}})).unwrap();
    assert_eq!(reason(&assess(&w(&dep), &[init_failed], &refs)), "Exited");
}

#[test]
fn a_pod_without_a_readiness_probe_is_done_only_after_the_settle_window_and_one_that_exits_in_it_fails() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 1, 1);
    let running = ready_pod("n", T0, json!({"running": {}}), 0, json!({}));
    let mut judge = Judge::default();
    let t0 = std::time::Instant::now();
    assert_eq!(reason(&judge.judge(&w(&dep), std::slice::from_ref(&running), &refs, t0, wall(T0))), "progressing", "Ready only means started");
    let almost = t0 + SETTLE - Duration::from_millis(1);
    assert_eq!(reason(&judge.judge(&w(&dep), std::slice::from_ref(&running), &refs, almost, wall(T0))), "progressing");
    // It exits within the window: the rollout fails, whatever the Deployment's counts say.
    let exited = ready_pod("n", T0, json!({"terminated": {"exitCode": 3, "reason": "Error"}}), 0, json!({}));
    assert_eq!(reason(&judge.judge(&w(&dep), &[exited], &refs, almost, wall(T0))), "Exited");
    // It does not: done once the window has passed, and the verdict says how long it was watched.
    let v = judge.judge(&w(&dep), &[running], &refs, t0 + SETTLE, wall(T0));
    let Verdict::Done { timeline, .. } = v else { panic!("{v:?}") };
    assert_eq!(timeline.settle, SETTLE);
}

#[test]
fn the_settle_window_is_shorter_with_a_readiness_probe_longer_with_min_ready_seconds_and_not_waited_again_for_pods_ready_long_before() {
    let refs = vec![NEW.to_string()];
    let at = |judge: &mut Judge, dep: &Deployment, pod: &Pod, after: Duration, t0: std::time::Instant| {
        reason(&judge.judge(&w(dep), std::slice::from_ref(pod), &refs, t0 + after, wall(T0))).to_string()
    };
    let dep = deployment(2, 2, 1, 1, 1, 1);
    let mut probed = ready_pod("n", T0, json!({"running": {}}), 0, json!({}));
    probed.spec.as_mut().unwrap().containers[0].readiness_probe = Some(serde_json::from_value(json!({"httpGet": {"port": 8080}})).unwrap());
    let (mut judge, t0) = (Judge::default(), std::time::Instant::now());
    assert_eq!(at(&mut judge, &dep, &probed, Duration::ZERO, t0), "done", "the probe has seen it serve: no window");

    let mut slow = dep.clone();
    slow.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    let (mut judge, t0) = (Judge::default(), std::time::Instant::now());
    assert_eq!(at(&mut judge, &slow, &probed, Duration::ZERO, t0), "progressing");
    assert_eq!(at(&mut judge, &slow, &probed, Duration::from_secs(9), t0), "progressing", "minReadySeconds is longer");
    assert_eq!(at(&mut judge, &slow, &probed, Duration::from_secs(10), t0), "done");

    // A pod the API says has been Ready since long before the watch (a rollback to pods still running): done
    // at once. One Ready for less than the window (plus the timestamps' second) is still watched.
    let long_ago = ready_pod("n", "2026-12-06T14:59:50Z", json!({"running": {}}), 0, json!({}));
    let v = Judge::default().judge(&w(&dep), &[long_ago], &refs, std::time::Instant::now(), wall(T0));
    assert!(matches!(v, Verdict::Done { timeline: Timeline { settle: Duration::ZERO, .. }, .. }), "not waited for, and not said to be: {v:?}");
    let just = ready_pod("n", "2026-12-06T14:59:56Z", json!({"running": {}}), 0, json!({}));
    assert_eq!(at(&mut Judge::default(), &dep, &just, Duration::ZERO, std::time::Instant::now()), "progressing");
}

#[test]
fn the_judge_keeps_the_graces_of_passing_failures() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 0, 2);
    let tainted = pod("n", NEW, json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) had untolerated taint(s)."}]}));
    let (mut judge, t0) = (Judge::default(), std::time::Instant::now());
    assert_eq!(reason(&judge.judge(&w(&dep), std::slice::from_ref(&tainted), &refs, t0, wall(T0))), "progressing");
    let later = t0 + TAINTED_NODE_GRACE - Duration::from_millis(1);
    assert_eq!(reason(&judge.judge(&w(&dep), std::slice::from_ref(&tainted), &refs, later, wall(T0))), "progressing");
    assert_eq!(reason(&judge.judge(&w(&dep), &[tainted], &refs, t0 + TAINTED_NODE_GRACE, wall(T0))), "Unschedulable");
}

#[test]
fn after_the_rollout_a_crash_is_an_exit_a_restart_or_a_crash_loop_of_a_pod_running_the_image_and_earlier_restarts_are_not_blamed() {
    let refs = vec![NEW.to_string()];
    let none = Restarts::new();
    let running = ready_pod("n", T0, json!({"running": {}}), 0, json!({}));
    assert_eq!(crashed(&running, &refs, &none), None);
    let exited = ready_pod("n", T0, json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), 0, json!({}));
    let f = crashed(&exited, &refs, &none).expect("an exit");
    assert!(f.message.starts_with("exited with code 137 (OOMKilled)"), "{}", f.message);
    let restarted = ready_pod("n", T0, json!({"running": {}}), 2, json!({"terminated": {"exitCode": 1, "reason": "Error"}}));
    assert_eq!(crashed(&restarted, &refs, &none).map(|f| f.reason), Some("Exited".to_string()));
    let before = Restarts::from([(("n".to_string(), "web".to_string()), 2)]);
    assert_eq!(crashed(&restarted, &refs, &before), None, "restarts from before the watch");
    assert_eq!(crashed(&pod("n", NEW, waiting("CrashLoopBackOff")), &refs, &before).map(|f| f.reason), Some("CrashLoopBackOff".to_string()));
    // Not ours to report: another image's pod, or one being deleted (its containers are stopped on purpose).
    let mut other = exited.clone();
    other.spec.as_mut().unwrap().containers[0].image = Some(OLD.into());
    assert_eq!(crashed(&other, &refs, &none), None);
    let mut deleting = exited;
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(wall(T0)));
    assert_eq!(crashed(&deleting, &refs, &none), None);
}

#[test]
fn restarts_a_pod_had_before_the_watch_are_not_the_rollouts_but_one_more_is() {
    let refs = vec![NEW.to_string()];
    let dep = deployment(2, 2, 1, 1, 1, 1);
    let old_restarts = |n: i32| ready_pod("n", "2026-12-06T14:00:00Z", json!({"running": {}}), n, json!({"terminated": {"exitCode": 1, "reason": "Error"}}));
    let mut judge = Judge::default();
    judge.existed(&old_restarts(3));
    let t0 = std::time::Instant::now();
    assert_eq!(reason(&judge.judge(&w(&dep), &[old_restarts(3)], &refs, t0, wall(T0))), "done", "restarted long before this rollout");
    assert_eq!(reason(&judge.judge(&w(&dep), &[old_restarts(4)], &refs, t0, wall(T0))), "Exited");
}

/// A StatefulSet and a DaemonSet are judged like a Deployment: their new pods' failures with the reason and
/// exit code, the settle window after Ready (the workload's `minReadySeconds` when longer), old pods' failures
/// not theirs; and what each kind's status says it waits for.
#[test]
fn stateful_sets_and_daemon_sets_are_judged_by_their_new_pods_and_their_own_counts() {
    let refs = vec![NEW.to_string()];
    let sts = |ready: i32, current: &str, min_ready: i32| -> Workload {
        Workload::StatefulSet(serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 2},
            "spec": {"replicas": 1, "serviceName": "db", "minReadySeconds": min_ready, "selector": {"matchLabels": {"app": "db"}}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": ready, "updatedReplicas": 1, "currentRevision": current, "updateRevision": "db-2"}
        })).unwrap())
    };
    let ds = |updated: i32, available: i32| -> Workload {
        Workload::DaemonSet(serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {}},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0,
                "numberReady": available, "numberAvailable": available, "updatedNumberScheduled": updated}
        })).unwrap())
    };
    let exited = ready_pod("db-0", T0, json!({"terminated": {"exitCode": 3, "reason": "Error"}}), 0, json!({}));
    let Verdict::Failed(f) = assess(&sts(1, "db-2", 0), &[exited], &refs) else { panic!("an exit is a failure") };
    assert_eq!((f.reason.as_str(), f.pod.as_deref(), f.message.as_str()), ("Exited", Some("db-0"), "exited with code 3 (Error)"));
    assert_eq!(reason(&assess(&sts(0, "db-1", 0), &[pod("db-0", NEW, waiting("CrashLoopBackOff"))], &refs)), "CrashLoopBackOff");
    assert_eq!(reason(&assess(&sts(0, "db-1", 0), &[pod("db-0", OLD, waiting("CrashLoopBackOff"))], &refs)), "progressing", "an old pod's crash is not this rollout's");
    assert_eq!(reason(&assess(&ds(1, 0), &[pod("agent-x", NEW, waiting("ImagePullBackOff"))], &refs)), "ImagePullBackOff");
    assert_eq!(reason(&assess(&ds(0, 1), &[], &refs)), "progressing");

    // Ready, then watched for its settle window: 5 s without a probe, minReadySeconds when longer.
    let running = ready_pod("db-0", T0, json!({"running": {}}), 0, json!({}));
    let t0 = std::time::Instant::now();
    for (w, window) in [(sts(1, "db-2", 0), SETTLE), (sts(1, "db-2", 8), Duration::from_secs(8)), (ds(1, 1), SETTLE)] {
        let mut judge = Judge::default();
        assert_eq!(reason(&judge.judge(&w, std::slice::from_ref(&running), &refs, t0, wall(T0))), "progressing");
        let almost = t0 + window - Duration::from_millis(1);
        assert_eq!(reason(&judge.judge(&w, std::slice::from_ref(&running), &refs, almost, wall(T0))), "progressing");
        let v = judge.judge(&w, std::slice::from_ref(&running), &refs, t0 + window, wall(T0));
        assert!(matches!(v, Verdict::Done { ready: 1, timeline: Timeline { settle, .. } } if settle == window), "{:?}: {v:?}", w.kind());
    }
    assert_eq!(reason(&assess(&sts(1, "db-1", 0), std::slice::from_ref(&running), &refs)), "progressing", "the revision is not current yet");
}

fn job(status: serde_json::Value) -> Workload {
    Workload::Job(
        serde_json::from_value(json!({
            "metadata": {"name": "task"},
            "spec": {"backoffLimit": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "web", "image": NEW}]}}},
            "status": status
        }))
        .unwrap(),
    )
}

fn terminated(code: i32) -> serde_json::Value {
    json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}}]})
}

/// A Job's pod that exited is its result, judged by the Job (a retry may follow): not a failure by itself, as
/// a Deployment's would be; a pod that cannot pull is, as for a Deployment; the Job's Failed condition is,
/// with the failed pod and container (whose logs are then read); its completion is `Completed`.
#[test]
fn a_job_succeeds_by_its_completions_and_fails_by_its_condition_or_its_pods_pull_errors() {
    let refs = vec![NEW.to_string()];
    let retrying = job(json!({"active": 1, "failed": 1}));
    let first = pod("task-a", NEW, terminated(1));
    assert_eq!(reason(&assess(&retrying, &[first.clone(), pod("task-b", NEW, json!({}))], &refs)), "progressing", "the Job retries");
    assert_eq!(reason(&assess(&retrying, &[pod("task-b", NEW, waiting("ImagePullBackOff"))], &refs)), "ImagePullBackOff");
    let failed = job(json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
    let Verdict::Failed(f) = assess(&failed, &[first], &refs) else { panic!("not failed") };
    assert_eq!((f.reason.as_str(), f.pod.as_deref(), f.container.as_deref()), ("BackoffLimitExceeded", Some("task-a"), Some("web")));
    assert!(f.message.ends_with("pod task-a: container web exited with code 1 (Error)"), "{}", f.message);
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    // The Judge, too, returns it at once: a Job's pods are never Ready, there is no settle window to wait.
    let verdict = Judge::default().judge(&done, &[pod("task-a", NEW, terminated(0))], &refs, Instant::now(), wall("2026-01-01T00:00:00Z"));
    assert_eq!(verdict, Verdict::Completed { succeeded: 1, timeline: Timeline::default() });
}

/// A bare Pod is judged as a Deployment's pod is: its crash loop with its reason, its exit, done once Ready
/// and settled.
#[test]
fn a_bare_pod_fails_with_the_reasons_of_a_deployments_pod() {
    let refs = vec![NEW.to_string()];
    let bare = |status: serde_json::Value| {
        let mut p = pod("solo", NEW, status);
        p.status.get_or_insert_with(Default::default).phase = Some("Running".into());
        p
    };
    let crashing = bare(waiting("CrashLoopBackOff"));
    let Verdict::Failed(f) = assess(&Workload::Pod(crashing.clone()), &[crashing], &refs) else { panic!("not failed") };
    assert_eq!((f.reason.as_str(), f.pod.as_deref(), f.previous_logs), ("CrashLoopBackOff", Some("solo"), true));
    let pulling = bare(waiting("ImagePullBackOff"));
    assert_eq!(reason(&assess(&Workload::Pod(pulling.clone()), &[pulling], &refs)), "ImagePullBackOff");
    let ready = bare(json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
    let mut judge = Judge::default();
    let (w, t0) = (Workload::Pod(ready.clone()), Instant::now());
    assert_eq!(reason(&judge.judge(&w, std::slice::from_ref(&ready), &refs, t0, wall("2026-01-01T00:00:00Z"))), "progressing", "settling");
    assert_eq!(reason(&judge.judge(&w, &[ready], &refs, t0 + SETTLE, wall("2026-01-01T00:00:05Z"))), "done");
}
