//! `devloop up`'s live update: when a batch may close early ([`closes_early`]), carrying out
//! [`decide::Action::Sync`] (files read once, into the tar and the hasher's tree; one script into each run
//! the core named, every pod in parallel), feeding the core the namespace's pods ([`feed_pods`]), and
//! replacing pods a rollout left running files synced earlier.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};

use super::decide::{self, Event, Incarnation, PodChange, PodFacts};
use super::up::Ctx;
use crate::cluster::pods::{Change, Reflector};
use crate::filter::Filter;
use crate::sync::{self, exec::Outcome};

/// Tells the core every change to the namespace's pods, as its one pod watch sees them, until `cancel`:
/// the core keeps which containers run each image and what was synced into each.
pub(super) async fn feed_pods(pods: Arc<Reflector>, events: tokio::sync::mpsc::Sender<Event>, cancel: tokio_util::sync::CancellationToken) {
    let mut changes = pods.subscribe();
    let all = |list: Vec<Arc<Pod>>| PodChange::All(list.iter().filter_map(|p| PodFacts::of(p)).collect());
    let mut next = Some(all(pods.pods().await));
    loop {
        if let Some(change) = next.take() {
            if events.send(Event::Pods { change, at: Instant::now() }).await.is_err() {
                return;
            }
        }
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            c = changes.recv() => c,
        };
        next = match change {
            Ok(Change::Applied(p)) => PodFacts::of(&p).map(PodChange::Applied),
            Ok(Change::Deleted(p)) => p.metadata.uid.clone().map(PodChange::Deleted),
            // A relist, or fell behind: the store has every pod as it is now (and not those gone meanwhile).
            Ok(Change::Listed) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(all(pods.now())),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
    }
}

/// Whether a batch may close after [`crate::watch::QUICK`] instead of the full debounce: every path of it
/// is one a sync rule covers (it is likely a sync, where the debounce would be most of the wait), and is
/// there (a path missing may be the middle of an editor's rename-over save). Anything else — a path no rule
/// covers, the Dockerfile, an ignore file, the config, a delete — waits the full debounce.
pub(super) fn closes_early(ctx: &Ctx, batch: &crate::watch::Batch) -> bool {
    if ctx.no_sync || batch.config || batch.everything || !batch.outside.is_empty() || batch.images.is_empty() {
        return false;
    }
    let cfg = ctx.config();
    batch.images.iter().all(|(image, scope)| {
        let (Some(img), crate::watch::Scope::Paths(paths)) = (cfg.image(image), scope) else { return false };
        !paths.is_empty()
            && paths.iter().all(|p| crate::config::sync_route(&img.sync, p).is_some() && std::fs::symlink_metadata(img.context.join(p)).is_ok())
    })
}

/// Syncs `paths` into the containers of the runs `into` (`replay`: the synced set into runs that lack it)
/// and reports the result to the core. A sync that is not a replay first puts what it read into the hasher's
/// tree and reports the content tag ([`Event::Hashed`]), before sending: the tag describes the bytes the pods
/// receive.
pub(super) async fn sync_worker(ctx: Arc<Ctx>, image: String, paths: BTreeSet<String>, into: Vec<Incarnation>, replay: bool, filter: Arc<Filter>) {
    let started = Instant::now();
    // Dropping the sync on timeout drops its exec streams, which ends them in the containers' runtimes.
    let result = tokio::time::timeout(sync::TIMEOUT, run(&ctx, &image, &paths, &into, replay, filter)).await.unwrap_or(Err(sync::Error::Timeout));
    let ev = match result {
        Ok((files, deleted, missed)) => Event::Synced { image, files, deleted, missed, took: started.elapsed(), at: Instant::now() },
        Err(e) => Event::SyncFailed { unsupported: e.unsupported(), skipped: e.skipped(), image, error: e.to_string(), at: Instant::now() },
    };
    let _ = ctx.events.send(ev).await;
}

/// Reads `paths` into what a sync sends and, for a sync to every pod (`hash`), puts what it read into the
/// image's kept tree: Some(the content tag). The tree must be the one the core's last hash left, judged by
/// the same filter; else (a failed hash dropped it) the sync is skipped and the image built.
fn prepare(ctx: &Ctx, img: &crate::config::Image, paths: &BTreeSet<String>, filter: &Arc<Filter>, hash: bool) -> Result<(sync::Prepared, Option<String>), sync::Error> {
    if !hash {
        return sync::prepare(&img.sync, &img.context, filter, paths).map(|p| (p, None));
    }
    let kept = ctx.kept(&img.name);
    let mut kept = kept.lock().expect("not poisoned");
    let kept = &mut *kept;
    let (Some(tree), Some(true)) = (kept.tree.as_mut(), kept.filter.as_ref().map(|f| Arc::ptr_eq(f, filter))) else {
        return Err(sync::Error::Tag("the hasher's tree is not at hand (a hash failed, or the filter changed)".into()));
    };
    let p = sync::prepare(&img.sync, &img.context, filter, paths)?;
    let tagged = tree.apply(&img.context, filter, &p.judged, &p.read).and_then(|()| tree.tag(img));
    match tagged {
        Ok(tag) => Ok((p, Some(tag))),
        Err(e) => {
            // Half applied: dropped, so the next hash scans afresh.
            kept.tree = None;
            Err(sync::Error::Tag(e.to_string()))
        }
    }
}

