//! The namespace's pods as the core knows them, fed by the one pod watch ([`Event::Pods`]): which containers
//! run each image's deployed reference — each run apart (pod uid, container, restart count) — and which of
//! those runs hold the files synced on top of the image. A sync goes to the runs the core names, and a run
//! of the deployed reference that lacks the synced set (a scale-up, a replaced pod, a restarted container:
//! its files are the image's again) gets the set replayed ([`live`]).

use super::*;
pub use crate::cluster::pods::{Incarnation, PodFacts};

/// What the pod watch saw.
#[derive(Debug, Clone, PartialEq)]
pub enum PodChange {
    /// A pod was created or changed.
    Applied(PodFacts),
    /// The pod with this uid is gone.
    Deleted(String),
    /// Every pod, as a (re)listing found them: a pod not among them is gone.
    All(Vec<PodFacts>),
}

/// The pods of the namespace now, by uid.
#[derive(Debug, Default)]
pub(super) struct Pods {
    by_uid: BTreeMap<String, PodFacts>,
}

impl Pods {
    fn apply(&mut self, change: PodChange) {
        match change {
            PodChange::Applied(p) => {
                self.by_uid.insert(p.uid.clone(), p);
            }
            PodChange::Deleted(uid) => {
                self.by_uid.remove(&uid);
            }
            PodChange::All(pods) => self.by_uid = pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
        }
    }

    /// The runs of `reference` now, Ready or not, by pod and container name.
    pub(super) fn running(&self, reference: &str) -> Vec<Incarnation> {
        self.runs(reference).map(|(run, _)| run).collect()
    }

    /// The same, with their containers' facts.
    pub(super) fn runs<'a>(&'a self, reference: &'a str) -> impl Iterator<Item = (Incarnation, &'a crate::cluster::pods::ContainerFacts)> + 'a {
        let mut pods: Vec<&PodFacts> = self.by_uid.values().collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods.into_iter().flat_map(move |p| p.running(reference))
    }

    /// Every container whose spec asks for `reference`, running or not (a crash-looping one too), by pod
    /// name: (pod, its facts).
    pub(super) fn of_reference<'a>(&'a self, reference: &'a str) -> impl Iterator<Item = (&'a PodFacts, &'a crate::cluster::pods::ContainerFacts)> + 'a {
        let mut pods: Vec<&PodFacts> = self.by_uid.values().collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods.into_iter().flat_map(move |p| p.of_reference(reference).map(move |c| (p, c)))
    }

    /// Whether `run` still runs: its pod is there, not going away, and its container has not restarted
    /// since (a restart is another run, from the image).
    fn current(&self, run: &Incarnation) -> bool {
        self.by_uid.get(&run.uid).is_some_and(|p| !p.deleting && p.containers.iter().any(|c| c.name == run.container && c.running && c.restarts == run.restarts))
    }
}

/// The pods changed: every image forgets the runs that ended, and the runs of its deployed reference that
/// lack its synced set get it.
pub(super) fn changed(state: &mut State, change: PodChange, at: Instant, out: &mut Vec<Action>) {
    state.pods.apply(change);
    let State { images, pods, .. } = state;
    let mut lacking = Vec::new();
    for (image, s) in images.iter_mut() {
        s.live.holds.retain(|run| pods.current(run));
        s.live.missed.retain(|run| pods.current(run));
        if live::lacking(s, pods).next().is_some() {
            lacking.push(image.clone());
        }
    }
    for image in lacking {
        live::replay(state, image, at, out);
    }
}
