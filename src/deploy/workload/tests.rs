use super::*;
use serde_json::json;

fn stateful_set(strategy: serde_json::Value, status: serde_json::Value) -> Workload {
    Workload::StatefulSet(
        serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 2},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "updateStrategy": strategy,
                "template": {"spec": {"containers": [{"name": "db", "image": "reg/db:new"}]}}},
            "status": status
        }))
        .unwrap(),
    )
}

fn daemon_set(strategy: &str, status: serde_json::Value) -> Workload {
    Workload::DaemonSet(
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": {"type": strategy},
                "template": {"spec": {"containers": [{"name": "agent", "image": "reg/agent:new"}]}}},
            "status": status
        }))
        .unwrap(),
    )
}

fn pod(name: &str, hash: &str, image: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"controller-revision-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u"}]},
        "spec": {"containers": [{"name": "c", "image": image}]},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn kind_of(p: &Progress) -> &'static str {
    match p {
        Progress::Stalled(..) => "stalled",
        Progress::Waiting(_) => "waiting",
        Progress::Done { .. } => "done",
        Progress::Manual(_) => "manual",
        Progress::Complete { .. } => "complete",
        Progress::Failed { .. } => "failed",
    }
}

#[test]
fn kinds_are_known_by_their_manifest_names() {
    let kinds = ["Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"];
    assert_eq!(kinds.map(|k| Kind::of(k).map(Kind::name)), kinds.map(Some));
    assert_eq!(Kind::of("CronJob"), None, "nothing to wait for: its template is only updated");
    assert_eq!(Kind::StatefulSet.noun(), "statefulset");
    assert_eq!(kinds.map(|k| Kind::of(k).unwrap().replaced()), [false, false, false, true, true], "the immutable templates are replaced");
    assert!(Kind::Job.completes() && !Kind::Pod.completes());
}

/// A StatefulSet's RollingUpdate is done when every replica is ready and the current revision has become the
/// update revision (or, with a partition, the pods from the partition up are updated).
#[test]
fn a_stateful_set_rolls_until_its_current_revision_is_the_update_revision() {
    let rolling = json!({"type": "RollingUpdate"});
    let status = |observed: i64, ready: i32, updated: i32, current: &str| {
        json!({"observedGeneration": observed, "replicas": 2, "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": updated,
            "currentRevision": current, "updateRevision": "db-new"})
    };
    let cases = [
        ("not observed", status(1, 2, 0, "db-old"), "waiting"),
        ("one updated, rolling", status(2, 1, 1, "db-old"), "waiting"),
        ("all ready but the revision not yet current", status(2, 2, 2, "db-old"), "waiting"),
        ("done", status(2, 2, 2, "db-new"), "done"),
    ];
    for (name, s, want) in cases {
        assert_eq!(kind_of(&stateful_set(rolling.clone(), s).progress(&[])), want, "{name}");
    }
    let w = stateful_set(rolling.clone(), status(2, 1, 1, "db-old"));
    assert_eq!(w.progress(&[]), Progress::Waiting("1/2 pods updated, 1 ready, 1 old".into()));
    assert_eq!(w.describe(), "template image reg/db:new; 2 desired, 1 updated, 1 ready, 2 total, revision db-old rolling to db-new");
    assert_eq!(w.selector_labels(), BTreeMap::from([("app".to_string(), "db".to_string())]));

    // A partition of 1: only db-1 is to be updated; the current revision stays the old one.
    let partitioned = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
    assert_eq!(kind_of(&stateful_set(partitioned.clone(), status(2, 2, 0, "db-old")).progress(&[])), "waiting");
    let p = stateful_set(partitioned, status(2, 2, 1, "db-old")).progress(&[]);
    assert_eq!(p, Progress::Done { ready: 2 }, "done once the pods from the partition up run the new revision");
}

