//! Loop latency on examples/hello against the real stack: time from a file write to the new content being
//! served, for `devloop up` (through its port-forward) and, interleaved in the same run, for the floor — the
//! same steps with stock tools: `buildctl build … push=true`, `kubectl set image`, `kubectl rollout status`,
//! then the same readiness poll — and for `devloop up` with a sync rule (`www/**` → `/www`, live update: the
//! file copied into the running pod, no build). Needs the stack: `eval "$(scripts/stack env)"; cargo bench
//! --bench loop`. DEVLOOP_BENCH_EDITS sets N (default 20).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{copy_dir, http_get, mean, ms, pct, sh, start_up, wait_for};

fn main() {
    let (Ok(registry), Ok(buildkit)) = (std::env::var("DEVLOOP_REGISTRY"), std::env::var("BUILDKIT_HOST")) else {
        println!("loop bench: skipped (needs the stack: eval \"$(scripts/stack env)\")");
        return;
    };
    let edits: usize = std::env::var("DEVLOOP_BENCH_EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let ns = format!("bench-loop-{nonce}");
    sh("kubectl", &["create", "namespace", &ns]);
    let tmp = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");

    // devloop's project: manifest mode, a port-forward on a free port.
    let dl = tmp.path().join("devloop");
    copy_dir(&example, &dl.join("app"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let t = std::fs::read_to_string(dl.join(f)).unwrap().replace("image: hello", &format!("image: loop-{nonce}"));
        std::fs::write(dl.join(f), t).unwrap();
    }
    std::fs::write(
        dl.join("devloop.toml"),
        format!(
            "[buildkit]\naddr = \"{buildkit}\"\n[registry]\nhost = \"{registry}\"\ninsecure = true\n[[image]]\nname = \"loop-{nonce}\"\n\
             context = \"app\"\nbuild-args = {{ REGISTRY = \"{registry}\" }}\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
             [[deploy]]\nimage = \"loop-{nonce}\"\nmanifests = [\"app/k8s/*.yaml\"]\n[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n"
        ),
    )
    .unwrap();
    let (mut up, events, forward) = start_up(&dl, &[]);

    // The live-update project: the same example under another image name, in its own namespace, with a sync
    // rule for www/.
    let sync_ns = format!("{ns}-sync");
    sh("kubectl", &["create", "namespace", &sync_ns]);
    let sy = tmp.path().join("sync");
    copy_dir(&example, &sy.join("app"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let t = std::fs::read_to_string(sy.join(f)).unwrap().replace("image: hello", &format!("image: loop-sync-{nonce}"));
        std::fs::write(sy.join(f), t).unwrap();
    }
    std::fs::write(
        sy.join("devloop.toml"),
        std::fs::read_to_string(dl.join("devloop.toml"))
            .unwrap()
            // The image renamed by its quoted name only: the namespace holds `loop-<nonce>` too, and a rename
            // of it would send the project to a namespace nobody deletes.
            .replace(&format!("\"loop-{nonce}\""), &format!("\"loop-sync-{nonce}\""))
            .replace(&format!("namespace = \"{ns}\""), &format!("namespace = \"{sync_ns}\""))
            + "[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n",
    )
    .unwrap();
    let (mut sync_up, sync_events, sync_forward) = start_up(&sy, &[]);

    // The floor's project: the same example, its own Deployment "floor", driven by buildctl and kubectl.
    let fl: PathBuf = tmp.path().join("floor");
    copy_dir(&example, &fl);
    let floor_build = |tag: &str| {
        let d = fl.to_str().unwrap();
        sh("buildctl", &["--addr", &buildkit, "build", "--frontend=dockerfile.v0", &format!("--local=context={d}"), &format!("--local=dockerfile={d}"),
            &format!("--opt=build-arg:REGISTRY={registry}"), &format!("--output=type=image,name={registry}/floor-{nonce}:{tag},push=true,registry.insecure=true")]);
    };
    floor_build("0");
    let manifest = std::fs::read_to_string(fl.join("k8s/deployment.yaml"))
        .unwrap()
        .replace("name: hello", "name: floor")
        .replace("app: hello", "app: floor")
        .replace("image: hello", &format!("image: {registry}/floor-{nonce}:0"));
    std::fs::write(fl.join("floor.yaml"), manifest).unwrap();
    sh("kubectl", &["-n", &ns, "apply", "-f", fl.join("floor.yaml").to_str().unwrap()]);
    sh("kubectl", &["-n", &ns, "rollout", "status", "deployment/floor", "--timeout=120s"]);
    // The floor's readiness poll: the API server's proxy to the Deployment's newest pod (kubectl port-forward
    // binds one pod and breaks on every rollout).
    // Pods being deleted are skipped and each request is bounded: a proxied request to a terminating pod can
    // hang for the API server's 30 s timeout.
    let floor_get = |marker: &str| {
        let list: serde_json::Value = serde_json::from_str(&sh("kubectl", &["-n", &ns, "get", "pods", "-l", "app=floor", "-o", "json"])).unwrap();
        let pods: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        pods.iter().find_map(|p| {
            let out = Command::new("kubectl")
                .args(["get", "--request-timeout=2s", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{p}:8080/proxy/")])
                .output()
                .ok()?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            body.contains(marker).then_some(body)
        })
    };

    let (mut dl_total, mut fl_total) = (vec![], vec![]);
    let (mut dl_hash, mut dl_build, mut dl_rollout, mut dl_iter) = (vec![], vec![], vec![], vec![]);
    let (mut dl_export, mut dl_created, mut dl_running, mut dl_ready) = (vec![], vec![], vec![], vec![]);
    // A random pause (0–1 s) before each edit: the kubelet works in 1 s cycles (PLEG relist, probe ticks),
    // and a fixed rhythm would lock each side to one phase of them, a lucky or an unlucky one.
    let seed = std::cell::Cell::new(u64::from_str_radix(&nonce, 16).unwrap_or(1) | 1);
    let pause = || {
        let mut x = seed.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.set(x);
        std::thread::sleep(Duration::from_millis(x % 1000));
    };
    let (mut fl_build, mut fl_set, mut fl_rollout, mut fl_poll) = (vec![], vec![], vec![], vec![]);
    let (mut sy_total, mut sy_exec, mut sy_seen, mut sy_hash, mut sy_debounce) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 1..=edits {
        let marker = format!("edit-{nonce}-{i}");
        // Alternate which goes first, too.
        let mut run_devloop = || {
            // devloop: write, then poll its port-forward.
            pause();
            let t0 = Instant::now();
            std::fs::write(dl.join("app/www/index.html"), format!("<p>{marker}</p>\n")).unwrap();
            wait_for(&marker, || http_get(&forward, "/"));
            dl_total.push(t0.elapsed());
            let it = loop {
                let v = events.recv_timeout(Duration::from_secs(60)).expect("an iteration event");
                if v["event"] == "iteration" {
                    break v;
                }
            };
            dl_hash.push(Duration::from_millis(it["hash_ms"].as_u64().unwrap()));
            dl_build.push(Duration::from_millis(it["build_ms"].as_u64().unwrap()));
            dl_rollout.push(Duration::from_millis(it["rollout_ms"].as_u64().unwrap()));
            dl_iter.push(Duration::from_millis(it["total_ms"].as_u64().unwrap()));
            let opt = |k: &str| Duration::from_millis(it[k].as_u64().unwrap_or(0));
            dl_export.push(opt("export_ms"));
            dl_created.push(opt("pod_created_ms"));
            dl_running.push(opt("pod_running_ms"));
            dl_ready.push(opt("pod_ready_ms"));
        };
        let mut run_floor = || {
            // The floor: the same edit, the stock tools.
            pause();
            let t0 = Instant::now();
            std::fs::write(fl.join("www/index.html"), format!("<p>{marker}</p>\n")).unwrap();
            floor_build(&i.to_string());
            let t1 = Instant::now();
            sh("kubectl", &["-n", &ns, "set", "image", "deployment/floor", &format!("web={registry}/floor-{nonce}:{i}")]);
            let t2 = Instant::now();
            sh("kubectl", &["-n", &ns, "rollout", "status", "deployment/floor", "--timeout=120s"]);
            let t3 = Instant::now();
            wait_for(&marker, || floor_get(&marker));
            let t4 = Instant::now();
            fl_total.push(t4 - t0);
            fl_build.push(t1 - t0);
            fl_set.push(t2 - t1);
            fl_rollout.push(t3 - t2);
            fl_poll.push(t4 - t3);
        };
        let mut run_sync = || {
            // Live update: write, then poll the sync project's port-forward.
            pause();
            let t0 = Instant::now();
            std::fs::write(sy.join("app/www/index.html"), format!("<p>{marker}</p>\n")).unwrap();
            wait_for(&marker, || http_get(&sync_forward, "/"));
            sy_total.push(t0.elapsed());
            let ev = loop {
                let v = sync_events.recv_timeout(Duration::from_secs(60)).expect("a sync event");
                assert!(v["event"] != "iteration" && v["event"] != "building", "a covered save built: {v}");
                if v["event"] == "sync" {
                    break v;
                }
            };
            let d = |k: &str| Duration::from_millis(ev[k].as_u64().unwrap());
            sy_exec.push(d("sync_ms"));
            sy_seen.push(d("total_ms"));
            sy_hash.push(d("hash_ms"));
            sy_debounce.push(d("debounce_ms"));
        };
        // Rotate which goes first, too.
        match i % 3 {
            0 => {
                run_devloop();
                run_floor();
                run_sync();
            }
            1 => {
                run_floor();
                run_sync();
                run_devloop();
            }
            _ => {
                run_sync();
                run_devloop();
                run_floor();
            }
        }
        eprintln!(
            "edit {i:>2}: devloop {} (change seen → rolled out {}) · floor {} · sync {} (change seen → in place {})",
            ms(dl_total[i - 1]),
            ms(dl_iter[i - 1]),
            ms(fl_total[i - 1]),
            ms(sy_total[i - 1]),
            ms(sy_seen[i - 1])
        );
    }
    for child in [&mut up, &mut sync_up] {
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    for n in [&ns, &sync_ns] {
        let _ = Command::new("kubectl").args(["delete", "namespace", n, "--wait=false"]).output();
    }

    println!("loop bench: {edits} edits of examples/hello, interleaved");
    println!("  devloop up : p50 {} · p95 {}   (hash {} · build+push {} of which export+push {} · rollout {}: new pod seen after {}, running after {}, ready after {} · change seen → rolled out {} mean)",
        ms(pct(&dl_total, 0.5)), ms(pct(&dl_total, 0.95)), ms(mean(&dl_hash)), ms(mean(&dl_build)), ms(mean(&dl_export)), ms(mean(&dl_rollout)),
        ms(mean(&dl_created)), ms(mean(&dl_running)), ms(mean(&dl_ready)), ms(mean(&dl_iter)));
    println!("  floor      : p50 {} · p95 {}   (buildctl {} · set image {} · rollout status {} · poll {} mean)",
        ms(pct(&fl_total, 0.5)), ms(pct(&fl_total, 0.95)), ms(mean(&fl_build)), ms(mean(&fl_set)), ms(mean(&fl_rollout)), ms(mean(&fl_poll)));
    println!("  sync       : p50 {} · p95 {}   (debounce {} mean · change seen → files in place {} mean, of which read+tag+exec {} · reading and tagging what it sends, before sending, {} mean)",
        ms(pct(&sy_total, 0.5)), ms(pct(&sy_total, 0.95)), ms(mean(&sy_debounce)), ms(mean(&sy_seen)), ms(mean(&sy_exec)), ms(mean(&sy_hash)));
    println!("  ratio sync/devloop: p50 {:.2} · p95 {:.2}",
        pct(&sy_total, 0.5).as_secs_f64() / pct(&dl_total, 0.5).as_secs_f64(),
        pct(&sy_total, 0.95).as_secs_f64() / pct(&dl_total, 0.95).as_secs_f64());
    println!("  ratio devloop/floor: p50 {:.2} · p95 {:.2}",
        pct(&dl_total, 0.5).as_secs_f64() / pct(&fl_total, 0.5).as_secs_f64(),
        pct(&dl_total, 0.95).as_secs_f64() / pct(&fl_total, 0.95).as_secs_f64());
}
