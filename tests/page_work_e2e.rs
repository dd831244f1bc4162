//! `devloop up --ui` as the page a developer keeps open: each image's log pane (build steps, pod logs) with a
//! filter and a source switch, the actions (rebuild, pause/resume) taken only with the page's token, what is
//! live (runs, forwards), and an `up` restart the open page survives. A real headless browser (Debian's
//! Chromium) on the real stack; the page is never reloaded. Run through scripts/test.
//!
//! With `DEVLOOP_SCREENSHOTS=DIR`, writes `DIR/page-logs.png` and `DIR/page-live.png` (scripts/screenshots).

mod common;
#[path = "common/browser.rs"]
mod browser;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use browser::Browser;
use common::*;
use serde_json::Value;

fn row(image: &str) -> String {
    format!("document.querySelector('#images tr.image[data-image=\"{image}\"]')")
}

/// Clicks the button of class `class` on the image's row.
fn click(b: &mut Browser, image: &str, class: &str) {
    b.eval(&format!("{}.querySelector('button.{class}').click()", row(image)));
}

/// The hello app, also printing `burst` numbered lines at once and then a line a second stamped with the
/// machine's uptime (busybox's `date` has no milliseconds; the pod and the test read the same kernel's clock).
fn ticking(p: &Project, burst: usize) {
    p.write(
        "app/serve.sh",
        &format!(
            "#!/bin/sh\necho \"hello: serving /www on :8080 ($(cat /www/greeting.txt))\"\n\
             i=0; while [ $i -lt {burst} ]; do echo \"burst $i\"; i=$((i+1)); done\n\
             while :; do echo \"tick $(cut -d' ' -f1 /proc/uptime)\"; sleep 1; done &\nexec httpd -f -p 8080 -h /www\n"
        ),
    );
}

/// Milliseconds since the epoch of an uptime stamp (seconds, as /proc/uptime says).
fn stamp_ms(uptime: f64) -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0;
    let up: f64 = std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    now - (up - uptime) * 1000.0
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The first iteration of each of `images`, by image.
fn firsts(up: &mut Up, images: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let mut got = std::collections::BTreeMap::new();
    while got.len() < images.len() {
        let v = up.wait("iteration", 300);
        got.insert(v["image"].as_str().unwrap().to_string(), v);
    }
    got
}

/// How many `kind` events for `image` are among `events`.
fn count(events: &[Value], kind: &str, image: &str) -> usize {
    events.iter().filter(|v| v["event"] == kind && v["image"] == image).count()
}

