//! BuildKit inside the cluster, reached through the API server (`kube-deployment://`, `kube-pod://`), on the
//! real stack: `devloop buildkit install` from the stack's buildkitd image, builds and deploys through
//! port-forwards, `buildkit status`, the context allow-list, and the BuildKit pod killed mid-build.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `devloop buildkit install` of the stack's image into `ns`, trusting both stack registries.
fn install(p: &Project, ns: &str) -> String {
    let (out, _) = p.ok(&[
        "buildkit", "install", "--namespace", ns, "--image", &env("DEVLOOP_STACK_BUILDKIT_IMAGE"),
        "--insecure-registry", &env("DEVLOOP_REGISTRY"),
        "--registry-ca", &format!("{}={}", env("DEVLOOP_STACK_AUTH_REGISTRY"), env("DEVLOOP_STACK_CA")),
    ]);
    out
}

/// The hello project building with the BuildKit installed in `bk`, deploying its manifests into `app`.
fn project(bk: &str, app: &str) -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {}", p.name));
        std::fs::write(p.path(f), text).unwrap();
    }
    p.write_config_full(
        &format!("addr = \"kube-deployment://buildkitd?namespace={bk}\""),
        "",
        &format!(
            "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{app}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n",
            p.name
        ),
    );
    p
}

