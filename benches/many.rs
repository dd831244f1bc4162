//! Many images under one `devloop up` (issue 22): N copies of examples/hello (DEVLOOP_BENCH_IMAGES, default
//! 20), manifest mode, each its own image, Deployment and Service, in one namespace; and, in the same run,
//! one copy alone under its own `up`, the single-image loop to compare with. Measured, from the write to
//! devloop's `iteration` event (the rollout done):
//! - the first `up`: cold (every image built and pushed) and warm (everything already in the registry and
//!   deployed: a restart of `up`), from the start to every image's first iteration;
//! - one image changed (rotating over the images), against the single-image loop;
//! - all images changed at once, from the first write to the last iteration;
//! - `up`'s peak RSS (VmHWM) with N images and with one;
//! - the node's floor: all N Deployments restarted at once by kubectl (no devloop, no build), and one.
//!
//! Needs the stack: `eval "$(scripts/stack env)"; cargo bench --bench many`. DEVLOOP_BENCH_ROUNDS (default
//! 3) sets the rounds of each kind of change; DEVLOOP_BENCH_PARALLEL sets `[buildkit] parallel` (builds at
//! once; default: devloop's). For the all-changed rounds it also says where the time went: the iterations'
//! own figures (build, rollout, waiting for a build slot).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{copy_dir, mean, ms, pct, sh};

/// Writes a manifest-mode project with one image per name, each a copy of examples/hello whose Deployment
/// and Service carry that name.
fn project(dir: &Path, names: &[String], ns: &str, registry: &str, buildkit: &str) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let parallel = std::env::var("DEVLOOP_BENCH_PARALLEL").map(|p| format!("parallel = {p}\n")).unwrap_or_default();
    let mut cfg = format!(
        "[buildkit]\naddr = \"{buildkit}\"\n{parallel}[registry]\nhost = \"{registry}\"\ninsecure = true\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n"
    );
    for name in names {
        copy_dir(&example, &dir.join(name));
        for f in ["k8s/deployment.yaml", "k8s/service.yaml"] {
            let path = dir.join(name).join(f);
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("name: hello", &format!("name: {name}")).replace("app: hello", &format!("app: {name}")).replace("image: hello", &format!("image: {name}"));
            std::fs::write(&path, text).unwrap();
        }
        cfg.push_str(&format!(
            "[[image]]\nname = \"{name}\"\ncontext = \"{name}\"\nbuild-args = {{ REGISTRY = \"{registry}\" }}\n\
             [[deploy]]\nimage = \"{name}\"\nmanifests = [\"{name}/k8s/*.yaml\"]\n"
        ));
    }
    std::fs::write(dir.join("devloop.toml"), cfg).unwrap();
}

/// A running `devloop up --json` and its events.
struct Up {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_devloop")).args(["up", "--json"]).current_dir(dir).stdout(Stdio::piped()).spawn().unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Up { child, events }
    }

    /// Waits until each of `images` has reported an iteration (or an unchanged tag, for a warm start whose
    /// rollout had nothing to change); panics on a failure.
    fn iterations(&self, images: &BTreeSet<String>) -> Vec<serde_json::Value> {
        let mut left = images.clone();
        let mut seen = Vec::new();
        while !left.is_empty() {
            let v = self.events.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| panic!("no iteration of {left:?} within 300 s"));
            let image = v["image"].as_str().unwrap_or_default().to_string();
            match v["event"].as_str() {
                Some("iteration") => {
                    left.remove(&image);
                }
                Some("failed" | "rollout-failed" | "crashed") => panic!("{v}"),
                _ => {}
            }
            seen.push(v);
        }
        seen
    }

    /// `up`'s peak resident set so far, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0);
        kib / 1024
    }

    /// Stops it as Ctrl-C would (the workloads stay).
    fn stop(self) {}
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Changes `names`' pages, then waits for each one's iteration: the time from the
/// first write to the last iteration.
fn change(up: &Up, dir: &Path, names: &[&String]) -> Duration {
    change_seen(up, dir, names).0
}

/// [`change`], with the events seen meanwhile.
fn change_seen(up: &Up, dir: &Path, names: &[&String]) -> (Duration, Vec<serde_json::Value>) {
    // Content never written before: every change is a new tag.
    static CHANGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CHANGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    for name in names {
        std::fs::write(dir.join(name).join("www/index.html"), format!("<p>{name} change {n}</p>\n")).unwrap();
    }
    let seen = up.iterations(&names.iter().map(|n| n.to_string()).collect());
    (t0.elapsed(), seen)
}

/// Where an all-changed round's time went, from its iterations: each image's build and rollout (means and
/// the slowest), and how many builds waited for a slot.
fn split(seen: &[serde_json::Value]) -> String {
    let its: Vec<&serde_json::Value> = seen.iter().filter(|v| v["event"] == "iteration").collect();
    let field = |k: &str| its.iter().map(|v| v[k].as_u64().unwrap_or(0)).collect::<Vec<u64>>();
    let mean = |v: &[u64]| v.iter().sum::<u64>() / v.len().max(1) as u64;
    let (build, rollout, total, pod) = (field("build_ms"), field("rollout_ms"), field("total_ms"), field("pod_running_ms"));
    let queued = seen.iter().filter(|v| v["event"] == "queued").count();
    format!(
        "per image: build mean {} ms (max {}), rollout mean {} ms (max {}; pod running after {} ms mean), change to rolled out mean {} ms; {queued} build(s) waited for a slot",
        mean(&build),
        build.iter().max().unwrap_or(&0),
        mean(&rollout),
        rollout.iter().max().unwrap_or(&0),
        mean(&pod),
        mean(&total)
    )
}

