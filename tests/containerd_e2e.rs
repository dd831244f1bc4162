//! `load = "containerd"` against the real stack: images go from BuildKit into the node's containerd without
//! the registry, only the blobs containerd lacks are written, and pods run them without a pull. Checked with
//! containerd's own CLI (`ctr`), kubectl and the registry's API and log. Run through scripts/test.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

/// The stack's containerd socket (the kubelet's runtime).
fn socket() -> String {
    env("DEVLOOP_STACK_CONTAINERD")
}

/// A hello project whose image goes to the stack's containerd; with `ns`, deployed there by its manifests.
fn project(ns: Option<&str>) -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let mut cfg = format!(
        "[buildkit]\naddr = \"{}\"\n[registry]\nload = \"containerd\"\ncontainerd-socket = \"{}\"\n\
         [[image]]\nname = \"{}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{}\" }}\n",
        env("BUILDKIT_HOST"),
        socket(),
        p.name,
        p.registry
    );
    if let Some(ns) = ns {
        // `Always` would have the kubelet pull from Docker Hub: devloop must lower it on its container.
        let image = format!("\n          image: {}\n          imagePullPolicy: Always", p.name);
        let f = "app/k8s/deployment.yaml";
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("\n          image: hello", &image);
        std::fs::write(p.path(f), text).unwrap();
        cfg.push_str(&format!(
            "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n",
            p.name
        ));
    }
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
    p
}

