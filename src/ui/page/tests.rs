use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::engine::decide::view::fake::{built, changed, hashed, progress, rolled};
use crate::engine::decide::{Event, PodStages, Progress};
use crate::engine::out::{Failure, ImageView, Phase};
use crate::test_util::SharedBuf;
use crate::ui::tests::Driven;
use crate::ui::Ui;

fn d(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn summary(image: &str) -> Summary {
    Summary {
        image: image.into(),
        tag: "a1b2c3d4e5f6a7b8".into(),
        debounce: d(150),
        hash: d(4),
        build: d(800),
        steps: (7, 5),
        registry_hit: false,
        export: Some(d(120)),
        buildkit: None,
        rollout: d(1900),
        pod: PodStages { created: Some(d(30)), running: Some(d(700)), ready: Some(d(1850)) },
        total: d(2800),
    }
}

fn state(hub: &Hub) -> Value {
    serde_json::from_str(&hub.snapshot()).expect("the snapshot is JSON")
}

/// A snapshot of one image `hello` in `phase`, with `failure`.
fn one(phase: Phase, failure: Option<Failure>) -> Arc<Snapshot> {
    let v = ImageView { phase, since: std::time::Instant::now(), deployed: None, reference: None, synced: 0, deployments: vec![], forwards: vec![], runs: vec![], content: None, paused: false, failure };
    Arc::new(Snapshot { images: [("hello".to_string(), v)].into() })
}

/// The rollout of `tag` fails: the deploy's own `error`, or the rollout's `reason`.
fn rollout_failed(image: &str, tag: &str, error: Option<&str>, reason: Option<&str>) -> Event {
    let mut ev = rolled(image, tag, false);
    if let Event::RolledOut { error: e, reason: r, .. } = &mut ev {
        (*e, *r) = (error.map(str::to_string), reason.map(str::to_string));
    }
    ev
}

#[test]
fn a_built_iteration_is_split_into_the_stages_the_chart_stacks() {
    // Table: the summary, and the segments it becomes.
    let cases = [
        (
            summary("hello"),
            vec![("debounce", 150), ("hash", 4), ("build", 680), ("push", 120), ("pod start", 700), ("ready", 1200), ("other", 96)],
        ),
        // A registry hit built nothing; a rollout whose pod was never seen running is all readiness.
        (
            Summary { build: d(0), export: None, registry_hit: true, pod: PodStages::default(), total: d(2000), ..summary("hello") },
            vec![("debounce", 150), ("hash", 4), ("build", 0), ("push", 0), ("pod start", 0), ("ready", 1900), ("other", 96)],
        ),
        // Figures that do not add up (an export longer than the build) never make a negative segment.
        (
            Summary { export: Some(d(900)), total: d(100), ..summary("hello") },
            vec![("debounce", 150), ("hash", 4), ("build", 0), ("push", 800), ("pod start", 700), ("ready", 1200), ("other", 0)],
        ),
    ];
    for (s, want) in cases {
        assert_eq!(build_segments(&s), want, "{s:?}");
    }
    let sync = SyncSummary { debounce: d(50), sync: d(84), total: d(140), ..Default::default() };
    assert_eq!(sync_segments(&sync), vec![("debounce", 50), ("sync", 84), ("other", 56)]);
}

#[test]
fn the_chart_numbers_its_bars_and_keeps_only_the_last_ones() {
    let hub = Hub::default();
    for _ in 0..ITERATIONS + 5 {
        hub.iteration(&summary("hello"));
    }
    hub.synced(&SyncSummary { image: "api".into(), tag: "ffeeddccbbaa99".into(), files: 2, pods: 1, ..Default::default() });
    let v = state(&hub);
    let bars = v["iterations"].as_array().unwrap();
    assert_eq!(bars.len(), ITERATIONS);
    assert_eq!(bars[0]["n"], 7, "the oldest six went");
    let last = &bars[ITERATIONS - 1];
    assert_eq!((last["n"].as_u64(), last["kind"].as_str(), last["image"].as_str()), (Some(46), Some("sync"), Some("api")));
    assert_eq!((last["tag"].as_str(), last["note"].as_str()), (Some("ffeeddccbbaa"), Some("2 files → 1 pod")));
    assert_eq!(bars[0]["note"], "5/7 cached");
    assert_eq!(bars[0]["segments"][3], json!(["push", 120]));
}

#[test]
fn a_failure_keeps_its_error_and_the_lines_that_led_to_it() {
    let hub = Arc::new(Hub::default());
    let mut core = Driven::new(Ui::new(true, Box::new(SharedBuf::default())).with_page(hub.clone()));
    core.ui.line("devloop", "start", "context kind-dev, namespace dev; watching 1 image(s)");
    core.step(vec![changed(&["hello"]), hashed("hello", "a1b2c3d4e5f6a7b8"), built("hello", "a1b2c3d4e5f6a7b8")]);
    core.ui.line("hello", "log", "listening on :8080");
    core.step(vec![rolled("hello", "a1b2c3d4e5f6a7b8", true)]);
    // The success took its lines with it: only what came after it belongs to the failure.
    for i in 0..30 {
        core.ui.line("hello", "log", &format!("panic line {i}"));
    }
    core.ui.line("other", "log", "not hello's");
    let tag = "0123456789abcdef";
    core.step(vec![changed(&["hello"]), hashed("hello", tag), built("hello", tag)]);
    core.step(vec![rollout_failed("hello", tag, None, Some("CrashLoopBackOff: container app exited with code 2"))]);

    let v = state(&hub);
    assert_eq!(v["header"], "context kind-dev, namespace dev; watching 1 image(s)");
    let f = &v["failures"][0];
    assert_eq!((f["image"].as_str(), f["tag"].as_str()), (Some("hello"), Some("0123456789ab")));
    assert_eq!(f["error"], "CrashLoopBackOff: container app exited with code 2", "a rollout's failure is the reason its row gives");
    let lines: Vec<&str> = f["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(lines.len(), FAILURE_LINES);
    assert_eq!((lines[0], lines[FAILURE_LINES - 1]), ("panic line 5", "panic line 29"));
    assert_eq!(v["images"][0]["state"], "failed");

    // A build failure brings its own error, and a later success does not erase it (the page marks it fixed).
    let (broken, fixed) = ("fedcba9876543210", "a1b2c3d4e5f6a7b8");
    core.step(vec![changed(&["hello"]), hashed("hello", broken)]);
    core.step(vec![Event::BuildFailed { image: "hello".into(), tag: broken.into(), error: "Dockerfile:3: RUN exit 3\nexit code 3".into(), cancelled: false }]);
    let v = state(&hub);
    assert_eq!(v["failures"][0]["tag"], "fedcba987654");
    assert_eq!(v["failures"].as_array().unwrap().len(), 1, "the last failure per image");
    core.iteration("hello", fixed);
    let v = state(&hub);
    assert_eq!(v["failures"][0]["error"], "Dockerfile:3: RUN exit 3\nexit code 3");
    assert_eq!(v["failures"][0]["lines"], json!([]));
    assert_eq!((v["images"][0]["image"].as_str(), v["images"][0]["state"].as_str()), (Some("hello"), Some("serving")));
    assert_eq!(v["iterations"].as_array().unwrap().len(), 2);
}

#[test]
fn the_page_follows_the_images_state_even_without_a_terminal() {
    let hub = Arc::new(Hub::default());
    let mut core = Driven::new(Ui::new(false, Box::new(SharedBuf::default())).with_page(hub.clone()));
    core.state.forwarded("hello", "http://127.0.0.1:8080");
    core.step(vec![changed(&["hello"]), hashed("hello", "a1b2c3")]);
    let v = state(&hub);
    assert_eq!((v["images"][0]["state"].as_str(), v["images"][0]["busy"].as_bool()), (Some("building"), Some(true)));
    core.step(vec![built("hello", "a1b2c3"), progress("hello", "a1b2c3", Progress::Rolled(vec!["hello".into()])), rolled("hello", "a1b2c3", true)]);
    let v = state(&hub);
    let row = &v["images"][0];
    assert_eq!((row["state"].as_str(), row["busy"].as_bool()), (Some("serving"), Some(false)));
    assert_eq!(row["urls"], json!(["http://127.0.0.1:8080"]));
    assert!(row["text"].as_str().unwrap().contains("a1b2c3"), "{row}");
    // Where it runs, as the core's pod state says: the page lists each container of the deployed image.
    core.step(vec![crate::engine::decide::view::fake::runs("hello", "a1b2c3", "hello-7d9f")]);
    let v = state(&hub);
    assert_eq!(v["images"][0]["runs"], json!([{"pod": "hello-7d9f", "container": "web", "restarts": 0, "ready": true, "waiting": null, "synced": 0}]));
}

/// Reads one HTTP response from `addr` for `path`, up to `until` in its body (an event stream never ends).
async fn get(addr: std::net::SocketAddr, path: &str, until: &str) -> String {
    request(addr, &format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n"), until).await
}

/// Sends `head` (request line and headers, each ending in CRLF) and reads the answer up to `until`.
async fn request(addr: std::net::SocketAddr, head: &str, until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}connection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("an answer in time").unwrap();
        text.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&text).contains(until) {
            return String::from_utf8_lossy(&text).into_owned();
        }
    }
}