/// `kubectl rollout restart` of the Deployments `names` at once, and the time until the last has rolled out.
fn restart(ns: &str, names: &[String]) -> Duration {
    let deployments: Vec<String> = names.iter().map(|n| format!("deployment/{n}")).collect();
    let t0 = Instant::now();
    let mut args = vec!["-n", ns, "rollout", "restart"];
    args.extend(deployments.iter().map(String::as_str));
    sh("kubectl", &args);
    for d in &deployments {
        sh("kubectl", &["-n", ns, "rollout", "status", d, "--timeout=300s"]);
    }
    t0.elapsed()
}

fn main() {
    let (Ok(registry), Ok(buildkit)) = (std::env::var("DEVLOOP_REGISTRY"), std::env::var("BUILDKIT_HOST")) else {
        println!("many bench: skipped (needs the stack: eval \"$(scripts/stack env)\")");
        return;
    };
    let n: usize = std::env::var("DEVLOOP_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rounds: usize = std::env::var("DEVLOOP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let ns = format!("bench-many-{nonce}");
    sh("kubectl", &["create", "namespace", &ns]);
    let tmp = tempfile::tempdir().unwrap();

    // The single-image loop, for comparison.
    let one_dir = tmp.path().join("one");
    let one = vec![format!("one-{nonce}")];
    project(&one_dir, &one, &ns, &registry, &buildkit);
    let up = Up::start(&one_dir);
    let _ = up.iterations(&one.iter().cloned().collect());
    let single: Vec<Duration> = (0..rounds * 2).map(|_| change(&up, &one_dir, &[&one[0]])).collect();
    let single_rss = up.peak_rss_mib();
    up.stop();

    // N images under one `up`.
    let dir = tmp.path().join("many");
    let names: Vec<String> = (0..n).map(|i| format!("many-{nonce}-{i}")).collect();
    let all: BTreeSet<String> = names.iter().cloned().collect();
    project(&dir, &names, &ns, &registry, &buildkit);
    let t0 = Instant::now();
    let up = Up::start(&dir);
    let _ = up.iterations(&all);
    let cold = t0.elapsed();
    up.stop();
    let t0 = Instant::now();
    let up = Up::start(&dir);
    let _ = up.iterations(&all);
    let warm = t0.elapsed();
    let mut one_changed = Vec::new();
    let mut all_changed = Vec::new();
    let mut splits = Vec::new();
    for r in 1..=rounds {
        for k in 0..2 {
            one_changed.push(change(&up, &dir, &[&names[(2 * r + k) % n]]));
        }
        let (took, seen) = change_seen(&up, &dir, &names.iter().collect::<Vec<_>>());
        all_changed.push(took);
        splits.push(split(&seen));
    }
    let many_rss = up.peak_rss_mib();
    up.stop();
    // The node's own floor, with devloop out of the picture: every Deployment given a new pod template at
    // once (`kubectl rollout restart`, the image already on the node: no build, no push, no pull), until
    // the last has rolled out; and the single one alone.
    let floor_one: Vec<Duration> = (0..rounds).map(|_| restart(&ns, &one)).collect();
    let floor_all: Vec<Duration> = (0..rounds).map(|_| restart(&ns, &names)).collect();
    let _ = Command::new("kubectl").args(["delete", "namespace", &ns, "--wait=false"]).output();

    let single_p50 = pct(&single, 0.5);
    println!("many bench: {n} images of examples/hello under one `devloop up` (manifest mode), {rounds} round(s) of each change");
    println!("  single image   : one changed p50 {} (mean {}) · peak RSS {single_rss} MiB", ms(single_p50), ms(mean(&single)));
    println!("  first up       : cold {} (every image built and pushed) · warm {} (all in the registry and deployed)", ms(cold), ms(warm));
    println!(
        "  one changed    : p50 {} (mean {}) · {:.2}x the single-image loop",
        ms(pct(&one_changed, 0.5)),
        ms(mean(&one_changed)),
        pct(&one_changed, 0.5).as_secs_f64() / single_p50.as_secs_f64()
    );
    println!(
        "  all {n} changed : p50 {} (each round {}) · {:.2}x the single-image loop",
        ms(pct(&all_changed, 0.5)),
        all_changed.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        pct(&all_changed, 0.5).as_secs_f64() / single_p50.as_secs_f64()
    );
    for (i, s) in splits.iter().enumerate() {
        println!("  all changed #{} : {s}", i + 1);
    }
    println!(
        "  node floor     : all {n} restarted p50 {} (each {}) · one restarted p50 {} · all/one {:.2}x · all / the single-image loop {:.2}x",
        ms(pct(&floor_all, 0.5)),
        floor_all.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        ms(pct(&floor_one, 0.5)),
        pct(&floor_all, 0.5).as_secs_f64() / pct(&floor_one, 0.5).as_secs_f64(),
        pct(&floor_all, 0.5).as_secs_f64() / single_p50.as_secs_f64()
    );
    println!("  peak RSS       : {many_rss} MiB with {n} images, {single_rss} MiB with one");
    println!("  builds at once : {}", std::env::var("DEVLOOP_BENCH_PARALLEL").unwrap_or_else(|_| "devloop's default".into()));
}
