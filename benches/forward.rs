//! Save → served through devloop's port-forward (issue 22 item 5), on examples/hello with its readiness probe
//! every 1 s and every 10 s, and every 10 s with a server that starts listening 1 s after its container
//! starts (so the kubelet's first readiness probe fails and the next is 10 s later), for the forward that
//! waits for the new pod to be Ready
//! (DEVLOOP_FORWARD_WAIT_READY=1, the old behaviour) and for the one that switches as soon as the new pod's
//! port answers (the default). A client polls the forward every 50 ms on new connections meanwhile and counts
//! the polls that failed. Each edit waits for the rollout to be done (Ready) before the next. Needs the
//! stack: `eval "$(scripts/stack env)"; cargo bench --bench forward`. DEVLOOP_BENCH_EDITS sets N (default 10).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{copy_dir, http_get, mean, ms, pct, sh, start_up, wait_for};

/// One configuration's figures.
struct Run {
    served: Vec<Duration>,
    ready: Vec<Duration>,
    polls: usize,
    failed: usize,
}

/// `edits` saves in a fresh namespace, with the readiness probe every `period` s, the server listening after
/// `slow_start` s, and the forward's `envs`.
fn run(registry: &str, buildkit: &str, (period, slow_start): (u32, u32), envs: &[(&str, &str)], edits: usize, seed: &mut u64) -> Run {
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let ns = format!("bench-fwd-{nonce}");
    sh("kubectl", &["create", "namespace", &ns]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello"), &dir.join("app"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let t = std::fs::read_to_string(dir.join(f)).unwrap().replace("image: hello", &format!("image: fwd-{nonce}"));
        let t = t.replace("periodSeconds: 1\n", &format!("periodSeconds: {period}\n"));
        std::fs::write(dir.join(f), t).unwrap();
    }
    if slow_start > 0 {
        let serve = std::fs::read_to_string(dir.join("app/serve.sh")).unwrap().replace("exec httpd", &format!("sleep {slow_start}\nexec httpd"));
        std::fs::write(dir.join("app/serve.sh"), serve).unwrap();
    }
    std::fs::write(
        dir.join("devloop.toml"),
        format!(
            "[buildkit]\naddr = \"{buildkit}\"\n[registry]\nhost = \"{registry}\"\ninsecure = true\n[[image]]\nname = \"fwd-{nonce}\"\n\
             context = \"app\"\nbuild-args = {{ REGISTRY = \"{registry}\" }}\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
             [[deploy]]\nimage = \"fwd-{nonce}\"\nmanifests = [\"app/k8s/*.yaml\"]\n[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n"
        ),
    )
    .unwrap();
    let (mut up, events, forward) = start_up(dir, envs);

    // The poller: a browser's reloads, on new connections, through every switch.
    let (stop, polls, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let poller = {
        let (stop, polls, failed, forward) = (stop.clone(), polls.clone(), failed.clone(), forward.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                polls.fetch_add(1, Ordering::Relaxed);
                if http_get(&forward, "/").is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let (mut served, mut ready) = (vec![], vec![]);
    for i in 1..=edits {
        // A random pause (0–1 s): the kubelet works in 1 s cycles; a fixed rhythm would lock onto one phase.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        std::thread::sleep(Duration::from_millis(*seed % 1000));
        let marker = format!("edit-{nonce}-{i}");
        let t0 = Instant::now();
        std::fs::write(dir.join("app/www/index.html"), format!("<p>{marker}</p>\n")).unwrap();
        wait_for(&marker, || http_get(&forward, "/"));
        served.push(t0.elapsed());
        // The next edit once this rollout is done: each save then starts from one Ready pod, as a user's does.
        loop {
            let v = events.recv_timeout(Duration::from_secs(90)).expect("an iteration event");
            if v["event"] == "iteration" {
                break;
            }
        }
        ready.push(t0.elapsed());
        eprintln!("  periodSeconds {period} listening after {slow_start} s {envs:?} edit {i:>2}: served {} · rolled out (Ready) {}", ms(served[i - 1]), ms(ready[i - 1]));
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let _ = Command::new("kill").args(["-INT", &up.id().to_string()]).status();
    let _ = up.wait();
    let _ = Command::new("kubectl").args(["delete", "namespace", &ns, "--wait=false"]).output();
    Run { served, ready, polls: polls.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed) }
}

fn main() {
    let (Ok(registry), Ok(buildkit)) = (std::env::var("DEVLOOP_REGISTRY"), std::env::var("BUILDKIT_HOST")) else {
        println!("forward bench: skipped (needs the stack: eval \"$(scripts/stack env)\")");
        return;
    };
    let edits: usize = std::env::var("DEVLOOP_BENCH_EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) | 1;
    let mut rows = vec![];
    for case in [(1, 0), (10, 0), (10, 1)] {
        for (name, envs) in [("wait for Ready (before)", &[("DEVLOOP_FORWARD_WAIT_READY", "1")][..]), ("switch on answer", &[][..])] {
            let r = run(&registry, &buildkit, case, envs, edits, &mut seed);
            rows.push((case, name, r));
        }
    }
    println!("forward bench: {edits} edits of examples/hello per line, save → served through devloop's forward");
    for ((period, slow_start), name, r) in rows {
        println!(
            "  periodSeconds {period:>2}, listening after {slow_start} s, {name:<23}: p50 {} · p90 {} · mean {} · max {} (save → rolled out, Ready: p50 {} · mean {}) · failed polls {} of {}",
            ms(pct(&r.served, 0.5)),
            ms(pct(&r.served, 0.9)),
            ms(mean(&r.served)),
            ms(pct(&r.served, 1.0)),
            ms(pct(&r.ready, 0.5)),
            ms(mean(&r.ready)),
            r.failed,
            r.polls
        );
    }
}
