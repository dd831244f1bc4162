//! `devloop buildkit status`: whether a BuildKit answers (its workers and platforms, its version) and what
//! it has cached (Control.DiskUsage), for any address devloop can connect to; for a StatefulSet of
//! replicas, each replica's and which configured image builds where.

use std::io::Write;

use bollard_buildkit_proto::moby::buildkit::v1::{DiskUsageRequest, InfoRequest, ListWorkersRequest, UsageRecord};

use super::{connect, kube::Cluster, Error};
use crate::config;

/// What the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cache records.
    pub records: usize,
    /// Their total size in bytes.
    pub bytes: i64,
    /// Bytes that pruning could free (records neither in use nor shared).
    pub reclaimable: i64,
}

/// Sums DiskUsage records as `buildctl du` does: reclaimable are those not in use and not shared.
pub fn usage(records: &[UsageRecord]) -> Usage {
    let mut u = Usage { records: records.len(), ..Usage::default() };
    for r in records {
        u.bytes += r.size;
        if !r.in_use && !r.shared {
            u.reclaimable += r.size;
        }
    }
    u
}

/// Bytes in binary units, one decimal.
pub fn human(bytes: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Connects to `cfg.addr` and reports on `out`. Err when it does not answer. For a StatefulSet of replicas:
/// each replica (Ready or not, and what a Ready one says) and where each of `images` builds.
pub async fn status(cfg: &config::Buildkit, cluster: Cluster<'_>, images: &[String], out: &mut (dyn Write + Send)) -> Result<Usage, Error> {
    let mut client = connect(cfg, cluster).await?;
    let via = client.via.as_ref().and_then(|v| v.pod()).map(|v| format!(" ({v})")).unwrap_or_default();
    let Some(replicas) = client.replicas.clone() else {
        return report(&mut client, &cfg.addr, &format!("{} answers{via}", cfg.addr), "buildkit: ", out).await;
    };
    let all = replicas.list().await?;
    let ready = all.iter().filter(|r| r.ready).count();
    let _ = writeln!(out, "buildkit: {} answers: {}, {ready} of {} replica(s) Ready", cfg.addr, replicas.describe(), all.len());
    let mut total = Usage::default();
    for r in &all {
        let prefix = format!("buildkit: {}: ", r.name);
        if !r.ready {
            let _ = writeln!(out, "{prefix}not ready ({})", r.state);
            continue;
        }
        // A replica that answers the watch but not BuildKit's calls is said, and the others still listed.
        match report(&mut replicas.client(&r.name), &cfg.addr, "Ready", &prefix, out).await {
            Ok(u) => {
                total.records += u.records;
                total.bytes += u.bytes;
                total.reclaimable += u.reclaimable;
            }
            Err(e) => {
                let _ = writeln!(out, "{prefix}does not answer: {e}");
            }
        }
    }
    for image in images {
        let line = match super::replicas::choose(image, &all) {
            Some(p) if p.on == p.home => format!("buildkit: image {image} builds on {}", p.on),
            Some(p) => format!("buildkit: image {image} builds on {} while {} (its own) is not ready", p.on, p.home),
            None => format!("buildkit: image {image}: no replica is Ready"),
        };
        let _ = writeln!(out, "{line}");
    }
    Ok(total)
}

/// Asks `client` for its version, workers and cache, said on `out` after `prefix`; `first` opens the
/// version line.
async fn report(client: &mut super::Client, addr: &str, first: &str, prefix: &str, out: &mut (dyn Write + Send)) -> Result<Usage, Error> {
    let lost = |s: tonic::Status| Error::Unreachable { addr: addr.to_string(), reason: s.message().to_string() };
    let workers = client.control.list_workers(ListWorkersRequest::default()).await.map_err(lost)?.into_inner().record;
    // Info is newer than ListWorkers (BuildKit 0.11): an older daemon's version is left unsaid.
    let version = match client.control.info(InfoRequest {}).await {
        Ok(r) => r.into_inner().buildkit_version.map(|v| if v.revision.is_empty() { format!("BuildKit {}", v.version) } else { format!("BuildKit {} ({})", v.version, v.revision) }),
        Err(e) => {
            tracing::debug!("Control.Info: {}", e.message());
            None
        }
    };
    let _ = writeln!(out, "{prefix}{first}{}", version.map(|v| format!(": {v}")).unwrap_or_default());
    for w in &workers {
        let platforms: Vec<String> = w
            .platforms
            .iter()
            .map(|p| if p.variant.is_empty() { format!("{}/{}", p.os, p.architecture) } else { format!("{}/{}/{}", p.os, p.architecture, p.variant) })
            .collect();
        let snapshotter = w.labels.get("org.mobyproject.buildkit.worker.snapshotter").map(|s| format!(", snapshotter {s}")).unwrap_or_default();
        let _ = writeln!(out, "{prefix}worker {}: {}{snapshotter}", w.id, platforms.join(", "));
    }
    let records = client.control.disk_usage(DiskUsageRequest::default()).await.map_err(lost)?.into_inner().record;
    let u = usage(&records);
    let _ = writeln!(out, "{prefix}cache: {} in {} record(s), {} reclaimable", human(u.bytes), u.records, human(u.reclaimable));
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_and_counts_what_pruning_could_free() {
        let r = |size, in_use, shared| UsageRecord { size, in_use, shared, ..Default::default() };
        assert_eq!(usage(&[]), Usage::default());
        let u = usage(&[r(100, false, false), r(50, true, false), r(25, false, true)]);
        assert_eq!(u, Usage { records: 3, bytes: 175, reclaimable: 100 });
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
