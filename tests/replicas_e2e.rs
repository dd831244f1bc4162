//! More than one BuildKit (issue 23 item 2), on the real stack: `devloop buildkit install --replicas 2` into
//! the test's own namespace (over a single-replica install, whose `kube-deployment://` address keeps
//! working), four images under one `up`: each always builds on the same replica (the iteration's
//! `"buildkit"`), one replica's pod deleted mid-session lends its images to the other (said once per image),
//! the session goes on, and they go back when the pod is Ready again; `buildkit status` lists the replicas
//! and where each image builds. Run through scripts/test.

mod common;

use std::collections::BTreeMap;

use common::*;

/// Four images; by the rendezvous hash over `buildkitd-0`/`buildkitd-1` (pinned by the unit tests), api
/// and web belong to buildkitd-1, worker and db to buildkitd-0.
const IMAGES: [&str; 4] = ["api", "web", "worker", "db"];

/// `dir` (a copy of examples/hello) as Deployment `dir` running image `dir`.
fn service(p: &Project, dir: &str) {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for f in ["Dockerfile", "serve.sh", "www/index.html"] {
        p.write(&format!("{dir}/{f}"), "");
        std::fs::copy(example.join(f), p.path(&format!("{dir}/{f}"))).unwrap(); // serve.sh stays executable
    }
    p.write(&format!("{dir}/www/nonce.txt"), &format!("{} {dir}\n", p.name));
    let dep = std::fs::read_to_string(example.join("k8s/deployment.yaml")).unwrap();
    p.write(&format!("{dir}/k8s/deployment.yaml"), &dep.replace("hello", dir));
}

fn config(p: &Project, bk: &str, app: &str) {
    let reg = &p.registry;
    let mut cfg = format!(
        "[buildkit]\naddr = \"kube-deployment://buildkitd?namespace={bk}\"\n[registry]\nhost = \"{reg}\"\ninsecure = true\n\
         [kube]\ncontext = \"devloop-local\"\nnamespace = \"{app}\"\n"
    );
    for i in IMAGES {
        cfg.push_str(&format!("[[image]]\nname = \"{i}\"\ncontext = \"{i}\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n"));
        cfg.push_str(&format!("[[deploy]]\nimage = \"{i}\"\nmanifests = [\"{i}/k8s/*.yaml\"]\n"));
    }
    p.write("devloop.toml", &cfg);
}

/// Saves a new page into every image.
fn save_all(p: &Project, round: u32) {
    for i in IMAGES {
        p.write(&format!("{i}/www/index.html"), &format!("<p>{i}, round {round}</p>\n"));
    }
}

