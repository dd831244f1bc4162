//! Which pod a forward's new connections go to, and which pods it probes, as a pure function of what the pod
//! watch says and of which pods' ports answered a probe: unit-tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// What the choice knows of one pod of the forwarded workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its uid (a StatefulSet's pod replaced under the same name is another pod).
    pub uid: String,
    /// Its name.
    pub name: String,
    /// When it was created, as the API server writes it (RFC 3339: sorts as text).
    pub created: String,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It is being deleted.
    pub deleting: bool,
    /// It is on a node: the kubelet's port-forward reaches its network as soon as its sandbox exists, before
    /// its containers run and before the pod's status says so (its IP comes with the kubelet's next relist,
    /// up to a second later, with the container running).
    pub scheduled: bool,
    /// The restarts of its containers, summed: a restart closes the port a probe found answering.
    pub restarts: i32,
}

impl Candidate {
    /// The facts of `p`; none for a pod without a name (not one the API server returned).
    pub fn of(p: &Pod) -> Option<Candidate> {
        let name = p.metadata.name.clone()?;
        let status = p.status.as_ref();
        Some(Candidate {
            uid: p.metadata.uid.clone().unwrap_or_else(|| name.clone()),
            name,
            created: p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            ready: status.and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            deleting: p.metadata.deletion_timestamp.is_some(),
            scheduled: p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty()),
            restarts: status.and_then(|s| s.container_statuses.as_ref()).map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum()),
        })
    }
}

/// The pods whose forwarded port answered a probe: uid → the restarts it had then.
pub type Answered = BTreeMap<String, i32>;

/// Where new connections go, and which pods to probe meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Choice {
    /// The pod new connections go to.
    pub pod: Option<String>,
    /// The pods (uid, name) to probe: newer than the pick, not serving yet, reachable.
    pub probe: Vec<(String, String)>,
}

/// Whether a forward moves to a new pod once its port answers (`devloop up`), or only once it is Ready
/// (`devloop check`, which has waited for the rollout anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Once the new pod's port answers a probe.
    Answering,
    /// Once the new pod is Ready.
    Ready,
}

/// Drops what a probe found that no longer holds, or no longer matters: a pod gone, or restarted since
/// (its port closed with it), or Ready now (its readiness probe says from now on, so a pod that turns
/// un-Ready later is left as Ready pods are).
pub fn forget(answered: &mut Answered, pods: &[Candidate]) {
    answered.retain(|uid, restarts| pods.iter().any(|p| &p.uid == uid && p.restarts == *restarts && !p.ready && !p.deleting));
}