/// A POST to the page at `url` (`http://host:port/`) with `token` in X-Devloop-Token, if any: status, body.
fn post(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = token.map(|t| format!("X-Devloop-Token: {t}\r\n")).unwrap_or_default();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {authority}\r\n{header}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    let code = got.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, got.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The lines the pane shows now (not hidden): `[source, text]`.
fn shown(b: &mut Browser) -> Vec<(String, String)> {
    let v = b.eval("[...document.querySelectorAll('#logs .line:not([hidden])')].map(l => [l.dataset.source, l.textContent])");
    v.as_array().unwrap().iter().map(|l| (l[0].as_str().unwrap().to_string(), l[1].as_str().unwrap().to_string())).collect()
}

fn set_filter(b: &mut Browser, text: &str) {
    b.eval(&format!("(() => {{ const f = document.getElementById('filter'); f.value = {text:?}; f.dispatchEvent(new Event('input')); }})()"));
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_logs_pane_shows_pod_lines_within_a_second_filters_them_and_the_live_view_names_the_pod() {
    let ns = Namespace::new("page-logs");
    let p = manifest_project(&ns.0, "[[port-forward]]\ndeployment = \"hello\"\nlocal = 0\nremote = 8080\n");
    ticking(&p, 0);
    let image = p.name.clone();
    let mut up = Up::start_with(&p, &["--ui"]);
    let url = up.wait("ui", 60)["url"].as_str().expect("the page's URL").to_string();
    let mut b = Browser::open(&url, 1400, 900);
    b.until("the connection live", 30, "document.getElementById('conn').className === 'live'");
    let first = up.wait("iteration", 300);
    // Lines printed before the logs were followed come late by nature: count those printed from here on.
    let from = now_ms() + 1000;

    let ticks = "[...document.querySelectorAll('#logs .line[data-source=pods]')].filter(l => l.querySelector('.msg').textContent.startsWith('tick '))";
    b.until("eight tick lines", 60, &format!("{ticks}.length >= 8"));
    std::thread::sleep(Duration::from_secs(6));
    let got = b.eval(&format!("{ticks}.map(l => [l.querySelector('.msg').textContent, Number(l.dataset.seen), l.dataset.pod, l.dataset.image])"));
    let pods = live_pods(&ns.0, "hello");
    let mut late = vec![];
    for l in got.as_array().unwrap() {
        assert_eq!(l[3], image.as_str(), "a pod line is its image's: {l}");
        assert!(pods.iter().any(|p| l[2] == p.as_str()), "the line names its pod ({pods:?}): {l}");
        let uptime: f64 = l[0].as_str().unwrap()["tick ".len()..].trim().parse().unwrap();
        let printed = stamp_ms(uptime);
        if printed >= from as f64 {
            late.push((l[1].as_f64().unwrap() - printed).round() as i64);
        }
    }
    println!("pod line → page, ms after printing: {late:?}");
    assert!(late.len() >= 5, "too few lines printed after the rollout: {got}");
    assert!(late.iter().all(|ms| *ms <= 1000), "a pod line took more than 1 s to show: {late:?}");

    // The filter narrows the pane, as lines come too; case does not matter.
    let all = shown(&mut b).len();
    set_filter(&mut b, "TICK");
    let some = shown(&mut b);
    assert!(!some.is_empty() && some.len() < all, "the filter narrows {all} lines to {}", some.len());
    assert!(some.iter().all(|(_, t)| t.to_lowercase().contains("tick")), "{some:?}");
    b.until("a new matching line", 10, &format!("document.querySelectorAll('#logs .line:not([hidden])').length > {}", some.len()));
    set_filter(&mut b, "no line says this");
    assert_eq!(shown(&mut b).len(), 0);
    set_filter(&mut b, "");

    // The switch: the build's steps, or the pods' lines.
    b.eval("document.querySelector('#source button[data-source=build]').click()");
    let built = shown(&mut b);
    assert!(!built.is_empty() && built.iter().all(|(s, _)| s == "build"), "{built:?}");
    assert!(built.iter().any(|(_, t)| t.contains("COPY")), "the build's steps are there: {built:?}");
    b.eval("document.querySelector('#source button[data-source=pods]').click()");
    let from_pods = shown(&mut b);
    assert!(!from_pods.is_empty() && from_pods.iter().all(|(s, _)| s == "pods"), "{from_pods:?}");
    assert!(from_pods.iter().any(|(_, t)| t.contains("tick ")), "{from_pods:?}");

    // What is live: the deployed tag and reference, the container running it, the forward's pod.
    let tag = first["tag"].as_str().unwrap();
    let card = format!("document.querySelector('#live .card[data-image=\"{image}\"]')");
    let live = b.until("the live card", 30, &format!("{card}?.querySelector('.runs tr[data-pod]') && {card}.textContent"));
    assert!(live.as_str().unwrap().contains(&tag[..12]), "the deployed tag: {live}");
    assert!(live.as_str().unwrap().contains("@sha256:"), "the reference: {live}");
    let run = b.until("the run ready", 30, &format!("{card}.querySelector('.runs tr[data-pod][data-ready=true]')?.dataset.pod"));
    assert!(pods.iter().any(|p| run == p.as_str()), "{run} runs it ({pods:?})");
    // Where the forward sends new connections is shown before any connection is made, and a connection goes
    // there.
    let forward = b.until("the forward's pod", 30, &format!("{card}.querySelector('.forward[data-pod]:not([data-pod=\"\"])')?.dataset.pod"));
    assert_eq!(forward, run, "the forward goes to the running pod");
    let forwarded = b.eval(&format!("{card}.querySelector('.forward a').href"));
    let got = std::process::Command::new("curl").args(["-sf", forwarded.as_str().unwrap()]).output().unwrap();
    assert!(got.status.success(), "the forwarded URL {forwarded} answers");
    assert_eq!(b.eval(&format!("{card}.querySelector('.forward').dataset.pod")), run);

    // The colours follow the system's theme: light, then dark, without a reload.
    let theme = |b: &mut Browser, scheme: &str| {
        b.call("Emulation.setEmulatedMedia", serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}));
        let bg = b.eval("getComputedStyle(document.body).backgroundColor");
        let rgb: Vec<f64> = bg.as_str().unwrap().trim_start_matches("rgb(").trim_end_matches(')').split(',').map(|c| c.trim().parse().unwrap()).collect();
        (rgb[0] * 0.2126 + rgb[1] * 0.7152 + rgb[2] * 0.0722) / 255.0
    };
    let (light, dark) = (theme(&mut b, "light"), theme(&mut b, "dark"));
    assert!(light > 0.8 && dark < 0.2, "background luminance: light {light:.2}, dark {dark:.2}");
    if let Ok(dir) = std::env::var("DEVLOOP_SCREENSHOTS") {
        b.screenshot(&std::path::Path::new(&dir).join("page-dark.png"));
    }
    theme(&mut b, "light");

    if let Ok(dir) = std::env::var("DEVLOOP_SCREENSHOTS") {
        let dir = std::path::Path::new(&dir);
        b.eval(&format!("document.querySelector('#tabs button[data-image=\"{image}\"]').click()"));
        b.eval("document.querySelector('#source button[data-source=all]').click()");
        b.screenshot_of("#logbox", &dir.join("page-logs.png"));
        b.screenshot_of("main .col", &dir.join("page-live.png"));
    }
    up.interrupt();
}

