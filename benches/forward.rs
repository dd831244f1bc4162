//! Save → served through devloop's port-forward (issue 22 item 5), on examples/hello with its readiness probe
//! every 1 s and every 10 s, and every 10 s with a server that starts listening 1 s after its container
//! starts (so the kubelet's first readiness probe fails and the next is 10 s later), for the forward that
//! waits for the new pod to be Ready
//! (DEVLOOP_FORWARD_WAIT_READY=1, the old behaviour) and for the one that switches as soon as the new pod's
//! port answers (the default). A client polls the forward every 50 ms on new connections meanwhile and counts
//! the polls that failed. Each edit waits for the rollout to be done (Ready) before the next. Needs the
//! stack: `eval "$(scripts/stack env)"; cargo bench --bench forward`. DEVLOOP_BENCH_EDITS sets N (default 10).

//!
//! With DEVLOOP_BENCH_TILT set to a `tilt` binary (`scripts/bench-tilt` builds one), it measures Tilt's
//! port-forward beside devloop's instead, the same way: the same edits and poller, Tilt building with the
//! stack's Docker Engine and pushing to its registry, each edit after `kubectl rollout status` says the
//! previous rollout is done, at periodSeconds 1 and 10, devloop's line being "switch on answer".
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{copy_dir, http_get, mean, ms, pct, sh, start_up, wait_for};

/// What serves the forward: `devloop up` with these environment variables, or this `tilt` binary.
#[derive(Clone, Copy, Debug)]
enum Tool<'a> {
    Devloop(&'a [(&'a str, &'a str)]),
    Tilt(&'a str),
}

/// A running tool: how to tell that a rollout is done, and how to stop it.
enum Up {
    Devloop(Child, std::sync::mpsc::Receiver<serde_json::Value>),
    Tilt { child: Child, ns: String, log: std::path::PathBuf },
}

impl Up {
    /// Returns once the rollout an edit started is done (the new pod Ready, the old one gone).
    fn rolled_out(&mut self) {
        match self {
            Up::Devloop(_, events) => loop {
                let v = events.recv_timeout(Duration::from_secs(90)).expect("an iteration event");
                if v["event"] == "iteration" {
                    break;
                }
            },
            // The new page is served, so Tilt has applied the new Deployment: its rollout is the edit's.
            Up::Tilt { ns, .. } => drop(sh("kubectl", &["-n", ns, "rollout", "status", "deployment/hello", "--timeout=120s"])),
        }
    }
}

impl Drop for Up {
    /// Stops the tool with SIGINT (a user's Ctrl-C); Tilt's log is kept for where its time went.
    fn drop(&mut self) {
        let child = match self {
            Up::Devloop(child, _) | Up::Tilt { child, .. } => child,
        };
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Up::Tilt { log, .. } = self {
            eprintln!("  Tilt's log: {}", log.display());
        }
    }
}

/// A namespace, deleted when dropped (a failed run leaves nothing behind either).
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl").args(["delete", "namespace", &self.0, "--wait=false"]).output();
    }
}