/// New connections go to the newest pod that is not going away and serves: Ready, or (with
/// [`Switch::Answering`]) its port answered; else to the newest one going away that is still Ready. So the
/// old pod keeps serving until the new one answers, and if the old one goes first the newest Ready or
/// answering one takes over. Probed meanwhile: every pod newer than that pick (every pod, when there is none
/// or it is going away) that is not going away, does not serve yet and is on a node.
pub fn choose(pods: &[Candidate], answered: &Answered, switch: Switch) -> Choice {
    let serves = |p: &Candidate| p.ready || (switch == Switch::Answering && answered.get(&p.uid) == Some(&p.restarts));
    let live = || pods.iter().filter(|p| !p.deleting);
    // Ties (two pods created within the same second) go to the later in the watch's order, as before.
    let newest = |ps: &mut dyn Iterator<Item = &'_ Candidate>| ps.max_by(|a, b| a.created.cmp(&b.created)).cloned();
    // With none, a pod going away that is still Ready: it serves until it stops (a StatefulSet's pod is
    // replaced, or a Deployment's under the Recreate strategy, before the new one exists).
    let pick = newest(&mut live().filter(|p| serves(p))).or_else(|| newest(&mut pods.iter().filter(|p| p.deleting && p.ready)));
    let pick = pick.as_ref();
    let probe = match switch {
        Switch::Ready => vec![],
        Switch::Answering => live()
            .filter(|p| !serves(p) && p.scheduled && pick.is_none_or(|k| k.deleting || (p.created >= k.created && p.uid != k.uid)))
            .map(|p| (p.uid.clone(), p.name.clone()))
            .collect(),
    };
    Choice { pod: pick.map(|p| p.name.clone()), probe }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod created at second `created`, on a node unless `scheduled` is false.
    fn pod(name: &str, created: u32, ready: bool, deleting: bool, scheduled: bool) -> Candidate {
        Candidate { uid: format!("u-{name}"), name: name.into(), created: format!("2026-01-01T00:00:{created:02}Z"), ready, deleting, scheduled, restarts: 0 }
    }

    fn answered(names: &[&str]) -> Answered {
        names.iter().map(|n| (format!("u-{n}"), 0)).collect()
    }

    fn probed(c: &Choice) -> Vec<&str> {
        c.probe.iter().map(|(_, n)| n.as_str()).collect()
    }

    #[test]
    fn the_old_pod_serves_until_the_new_one_answers_then_the_new_one_does() {
        let old = pod("old", 1, true, false, false);
        let created = pod("new", 5, false, false, false);
        let sandboxed = pod("new", 5, false, false, true); // scheduled: its sandbox may exist
        // (pods, answered, chosen, probed)
        type Case<'a> = (&'a [&'a Candidate], &'a [&'a str], Option<&'a str>, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[&old, &created], &[], Some("old"), &[]), // not on a node yet: nothing to reach
            (&[&old, &sandboxed], &[], Some("old"), &["new"]),
            (&[&old, &sandboxed], &["new"], Some("new"), &[]),
            (&[&old, &pod("new", 5, true, false, true)], &[], Some("new"), &[]), // Ready before any probe answered
            (&[&pod("old", 1, true, true, true), &sandboxed], &[], Some("old"), &["new"]), // the old one is going first, still Ready
            (&[&pod("old", 1, false, true, true), &sandboxed], &[], None, &["new"]), // …and stopped
            (&[&pod("old", 1, true, true, true), &sandboxed], &["new"], Some("new"), &[]),
            (&[&sandboxed], &[], None, &["new"]),
            (&[&old, &pod("older", 0, false, false, true)], &[], Some("old"), &[]), // an older un-Ready pod is not tried
            (&[&old, &sandboxed, &pod("newest", 7, false, false, true)], &["new"], Some("new"), &["newest"]),
            (&[&old, &pod("leaving", 7, false, true, true)], &[], Some("old"), &[]),
        ];
        for (pods, ans, want, want_probe) in cases {
            let pods: Vec<Candidate> = pods.iter().map(|p| (*p).clone()).collect();
            let c = choose(&pods, &answered(ans), Switch::Answering);
            assert_eq!((c.pod.as_deref(), probed(&c).as_slice()), (*want, *want_probe), "{pods:?} answered {ans:?}");
        }
    }

    #[test]
    fn waiting_for_ready_ignores_probes_and_probes_nothing() {
        let pods = [pod("old", 1, true, false, true), pod("new", 5, false, false, true)];
        let c = choose(&pods, &answered(&["new"]), Switch::Ready);
        assert_eq!((c.pod.as_deref(), c.probe.len()), (Some("old"), 0));
        let c = choose(&[pod("new", 5, false, false, true)], &answered(&["new"]), Switch::Ready);
        assert_eq!(c, Choice::default(), "no Ready pod: none, whatever answered");
        let c = choose(&[pod("old", 1, true, true, true), pod("older", 0, true, true, true)], &Answered::new(), Switch::Ready);
        assert_eq!(c.pod.as_deref(), Some("old"), "the newest pod going away that is still Ready, with no other");
    }

    #[test]
    fn an_answer_counts_until_the_pod_restarts_goes_away_or_is_ready() {
        let mut new = pod("new", 5, false, false, true);
        let old = pod("old", 1, true, false, true);
        let mut a = answered(&["new", "gone"]);
        forget(&mut a, &[old.clone(), new.clone()]);
        assert_eq!(a, answered(&["new"]), "a pod no longer watched is forgotten");
        new.restarts = 1;
        forget(&mut a, &[old.clone(), new.clone()]);
        assert!(a.is_empty(), "a restart closed the port that answered");
        assert_eq!(choose(&[old.clone(), new.clone()], &answered(&["new"]), Switch::Answering).pod.as_deref(), Some("old"), "an answer from before the restart");
        let mut a = Answered::from([("u-new".to_string(), 1)]);
        new.ready = true;
        forget(&mut a, &[old, new]);
        assert!(a.is_empty(), "Ready now: its readiness decides from here on");
    }
}
