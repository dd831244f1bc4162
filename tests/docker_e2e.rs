//! Builds through Docker Engine's embedded BuildKit, against the stack's engine (Debian's docker.io 20.10,
//! DEVLOOP_STACK_DOCKER_HOST): push and roll out, a failed build's Dockerfile line, a killed engine, and
//! `load = true` (the image in the engine's store, run there). Run through scripts/test.

mod common;
use common::*;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::StreamExt;

/// The engine is stopped by one test: the tests in this file run one at a time.
static ENGINE: Mutex<()> = Mutex::new(());

fn socket() -> String {
    env("DEVLOOP_STACK_DOCKER_HOST").trim_start_matches("unix://").to_string()
}

/// devloop.toml's BuildKit address replaced by the stack's engine (`docker-unix://…`); `registry` is added to
/// the [registry] table.
fn through_engine(p: &Project, registry: &str) {
    let path = p.path("devloop.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("addr = ") {
            out.push_str(&format!("addr = \"docker-unix://{}\"\n", socket()));
        } else if line == "insecure = true" && !registry.is_empty() {
            out.push_str(&format!("insecure = true\n{registry}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

fn stack(args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack");
    let out = Command::new(script).args(args).output().unwrap();
    assert!(out.status.success(), "scripts/stack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the engine again when dropped, even if the test failed half-way.
struct RestartEngine;
impl Drop for RestartEngine {
    fn drop(&mut self) {
        stack(&["start", "dockerd"]);
    }
}

fn event(kind: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["event"] == kind
}

fn served(ns: &str, text: &str) {
    eventually("new content served", 60, || {
        let pods = live_pods(ns, "hello");
        pods.iter().find_map(|p| page(ns, p).ok().filter(|b| b.contains(text))).ok_or_else(|| format!("pods {pods:?}"))
    });
}

/// `<ref>@<digest>` from the "<verb>" line of `devloop build`.
fn result_line(stdout: &str, verb: &str) -> (String, String) {
    let marker = format!(": {verb} ");
    let line = stdout.lines().find(|l| l.contains(&marker)).unwrap_or_else(|| panic!("no `{verb}` line in {stdout}"));
    let r = line.split(&marker).nth(1).unwrap().split_whitespace().next().unwrap();
    let (reference, digest) = r.split_once('@').unwrap();
    (reference.to_string(), digest.to_string())
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_engine_builds_pushes_and_up_rolls_out_each_save() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Namespace::new("docker-up");
    let p = manifest_project(&ns.0, "");
    through_engine(&p, "");
    let tag = p.tag();

    // `devloop build`: the engine's BuildKit builds, the engine pushes, and the digest printed is the one the
    // registry serves for the tag.
    let (out, _) = p.ok(&["build"]);
    let (reference, digest) = result_line(&out, "pushed");
    assert_eq!(reference, format!("{}/{}:{tag}", p.registry, p.name));
    assert_eq!(registry_digest(&p.registry, &p.name, &tag).as_deref(), Some(digest.as_str()));

    // `devloop up`: that image rolls out; a save builds through the engine and rolls again.
    let mut up = Up::start(&p);
    let first = up.wait("iteration", 90);
    assert_eq!(first["tag"], tag.as_str());
    let image = template_image(&ns.0, "hello");
    assert_eq!(image, format!("{}/{}:{tag}@{digest}", p.registry, p.name));
    p.write("app/www/index.html", "<p>built by Docker Engine</p>\n");
    let second = up.wait("iteration", 90);
    assert_ne!(second["tag"], first["tag"]);
    assert_eq!(second["registry_hit"], false, "{second}");
    served(&ns.0, "built by Docker Engine");
    let new_tag = second["tag"].as_str().unwrap();
    let deployed = template_image(&ns.0, "hello");
    let served_digest = registry_digest(&p.registry, &p.name, new_tag).expect("the new tag is in the registry");
    assert_eq!(deployed, format!("{}/{}:{new_tag}@{served_digest}", p.registry, p.name));
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_failed_build_in_the_engine_names_the_dockerfile_line() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    through_engine(&p, "");
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    let line = dockerfile.lines().count() + 1;
    std::fs::write(p.path("app/Dockerfile"), format!("{dockerfile}RUN echo about to fail && exit 3\n")).unwrap();
    let out = p.devloop(&["build"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("Dockerfile:{line}: RUN echo about to fail && exit 3")), "{err}");
    assert!(err.contains("about to fail"), "the step's log is shown: {err}");
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()), None, "a failed build pushed");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_killed_engine_is_reported_like_a_killed_buildkitd_and_the_loop_recovers() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Namespace::new("docker-fault");
    let p = manifest_project(&ns.0, "");
    through_engine(&p, "");
    let mut up = Up::start(&p);
    up.wait_for("first iteration", 90, event("iteration"));
    let restart = RestartEngine;
    let before = template_image(&ns.0, "hello");
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    std::fs::write(p.path("app/Dockerfile"), format!("{dockerfile}RUN sleep 20\n")).unwrap();
    up.wait_for("a build", 30, event("building"));
    std::thread::sleep(Duration::from_millis(1500));
    // The stack's pid file for dockerd ($STATE/run, where its socket is).
    let run = std::path::Path::new(&socket()).parent().unwrap().to_path_buf();
    let pid = std::fs::read_to_string(run.join("dockerd.pid")).unwrap();
    Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
    // Its containerd and the build's processes go too, as `stack stop` does after a kill.
    stack(&["stop", "dockerd"]);
    let retry = up.wait_for("a retry", 30, |v| v["event"] == "retry" || v["event"] == "failed");
    let msg = retry["message"].as_str().unwrap_or("");
    eprintln!("after the kill: {retry}");
    assert_eq!(retry["event"], "retry", "a dead engine must be retried, not reported as a failed build: {retry}");
    assert!(
        msg.starts_with("BuildKit went away during the build") || msg.starts_with("BuildKit is unreachable at docker-unix://"),
        "{retry}"
    );
    for _ in 0..2 {
        let again = up.wait_for("another retry", 30, event("retry"));
        let m = again["message"].as_str().unwrap_or("");
        assert!(m.starts_with(&format!("BuildKit is unreachable at docker-unix://{}", socket())), "{again}");
        assert!(m.contains("scripts/stack start dockerd"), "the hint names the engine: {again}");
    }
    assert!(up.alive(), "devloop up exited when the engine died");
    assert_eq!(template_image(&ns.0, "hello"), before, "deployed during the outage");

    drop(restart);
    std::fs::write(p.path("app/Dockerfile"), &dockerfile).unwrap();
    p.write("app/www/index.html", "<p>after the engine came back</p>\n");
    up.wait_for("an iteration after the restart", 120, event("iteration"));
    served(&ns.0, "after the engine came back");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn load_true_puts_the_image_in_the_engine_and_it_runs_there() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Runtime::new().unwrap().block_on(load_and_run());
}

async fn load_and_run() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    through_engine(&p, "load = true");
    let tag = p.tag();
    let (out, _) = p.ok(&["build"]);
    let (reference, _) = result_line(&out, "loaded");
    assert_eq!(reference, format!("{}:{tag}", p.name));
    assert_eq!(registry_digest(&p.registry, &p.name, &tag), None, "load = true must not push");

    // The engine lists it under name:tag (asked through the Engine API, not through devloop).
    let docker = bollard::Docker::connect_with_unix(&socket(), 60, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let listed = docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.unwrap();
    assert!(listed.iter().any(|i| i.repo_tags.contains(&reference)), "{reference} not among the engine's images");

    // A rerun finds it there and builds nothing.
    let (again, _) = p.ok(&["build"]);
    assert!(again.contains("already in the image store of Docker Engine at") && !again.contains("loaded"), "{again}");

    // It runs, without a network, doing what examples/hello does: its start line, then the page it serves
    // holds this project's content (read inside the container: no network to fetch it over).
    let name = format!("{}-run", p.name);
    let config = bollard::models::ContainerCreateBody {
        image: Some(reference.clone()),
        host_config: Some(bollard::models::HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    docker.create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), config).await.unwrap();
    docker.start_container(&name, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    let mut logs = String::new();
    for _ in 0..50 {
        let mut s = docker.logs(&name, Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()));
        logs.clear();
        while let Some(Ok(chunk)) = s.next().await {
            logs.push_str(&chunk.to_string());
        }
        if logs.contains("serving") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let inspect = docker.inspect_container(&name, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap();
    let running = inspect.state.and_then(|s| s.running).unwrap_or(false);
    let exec = docker
        .create_exec(
            &name,
            bollard::exec::CreateExecOptions { cmd: Some(vec!["cat", "/www/nonce.txt"]), attach_stdout: Some(true), ..Default::default() },
        )
        .await
        .unwrap();
    let mut nonce = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await.unwrap() {
        while let Some(Ok(chunk)) = output.next().await {
            nonce.push_str(&chunk.to_string());
        }
    }
    let _ = docker.remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    assert!(logs.contains("hello: serving /www on :8080 (hello)"), "{logs}");
    assert!(running, "the server exited: {logs}");
    assert_eq!(nonce.trim(), p.name, "the image holds this project's content");
}

/// devloop.toml with no [buildkit] addr and, when `registry` is empty, no [registry] either.
fn unaddressed(p: &Project, registry: &str) {
    let cfg = format!(
        "{registry}\n[[image]]\nname = \"{}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{}\" }}\n",
        p.name, p.registry
    );
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn with_no_address_set_a_running_engine_builds_and_the_first_line_says_so() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    unaddressed(&p, &format!("[registry]\nhost = \"{}\"\ninsecure = true", p.registry));
    let docker_host = std::path::PathBuf::from(env("DEVLOOP_STACK_DOCKER_HOST"));
    let out = p.devloop_at(p.dir.path(), &["build"], &[("DOCKER_HOST", &docker_host)]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    assert_eq!(
        e.lines().next().unwrap_or(""),
        format!("devloop: using Docker Engine's BuildKit at unix://{} (no [buildkit] addr set)", socket())
    );
    let (_, digest) = result_line(&o, "pushed");
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()), Some(digest));

    // No engine answering there: the default buildkitd socket, as before (nothing listens there on the stack).
    let none = std::path::PathBuf::from("unix:///nonexistent/docker.sock");
    let out = p.devloop_at(p.dir.path(), &["build", "--force"], &[("DOCKER_HOST", &none)]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!e.contains("Docker Engine's BuildKit"), "{e}");
    assert!(e.contains("BuildKit is unreachable at unix:///run/buildkit/buildkitd.sock"), "{e}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_cluster_sharing_the_engine_store_gets_images_loaded_not_pushed() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    unaddressed(&p, "");
    // A kubeconfig whose current context is called docker-desktop (what Docker Desktop's cluster is named).
    let kc = kubeconfig_named(&p, "docker-desktop");
    let docker_host = std::path::PathBuf::from(env("DEVLOOP_STACK_DOCKER_HOST"));
    let out = p.devloop_at(p.dir.path(), &["build"], &[("DOCKER_HOST", &docker_host), ("KUBECONFIG", &kc)]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    assert!(e.contains("kube context docker-desktop shares Docker Engine's image store"), "{e}");
    let (reference, _) = result_line(&o, "loaded");
    assert_eq!(reference, format!("{}:{}", p.name, p.tag()));
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()), None, "auto-load must not push");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn loaded_images_deploy_with_a_policy_that_cannot_pull_on_managed_containers_only() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Namespace::new("docker-policy");
    let p = manifest_project(&ns.0, "rollout-timeout = \"20s\"");
    // A second container that devloop does not manage, with a policy of its own.
    let dep = std::fs::read_to_string(p.path("app/k8s/deployment.yaml")).unwrap();
    let sidecar = format!(
        "        - name: sidecar\n          image: {}/busybox:latest\n          imagePullPolicy: Always\n          \
         command: [sleep, \"3600\"]\n",
        p.registry
    );
    std::fs::write(p.path("app/k8s/deployment.yaml"), format!("{dep}{sidecar}")).unwrap();
    through_engine(&p, "load = true");
    let out = p.devloop(&["deploy"]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tag = p.tag();
    // The hint says what was changed and why, once, for devloop's container.
    let hints: Vec<&str> = o.lines().filter(|l| l.contains("imagePullPolicy") && l.contains(" -> ")).collect();
    assert_eq!(hints.len(), 1, "{o}\n{e}");
    assert!(hints[0].contains(&format!("{}:{tag}: imagePullPolicy unset -> Never", p.name)), "{o}");
    let policies = kubectl(&[
        "-n", &ns.0, "get", "deployment", "hello", "-o",
        "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image}={.imagePullPolicy} {end}",
    ]);
    assert!(policies.contains(&format!("web={}:{tag}=Never", p.name)), "{policies}");
    assert!(policies.contains(&format!("sidecar={}/busybox:latest=Always", p.registry)), "{policies}");
    // The stack's kubelet runs on its own containerd, not this engine's store: the pod cannot start, and
    // the rollout says why instead of pulling from somewhere.
    assert!(!out.status.success(), "{o}\n{e}");
    assert!(o.contains("ErrImageNeverPull") || e.contains("ErrImageNeverPull"), "{o}\n{e}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_patched_deployment_gets_the_policy_that_cannot_pull_with_the_hint() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Namespace::new("docker-patch");
    let p = running_patch_project(&ns, "20s", "");
    through_engine(&p, "load = true");
    let out = p.devloop(&["deploy"]);
    let o = String::from_utf8_lossy(&out.stdout);
    let tag = p.tag();
    assert!(o.contains(&format!("hint: {}:{tag}: imagePullPolicy IfNotPresent -> Never", p.name)), "{o}");
    let policy = kubectl(&[
        "-n", &ns.0, "get", "deployment", &p.name, "-o",
        "jsonpath={.spec.template.spec.containers[0].image}={.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(policy, format!("{}:{tag}=Never", p.name));
    assert!(!out.status.success() && o.contains("ErrImageNeverPull"), "{o}");
}

/// The stack engine's tcp+TLS listener and the environment `minikube docker-env` would give for it, with the
/// certificates from `certs`.
fn docker_env(certs: &std::path::Path) -> Vec<(&'static str, std::path::PathBuf)> {
    vec![
        ("DOCKER_HOST", env("DEVLOOP_STACK_DOCKER_TCP").into()),
        ("DOCKER_TLS_VERIFY", "1".into()),
        ("DOCKER_CERT_PATH", certs.to_path_buf()),
    ]
}

fn run(p: &Project, args: &[&str], envs: &[(&'static str, std::path::PathBuf)]) -> (bool, String, String) {
    let envs: Vec<(&str, &std::path::Path)> = envs.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let out = p.devloop_at(p.dir.path(), args, &envs);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn minikube_docker_env_over_tcp_tls_builds_and_pushes_with_no_address_set() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    unaddressed(&p, &format!("[registry]\nhost = \"{}\"\ninsecure = true", p.registry));
    let certs = std::path::PathBuf::from(env("DEVLOOP_STACK_DOCKER_CERTS"));
    let (ok, o, e) = run(&p, &["build"], &docker_env(&certs));
    assert!(ok, "{o}\n{e}");
    assert_eq!(
        e.lines().next().unwrap_or(""),
        format!(
            "devloop: using Docker Engine's BuildKit at {} (TLS, certificates in {}) (no [buildkit] addr set)",
            env("DEVLOOP_STACK_DOCKER_TCP"),
            certs.display()
        )
    );
    let (_, digest) = result_line(&o, "pushed");
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()), Some(digest));
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn minikube_docker_env_loads_images_into_the_tcp_engine_for_its_profile() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    unaddressed(&p, "");
    // A kubeconfig whose current context is minikube's profile, as after `minikube start`.
    let kc = kubeconfig_named(&p, "minikube");
    let mut envs = docker_env(std::path::Path::new(&env("DEVLOOP_STACK_DOCKER_CERTS")));
    envs.push(("MINIKUBE_ACTIVE_DOCKERD", "minikube".into()));
    envs.push(("KUBECONFIG", kc));
    let (ok, o, e) = run(&p, &["build"], &envs);
    assert!(ok, "{o}\n{e}");
    assert!(e.contains("kube context minikube shares Docker Engine's image store"), "{e}");
    let (reference, _) = result_line(&o, "loaded");
    assert_eq!(reference, format!("{}:{}", p.name, p.tag()));
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()), None, "auto-load must not push");
    // In the engine's store, seen through its unix socket.
    let found = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = bollard::Docker::connect_with_unix(&socket(), 30, bollard::API_DEFAULT_VERSION).unwrap();
        docker.inspect_image(&reference).await.is_ok()
    });
    assert!(found, "{reference} is not in the engine's store");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn tls_problems_and_plain_tcp_are_clear_errors_naming_the_address_and_certificates() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let registry = format!("[registry]\nhost = \"{}\"\ninsecure = true", p.registry);
    let tcp = env("DEVLOOP_STACK_DOCKER_TCP");
    let good = std::path::PathBuf::from(env("DEVLOOP_STACK_DOCKER_CERTS"));
    let copy = |dir: &str, files: &[&str]| {
        let d = p.path(dir);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::copy(good.join(f), d.join(f)).unwrap();
        }
        d
    };

    // A CA that did not sign the engine's certificate (the system's public roots).
    unaddressed(&p, &format!("[buildkit]\naddr = \"docker://\"\n\n{registry}"));
    let wrong_ca = copy("wrong-ca", &["cert.pem", "key.pem"]);
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", wrong_ca.join("ca.pem")).unwrap();
    let (ok, o, e) = run(&p, &["build"], &docker_env(&wrong_ca));
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains(&format!("BuildKit is unreachable at docker://: Docker Engine at {tcp}: ")), "{e}");
    assert!(e.contains("invalid peer certificate"), "{e}");
    assert!(e.contains(&format!("certificates in {}", wrong_ca.display())), "{e}");
    assert!(e.contains("check the engine's certificates"), "{e}");

    // No client certificate in DOCKER_CERT_PATH.
    let no_cert = copy("no-cert", &["ca.pem", "key.pem"]);
    let (ok, o, e) = run(&p, &["build"], &docker_env(&no_cert));
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains(&format!("BuildKit is unreachable at docker://: Docker Engine at {tcp}: ")), "{e}");
    assert!(e.contains(&format!("cannot read {}", no_cert.join("cert.pem").display())), "{e}");

    // Plain tcp (no DOCKER_TLS_VERIFY): refused, saying how to opt in.
    let plain = [("DOCKER_HOST", std::path::PathBuf::from(&tcp))];
    let (ok, o, e) = run(&p, &["build"], &plain);
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains(&format!("DOCKER_HOST={tcp} without DOCKER_TLS_VERIFY is plain TCP")), "{e}");
    assert!(e.contains("`insecure = true` under [buildkit]"), "{e}");
    // …and with no address set, the engine is not used and the first line says why.
    unaddressed(&p, &registry);
    let (ok, _, e) = run(&p, &["build"], &plain);
    assert!(!ok);
    assert!(e.lines().next().unwrap_or("").starts_with(&format!("devloop: not building with Docker Engine: DOCKER_HOST={tcp} without")), "{e}");

    // An engine devloop cannot speak to is an error, never the default socket.
    unaddressed(&p, &format!("[buildkit]\naddr = \"docker://\"\n\n{registry}"));
    let (ok, _, e) = run(&p, &["build"], &[("DOCKER_HOST", "ssh://me@10.201.0.2".into())]);
    assert!(!ok);
    assert!(e.contains("DOCKER_HOST=ssh://me@10.201.0.2: devloop speaks to Docker Engine over unix://"), "{e}");
}

/// The stack's kubeconfig with its context renamed `context` (the stack's cluster under a laptop cluster's name).
fn kubeconfig_named(p: &Project, context: &str) -> std::path::PathBuf {
    let kubeconfig = std::fs::read_to_string(env("KUBECONFIG")).unwrap().replace("devloop-local", context);
    let kc = p.path("kubeconfig");
    std::fs::write(&kc, kubeconfig).unwrap();
    kc
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_kube_context_flag_naming_a_shared_store_cluster_gets_images_loaded() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Namespace::new("docker-flag");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {}", p.name));
        std::fs::write(p.path(f), text).unwrap();
    }
    unaddressed(&p, "");
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let deploy = format!("[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\nrollout-timeout = \"20s\"\n", p.name);
    std::fs::write(p.path("devloop.toml"), format!("{cfg}{deploy}")).unwrap();
    // The stack's kubeconfig (current context devloop-local) plus a docker-desktop context for the same
    // cluster: only the flag names it.
    let kc = p.path("kubeconfig");
    std::fs::copy(env("KUBECONFIG"), &kc).unwrap();
    let kc_arg = format!("--kubeconfig={}", kc.display());
    let of = |field: &str| kubectl(&[&kc_arg, "config", "view", "-o", &format!("jsonpath={{.contexts[0].context.{field}}}")]);
    let (cluster, user) = (of("cluster"), of("user"));
    kubectl(&[&kc_arg, "config", "set-context", "docker-desktop", &format!("--cluster={cluster}"), &format!("--user={user}")]);
    let docker_host = std::path::PathBuf::from(env("DEVLOOP_STACK_DOCKER_HOST"));
    let args = ["deploy", "--kube-context", "docker-desktop", "--allow-context", "docker-desktop", "-n", &ns.0];
    let out = p.devloop_at(p.dir.path(), &args, &[("DOCKER_HOST", &docker_host), ("KUBECONFIG", &kc)]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(e.contains("kube context docker-desktop shares Docker Engine's image store"), "{o}\n{e}");
    let tag = p.tag();
    assert_eq!(template_image(&ns.0, "hello"), format!("{}:{tag}", p.name), "{o}\n{e}");
    assert_eq!(registry_digest(&p.registry, &p.name, &tag), None, "loaded, not pushed");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn pruning_the_engine_store_keeps_the_newest_and_those_a_container_uses() {
    let _one = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Runtime::new().unwrap().block_on(prune_loaded());
}

/// Four saves loaded into the engine, the first one made into a container: a prune keeping 2 removes only
/// the second (the prune `devloop up` runs after each rollout; the stack's kubelet cannot run engine images).
async fn prune_loaded() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    through_engine(&p, "load = true");
    let mut refs = Vec::new();
    for i in 0..4 {
        p.write("app/www/index.html", &format!("<p>save {i}</p>\n"));
        let (out, _) = p.ok(&["build"]);
        refs.push(result_line(&out, "loaded").0);
        // One second apart: the engine dates images to the second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let docker = bollard::Docker::connect_with_unix(&socket(), 60, bollard::API_DEFAULT_VERSION).unwrap().negotiate_version().await.unwrap();
    let name = format!("{}-pinned", p.name);
    let config = bollard::models::ContainerCreateBody { image: Some(refs[0].clone()), ..Default::default() };
    docker.create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), config).await.unwrap();

    let engine = devloop::docker::Engine::connect(&devloop::docker::Addr::Unix(socket().into())).await.unwrap();
    let pruned = engine.prune(&p.name, 2, &[]).await;
    let _ = docker.remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    let pruned = pruned.unwrap();
    let listed = docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.unwrap();
    let left: Vec<&String> = refs.iter().filter(|r| listed.iter().any(|i| i.repo_tags.contains(r))).collect();
    assert_eq!(left, [&refs[0], &refs[2], &refs[3]], "{pruned:?}");
    assert_eq!((pruned.removed, pruned.kept), (1, 3));
    // Removing the rest leaves nothing of the name behind.
    let again = engine.prune(&p.name, 1, &[]).await.unwrap();
    assert_eq!((again.removed, again.kept), (2, 1));
}