#[tokio::test]
async fn the_server_serves_the_page_its_state_and_a_live_event_stream() {
    let hub = Arc::new(Hub::default());
    hub.state(one(Phase::Watching, None));
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server::serve(listener, hub.clone(), stop.clone()));

    let page = get(addr, "/", "</html>").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("cache-control: no-store") && page.contains("new EventSource"), "{page}");
    assert!(!page.contains("https://"), "nothing comes from a CDN");
    let st = get(addr, "/state", "}").await;
    assert!(st.contains("application/json") && st.contains(r#""state":"watching""#), "{st}");

    // The stream sends the state at once, and again after a change.
    let events = tokio::spawn(get(addr, "/events", r#""n":1"#));
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.iteration(&summary("hello"));
    let text = events.await.unwrap();
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert_eq!(text.matches("event: state").count(), 2, "{text}");

    assert!(get(addr, "/nothing", "\r\n\r\n").await.starts_with("HTTP/1.1 404"));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server stops when told").unwrap();
}

#[test]
fn log_lines_wake_no_page_until_a_failure_shows_them() {
    let hub = Hub::default();
    let mut rx = hub.subscribe();
    hub.record(&json!({"event": "log", "image": "hello", "message": "GET / 200"}));
    assert!(!rx.has_changed().unwrap(), "a pod's log line is not sent to the open pages");
    let (_, version) = hub.versions();
    hub.log("hello", "log", Some("hello-7d9f"), Some("web"), "GET / 200");
    assert_eq!(hub.versions().1, version, "a pane's line is not a change of the state: it is not resent");
    hub.record(&json!({"event": "start", "image": "devloop", "message": "context c, namespace n"}));
    assert!(rx.has_changed().unwrap(), "the header is");
    assert!(hub.versions().1 > version, "and it is part of the state the pages are sent again");
    rx.borrow_and_update();
    let failure = Failure { n: 1, tag: None, error: "boom".into(), at: std::time::Instant::now() };
    hub.state(one(Phase::Failed("boom".into()), Some(failure.clone())));
    assert!(rx.has_changed().unwrap());
    assert_eq!(state(&hub)["failures"][0]["lines"], json!(["GET / 200"]));
    // The same failure in a later snapshot keeps its lines; lines after it are not its own.
    hub.record(&json!({"event": "log", "image": "hello", "message": "later"}));
    hub.state(one(Phase::Failed("boom".into()), Some(failure)));
    assert_eq!(state(&hub)["failures"][0]["lines"], json!(["GET / 200"]));
}

#[tokio::test]
async fn a_taken_address_is_an_error_that_names_it() {
    let first = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let err = server::bind(addr).await.unwrap_err();
    assert!(err.to_string().contains(&format!("cannot serve the status page on {addr}")), "{err}");
}

/// A deploy's own error (a multi-line Helm message) is the one failure the core reports for that rollout:
/// the page shows every line of it, and the lines that led to it.
#[test]
fn a_deploy_error_reaches_the_page_whole_with_the_lines_before_it() {
    let hub = Arc::new(Hub::default());
    let mut core = Driven::new(Ui::new(true, Box::new(SharedBuf::default())).with_page(hub.clone()));
    let tag = "a1b2c3d4e5f6a7b8";
    core.step(vec![changed(&["hello"]), hashed("hello", tag), built("hello", tag)]);
    core.ui.line("hello", "deploy", "helm upgrade --install hello ./chart");
    let error = "helm upgrade failed: exit status 1\nError: UPGRADE FAILED: template: hello/templates/x.yaml:3: bad\nline three";
    core.step(vec![rollout_failed("hello", tag, Some(error), None)]);
    let s = state(&hub);
    assert_eq!(s["failures"][0]["error"], error, "{s}");
    assert_eq!(s["failures"][0]["lines"], json!(["helm upgrade --install hello ./chart"]));
    assert_eq!(s["images"][0]["text"], "failed: helm upgrade failed: exit status 1");
    // A later failure, after a success, is news again.
    core.iteration("hello", tag);
    core.step(vec![changed(&["hello"]), hashed("hello", "0123456789"), built("hello", "0123456789"), rolled("hello", "0123456789", false)]);
    assert_eq!(state(&hub)["failures"][0]["error"], "rollout of 012345 failed");
}

#[tokio::test]
async fn the_server_answers_only_loopback_host_names_and_refuses_foreign_origins() {
    // A DNS-rebinding page reaches the server under its own name (Host) or from its own origin (Origin).
    let hub = Arc::new(Hub::default());
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let port = addr.port();
    let other = if port == 65535 { 1 } else { port + 1 };
    let stop = CancellationToken::new();
    let served = tokio::spawn(server::serve(listener, hub, stop.clone()));

    let answered = |path: &str, headers: &[String]| {
        let head = format!("GET {path} HTTP/1.1\r\n{}", headers.iter().map(|h| format!("{h}\r\n")).collect::<String>());
        async move { request(addr, &head, "\r\n\r\n").await }
    };
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("LocalHost:{port}"), format!("[::1]:{port}")] {
        for path in ["/", "/state"] {
            let r = answered(path, &[format!("host: {host}")]).await;
            assert!(r.starts_with("HTTP/1.1 200"), "Host {host}, {path}: {r}");
        }
        let own = answered("/state", &[format!("host: {host}"), format!("origin: http://{host}")]).await;
        assert!(own.starts_with("HTTP/1.1 200"), "Host and Origin {host}: {own}");
    }
    let forged: Vec<Vec<String>> = vec![
        vec![format!("host: evil.example:{port}")],
        vec!["host: evil.example".into()],
        vec![format!("host: localhost.evil.example:{port}")],
        vec![format!("host: 127.0.0.1.nip.io:{port}")],
        vec![format!("host: 127.0.0.1:{other}")],
        vec!["host: localhost".into()],
        vec![format!("host: user@127.0.0.1:{port}")],
        vec![],
        vec![format!("host: 127.0.0.1:{port}"), format!("origin: http://evil.example:{port}")],
        vec![format!("host: 127.0.0.1:{port}"), "origin: http://evil.example".into()],
        vec![format!("host: 127.0.0.1:{port}"), "origin: null".into()],
        vec![format!("host: 127.0.0.1:{port}"), format!("origin: http://127.0.0.1:{other}")],
    ];
    for headers in &forged {
        for path in ["/", "/state", "/events"] {
            let r = answered(path, headers).await;
            assert!(r.starts_with("HTTP/1.1 403"), "{headers:?} {path}: {r}");
            assert!(r.contains("refused") && !r.contains("iterations") && !r.contains("text/event-stream"), "{headers:?} {path}: {r}");
        }
    }
    // An absolute URI names the host the client meant, whatever Host says.
    let r = request(addr, &format!("GET http://evil.example:{port}/state HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"), "\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server stops when told").unwrap();
}

#[test]
fn bound_elsewhere_the_page_answers_its_own_address_and_bound_to_all_any_ip_but_no_other_name() {
    let uri: axum::http::Uri = "/state".parse().unwrap();
    let answers = |bound: &str, host: &str, origin: Option<&str>| {
        let mut h = axum::http::HeaderMap::new();
        h.insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            h.insert("origin", o.parse().unwrap());
        }
        server::Allowed::for_addr(bound.parse().unwrap()).check(&uri, &h).is_ok()
    };
    // (bound to, Host, Origin, answered?)
    let cases = [
        ("192.168.1.5:7070", "192.168.1.5:7070", None, true),
        ("192.168.1.5:7070", "192.168.1.5:7070", Some("http://192.168.1.5:7070"), true),
        ("192.168.1.5:7070", "localhost:7070", None, true),
        ("192.168.1.5:7070", "192.168.1.6:7070", None, false),
        ("192.168.1.5:7070", "devbox:7070", None, false),
        ("192.168.1.5:7070", "192.168.1.5:7070", Some("http://devbox:7070"), false),
        ("[2001:db8::5]:7070", "[2001:DB8::5]:7070", None, true),
        ("0.0.0.0:7070", "10.1.2.3:7070", None, true),
        ("0.0.0.0:7070", "0.0.0.0:7070", None, true),
        ("0.0.0.0:7070", "10.1.2.3:7071", None, false),
        ("0.0.0.0:7070", "evil.example:7070", None, false),
        ("[::]:7070", "[fe80::1]:7070", None, true),
        ("127.0.0.1:7070", "10.1.2.3:7070", None, false),
        ("127.0.0.1:80", "localhost", None, true),
        ("127.0.0.1:80", "localhost", Some("http://localhost"), true),
    ];
    for (bound, host, origin, want) in cases {
        assert_eq!(answers(bound, host, origin), want, "bound to {bound}, Host {host}, Origin {origin:?}");
    }
}

#[tokio::test]
async fn the_actions_queue_requests_only_with_the_page_s_token_from_its_own_origin() {
    use crate::engine::control::Request;
    let hub = Arc::new(Hub::default());
    hub.state(one(Phase::Held { changes: 2 }, None));
    let triggers = crate::engine::control::Triggers::new();
    hub.take_triggers(triggers.clone());
    let mut asked = triggers.take_for_test();
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server::serve(listener, hub.clone(), stop.clone()));
    let token = hub.token().to_string();
    assert_eq!(token.len(), 32, "128 random bits");
    assert_ne!(token, Hub::default().token(), "each up its own");
    let post = |path: &str, origin: Option<&str>, token: Option<&str>| {
        let origin = origin.map(|o| format!("origin: {o}\r\n")).unwrap_or_default();
        let token = token.map(|t| format!("x-devloop-token: {t}\r\n")).unwrap_or_default();
        let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n{origin}{token}content-length: 0\r\n");
        async move { request(addr, &head, "\n\n").await }
    };
    let own = format!("http://{addr}");
    for (path, want) in [
        ("/trigger?image=hello", Request::Trigger(vec!["hello".into()])),
        ("/rebuild?image=hello", Request::Rebuild("hello".into())),
        ("/pause?image=hello", Request::Pause("hello".into(), true)),
        ("/resume?image=hello", Request::Pause("hello".into(), false)),
    ] {
        let r = post(path, Some(&own), Some(&token)).await;
        assert!(r.starts_with("HTTP/1.1 202"), "{path}: {r}");
        assert_eq!(asked.try_recv().unwrap(), want);
    }
    // The page shows a button for what it holds.
    let v = state(&hub);
    assert_eq!((v["images"][0]["state"].as_str(), v["images"][0]["text"].as_str()), (Some("held"), Some("2 changed paths held: trigger to build")));
    let wrong = "0".repeat(32);
    for (path, origin, token, status) in [
        ("/rebuild?image=hello", Some(own.as_str()), None, "403"),
        ("/rebuild?image=hello", Some(own.as_str()), Some(wrong.as_str()), "403"),
        ("/pause?image=hello", None, Some(&token[..31]), "403"),
        ("/trigger?image=hello", Some("http://evil.example"), Some(token.as_str()), "403"),
        ("/trigger?image=nope", None, Some(token.as_str()), "404"),
        ("/rebuild", None, Some(token.as_str()), "400"),
    ] {
        let r = post(path, origin, token).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{path} {origin:?} {token:?}: {r}");
    }
    assert!(asked.try_recv().is_err(), "nothing queued for a refused request");
    // A read is not an action: GET is not allowed there.
    assert!(get(addr, "/rebuild?image=hello", "\r\n\r\n").await.starts_with("HTTP/1.1 405"));
    let page = get(addr, "/", "</html>").await;
    assert!(page.contains(&format!("content=\"{token}\"")), "the page is given its token");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server stops when told").unwrap();
}