/// With OnDelete nothing rolls until the user deletes pods: the rollout says so at once, naming the pods.
#[test]
fn an_on_delete_stateful_set_says_which_pods_wait_to_be_deleted() {
    let on_delete = json!({"type": "OnDelete"});
    let status = |ready: i32, updated: i32| {
        json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": ready, "updatedReplicas": updated,
            "currentRevision": "db-old", "updateRevision": "db-new"})
    };
    let pods = [pod("db-0", "db-old", "reg/db:old", true), pod("db-1", "db-old", "reg/db:old", true)];
    let Progress::Manual(what) = stateful_set(on_delete.clone(), status(2, 0)).progress(&pods) else { panic!("not said") };
    assert!(what.starts_with("updateStrategy OnDelete: the StatefulSet controller replaces no pod by itself; pod(s) db-0 db-1 still run"), "{what}");
    assert!(what.ends_with("(kubectl delete pod db-0 db-1)"), "{what}");
    // The user deleted db-1: while it comes back it is waited for; then only db-0 is named.
    assert_eq!(kind_of(&stateful_set(on_delete.clone(), status(1, 1)).progress(&pods[..1])), "waiting");
    let pods = [pod("db-0", "db-old", "reg/db:old", true), pod("db-1", "db-new", "reg/db:new", true)];
    let Progress::Manual(what) = stateful_set(on_delete.clone(), status(2, 1)).progress(&pods) else { panic!("not said") };
    assert!(what.contains("pod(s) db-0 still run"), "{what}");
    // A first install with OnDelete creates its pods from the template: a rollout like any other.
    let fresh = json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "db-new", "updateRevision": "db-new"});
    assert_eq!(kind_of(&stateful_set(on_delete, fresh).progress(&[])), "done");
}

/// A DaemonSet is done when a pod is updated and available on every node that should run one.
#[test]
fn a_daemon_set_rolls_until_every_node_runs_an_updated_available_pod() {
    let status = |observed: i64, updated: i32, available: i32| {
        json!({"observedGeneration": observed, "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0,
            "numberReady": available, "numberAvailable": available, "updatedNumberScheduled": updated})
    };
    let cases = [
        ("not observed", status(1, 1, 1), "waiting"),
        ("old pod still there", status(2, 0, 1), "waiting"),
        ("new pod not available", status(2, 1, 0), "waiting"),
        ("done", status(2, 1, 1), "done"),
    ];
    for (name, s, want) in cases {
        assert_eq!(kind_of(&daemon_set("RollingUpdate", s).progress(&[])), want, "{name}");
    }
    assert_eq!(daemon_set("RollingUpdate", status(2, 1, 0)).progress(&[]), Progress::Waiting("1/1 pods updated, 0 available".into()));
    assert_eq!(daemon_set("RollingUpdate", status(2, 1, 1)).describe(), "template image reg/agent:new; 1 desired, 1 updated, 1 ready, 1 available");
    let old = [pod("agent-x", "h1", "reg/agent:old", true)];
    let Progress::Manual(what) = daemon_set("OnDelete", status(2, 0, 1)).progress(&old) else { panic!("not said") };
    assert!(what.starts_with("updateStrategy OnDelete: the DaemonSet controller replaces no pod by itself; pod(s) agent-x still run"), "{what}");
}

/// After a rollback, the pods of the failed template that never became Ready are the ones a StatefulSet's
/// controller would wait for forever; not before it has seen the reverted template.
#[test]
fn stuck_pods_are_the_unready_ones_off_the_reverted_revision() {
    let st = |observed: i64| {
        let Workload::StatefulSet(s) = stateful_set(
            json!({"type": "RollingUpdate"}),
            json!({"observedGeneration": observed, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1, "currentRevision": "db-old", "updateRevision": "db-old"}),
        ) else {
            unreachable!()
        };
        s
    };
    let pods = [pod("db-0", "db-old", "reg/db:old", true), pod("db-1", "db-bad", "reg/db:bad", false), pod("db-2", "db-bad", "reg/db:bad", true)];
    assert_eq!(stuck_pods(&st(2), &pods), ["db-1"]);
    let mut other = pod("web-1", "db-bad", "reg/web:1", false);
    other.metadata.owner_references = None;
    assert!(stuck_pods(&st(2), &[other]).is_empty(), "a pod the StatefulSet does not own is not its to delete");
    assert!(stuck_pods(&st(1), &pods).is_empty(), "the controller has not seen the reverted template yet");
}