/// The next iteration of each image: image → the replica that built it.
fn iterations(up: &mut Up, secs: u64) -> BTreeMap<String, String> {
    let mut on = BTreeMap::new();
    while on.len() < IMAGES.len() {
        let it = up.wait("iteration", secs);
        assert_eq!(it["registry_hit"], false, "a real build: {it}");
        let b = it["buildkit"].as_str().unwrap_or_else(|| panic!("no buildkit in {it}")).to_string();
        on.insert(it["image"].as_str().unwrap().to_string(), b);
    }
    on
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// The `buildkit-moved` events `up` said so far, per image.
fn moves(up: &Up) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in up.seen.iter().filter(|v| v["event"] == "buildkit-moved") {
        m.entry(v["image"].as_str().unwrap().to_string()).or_default().push(v["message"].as_str().unwrap().to_string());
    }
    m
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn each_image_keeps_its_replica_moves_while_that_one_is_down_and_comes_back() {
    let bk = Namespace::new("replicas-bk");
    let app = Namespace::new("replicas");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for i in IMAGES {
        service(&p, i);
    }
    config(&p, &bk.0, &app.0);
    let install = |extra: &[&str]| {
        let mut args = vec!["buildkit", "install", "--namespace", &bk.0, "--image", "", "--insecure-registry", &p.registry];
        let image = env("DEVLOOP_STACK_BUILDKIT_IMAGE");
        args[5] = &image;
        args.extend_from_slice(extra);
        p.ok(&args).0
    };
    // An existing single-replica install, then two replicas: the Deployment gives way to a StatefulSet.
    let one = install(&[]);
    assert!(one.contains(&format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0)), "{one}");
    let two = install(&["--replicas", "2"]);
    assert!(two.contains(&format!("buildkit: deployment {}/buildkitd deleted", bk.0)), "{two}");
    assert!(two.contains("(2 replica(s), image "), "{two}");
    assert!(two.contains(&format!("addr = \"kube-statefulset://buildkitd?namespace={}\"", bk.0)), "{two}");

    // `buildkit status` through the old address: both replicas, their caches, where each image builds.
    let (status, _) = p.ok(&["buildkit", "status"]);
    assert!(status.contains(&format!("statefulset {}/buildkitd, 2 of 2 replica(s) Ready", bk.0)), "{status}");
    for r in ["buildkitd-0", "buildkitd-1"] {
        assert!(status.contains(&format!("buildkit: {r}: Ready: BuildKit ")), "{status}");
        assert!(status.contains(&format!("buildkit: {r}: worker ")), "{status}");
        assert!(status.contains(&format!("buildkit: {r}: cache: 0 B in 0 record(s)")), "a fresh replica: {status}");
    }
    let home = expect(&[("api", "buildkitd-1"), ("web", "buildkitd-1"), ("worker", "buildkitd-0"), ("db", "buildkitd-0")]);
    for (i, r) in &home {
        assert!(status.contains(&format!("buildkit: image {i} builds on {r}\n")), "{status}");
    }

    let mut up = Up::start(&p);
    assert_eq!(iterations(&mut up, 240), home, "the first builds");
    save_all(&p, 1);
    assert_eq!(iterations(&mut up, 180), home, "again on the same replicas");
    // Each replica now holds its own images' cache.
    let (status, _) = p.ok(&["buildkit", "status"]);
    for r in ["buildkitd-0", "buildkitd-1"] {
        assert!(!status.contains(&format!("buildkit: {r}: cache: 0 B in 0 record(s)")), "{r} built: {status}");
    }
    assert!(moves(&up).is_empty(), "nothing moved: {:?}", moves(&up));

    // buildkitd-1 goes away mid-session: its images build on buildkitd-0, said once each.
    let uid = |ns: &str| try_kubectl(&["-n", ns, "get", "pod", "buildkitd-1", "-o", "jsonpath={.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}"]);
    let gone = uid(&bk.0).unwrap().split_whitespace().next().unwrap().to_string();
    kubectl(&["-n", &bk.0, "delete", "pod", "buildkitd-1", "--wait=false"]);
    save_all(&p, 2);
    let all_on_0 = expect(&[("api", "buildkitd-0"), ("web", "buildkitd-0"), ("worker", "buildkitd-0"), ("db", "buildkitd-0")]);
    assert_eq!(iterations(&mut up, 180), all_on_0, "while buildkitd-1 is down");
    let m = moves(&up);
    assert_eq!(m.keys().collect::<Vec<_>>(), ["api", "web"], "only buildkitd-1's images moved: {m:?}");
    for i in ["api", "web"] {
        assert_eq!(m[i].len(), 1, "{m:?}");
        assert!(m[i][0].starts_with(&format!("{i}: buildkitd-1 is not ready (")), "{m:?}");
        assert!(m[i][0].ends_with("): building on buildkitd-0 until it is back"), "{m:?}");
    }
    assert!(up.alive(), "the session goes on");

    // Back and Ready: they go home, said once each.
    eventually("a new buildkitd-1 Ready", 120, || {
        let now = uid(&bk.0)?;
        if !now.starts_with(&gone) && now.trim().ends_with(" True") { Ok(()) } else { Err(now) }
    });
    save_all(&p, 3);
    assert_eq!(iterations(&mut up, 180), home, "home again");
    save_all(&p, 4);
    assert_eq!(iterations(&mut up, 180), home, "and staying");
    let m = moves(&up);
    for i in ["api", "web"] {
        assert_eq!(m[i].len(), 2, "one move away, one back: {m:?}");
        assert_eq!(m[i][1], format!("{i}: buildkitd-1 is Ready again: building on it"));
    }
    assert!(up.alive(), "the session goes on");
    up.interrupt();
}