/// `ctr` against the stack's containerd in the kubelet's namespace.
fn ctr(args: &[&str]) -> String {
    let out = Command::new("ctr").args(["-a", &socket(), "-n", "k8s.io"]).args(args).output().expect("ctr");
    assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// From an `imported …` line: (digest, bytes written, blobs written).
fn imported(out: &str, name: &str) -> (String, u64, u64) {
    let line = out.lines().find(|l| l.starts_with(&format!("{name}: imported "))).unwrap_or_else(|| panic!("no import in:\n{out}"));
    let digest = line.split('@').nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let counts = line.split_once(" (").unwrap().1;
    let mut words = counts.split([' ', ':']).filter(|w| !w.is_empty());
    let written = words.next().unwrap().parse().unwrap();
    let blobs = words.nth(4).unwrap().parse().unwrap_or_else(|_| panic!("{line}"));
    (digest, written, blobs)
}

/// The stack's registry log, when this machine has it.
fn registry_log() -> Option<String> {
    let pki = PathBuf::from(std::env::var("DEVLOOP_STACK_PKI").ok()?);
    std::fs::read_to_string(pki.parent()?.join("logs/registry.log")).ok()
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn deploy_runs_the_pod_from_containerd_without_the_registry() {
    let ns = Namespace::new("ctrd-deploy");
    let p = project(Some(&ns.0));
    let (out, err) = p.ok(&["deploy"]);
    let tag = p.tag();
    let (digest, written, _) = imported(&out, &p.name);
    assert!(written > 0, "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{out}\n{err}");
    let both = format!("{out}{err}");
    assert!(both.contains(&format!("{}:{tag}@{digest}: imagePullPolicy Always -> IfNotPresent", p.name)), "{both}");

    // containerd has it under the names CRI resolves; the registry never heard of it.
    let images = ctr(&["images", "ls", "-q"]);
    for name in [format!("docker.io/library/{}:{tag}", p.name), format!("docker.io/library/{}@{digest}", p.name)] {
        assert!(images.lines().any(|l| l == name), "{name} not in containerd:\n{images}");
    }
    // (The log first: asking the registry below is itself a request for the name.)
    if let Some(log) = registry_log() {
        assert!(!log.contains(&p.name), "the registry was asked for {}", p.name);
    }
    assert_eq!(registry_digest(&p.registry, &p.name, &tag), None);

    // The Deployment runs exactly that image, and the kubelet found it on the node instead of pulling.
    let image = kubectl(&["-n", &ns.0, "get", "deployment", "hello", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}"]);
    assert_eq!(image, format!("{}:{tag}@{digest} IfNotPresent", p.name));
    let pod = live_pods(&ns.0, "hello").pop().expect("a pod");
    assert_eq!(eventually("page", 30, || page(&ns.0, &pod)), std::fs::read_to_string(p.path("app/www/index.html")).unwrap());
    let events = kubectl(&["-n", &ns.0, "get", "events", "--field-selector", &format!("involvedObject.name={pod}"), "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains("already present on machine"), "{events}");
    assert!(!events.contains("Pulling image"), "{events}");

    // Unchanged content: containerd has the tag complete, so there is nothing to build or import.
    let (out, _) = p.ok(&["deploy"]);
    assert!(!out.contains("imported") && out.contains("deployment") && out.contains("unchanged"), "{out}");
    let (out, _) = p.ok(&["build"]);
    assert!(out.contains(&format!("is already in the containerd at {}", socket())) && out.contains(&digest), "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_one_file_change_writes_only_the_changed_layer() {
    let p = project(None);
    let (out, _) = p.ok(&["build"]);
    let (first, _, _) = imported(&out, &p.name);

    p.write("app/www/index.html", "<p>one file changed</p>\n");
    let (out, _) = p.ok(&["build"]);
    let (second, written, blobs) = imported(&out, &p.name);
    assert_ne!(first, second);
    // What changed: the top layer (COPY www/), the config and the manifest; sizes from containerd's copy.
    let manifest: serde_json::Value = serde_json::from_str(&ctr(&["content", "get", &second])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let top = layers.last().unwrap()["size"].as_u64().unwrap();
    let config = manifest["config"]["size"].as_u64().unwrap();
    let manifest_size = ctr(&["content", "get", &second]).len() as u64;
    assert_eq!(blobs, 3, "{out}");
    // Only the new top layer is unpacked: the snapshots below it are the first image's.
    assert!(out.contains(&format!("unpacked 1 of {} layers", layers.len())), "{out}");
    assert_eq!(written, top + config + manifest_size, "{out}");
    // Every other layer is the first image's, which containerd already had.
    let before: serde_json::Value = serde_json::from_str(&ctr(&["content", "get", &first])).unwrap();
    assert_eq!(before["layers"].as_array().unwrap()[..layers.len() - 1], layers[..layers.len() - 1]);
}

#[test]
fn an_unreachable_socket_is_named_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/containerd.sock");
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        dir.path().join("devloop.toml"),
        format!(
            "[buildkit]\naddr = \"unix:///nonexistent.sock\"\n[registry]\nload = \"containerd\"\ncontainerd-socket = \"{}\"\n\
             [[image]]\nname = \"x\"\ncontext = \"app\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devloop")).arg("build").current_dir(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("containerd is unreachable at {}", missing.display())), "{err}");
    assert!(err.contains("registry.containerd-socket"), "{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_keeps_only_the_newest_images_in_containerd_and_those_in_use() {
    // The 20 saves: about 3 s an iteration on the stack.
    const EDITS: usize = 20;
    let ns = Namespace::new("ctrd-prune");
    let p = project(Some(&ns.0));
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap().replace("load = \"containerd\"\n", "load = \"containerd\"\nkeep = 3\n");
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
    // The manifests of this name's images in containerd (one `name@digest` record per image).
    let stored = || -> Vec<String> {
        let prefix = format!("docker.io/library/{}@", p.name);
        ctr(&["images", "ls", "-q"]).lines().filter_map(|l| l.strip_prefix(&prefix).map(str::to_string)).collect()
    };
    let deployed = || kubectl(&["-n", &ns.0, "get", "deployment", "hello", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    let started = std::time::Instant::now();
    let mut up = Up::start(&p);
    up.wait("iteration", 90);
    // A pod outside devloop's Deployment goes on running the first image: it must stay on the node.
    let pinned = deployed();
    kubectl(&["-n", &ns.0, "run", "pinned", &format!("--image={pinned}"), "--image-pull-policy=Never"]);
    eventually("the pinned pod running", 60, || {
        let phase = kubectl(&["-n", &ns.0, "get", "pod", "pinned", "-o", "jsonpath={.status.phase}"]);
        if phase == "Running" { Ok(()) } else { Err(phase) }
    });
    let mut second = String::new();
    for i in 1..=EDITS {
        p.write("app/www/index.html", &format!("<p>edit {i}</p>\n"));
        up.wait("iteration", 60);
        if i == 1 {
            second = deployed().split('@').nth(1).unwrap().to_string();
        }
    }
    // An image whose pod is still going away when a prune runs is in use and stays until a later prune (at
    // the quick pace of this loop, that happens): so what is asserted is the end. A last edit, once the
    // replaced pods are gone, prunes everything beyond the newest 3 and the pinned one.
    std::thread::sleep(std::time::Duration::from_secs(5));
    p.write("app/www/index.html", &format!("<p>edit {}</p>\n", EDITS + 1));
    up.wait("iteration", 60);
    let last = up.wait("prune", 30);
    assert!(last["message"].as_str().unwrap().ends_with("from the node's containerd; kept 4"), "{last}");
    eprintln!("{} iterations in {:?}", EDITS + 2, started.elapsed());
    up.settle(std::time::Duration::from_secs(2), 30);
    // Every image beyond those 4 was pruned once, and said so (`pruned N old image(s) of …`).
    let removed: usize = up.seen.iter().filter(|e| e["event"] == "prune").map(|e| e["message"].as_str().unwrap().split(' ').nth(1).unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(removed, EDITS + 2 - 4, "{:#?}", up.seen.iter().filter(|e| e["event"] == "prune").collect::<Vec<_>>());

    // The newest 3, the running pod's among them, and the pinned one; the pod serves the last edit.
    let left = stored();
    assert_eq!(left.len(), 4, "{left:?}");
    let running = deployed().split('@').nth(1).unwrap().to_string();
    assert!(left.contains(&running), "{running} not in {left:?}");
    assert!(left.contains(&pinned.split('@').nth(1).unwrap().to_string()), "{pinned} not in {left:?}");
    let pod = eventually("one pod", 60, || match live_pods(&ns.0, "hello").as_slice() {
        [one] => Ok(one.clone()),
        more => Err(format!("{more:?}")),
    });
    assert_eq!(eventually("page", 30, || page(&ns.0, &pod)), format!("<p>edit {}</p>\n", EDITS + 1));
    // The second image's records are gone, and the collector took its manifest with them.
    assert!(!left.contains(&second), "{second} in {left:?}");
    let content = ctr(&["content", "ls", "-q"]);
    assert!(!content.lines().any(|l| l == second), "{second} is still in the content store");
}

/// `devloop deploy` prunes as `up` does: after five deploys with `keep = 2`, the node holds the newest two
/// (and at most the one before, while its pod is still going away).
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn deploy_prunes_the_node_store_too() {
    let ns = Namespace::new("ctrd-prune-deploy");
    let p = project(Some(&ns.0));
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap().replace("load = \"containerd\"\n", "load = \"containerd\"\nkeep = 2\n");
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
    let stored = || -> Vec<String> {
        let prefix = format!("docker.io/library/{}@", p.name);
        ctr(&["images", "ls", "-q"]).lines().filter_map(|l| l.strip_prefix(&prefix).map(str::to_string)).collect()
    };
    let mut said = String::new();
    for i in 1..=5 {
        p.write("app/www/index.html", &format!("<p>deploy {i}</p>\n"));
        let (out, _) = p.ok(&["deploy"]);
        said.push_str(&out);
    }
    assert!(said.contains(&format!("{}: pruned 1 old image(s) of {} from the node's containerd", p.name, p.name)), "{said}");
    let left = stored();
    assert!((2..=3).contains(&left.len()), "{left:?}\n{said}");
    let running = kubectl(&["-n", &ns.0, "get", "deployment", "hello", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert!(left.contains(&running.split('@').nth(1).unwrap().to_string()), "{running} not in {left:?}");
}