/// Two images under `up --ui` in a namespace of their own, both rolled out, and the page open on them.
struct TwoUp {
    p: Project,
    image: String,
    other: String,
    up: Up,
    url: String,
    first: std::collections::BTreeMap<String, Value>,
    b: Browser,
}

impl TwoUp {
    fn start(ns: &Namespace) -> TwoUp {
        let (p, other) = two_images(&ns.0);
        let image = p.name.clone();
        let mut up = Up::start_with(&p, &["--ui"]);
        let url = up.wait("ui", 60)["url"].as_str().expect("the page's URL").to_string();
        let first = firsts(&mut up, &[&image, &other]);
        let b = Browser::open(&url, 1400, 900);
        TwoUp { p, image, other, up, url, first, b }
    }
}

/// Two images: the rebuild button builds one of them again (not a registry hit), once; the same request
/// without the page's token is refused and builds nothing.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_rebuild_button_builds_its_image_once_and_a_request_without_the_token_is_refused() {
    let ns = Namespace::new("page-rebuild");
    let TwoUp { p: _project, image, other, mut up, url, first, mut b } = TwoUp::start(&ns);
    for i in [&image, &other] {
        b.until("the image serving", 30, &format!("{}?.dataset.state === 'serving'", row(i)));
    }
    let mark = up.seen.len();

    let token = b.eval("document.querySelector('meta[name=\"devloop-token\"]').content");
    assert!(token.as_str().is_some_and(|t| !t.is_empty() && !t.contains("DEVLOOP")), "the page carries its token: {token}");
    for wrong in [None, Some("not-the-token")] {
        let (code, body) = post(&url, &format!("/rebuild?image={image}"), wrong);
        assert_eq!(code, 403, "token {wrong:?}: {body}");
    }
    let quiet = up.quiet_for(Duration::from_secs(3));
    assert_eq!(count(&quiet, "building", &image) + count(&quiet, "rebuild", &image), 0, "a refused request built: {quiet:#?}");

    // The page shows a refusal's reason: here, with a token that is not this `up`'s.
    b.eval("token = 'stale'");
    click(&mut b, &image, "rebuild");
    let refused = b.until("the refusal", 10, "document.querySelector('#notice.refused')?.textContent");
    assert!(refused.as_str().unwrap().contains("403") && refused.as_str().unwrap().contains("token"), "{refused}");
    b.eval(&format!("token = {token}"));
    let quiet = up.quiet_for(Duration::from_secs(2));
    assert_eq!(count(&quiet, "building", &image) + count(&quiet, "rebuild", &image), 0, "a refused request built: {quiet:#?}");

    click(&mut b, &image, "rebuild");
    let again = up.wait_for("the rebuilt iteration", 240, |v| (v["event"] == "iteration" && v["image"] == image.as_str()) || v["event"] == "failed");
    assert_eq!(again["event"], "iteration", "{again}");
    assert_eq!(again["tag"], first[&image]["tag"], "nothing changed: the same tag");
    assert_eq!(again["registry_hit"], false, "a forced build is not a registry hit: {again}");
    up.settle(Duration::from_secs(3), 60);
    let since = &up.seen[mark..];
    assert_eq!(count(since, "building", &image), 1, "{since:#?}");
    assert_eq!(count(since, "building", &other), 0, "the other image was not built: {since:#?}");
    assert_ne!(b.eval("document.getElementById('notice').className"), "refused");
    b.until("a second bar", 30, &format!("document.querySelectorAll('#chart g.bar[data-image=\"{image}\"]').length === 2"));
    up.interrupt();
}

