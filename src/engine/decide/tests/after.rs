//! After a rollout succeeds: the core, not the deploy worker, says to replace the pods it left in place that
//! run files synced earlier, and to open the sync sessions when the image syncs.

use super::*;

fn replace_stale(actions: &[Action]) -> Vec<(String, String, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReplaceStale { image, reference, warm } => Some((image.clone(), reference.clone(), *warm)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_successful_rollout_replaces_stale_pods_and_warms_the_sessions_only_where_the_image_syncs() {
    // No sync rules (or --no-sync): stale pods are still replaced (an earlier `up` may have synced them),
    // no session is opened.
    let mut s = State::default();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1")]);
    assert_eq!(replace_stale(&step(&mut s, rolled("app", "t1", true))), [("app".to_string(), "reg/app:t1".to_string(), false)]);

    // With rules: both; a failed rollout: neither.
    let mut s = State::new(Rules::from([("app".to_string(), rules())]));
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1")]);
    assert_eq!(replace_stale(&step(&mut s, rolled("app", "t1", true))), [("app".to_string(), "reg/app:t1".to_string(), true)]);
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]);
    assert!(replace_stale(&step(&mut s, rolled("app", "t2", false))).is_empty());
}
