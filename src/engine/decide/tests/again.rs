//! The core's answers to failures: a retry of a build with no server, the rollback of a failed rollout.

use super::*;

/// BuildKit or the registry down: the core, not the worker, decides the next try and its backoff; a newer
/// change still supersedes the build waiting to be retried, and a build that finally runs starts afresh.
#[test]
fn a_build_with_no_server_is_retried_with_doubling_waits_until_superseded() {
    let mut s = State::default();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1")]);
    let deferred = |tag: &str| Event::BuildDeferred { image: "app".into(), tag: tag.into(), error: "BuildKit is unreachable at unix:///b".into() };
    let mut waits = Vec::new();
    for _ in 0..7 {
        let a = step(&mut s, deferred("t1"));
        let Some(Action::Build { tag, after, .. }) = a.iter().find(|a| matches!(a, Action::Build { .. })) else { panic!("{a:?}") };
        assert_eq!(tag, "t1");
        assert!(a.iter().any(|a| matches!(a, Action::Report(Report::Retrying { after: said, .. }) if said == after)), "{a:?}");
        waits.push(after.as_secs());
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32]);
    // A newer tag supersedes it; the old tag's late deferral is not retried.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]), ["hash app", "cancel app", "build app t2"]);
    assert_eq!(run(&mut s, vec![deferred("t1")]), Vec::<String>::new());
    // The new build's own first retry waits 1 s again, and once it builds, it deploys.
    let a = step(&mut s, deferred("t2"));
    assert!(a.iter().any(|a| matches!(a, Action::Build { after, .. } if *after == Duration::from_secs(1))), "{a:?}");
    assert_eq!(run(&mut s, vec![built("app", "t2")]), ["deploy app t2"]);
}

/// A failed rollout of `image` at `tag` whose deployers say how to undo it (a patch's previous image).
fn failed_undoable(image: &str, tag: &str, at: Instant) -> Event {
    let undo = crate::deploy::deployer::Undo::Image {
        image: image.into(),
        deployment: image.into(),
        container: "web".into(),
        previous: format!("reg/{image}:t1"),
        timeout: Duration::from_secs(60),
    };
    Event::RolledOut {
        image: image.into(),
        tag: tag.into(),
        ok: false,
        took: Duration::from_secs(1),
        at,
        pod: PodStages::default(),
        reference: format!("reg/{image}:{tag}"),
        error: None,
        reason: Some("Exited (pod p, container web): exited with code 3".into()),
        undo: vec![undo],
    }
}
fn undone(image: &str, tag: &str, at: Instant) -> Event {
    Event::Undone { image: image.into(), tag: tag.into(), ok: true, at }
}

/// The core decides the rollback of a failed rollout: once the failure is reported, the rollback is the
/// image's one rollout (a build done meanwhile waits for it, then rolls out); a rollout nobody can undo is
/// only reported.
#[test]
fn a_failed_rollout_is_rolled_back_by_the_core_where_its_deployers_can_and_what_comes_meanwhile_waits() {
    let t0 = Instant::now();
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]);
    let a = step(&mut s, failed_undoable("app", "t2", t0));
    assert_eq!(acts(&a), ["roll back app t2"]);
    assert!(matches!(reports(&a).as_slice(), [Report::RolloutFailed { tag, .. }] if tag == "t2"), "the failure is said first: {a:?}");
    assert!(s.busy(), "the rollback is a rollout");
    // A save meanwhile is built, and rolls out only once the rollback is done.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t3"), built("app", "t3")]), ["hash app", "build app t3"]);
    assert_eq!(run(&mut s, vec![rolled("app", "t2", false)]), Vec::<String>::new(), "a late result of the failed rollout changes nothing");
    let a = step(&mut s, undone("app", "t2", t0 + Duration::from_secs(5)));
    assert_eq!(acts(&a), ["deploy app t3"]);
    assert!(reports(&a).is_empty(), "the rollback's own lines said it: {a:?}");
    assert_eq!(step(&mut s, undone("app", "t2", t0)), vec![], "once");
    assert_eq!(s.references()["app"], "reg/app:t1", "what runs is still the last good rollout's");

    // Nothing to undo with (manifests, no rollback-on-failure): reported, and the next save goes ahead.
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]);
    assert_eq!(run(&mut s, vec![rolled("app", "t2", false)]), Vec::<String>::new());
    assert!(!s.busy());
}

/// A rollout that was itself the rollback after a crash is not undone when it fails: that would put back
/// the tag that crashed.
#[test]
fn a_failed_rollback_after_a_crash_is_not_undone() {
    let t0 = Instant::now();
    let mut s = t2_rolled_out_at(t0);
    assert_eq!(run(&mut s, vec![crashed("app", "t2", t0 + Duration::from_secs(3), true)]), ["deploy app t1"]);
    let a = step(&mut s, failed_undoable("app", "t1", t0 + Duration::from_secs(9)));
    assert_eq!(acts(&a), Vec::<String>::new(), "{a:?}");
    assert!(!s.busy());
}

/// The API server down during a rollout: the core decides the next try (doubling, at most 16 s) with the same
/// tag and digest; the image stays busy meanwhile (a build done then waits), and the rollout that gets through
/// ends it as any rollout.
#[test]
fn a_deploy_with_no_api_server_is_retried_by_the_core_and_what_comes_meanwhile_waits() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]);
    let deferred = |tag: &str| Event::DeployDeferred { image: "app".into(), tag: tag.into(), error: "the API server is unreachable (connection refused)".into() };
    let mut waits = Vec::new();
    for _ in 0..6 {
        let a = step(&mut s, deferred("t2"));
        let Some(Action::Deploy { tag, digest, after, .. }) = a.iter().find(|a| matches!(a, Action::Deploy { .. })) else { panic!("{a:?}") };
        assert_eq!((tag.as_str(), digest.as_str()), ("t2", "sha256:t2"));
        assert!(matches!(reports(&a).as_slice(), [Report::Retrying { after: said, .. }] if said == after), "{a:?}");
        waits.push(after.as_secs());
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 16]);
    assert!(s.busy());
    // A save meanwhile is built, and waits for the rollout; a deferral of another tag is not retried.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t3"), built("app", "t3")]), ["hash app", "build app t3"]);
    assert_eq!(run(&mut s, vec![deferred("t3")]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![rolled("app", "t2", true)]), ["deploy app t3"]);
    // The next rollout's first retry waits 1 s again.
    let a = step(&mut s, deferred("t3"));
    assert!(a.iter().any(|a| matches!(a, Action::Deploy { after, .. } if *after == Duration::from_secs(1))), "{a:?}");
}
