//! The port-forward of `devloop up` against the real stack (issue 22 item 5): after a save, the new pod takes
//! the forward's connections as soon as its port answers, well before its (slow) readiness probe makes it
//! Ready, while the old pod serves until then: a client polling through the switch sees no failed
//! connection, and never the old page again once the new one came. A `[[port-forward]]` may name a
//! StatefulSet. Run through scripts/test.

mod common;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// One GET / through `addr` on a new connection (as a browser's reload after the save): the body, or why not.
fn get(addr: &str) -> Result<String, String> {
    let mut c = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.0\r\nHost: devloop\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    c.read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("not a 200: {text:?}")),
    }
}

/// `hello:8080` of the forward `up` announced.
fn forward_addr(up: &mut Up) -> String {
    let fwd = up.wait("forward", 30);
    let url = fwd["message"].as_str().unwrap().split_whitespace().nth(1).unwrap().to_string();
    url.trim_start_matches("http://").to_string()
}

/// The Ready condition of each pod with label app=hello that is not being deleted: (name, "True"/"False").
fn readiness(ns: &str) -> Vec<(String, String)> {
    let out = kubectl(&[
        "-n", ns, "get", "pods", "-l", "app=hello", "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{'|'}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(who, _)| who.split_whitespace().count() == 1)
        .map(|(who, ready)| (who.trim().to_string(), ready.trim().to_string()))
        .collect()
}

/// A client polling the forward every 50 ms on new connections until told to stop: each answer's time and
/// body, or its failure.
struct Poller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, Result<String, String>)>>,
}

impl Poller {
    fn start(addr: &str) -> Poller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (addr, halt) = (addr.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = vec![];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push((Instant::now(), get(&addr)));
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Poller { stop, thread }
    }

    fn stop(self) -> Vec<(Instant, Result<String, String>)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The hello example whose server listens 2 s after its container starts (so a probe of a port not
/// listening yet must not count), with a readiness probe that makes a new pod Ready only 8 s after it
/// starts, port-forwarded.
fn slow_ready_project(ns: &Namespace, forward: &str) -> Project {
    let p = manifest_project(&ns.0, &format!("[[port-forward]]\n{forward} = \"hello\"\nremote = 8080\n"));
    let serve = std::fs::read_to_string(p.path("app/serve.sh")).unwrap();
    std::fs::write(p.path("app/serve.sh"), serve.replace("exec httpd", "sleep 2\nexec httpd")).unwrap();
    let dep = std::fs::read_to_string(p.path("app/k8s/deployment.yaml")).unwrap();
    let slow = dep.replace("            periodSeconds: 1\n", "            initialDelaySeconds: 8\n            periodSeconds: 10\n");
    assert_ne!(slow, dep, "the example's readiness probe moved");
    std::fs::write(p.path("app/k8s/deployment.yaml"), slow).unwrap();
    p
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn after_a_save_the_forward_serves_the_new_pod_before_it_is_ready_and_no_connection_fails() {
    let ns = Namespace::new("fwd");
    let p = slow_ready_project(&ns, "deployment");
    let mut up = Up::start(&p);
    let addr = forward_addr(&mut up);
    up.wait("iteration", 120);
    assert!(eventually("first page", 30, || get(&addr)).contains("Hello from devloop"));

    let poller = Poller::start(&addr);
    std::thread::sleep(Duration::from_millis(500));
    let saved = Instant::now();
    p.write("app/www/index.html", "<p>early</p>\n");
    let body = eventually("the new page through the forward", 60, || get(&addr).and_then(|b| if b.contains("early") { Ok(b) } else { Err(b) }));
    let served = saved.elapsed();
    // Asked of the API server after the new page came: the pod serving it is not Ready yet, the old one
    // still is (it served until the switch).
    let pods = readiness(&ns.0);
    assert_eq!(body, "<p>early</p>\n");
    let not_ready: Vec<_> = pods.iter().filter(|(_, r)| r != "True").collect();
    assert_eq!(not_ready.len(), 1, "served by a pod not Ready yet, beside the old Ready one: {pods:?}");
    assert!(pods.iter().any(|(_, r)| r == "True"), "{pods:?}");
    let new_pod = not_ready[0].0.clone();
    assert_eq!(page(&ns.0, &new_pod).unwrap(), "<p>early</p>\n", "{new_pod} is the new pod");

    let it = up.wait("iteration", 90);
    let ready = saved.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let polls = poller.stop();
    assert!(ready >= served + Duration::from_secs(3), "served after {served:?}, Ready (rollout done) after {ready:?}: {it}");

    let failed: Vec<_> = polls.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} polls failed through the switch: {failed:?}", failed.len(), polls.len());
    let bodies: Vec<bool> = polls.iter().map(|(_, r)| r.as_ref().unwrap().contains("early")).collect();
    let switched = bodies.iter().position(|&new| new).expect("the poller saw the new page");
    assert!(switched > 0, "the poller saw the old page first");
    assert!(bodies[switched..].iter().all(|&new| new), "once the new page came, never the old one again: {bodies:?}");
}

/// `statefulset = "hello"`: the forward goes to the StatefulSet's pod. Its one pod is replaced (the old one
/// goes first), so connections in between wait for the new one to answer instead of failing.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_forward_to_a_stateful_set_follows_its_pod_without_failing_a_connection() {
    let ns = Namespace::new("fwd-sts");
    let p = slow_ready_project(&ns, "statefulset");
    let dep = std::fs::read_to_string(p.path("app/k8s/deployment.yaml")).unwrap();
    let sts = dep.replace("kind: Deployment", "kind: StatefulSet").replacen("\nspec:\n", "\nspec:\n  serviceName: hello\n", 1);
    std::fs::remove_file(p.path("app/k8s/deployment.yaml")).unwrap();
    p.write("app/k8s/statefulset.yaml", &sts);
    let mut up = Up::start(&p);
    let addr = forward_addr(&mut up);
    up.wait("iteration", 120);
    assert!(eventually("first page", 30, || get(&addr)).contains("Hello from devloop"));

    let poller = Poller::start(&addr);
    p.write("app/www/index.html", "<p>stateful</p>\n");
    eventually("the new page through the forward", 60, || get(&addr).and_then(|b| if b.contains("stateful") { Ok(b) } else { Err(b) }));
    let pods = readiness(&ns.0);
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_ne!(pods[0].1, "True", "served before the new hello-0 is Ready: {pods:?}");
    up.wait("iteration", 90);
    let polls = poller.stop();
    let failed: Vec<_> = polls.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} polls failed while hello-0 was replaced: {failed:?}", failed.len(), polls.len());
}