/// Two images: one paused holds its changes while the other still builds; resumed, it builds what it held.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn pause_holds_one_images_changes_while_the_other_builds_and_resume_builds_them() {
    let ns = Namespace::new("page-pause");
    let TwoUp { p, image, other, mut up, url: _, first, mut b } = TwoUp::start(&ns);
    b.until("the image serving", 30, &format!("{}?.dataset.state === 'serving'", row(&other)));
    assert_eq!(b.eval(&format!("{}.querySelector('button.pause').textContent", row(&other))), "pause");

    click(&mut b, &other, "pause");
    up.wait_for("paused", 30, |v| v["event"] == "paused" && v["image"] == other.as_str());
    b.until("the resume button", 30, &format!("{}.querySelector('button.pause').textContent === 'resume'", row(&other)));
    let mark = up.seen.len();
    p.write("app2/www/index.html", "<p>held while paused</p>\n");
    p.write("app/www/index.html", "<p>built meanwhile</p>\n");
    let built = up.wait_for("the other image's iteration", 240, |v| v["event"] == "iteration" && v["image"] == image.as_str());
    assert_ne!(built["tag"], first[&image]["tag"]);
    up.seen_or_wait_for("the held change", 30, |v| v["event"] == "held" && v["image"] == other.as_str());
    up.settle(Duration::from_secs(3), 60);
    assert_eq!(count(&up.seen[mark..], "building", &other), 0, "a paused image was built: {:#?}", &up.seen[mark..]);
    let paused = b.eval(&format!("{}.dataset.paused", row(&other)));
    assert_eq!(paused, "true");

    click(&mut b, &other, "pause");
    up.wait_for("resumed", 30, |v| v["event"] == "resumed" && v["image"] == other.as_str());
    let resumed = up.wait_for("the held change built", 240, |v| (v["event"] == "iteration" && v["image"] == other.as_str()) || v["event"] == "failed");
    assert_eq!(resumed["event"], "iteration", "{resumed}");
    assert_ne!(resumed["tag"], first[&other]["tag"], "what was held is built");
    b.until("the pause button again", 30, &format!("{}.querySelector('button.pause').textContent === 'pause'", row(&other)));
    up.interrupt();
}

/// The page stays open across an `up` restart on the same address: it reconnects by itself, starts its panes
/// over, and its actions take the new process's token.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_open_page_survives_an_up_restart_and_acts_with_the_new_token() {
    let ns = Namespace::new("page-restart");
    let p = manifest_project(&ns.0, "");
    ticking(&p, 2500);
    let image = p.name.clone();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut up = Up::start_with(&p, &["--ui", &addr]);
    let url = up.wait("ui", 60)["url"].as_str().expect("the page's URL").to_string();
    // Open while the lines come: the page keeps the newest 2000 of the image's (more than that arrive).
    let mut b = Browser::open(&url, 1400, 900);
    b.until("the connection live", 30, "document.getElementById('conn').className === 'live'");
    up.wait("iteration", 300);
    let mine = format!("[...document.querySelectorAll('#logs .line[data-image=\"{image}\"]')]");
    b.until("the last burst line", 60, &format!("{mine}.some(l => l.textContent.endsWith('burst 2499'))"));
    b.until("a tick after it", 30, &format!("{mine}.some(l => l.textContent.includes(' tick '))"));
    let kept = b.eval(&format!("[{mine}.length, {mine}.filter(l => l.dataset.source === 'build').length, {mine}.some(l => l.textContent.endsWith('burst 499'))]"));
    assert_eq!(kept[0], 2000, "the image's lines are capped: {kept}");
    assert_eq!(kept[1], 0, "the oldest (the build's) went first: {kept}");
    assert_eq!(kept[2], false, "the burst's first lines went: {kept}");
    let boot = b.until("the boot", 10, "document.body.dataset.boot");
    let token = b.eval("token");
    b.eval("window.marker = 1");

    up.interrupt();
    b.until("the connection lost", 30, "document.getElementById('conn').className === 'lost'");
    let restarted = now_ms();
    let mut up = Up::start_with(&p, &["--ui", &addr]);
    up.wait("ui", 60);
    b.until("the connection live again", 30, &format!("document.getElementById('conn').className === 'live' && document.body.dataset.boot !== {boot}"));
    assert_eq!(b.eval("window.marker"), 1, "the page was not reloaded");
    assert_ne!(b.eval("token"), token, "the new process's token");
    b.until("new lines", 60, &format!("[...document.querySelectorAll('#logs .line')].some(l => Number(l.dataset.seen) > {restarted})"));
    let old = b.eval(&format!("[...document.querySelectorAll('#logs .line')].filter(l => Number(l.dataset.seen) < {restarted}).length"));
    assert_eq!(old, 0, "the old process's lines were cleared");
    b.until("the image's row", 60, &row(&image));

    click(&mut b, &image, "rebuild");
    up.wait_for("the rebuild asked", 30, |v| v["event"] == "rebuild" && v["image"] == image.as_str());
    up.wait_for("its build", 60, |v| v["event"] == "building" && v["image"] == image.as_str());
    assert_ne!(b.eval("document.getElementById('notice').className"), "refused");
    up.interrupt();
}