/// The Ready, not deleting, pods of the installed BuildKit.
fn buildkit_pods(ns: &str) -> Vec<String> {
    let out = kubectl(&[
        "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=buildkitd",
        "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            [name, "True"] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// (bytes, records) from `buildkit status`'s cache line: `buildkit: cache: 3.0 MiB in 7 record(s), …`.
fn cache_line(out: &str) -> (String, usize) {
    let line = out.lines().find(|l| l.starts_with("buildkit: cache: ")).unwrap_or_else(|| panic!("no cache line: {out}"));
    let rest = &line["buildkit: cache: ".len()..];
    let (size, more) = rest.split_once(" in ").unwrap();
    (size.to_string(), more.split_whitespace().next().unwrap().parse().unwrap())
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn install_build_deploy_and_status_through_the_api_server() {
    let bk = Namespace::new("incluster-bk");
    let app = Namespace::new("incluster-app");
    let p = project(&bk.0, &app.0);
    let out = install(&p, &bk.0);
    assert!(out.contains(&format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0)), "{out}");
    // Idempotent: the same install again changes nothing and is ready at once.
    let again = install(&p, &bk.0);
    assert!(again.contains("ready in"), "{again}");
    let pods = buildkit_pods(&bk.0);
    assert_eq!(pods.len(), 1, "{pods:?}");
    // Only the pod's loopback: on the pod network (the API server's pod proxy dials the pod IP), nothing
    // listens on 1234.
    let direct = try_kubectl(&["get", "--raw", &format!("/api/v1/namespaces/{}/pods/{}:1234/proxy/", bk.0, pods[0])]);
    assert!(direct.as_ref().is_err_and(|e| e.contains("connection refused")), "buildkitd on the pod network: {direct:?}");

    let (status, _) = p.ok(&["buildkit", "status"]);
    assert!(status.contains(&format!("answers (pod {}/{})", bk.0, pods[0])) && status.contains("BuildKit v0.34.2"), "{status}");
    assert!(status.contains("buildkit: worker ") && status.contains("linux/amd64"), "{status}");

    // Build: the context goes through the session (FileSync) over the port-forward, the image is pushed.
    let (out, err) = p.ok(&["build"]);
    assert!(out.contains(&format!("{}: pushed ", p.name)), "{out}\n{err}");
    assert!(err.contains("[4/4] COPY www/ /www/"), "{err}");
    let tag = p.tag();
    assert!(registry_digest(&env("DEVLOOP_REGISTRY"), &p.name, &tag).is_some(), "{}:{tag} not in the registry", p.name);

    // What it cached shows in status (also through a kube-pod:// address to the same pod).
    let (status, _) = p.ok(&["buildkit", "status", "--addr", &format!("kube-pod://{}?namespace={}", pods[0], bk.0)]);
    let (size, records) = cache_line(&status);
    assert!(records > 0 && size != "0 B", "{status}");

    // Deploy an edit: built in the cluster, rolled out, serving.
    p.write("app/www/index.html", "<p>Hello from in-cluster BuildKit.</p>\n");
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains("pushed"), "{out}\n{err}");
    let live = eventually("the new pod", 60, || match live_pods(&app.0, "hello").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    assert!(page(&app.0, &live).unwrap().contains("in-cluster BuildKit"));

    // The session's Auth service works over the port-forward too: a push to the authenticated registry
    // (TLS from the CA in the ConfigMap) gets the credentials from DOCKER_CONFIG, and fails without them.
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    std::fs::write(
        p.path("devloop.toml"),
        format!(
            "[buildkit]\naddr = \"kube-deployment://buildkitd?namespace={bk}\"\n[registry]\nhost = \"{reg}\"\n\
             [[image]]\nname = \"{name}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{plain}\" }}\n",
            bk = bk.0,
            name = p.name,
            plain = env("DEVLOOP_REGISTRY"),
        ),
    )
    .unwrap();
    let user = env("DEVLOOP_STACK_AUTH_USER");
    let password = std::fs::read_to_string(env("DEVLOOP_STACK_AUTH_PASSWORD_FILE")).unwrap().trim().to_string();
    let (none, with) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    std::fs::write(with.path().join("config.json"), format!("{{\"auths\": {{\"{reg}\": {{\"auth\": \"{auth}\"}}}}}}")).unwrap();
    // --force: devloop's own registry client is not told of the stack CA here; BuildKit pushes.
    let denied = p.devloop_at(p.dir.path(), &["build", "--force"], &[("DOCKER_CONFIG", none.path())]);
    let err = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(1), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    let pushed = p.devloop_at(p.dir.path(), &["build", "--force"], &[("DOCKER_CONFIG", with.path())]);
    let (out, err) = (String::from_utf8_lossy(&pushed.stdout), String::from_utf8_lossy(&pushed.stderr));
    assert!(pushed.status.success(), "{out}\n{err}");
    assert!(out.contains(&format!("pushed {reg}/{}:", p.name)) && !out.contains(&password) && !err.contains(&password), "{out}");
    let manifest = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--cacert", &env("DEVLOOP_STACK_CA"), "-u", &format!("{user}:{password}")])
        .args(["-H", "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("https://{reg}/v2/{}/manifests/{}", p.name, p.tag()))
        .status()
        .unwrap();
    assert!(manifest.success(), "the authenticated registry has no {}:{}", p.name, p.tag());
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_context_not_allow_listed_is_refused_before_anything_is_sent() {
    // A "cluster" that only records whether anyone connected (and hangs up at once).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(c);
            }
        });
    }
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
             insecure-skip-tls-verify: true\nusers:\n- name: ci\n  user:\n    token: not-a-real-token\ncontexts:\n\
             - name: prod-eu\n  context:\n    cluster: prod\n    user: ci\ncurrent-context: prod-eu\n"
        ),
    )
    .unwrap();
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write_config_full("addr = \"kube-deployment://buildkitd?namespace=build\"", "", "");
    let connected = || seen.load(std::sync::atomic::Ordering::SeqCst) > 0;
    let run = |args: &[&str]| {
        let out = p.devloop_at(p.dir.path(), args, &[("KUBECONFIG", &kubeconfig)]);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    for args in [&["build"][..], &["buildkit", "status"], &["buildkit", "install", "--namespace", "build"]] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("kube context `prod-eu`") && err.contains("allow-contexts"), "{args:?}: {err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!connected(), "{args:?} connected to the cluster of a refused context");
    }
    // Allowed, the same command does talk to that cluster (so the listener would have seen the others).
    let (code, err) = run(&["build", "--allow-context", "prod-eu"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("BuildKit is unreachable at kube-deployment://buildkitd?namespace=build"), "{err}");
    assert!(connected(), "the allowed context was never contacted: {err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn killing_the_buildkit_pod_mid_build_fails_the_build_and_the_next_one_uses_the_new_pod() {
    let bk = Namespace::new("incluster-kill");
    let app = Namespace::new("incluster-kill-app");
    let p = project(&bk.0, &app.0);
    install(&p, &bk.0);
    let first = buildkit_pods(&bk.0);
    assert_eq!(first.len(), 1, "{first:?}");
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    p.write("app/Dockerfile", &dockerfile.replace("COPY serve.sh", &format!("RUN sleep 20 && echo {} > /slow\nCOPY serve.sh", p.name)));

    // `devloop build`, its pod deleted while the slow step runs: a failed build, saying what happened.
    let mut child = Command::new(env!("CARGO_BIN_EXE_devloop"))
        .arg("build")
        .current_dir(p.dir.path())
        .env_remove("DEVLOOP_REGISTRY")
        .env_remove("BUILDKIT_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l.clone());
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let l = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the slow step never started");
        if l.contains("RUN sleep 20") {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    kubectl(&["-n", &bk.0, "delete", "pod", &first[0], "--wait=false"]);
    let started = Instant::now();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(40), "the failure took {:?}", started.elapsed());
    assert!(
        err.contains("BuildKit went away during the build")
            && err.contains(&format!("the port-forward to pod {}/{} ended", bk.0, first[0])),
        "{err}"
    );
    assert!(registry_digest(&env("DEVLOOP_REGISTRY"), &p.name, &p.tag()).is_none(), "a killed build pushed");

    // The Deployment brings a new pod.
    let second = eventually("a new Ready BuildKit pod", 120, || match buildkit_pods(&bk.0).as_slice() {
        [one] if *one != first[0] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });

    // `devloop up`: its build is cut off the same way, reported, retried, and finished by the next pod.
    let mut up = Up::start(&p);
    up.wait("building", 60);
    std::thread::sleep(Duration::from_secs(4));
    kubectl(&["-n", &bk.0, "delete", "pod", &second, "--wait=false"]);
    let retry = up.wait_for("a retry", 60, |v| v["event"] == "retry" || v["event"] == "iteration");
    let msg = retry["message"].as_str().unwrap_or_default();
    assert!(retry["event"] == "retry" && msg.contains("went away") && msg.contains(&second), "{retry}");
    let it = up.wait("iteration", 240);
    assert_eq!(it["registry_hit"], false, "{it}");
    let third = buildkit_pods(&bk.0);
    assert!(third.len() == 1 && third[0] != second && third[0] != first[0], "{third:?}");
    let live = live_pods(&app.0, "hello");
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(page(&app.0, &live[0]).unwrap().contains("Hello from devloop"));
    up.interrupt();
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_buildkit_that_cannot_start_is_reported_by_install_status_and_build() {
    let bk = Namespace::new("incluster-bad");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write_config_full(&format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0), "", "");
    // An image nobody pushed (so no node has it either).
    let image = format!("{}/no-such-buildkit:{}", env("DEVLOOP_REGISTRY"), nonce());
    let out = p.devloop(&["buildkit", "install", "--namespace", &bk.0, "--image", &image, "--timeout", "90s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("deployment {}/buildkitd did not become ready: pod buildkitd-", bk.0)) && err.contains("ErrImagePull"), "{err}");
    for args in [&["buildkit", "status"][..], &["build"]] {
        let out = p.devloop(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("BuildKit is unreachable at kube-deployment://buildkitd?namespace={}: no Ready pod of deployment {}/buildkitd (buildkitd-", bk.0, bk.0))
                && (err.contains("ErrImagePull") || err.contains("ImagePullBackOff")),
            "{args:?}: {err}"
        );
    }
    let out = p.devloop(&["buildkit", "status", "--addr", &format!("kube-deployment://nothing?namespace={}", bk.0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("no such deployment {}/nothing", bk.0)), "{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_user_with_the_documented_rbac_builds_and_without_portforward_is_told_what_is_missing() {
    let bk = Namespace::new("incluster-rbac");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write_config_full(&format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0), "", "");
    install(&p, &bk.0);
    // A ServiceAccount with what the README says a developer needs in BuildKit's namespace, and no more.
    kubectl(&["-n", &bk.0, "create", "serviceaccount", "dev"]);
    // First only the Deployment: the pod watch cannot list, and says so.
    kubectl(&["-n", &bk.0, "create", "role", "find", "--verb=get,list", "--resource=deployments.apps"]);
    kubectl(&["-n", &bk.0, "create", "rolebinding", "find", "--role=find", &format!("--serviceaccount={}:dev", bk.0)]);
    let token = kubectl(&["-n", &bk.0, "create", "token", "dev"]);
    let server = kubectl(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let ca = kubectl(&["config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"]);
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: dev\n  user:\n    token: {}\ncontexts:\n- name: devloop-local\n  context: {{cluster: c, user: dev}}\n\
             current-context: devloop-local\n",
            token.trim()
        ),
    )
    .unwrap();
    let build = || p.devloop_at(p.dir.path(), &["build"], &[("KUBECONFIG", &kubeconfig)]);

    let out = build();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot watch the pods in namespace {}: ", bk.0)) && err.contains("forbidden"), "{err}");

    kubectl(&["-n", &bk.0, "create", "role", "watch", "--verb=get,list,watch", "--resource=pods"]);
    kubectl(&["-n", &bk.0, "create", "rolebinding", "watch", "--role=watch", &format!("--serviceaccount={}:dev", bk.0)]);
    let err = eventually("a build refused only the port-forward", 30, || {
        let out = build();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() == Some(1) && err.contains("pods/portforward") { Ok(err) } else { Err(err) }
    });
    assert!(err.contains("forbidden") && err.contains(&format!("`get` and `create` on pods/portforward in {}", bk.0)), "{err}");

    kubectl(&["-n", &bk.0, "create", "role", "forward", "--verb=get,create", "--resource=pods/portforward"]);
    kubectl(&["-n", &bk.0, "create", "rolebinding", "forward", "--role=forward", &format!("--serviceaccount={}:dev", bk.0)]);
    let out = eventually("a build with the port-forward role", 30, || {
        let out = build();
        if out.status.success() { Ok(out) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}: pushed ", p.name)));
}

/// A PersistentVolume (hostPath on this machine: the stack has one node and no provisioner) bound in
/// advance to claim `ns/claim`; deleted, with its directory, when dropped.
struct HostVolume {
    name: String,
    dir: tempfile::TempDir,
}

impl HostVolume {
    fn for_claim(ns: &str, claim: &str) -> HostVolume {
        let name = format!("incluster-{}", nonce());
        let dir = tempfile::Builder::new().prefix("devloop-incluster-pv").tempdir_in("/var/tmp").unwrap();
        let pv = format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: 1Gi}}\n  \
             accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: \"\"\n  \
             hostPath: {{path: {}, type: Directory}}\n  claimRef: {{namespace: {ns}, name: {claim}}}\n",
            dir.path().display()
        );
        let file = dir.path().join("pv.yaml");
        std::fs::write(&file, pv).unwrap();
        kubectl(&["apply", "-f", file.to_str().unwrap()]);
        std::fs::remove_file(file).unwrap();
        HostVolume { name, dir }
    }
}

impl Drop for HostVolume {
    fn drop(&mut self) {
        let _ = try_kubectl(&["delete", "pv", &self.name, "--wait=false"]);
        let _ = &self.dir; // removed by TempDir
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn with_pvc_the_cache_outlives_the_pod() {
    let bk = Namespace::new("incluster-pvc");
    let volume = HostVolume::for_claim(&bk.0, "buildkitd-state");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write_config_full(&format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0), "", "");
    let (out, _) = p.ok(&[
        "buildkit", "install", "--namespace", &bk.0, "--image", &env("DEVLOOP_STACK_BUILDKIT_IMAGE"),
        "--insecure-registry", &env("DEVLOOP_REGISTRY"), "--pvc", "1Gi",
    ]);
    assert!(out.contains(&format!("persistentvolumeclaim {}/buildkitd-state applied (1Gi)", bk.0)), "{out}");
    assert_eq!(kubectl(&["-n", &bk.0, "get", "pvc", "buildkitd-state", "-o", "jsonpath={.spec.volumeName}"]), volume.name);
    p.ok(&["build"]);
    let first = buildkit_pods(&bk.0);
    let (_, before) = cache_line(&p.ok(&["buildkit", "status"]).0);
    assert!(before > 0);

    kubectl(&["-n", &bk.0, "delete", "pod", &first[0]]);
    eventually("a new Ready BuildKit pod", 120, || match buildkit_pods(&bk.0).as_slice() {
        [one] if *one != first[0] => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let (_, after) = cache_line(&p.ok(&["buildkit", "status"]).0);
    assert!(after >= before, "the cache went from {before} to {after} records");
    // The same build again on the new pod: every step from the kept cache.
    let (out, err) = p.ok(&["build", "--force"]);
    assert!(out.contains("3/9 steps cached"), "{out}\n{err}");
    for step in ["[2/4] RUN mkdir -p /www", "[3/4] COPY serve.sh /serve.sh", "[4/4] COPY www/ /www/"] {
        assert!(err.lines().any(|l| l.contains(step) && l.ends_with(" CACHED")), "{step} not from the cache:\n{err}");
    }
    // The pod goes before its volume's directory does.
    kubectl(&["delete", "namespace", &bk.0, "--timeout=120s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack: run scripts/test"]
async fn one_client_reconnects_to_the_new_pod_after_a_restart() {
    use devloop::buildkit::{self, kube::Cluster};
    let bk = Namespace::new("incluster-reconnect");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    tokio::task::block_in_place(|| install(&p, &bk.0));
    let cfg = devloop::config::Buildkit { addr: format!("kube-deployment://buildkitd?namespace={}", bk.0), ..Default::default() };
    let kube = devloop::config::Kube { context: Some("devloop-local".into()), ..Default::default() };
    let opts = devloop::cluster::KubeOptions::default();
    let mut client = buildkit::connect(&cfg, Cluster { kube: &kube, opts: &opts }).await.unwrap();
    let via = client.via.clone().unwrap();
    let first = via.pod().unwrap();
    kubectl(&["-n", &bk.0, "delete", "pod", first.rsplit('/').next().unwrap()]);
    // The same client (one tonic channel): its connection broke with the pod; the next calls dial again
    // through the connector, which finds the Deployment's new pod once it is Ready.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client.control.list_workers(bollard_buildkit_proto::moby::buildkit::v1::ListWorkersRequest::default()).await {
            Ok(r) if !r.get_ref().record.is_empty() => break,
            other => assert!(Instant::now() < deadline, "no answer from a new pod: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let second = via.pod().unwrap();
    assert_ne!(first, second);
    assert!(buildkit_pods(&bk.0).iter().any(|p| second.ends_with(p.as_str())), "{second}");
}
