//! `devloop buildkit status`: whether a BuildKit answers (its workers and platforms, its version) and what
//! it has cached (Control.DiskUsage), for any address devloop can connect to.

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

/// Connects to `cfg.addr` and reports on `out`. Err when it does not answer.
pub async fn status(cfg: &config::Buildkit, cluster: Cluster<'_>, out: &mut (dyn Write + Send)) -> Result<Usage, Error> {
    let mut client = connect(cfg, cluster).await?;
    let via = client.via.as_ref().and_then(|v| v.pod()).map(|v| format!(" ({v})")).unwrap_or_default();
    let lost = |s: tonic::Status| Error::Unreachable { addr: cfg.addr.clone(), reason: s.message().to_string() };
    let workers = client.control.list_workers(ListWorkersRequest::default()).await.map_err(lost)?.into_inner().record;
    // Info is newer than ListWorkers (BuildKit 0.11): an older daemon's version is left unsaid.
    let version = match client.control.info(InfoRequest {}).await {
        Ok(r) => r.into_inner().buildkit_version.map(|v| if v.revision.is_empty() { format!("BuildKit {}", v.version) } else { format!("BuildKit {} ({})", v.version, v.revision) }),
        Err(e) => {
            tracing::debug!("Control.Info: {}", e.message());
            None
        }
    };
    let _ = writeln!(out, "buildkit: {} answers{via}{}", cfg.addr, version.map(|v| format!(": {v}")).unwrap_or_default());
    for w in &workers {
        let platforms: Vec<String> = w
            .platforms
            .iter()
            .map(|p| if p.variant.is_empty() { format!("{}/{}", p.os, p.architecture) } else { format!("{}/{}/{}", p.os, p.architecture, p.variant) })
            .collect();
        let snapshotter = w.labels.get("org.mobyproject.buildkit.worker.snapshotter").map(|s| format!(", snapshotter {s}")).unwrap_or_default();
        let _ = writeln!(out, "buildkit: worker {}: {}{snapshotter}", w.id, platforms.join(", "));
    }
    let records = client.control.disk_usage(DiskUsageRequest::default()).await.map_err(lost)?.into_inner().record;
    let u = usage(&records);
    let _ = writeln!(
        out,
        "buildkit: cache: {} in {} record(s), {} reclaimable",
        human(u.bytes),
        u.records,
        human(u.reclaimable)
    );
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