/// (entries sent, paths deleted, the runs that went away before they got it). A sync is done only when
/// every run the core named has it, or is gone: a sync to every run that reached none is an error (the core
/// builds instead); a replay's run that is gone will be replayed into again if it runs again.
async fn run(ctx: &Arc<Ctx>, image: &str, paths: &BTreeSet<String>, into: &[Incarnation], replay: bool, filter: Arc<Filter>) -> Result<(usize, usize, Vec<Incarnation>), sync::Error> {
    let cfg = ctx.config();
    if cfg.image(image).is_none() {
        return Ok((0, 0, Vec::new()));
    }
    let t0 = Instant::now();
    let (c, cfg, name, paths, f, hash) = (ctx.clone(), cfg.clone(), image.to_string(), paths.clone(), filter.clone(), !replay);
    let (prepared, content) = tokio::task::spawn_blocking(move || prepare(&c, cfg.image(&name).expect("looked up above"), &paths, &f, hash))
        .await
        .map_err(|e| sync::Error::Exec { pod: String::new(), message: e.to_string() })??;
    tracing::debug!(image, files = prepared.files, bytes = prepared.tar.len(), hashed = content.is_some(), took_us = t0.elapsed().as_micros() as u64, "sync: read and tagged");
    if let Some(tag) = content {
        let _ = ctx.events.send(Event::Hashed { image: image.to_string(), tag, filter: decide::Hashed(filter), took: t0.elapsed() }).await;
    }
    // Sessions into pods that are gone are closed (the watch sees the whole namespace).
    ctx.sessions.retain(&ctx.pods().now().iter().filter_map(|p| p.metadata.name.clone()).collect()).await;
    let jobs = into.iter().map(|run| {
        let prepared = &prepared;
        async move { (run, ctx.sessions.sync(&ctx.target, &run.pod, &run.container, prepared).await) }
    });
    let results = futures::future::join_all(jobs).await;
    let (mut missed, mut touched) = (Vec::new(), BTreeSet::new());
    let mut failed = None;
    for (run, r) in results {
        let pod = &run.pod;
        match r {
            Ok(Outcome::Done) => {
                touched.insert(pod.clone());
            }
            Ok(Outcome::Gone) => missed.push(run.clone()),
            Err(e) => {
                // It may hold part of the sync: marked all the same, so a rollout to the same tag replaces it.
                touched.insert(pod.clone());
                failed = failed.or(Some(e));
            }
        }
    }
    // Marked, off the sync's path, so that no later rollout leaves them running what no image holds.
    tokio::spawn(mark(ctx.clone(), touched));
    match failed {
        Some(e) => Err(e),
        // Every run went away meanwhile: nothing has it.
        None if missed.len() == into.len() && !replay => Err(sync::Error::NoTakers),
        None => Ok((prepared.files, prepared.deletes.len(), missed)),
    }
}

/// After a rollout: a session opened into every container running `reference`, so the first save after it
/// is as fast as the next ones. Read from the pod watch's store, which has the rollout's pods by now (the
/// core's copy of it may be a moment behind); a container missed here gets its session at its first sync.
pub(super) async fn warm(ctx: Arc<Ctx>, reference: String) {
    let pods = ctx.pods().pods().await;
    let runs: Vec<Incarnation> = pods.iter().filter_map(|p| PodFacts::of(p)).flat_map(|p| p.running(&reference).map(|(run, _)| run).collect::<Vec<_>>()).collect();
    let opens = runs.iter().map(|run| ctx.sessions.warm(&ctx.target, &run.pod, &run.container));
    futures::future::join_all(opens).await;
}

/// The annotation on a pod that runs files synced on top of its image.
pub(super) const SYNCED: &str = "devloop.dev/synced";

/// Annotates the synced pods (the time of the last sync): `kubectl get pod -o yaml` tells, and a later
/// rollout that leaves such a pod in place replaces it.
async fn mark(ctx: Arc<Ctx>, pods: BTreeSet<String>) {
    let api: Api<Pod> = Api::namespaced(ctx.target.client.clone(), &ctx.target.namespace);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {SYNCED: now}}});
    for pod in pods {
        if let Err(e) = api.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!("annotating synced pod {pod}: {e}");
        }
    }
}

/// After a rollout: a Ready pod running `reference` and marked synced holds files its image does not (the
/// rollout did not replace it: the same tag as before, e.g. an earlier `up` left it synced). Delete it; its
/// Deployment replaces it from the image.
pub(super) async fn replace_stale(ctx: Arc<Ctx>, image: String, reference: String) {
    let api: Api<Pod> = Api::namespaced(ctx.target.client.clone(), &ctx.target.namespace);
    // The namespace's one pod watch (its first listing awaited): the pods as they are now.
    for p in ctx.target.pods().pods().await {
        let marked = p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(SYNCED));
        let runs_it = PodFacts::of(&p).is_some_and(|f| f.containers.iter().any(|c| c.image == reference));
        if !marked || p.metadata.deletion_timestamp.is_some() || !runs_it {
            continue;
        }
        let Some(name) = p.metadata.name.clone() else { continue };
        let what = match api.delete(&name, &Default::default()).await {
            Ok(_) => "deleted; its Deployment replaces it from the image".to_string(),
            Err(e) => format!("could not delete it ({e}): delete it by hand"),
        };
        ctx.out.line(&image, "synced-stale", &format!("pod {name} runs files synced earlier, which its image does not hold: {what}"));
    }
}
