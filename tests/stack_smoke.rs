//! Smoke test of the local stack (`scripts/stack up`): a real buildkitd builds and pushes to the real registry,
//! a real kubelet runs the image, and a changed image rolls out with `kubectl set image`. It shells out to
//! buildctl and kubectl on purpose: it checks the stack, not devloop.
//!
//! Run through `scripts/test`, which brings the stack up and exports its environment.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through scripts/test (it starts the stack)")
    })
}

/// Runs a command and returns its stdout; panics with its stderr when it fails.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls `f` every 500 ms until it returns Some, or panics naming `what` after `secs`.
fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: still failing after {secs}s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Builds a FROM-busybox HTTP server that serves `page`, pushes it as `image`.
fn build_server_image(dir: &Path, registry: &str, image: &str, page: &str) {
    std::fs::write(dir.join("index.html"), page).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {registry}/busybox:latest\nCOPY index.html /www/index.html\n\
             CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    run(
        "buildctl",
        &[
            "--addr",
            &env("BUILDKIT_HOST"),
            "build",
            "--progress=plain",
            "--frontend=dockerfile.v0",
            &format!("--local=context={d}"),
            &format!("--local=dockerfile={d}"),
            &format!("--output=type=image,name={image},push=true"),
        ],
        None,
    );
}

fn pods(ns: &str) -> Vec<String> {
    run("kubectl", &["-n", ns, "get", "pods", "-l", "app=smoke", "-o", "name"], None)
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect()
}

/// The page served by `pod`, read through the API server's proxy to the pod IP on the stack's network.
fn page(ns: &str, pod: &str) -> Result<String, String> {
    try_run("kubectl", &["get", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/")])
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn build_push_run_and_roll_on_the_stack() {
    let registry = env("DEVLOOP_REGISTRY");
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() & 0xffffff);
    let ns = format!("smoke-{nonce}");
    let dir = tempfile::tempdir().unwrap();

    let v1 = format!("{registry}/smoke:{nonce}-1");
    build_server_image(dir.path(), &registry, &v1, &format!("hello {nonce} one\n"));

    run("kubectl", &["create", "namespace", &ns], None);
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: smoke, namespace: {ns}}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: smoke}}}}\n  template:\n\
         \x20   metadata: {{labels: {{app: smoke}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n\
         \x20     containers: [{{name: web, image: \"{v1}\", ports: [{{containerPort: 8080}}]}}]\n"
    );
    run("kubectl", &["apply", "-f", "-"], Some(&manifest));
    run("kubectl", &["-n", &ns, "rollout", "status", "deployment/smoke", "--timeout=180s"], None);
    let first = pods(&ns);
    assert_eq!(first.len(), 1, "one pod expected, got {first:?}");
    let old_pod = first[0].clone();
    let body = eventually("first page", 30, || page(&ns, &old_pod));
    assert_eq!(body, format!("hello {nonce} one\n"));

    // A second build with other content, rolled out by changing the image: no pod is deleted by hand.
    let v2 = format!("{registry}/smoke:{nonce}-2");
    build_server_image(dir.path(), &registry, &v2, &format!("hello {nonce} two\n"));
    run("kubectl", &["-n", &ns, "set", "image", "deployment/smoke", &format!("web={v2}")], None);
    run("kubectl", &["-n", &ns, "rollout", "status", "deployment/smoke", "--timeout=180s"], None);
    let new_pod = eventually("old pod gone", 60, || match pods(&ns).as_slice() {
        [only] if *only != old_pod => Ok(only.clone()),
        other => Err(format!("pods: {other:?}")),
    });
    let body = eventually("second page", 30, || page(&ns, &new_pod));
    assert_eq!(body, format!("hello {nonce} two\n"));

    run("kubectl", &["delete", "namespace", &ns, "--wait=false"], None);
}