/// Reads SSE events from an open stream until `until` is in the text read; the text.
async fn read_until(s: &mut tokio::net::TcpStream, until: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap_or_else(|_| panic!("no {until} in {}", String::from_utf8_lossy(&text))).unwrap();
        text.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&text).contains(until) {
            return String::from_utf8_lossy(&text).into_owned();
        }
    }
}

async fn open_events(addr: std::net::SocketAddr, last: Option<&str>) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let last = last.map(|l| format!("last-event-id: {l}\r\n")).unwrap_or_default();
    s.write_all(format!("GET /events HTTP/1.1\r\nhost: {addr}\r\n{last}\r\n").as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn the_stream_says_hello_sends_each_new_line_once_and_a_reconnecting_page_gets_what_it_missed() {
    let hub = Arc::new(Hub::default());
    hub.state(one(Phase::Watching, None));
    let ui = Ui::new(false, Box::new(SharedBuf::default())).with_page(hub.clone());
    ui.line("hello", "deploy", "deployment ns/hello rolled out");
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server::serve(listener, hub.clone(), stop.clone()));
    let boot = hub.boot().to_string();

    let mut s = open_events(addr, None).await;
    let first = read_until(&mut s, "event: state").await;
    assert!(first.contains("retry: 1000"), "a dropped page comes back within a second: {first}");
    let hello = first.split("event: hello\n").nth(1).unwrap().lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let hello: Value = serde_json::from_str(hello).unwrap();
    assert_eq!((hello["boot"].as_str(), hello["token"].as_str()), (Some(boot.as_str()), Some(hub.token())));
    assert_eq!(hello["limits"]["lines"], 2000);
    assert!(first.contains(&format!("id: {boot}:1")) && first.contains("deployment ns/hello rolled out"), "{first}");
    // A pod's line goes out alone, with its pod and container, and no state comes with it.
    crate::engine::out::Sink::pod_log(&ui, "hello", "hello-7d9f", "web", false, "GET / 200");
    let next = read_until(&mut s, "GET / 200").await;
    assert!(next.contains(&format!("id: {boot}:2")) && !next.contains("event: state"), "{next}");
    let data: Value = serde_json::from_str(next.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["lines"][0]["pod"], "hello-7d9f");
    assert_eq!((data["lines"][0]["source"].as_str(), data["lines"][0]["text"].as_str()), (Some("pods"), Some("GET / 200")));
    drop(s);

    // Lines said while the page was away come when it reconnects, and only those.
    ui.line("hello", "deploy", "said while away");
    let mut s = open_events(addr, Some(&format!("{boot}:2"))).await;
    let back = read_until(&mut s, "event: state").await;
    assert!(back.contains("said while away") && !back.contains("GET / 200"), "{back}");
    // A page last connected to another `up` (restarted) gets every line kept.
    let mut s = open_events(addr, Some("0123456789abcdef:2")).await;
    let other = read_until(&mut s, "event: state").await;
    assert!(other.contains("rolled out") && other.contains("GET / 200") && other.contains("said while away"), "{other}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server stops when told").unwrap();
}