fn job(completions: i32, status: serde_json::Value) -> Workload {
    Workload::Job(
        serde_json::from_value(json!({
            "metadata": {"name": "task", "generation": 1},
            "spec": {"completions": completions, "backoffLimit": 0, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "reg/task:new"}]}}},
            "status": status
        }))
        .unwrap(),
    )
}

fn ended(name: &str, created: &str, code: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"containers": [{"name": "task", "image": "reg/task:new"}]},
        "status": {"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{"name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}}]}
    }))
    .unwrap()
}

/// A Job waits for its completions; it succeeded once they did and nothing runs, or its controller says
/// Complete; it failed when its controller says Failed, told with its last failed pod and how that ended.
#[test]
fn a_job_is_complete_after_its_completions_and_failed_with_its_last_failed_pod() {
    let running = job(2, json!({"active": 1, "succeeded": 1}));
    assert_eq!(running.progress(&[]), Progress::Waiting("1/2 completions, 1 running, 0 failed".into()));
    assert!(running.observed(), "a Job is made anew: nothing to observe");
    assert_eq!(running.selector_labels(), BTreeMap::from([("batch.kubernetes.io/controller-uid".to_string(), "u1".to_string())]));
    assert_eq!(job(2, json!({"active": 0, "succeeded": 2})).progress(&[]), Progress::Complete { succeeded: 2 });
    let complete = job(1, json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    assert_eq!(complete.progress(&[]), Progress::Complete { succeeded: 1 });
    assert_eq!(complete.describe(), "template image reg/task:new; 1/1 completions, 0 running, 0 failed, complete");
    // A retry still running after a failed pod: the Job decides (backoffLimit), not devloop.
    assert_eq!(kind_of(&job(1, json!({"active": 1, "failed": 1})).progress(&[])), "waiting");

    let failed = job(1, json!({"failed": 2, "conditions": [
        {"type": "FailureTarget", "status": "True"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
    let pods = [ended("task-b", "2026-01-01T00:00:05Z", 1), ended("task-a", "2026-01-01T00:00:00Z", 2)];
    assert_eq!(
        failed.progress(&pods),
        Progress::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit; pod task-b: container task exited with code 1 (Error)".into(),
            pod: Some("task-b".into()),
            container: Some("task".into()),
        },
        "the last one that failed"
    );
    assert!(failed.describe().ends_with("0/1 completions, 0 running, 2 failed, failed (BackoffLimitExceeded)"), "{}", failed.describe());
}

/// A bare Pod is done once Running and Ready, waited for before; one that failed says how its container ended.
#[test]
fn a_bare_pod_is_done_when_running_and_ready() {
    let bare = |status: serde_json::Value| {
        Workload::Pod(serde_json::from_value(json!({"metadata": {"name": "solo", "labels": {"app": "solo"}},
            "spec": {"containers": [{"name": "web", "image": "reg/solo:new"}]}, "status": status})).unwrap())
    };
    assert_eq!(bare(json!({"phase": "Pending"})).progress(&[]), Progress::Waiting("the pod is Pending".into()));
    let not_ready = bare(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}));
    assert_eq!(kind_of(&not_ready.progress(&[])), "waiting");
    let ready = bare(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
    assert_eq!(ready.progress(&[]), Progress::Done { ready: 1 });
    assert_eq!(ready.describe(), "template image reg/solo:new; Running, ready, 0 restarts");
    assert_eq!(ready.selector_labels(), BTreeMap::from([("app".to_string(), "solo".to_string())]), "its own labels");
    let Progress::Failed { message, container, .. } = bare(serde_json::to_value(ended("solo", "2026-01-01T00:00:00Z", 3).status).unwrap()).progress(&[]) else {
        panic!("not failed")
    };
    assert_eq!((message.as_str(), container.as_deref()), ("container task exited with code 3 (Error)", Some("task")));
}
