//! `devloop up --ui`: the status page in a real headless browser (Debian's Chromium) while the loop runs on
//! the real stack. The page is loaded once and never reloaded: each image's state, a bar per iteration and
//! the last failure reach it by themselves (server-sent events). Run through scripts/test.
//!
//! With `DEVLOOP_SCREENSHOTS=DIR`, the test also writes `DIR/page.png` (scripts/screenshots).

mod common;
#[path = "common/browser.rs"]
mod browser;

use browser::Browser;
use common::*;

/// `document.querySelector…` for the image's row, bars and failure.
fn row(image: &str) -> String {
    format!("document.querySelector('#images tr.image[data-image=\"{image}\"]')")
}

fn bars(image: &str) -> String {
    format!("document.querySelectorAll('#chart g.bar[data-image=\"{image}\"]')")
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_page_follows_the_loop_live_a_save_adds_a_bar_and_a_broken_build_shows_its_failure() {
    let ns = Namespace::new("page");
    let p = manifest_project(&ns.0, "[[port-forward]]\ndeployment = \"hello\"\nlocal = 0\nremote = 8080\n");
    let image = p.name.clone();
    let mut up = Up::start_with(&p, &["--ui"]);
    let url = up.wait("ui", 60)["url"].as_str().expect("the page's URL").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "loopback unless told otherwise: {url}");

    // Opened before the first rollout is done: what follows must arrive on its own.
    let mut b = Browser::open(&url, 1200, 860);
    b.until("the connection live", 30, "document.getElementById('conn').className === 'live'");
    let first = up.wait("iteration", 300);
    let state = b.until("the image serving", 30, &format!("{0}?.dataset.state === 'serving' && {0}.textContent", row(&image)));
    let first_tag = first["tag"].as_str().unwrap();
    assert!(state.as_str().unwrap().contains(&first_tag[..6]), "the row names the tag it serves: {state}");
    assert!(state.as_str().unwrap().contains("http://127.0.0.1:"), "and the forwarded URL: {state}");
    assert_eq!(b.eval(&format!("{}.length", bars(&image))), 1);
    // The bar is stacked from where the time went; its segments add up to the iteration's figures.
    let segs = b.eval(&format!("[...{}[0].querySelectorAll('rect.seg')].map(r => r.dataset.seg)", bars(&image)));
    for want in ["hash", "build", "ready"] {
        assert!(segs.as_array().unwrap().iter().any(|s| s == want), "no {want} segment in {segs}");
    }
    let header = b.eval("document.getElementById('where').textContent");
    assert!(header.as_str().unwrap().contains(&format!("namespace {}", ns.0)), "the header says where it deploys: {header}");

    // A save adds a bar, and the row goes through work in progress back to serving the new tag.
    p.write("app/www/index.html", "<p>seen on the page</p>\n");
    let second = up.wait("iteration", 300);
    b.until("a second bar", 30, &format!("{}.length === 2", bars(&image)));
    let second_tag = second["tag"].as_str().unwrap();
    b.until("the new tag served", 30, &format!("{}.textContent.includes('{}')", row(&image), &second_tag[..6]));
    let latest = b.eval("document.getElementById('latest').textContent");
    assert!(latest.as_str().unwrap().starts_with("latest: #2 "), "{latest}");

    // A broken Dockerfile: the row turns to failed and the failure shows the step and its log.
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    std::fs::write(p.path("app/Dockerfile"), format!("{dockerfile}RUN echo about to fail && exit 3\n")).unwrap();
    up.wait_for("the failed build", 300, |v| v["event"] == "failed");
    b.until("the row failed", 30, &format!("{}.dataset.state === 'failed'", row(&image)));
    let failure = b.until(
        "the failure",
        30,
        &format!("document.querySelector('#failures .failure[data-image=\"{image}\"]:not(.fixed) pre.error')?.textContent"),
    );
    assert!(failure.as_str().unwrap().contains("RUN echo about to fail && exit 3"), "the failing step is named: {failure}");
    assert_eq!(b.eval(&format!("{}.length", bars(&image))), 2, "a failed build adds no bar");
    // Its lines in the log pane are marked, and the row counts them.
    let marked = b.until("error lines", 30, &format!("document.querySelectorAll('#logs .line.error[data-image=\"{image}\"]').length"));
    let counted = b.eval(&format!("{}.querySelector('.errors').textContent", row(&image)));
    assert_eq!(counted.as_str().unwrap(), marked.to_string(), "the row counts the image's error lines");
    if let Ok(dir) = std::env::var("DEVLOOP_SCREENSHOTS") {
        b.screenshot(&std::path::Path::new(&dir).join("page.png"));
    }

    // Reverted: the content is what the pods run, so nothing is built (no bar), the row serves that tag
    // again and the failure is kept, marked fixed.
    std::fs::write(p.path("app/Dockerfile"), &dockerfile).unwrap();
    let back = up.wait("unchanged", 120);
    assert_eq!(back["tag"], second["tag"]);
    b.until("the failure marked fixed", 30, &format!("document.querySelector('#failures .failure.fixed[data-image=\"{image}\"]')"));
    b.until("the row serving again", 30, &format!("{}.dataset.state === 'serving'", row(&image)));
    assert_eq!(b.eval(&format!("{}.length", bars(&image))), 2);
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_page_address_that_is_taken_exits_2_and_names_it() {
    let ns = Namespace::new("page-taken");
    let p = manifest_project(&ns.0, "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = p.devloop(&["up", "--ui", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot serve the status page on {addr}")), "{stderr}");
}

/// A manual image on the page: a save shows as held on its row, and the row's button builds it.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_page_shows_a_held_change_and_its_button_builds_it() {
    let ns = Namespace::new("page-trigger");
    let p = manifest_project(&ns.0, "");
    let image = p.name.clone();
    // `trigger` belongs to the [[image]] table, which write_config ends with: put it there.
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap().replacen("[kube]", "trigger = \"manual\"\n[kube]", 1);
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
    let mut up = Up::start_with(&p, &["--ui"]);
    let url = up.wait("ui", 60)["url"].as_str().expect("the page's URL").to_string();
    let first = up.wait("iteration", 300);
    let mut b = Browser::open(&url, 1200, 860);
    b.until("the image serving", 30, &format!("{}?.dataset.state === 'serving'", row(&image)));

    p.write("app/www/index.html", "<h1>held until the button</h1>\n");
    up.wait("held", 30);
    let text = b.until("the row held", 30, &format!("{0}.dataset.state === 'held' && {0}.textContent", row(&image)));
    assert!(text.as_str().unwrap().contains("1 changed path held"), "{text}");
    assert_eq!(b.eval(&format!("{}.querySelector('button.trigger').textContent", row(&image))), "build held changes");
    b.eval(&format!("{}.querySelector('button.trigger').click()", row(&image)));
    up.wait("triggered", 30);
    let next = up.wait("iteration", 120);
    assert_ne!(next["tag"], first["tag"]);
    b.until("the row serving the new tag", 30, &format!("{}.textContent.includes('{}')", row(&image), &next["tag"].as_str().unwrap()[..6]));
    up.interrupt();
}
