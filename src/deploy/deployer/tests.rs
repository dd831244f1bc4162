use super::*;

/// Two images: `web` applies a manifest set and installs a release; `api` shares that manifest set and
/// patches a Deployment; `worker` applies a kustomization.
fn deployers() -> Deployers {
    let text = r#"
[registry]
host = "reg:5000"
[[image]]
name = "web"
context = "."
[[image]]
name = "api"
context = "."
[[image]]
name = "worker"
context = "."
[[deploy]]
image = "web"
manifests = ["k8s/*.yaml"]
[[deploy]]
image = "web"
helm = { chart = "chart", release = "web" }
[[deploy]]
image = "api"
manifests = ["k8s/*.yaml"]
[[deploy]]
image = "api"
deployment = "api"
rollback-on-failure = true
[[deploy]]
image = "worker"
kustomize = "overlays/dev"
"#;
    let cfg = crate::config::parse(std::path::Path::new("/p/devloop.toml"), text).expect("a good config");
    Deployers::of(&cfg)
}

fn names(list: &[Deployer]) -> Vec<String> {
    list.iter().map(Deployer::key).collect()
}

#[test]
fn cleanup_removes_what_was_started_once_each_helm_first() {
    let d = deployers();
    assert!(d.started().is_empty(), "nothing deployed, nothing to clean up");
    d.note("api");
    assert_eq!(names(&d.started()), ["manifests Files([\"k8s/*.yaml\"])"], "a patched Deployment is not devloop's to delete");
    d.note("web");
    d.note("api");
    assert_eq!(names(&d.started()), ["helm web", "manifests Files([\"k8s/*.yaml\"])"], "the shared manifest set once");
    // A reloaded config keeps the record of what the session started.
    let reloaded = deployers().after(&d);
    reloaded.note("worker");
    assert_eq!(
        names(&reloaded.started()),
        ["helm web", "manifests Files([\"k8s/*.yaml\"])", "manifests Kustomize(\"overlays/dev\")"]
    );
}

#[test]
fn down_cleans_up_every_deployer_once_in_config_order() {
    let d = deployers();
    let keys: Vec<String> = d.distinct().into_iter().map(Deployer::key).collect();
    assert_eq!(keys, ["manifests Files([\"k8s/*.yaml\"])", "helm web", "patch api", "manifests Kustomize(\"overlays/dev\")"]);
}

#[test]
fn a_crash_rolls_back_where_a_failed_rollout_would() {
    let d = deployers();
    assert!(d.rolls_back("web"), "a Helm release always has its previous revision");
    assert!(d.rolls_back("api"), "rollback-on-failure on the patch");
    assert!(!d.rolls_back("worker"), "manifests: nothing but the files to go back to");
    assert_eq!(d.patched().collect::<Vec<_>>(), ["api"]);
}

#[test]
fn a_failed_rollout_is_described_with_where_it_shows() {
    let f = Failure {
        pod: Some("p".into()),
        container: Some("web".into()),
        reason: "Exited".into(),
        message: "exited with code 3".into(),
        previous_logs: false,
        logs: vec!["boom".into()],
    };
    let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
    let r = Rolled::of(Workload::Deployment, "web", &["reg:5000/web:t".into()], labels.clone(), &Verdict::Failed(f.clone()));
    assert_eq!(r.failure.as_deref(), Some("Exited (pod p, container web): exited with code 3"));
    assert_eq!((&r.selector, r.refs.as_slice()), (&labels, ["reg:5000/web:t".to_string()].as_slice()));
    let mut out = Vec::new();
    assert!(!report(&mut out, "web", "deployment ns/web", Instant::now(), &Verdict::Failed(f)));
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("web: rollout of deployment ns/web FAILED after "), "{out}");
    assert!(out.ends_with(": Exited (pod p, container web): exited with code 3\nweb:   last log lines:\nweb:     boom\n"), "{out}");
}

/// A StatefulSet with `updateStrategy: OnDelete` is not rolled by its controller: the deploy says what it
/// waits for and does not count it failed (nothing to roll back); lines and the status name its kind.
#[test]
fn a_rollout_waiting_for_the_user_is_said_not_failed() {
    let v = Verdict::Manual("updateStrategy OnDelete: … until you delete them (kubectl delete pod db-0)".into());
    let r = Rolled::of(Workload::StatefulSet, "db", &["reg:5000/db:t".into()], Default::default(), &v);
    assert_eq!(r.failure, None);
    assert_eq!((r.what("ns"), r.shown()), ("statefulset ns/db".to_string(), "statefulset/db".to_string()));
    let web = Rolled { name: "web".into(), ..Default::default() };
    assert_eq!(web.shown(), "web", "a Deployment by its name, as [[port-forward]] names it");
    let mut out = Vec::new();
    assert!(report(&mut out, "db", "statefulset ns/db", Instant::now(), &v));
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("db: statefulset ns/db: template updated after "), "{out}");
    assert!(out.ends_with("s, pods not rolled: updateStrategy OnDelete: … until you delete them (kubectl delete pod db-0)\n"), "{out}");
}

/// A chart that writes the tag its own way (no digest) runs the same build: the pods are known by what it
/// rendered. Another image that happens to have the same tag is not it.
#[test]
fn the_pods_run_the_reference_or_a_chart_s_rendering_of_the_same_build() {
    let rolled = |refs: &[&str]| Deployed {
        ok: true,
        rolled: vec![Rolled { name: "bb".into(), refs: refs.iter().map(|s| s.to_string()).collect(), ..Default::default() }],
        undo: vec![],
    };
    let r = "reg:5000/u/bulletin-board:h-kiamol@sha256:1";
    assert_eq!(rolled(&[r]).runs("u/bulletin-board", r), r);
    assert_eq!(rolled(&["reg:5000/u/bulletin-board:h-kiamol"]).runs("u/bulletin-board", r), "reg:5000/u/bulletin-board:h-kiamol");
    assert_eq!(rolled(&["reg:5000/other:h-kiamol"]).runs("u/bulletin-board", r), r);
    assert_eq!(rolled(&["reg:5000/u/bulletin-board:h-kiamol-kiamol"]).runs("u/bulletin-board", r), r);
    assert_eq!(Deployed::default().runs("u/bulletin-board", r), r, "nothing rolled");
}