/// A local port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `tilt up` on the app in `dir` (manifests in `ns`, image `image`); returns it and its forward's
/// address once the first rollout is done.
fn start_tilt(tilt: &str, dir: &Path, registry: &str, ns: &str, image: &str) -> (Up, String) {
    // Tilt applies manifests to the context's default namespace unless they name one.
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let t = std::fs::read_to_string(dir.join(f)).unwrap().replace("metadata:\n  name: hello\n", &format!("metadata:\n  name: hello\n  namespace: {ns}\n"));
        std::fs::write(dir.join(f), t).unwrap();
    }
    let (port, api) = (free_port(), free_port());
    std::fs::write(
        dir.join("Tiltfile"),
        format!(
            "analytics_settings(False)\nversion_settings(check_updates=False)\nallow_k8s_contexts('devloop-local')\n\
             default_registry('{registry}')\ndocker_build('{image}', 'app', build_args={{'REGISTRY': '{registry}'}})\n\
             k8s_yaml(['app/k8s/deployment.yaml', 'app/k8s/service.yaml'])\nk8s_resource('hello', port_forwards=['{port}:8080'])\n"
        ),
    )
    .unwrap();
    let log = std::env::temp_dir().join(format!("bench-forward-{ns}-tilt.log"));
    let out = std::fs::File::create(&log).unwrap();
    let docker = std::env::var("DEVLOOP_STACK_DOCKER_HOST").expect("DEVLOOP_STACK_DOCKER_HOST (from scripts/stack env)");
    let child = Command::new(tilt)
        .args(["up", "--stream", "--port", &api.to_string(), "--file", "Tiltfile"])
        .current_dir(dir)
        .env("DOCKER_HOST", docker)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{tilt}: {e}"));
    let mut up = Up::Tilt { child, ns: ns.to_string(), log: log.clone() };
    let forward = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(300);
    while http_get(&forward, "/").is_none() {
        let Up::Tilt { child, .. } = &mut up else { unreachable!() };
        assert!(child.try_wait().unwrap().is_none(), "tilt up exited; its log: {}", log.display());
        assert!(Instant::now() < deadline, "Tilt's forward never served; its log: {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    up.rolled_out();
    (up, forward)
}

/// The readiness probe's period and the server's delay before it listens, both in seconds.
type Case = (u32, u32);

/// One configuration's figures.
struct Run {
    served: Vec<Duration>,
    ready: Vec<Duration>,
    polls: usize,
    failed: usize,
}

/// `edits` saves in a fresh namespace, with the readiness probe every `period` s, the server listening after
/// `slow_start` s, through `tool`'s forward.
fn run(registry: &str, buildkit: &str, (period, slow_start): Case, tool: Tool, edits: usize, seed: &mut u64) -> Run {
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let ns = format!("bench-fwd-{nonce}");
    sh("kubectl", &["create", "namespace", &ns]);
    let _ns = Namespace(ns.clone());
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
    let (mut up, forward) = match tool {
        Tool::Devloop(envs) => {
            std::fs::write(
                dir.join("devloop.toml"),
                format!(
                    "[buildkit]\naddr = \"{buildkit}\"\n[registry]\nhost = \"{registry}\"\ninsecure = true\n[[image]]\nname = \"fwd-{nonce}\"\n\
                     context = \"app\"\nbuild-args = {{ REGISTRY = \"{registry}\" }}\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
                     [[deploy]]\nimage = \"fwd-{nonce}\"\nmanifests = [\"app/k8s/*.yaml\"]\n[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n"
                ),
            )
            .unwrap();
            let (up, events, forward) = start_up(dir, envs);
            (Up::Devloop(up, events), forward)
        }
        Tool::Tilt(tilt) => start_tilt(tilt, dir, registry, &ns, &format!("fwd-{nonce}")),
    };

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
        let failed_before = failed.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::fs::write(dir.join("app/www/index.html"), format!("<p>{marker}</p>\n")).unwrap();
        wait_for(&marker, || http_get(&forward, "/"));
        served.push(t0.elapsed());
        // The next edit once this rollout is done: each save then starts from one Ready pod, as a user's does.
        up.rolled_out();
        ready.push(t0.elapsed());
        eprintln!("  periodSeconds {period} listening after {slow_start} s {tool:?} edit {i:>2}: served {} · rolled out (Ready) {} · failed polls {}", ms(served[i - 1]), ms(ready[i - 1]), failed.load(Ordering::Relaxed) - failed_before);
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    drop(up);
    Run { served, ready, polls: polls.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed) }
}

fn main() {
    let (Ok(registry), Ok(buildkit)) = (std::env::var("DEVLOOP_REGISTRY"), std::env::var("BUILDKIT_HOST")) else {
        println!("forward bench: skipped (needs the stack: eval \"$(scripts/stack env)\")");
        return;
    };
    let edits: usize = std::env::var("DEVLOOP_BENCH_EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) | 1;
    let tilt = std::env::var("DEVLOOP_BENCH_TILT").ok();
    let (cases, tools): (&[Case], Vec<(&str, Tool)>) = match &tilt {
        Some(tilt) => (&[(1, 0), (10, 0)], vec![("Tilt", Tool::Tilt(tilt)), ("devloop, switch on answer", Tool::Devloop(&[]))]),
        None => (&[(1, 0), (10, 0), (10, 1)], vec![("wait for Ready (before)", Tool::Devloop(&[("DEVLOOP_FORWARD_WAIT_READY", "1")])), ("switch on answer", Tool::Devloop(&[]))]),
    };
    let mut rows = vec![];
    for &case in cases {
        for &(name, tool) in &tools {
            let r = run(&registry, &buildkit, case, tool, edits, &mut seed);
            rows.push((case, name, r));
        }
    }
    let through = if tilt.is_some() { "Tilt's and devloop's forwards" } else { "devloop's forward" };
    println!("forward bench: {edits} edits of examples/hello per line, save → served through {through}");
    for ((period, slow_start), name, r) in rows {
        println!(
            "  periodSeconds {period:>2}, listening after {slow_start} s, {name:<25}: p50 {} · p90 {} · mean {} · max {} (save → rolled out, Ready: p50 {} · mean {}) · failed polls {} of {}",
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
