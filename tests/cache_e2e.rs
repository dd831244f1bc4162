//! The build cache travels, on the real stack: CI's `devloop build --cache-to type=registry,…,mode=max` on the
//! stack's buildkitd, then a fresh, empty BuildKit installed in the cluster builds the same image with the
//! config's `cache-from`: every step comes from the registry's cache (the slow RUN does not run) and the
//! image's digest is the same; `up` on a fresh BuildKit reads it too; `type=inline` goes into the image.

mod common;

use common::*;

/// (cached, total) and the digest from `build`'s line: `<name>: pushed <ref>@<digest> in 1.2s (3/5 steps cached; …)`.
fn result(out: &str, name: &str) -> ((usize, usize), String) {
    let line = out.lines().find(|l| l.starts_with(&format!("{name}: pushed "))).unwrap_or_else(|| panic!("no pushed line: {out}"));
    let digest = line.split('@').nth(1).and_then(|d| d.split_whitespace().next()).unwrap().to_string();
    let counts = line.split('(').nth(1).and_then(|r| r.split(" steps cached").next()).unwrap();
    let (cached, total) = counts.split_once('/').unwrap();
    ((cached.parse().unwrap(), total.parse().unwrap()), digest)
}

/// The hello project with a slow RUN unique to this run: only the registry's cache can answer it on a fresh
/// BuildKit. Returns the RUN line.
fn slow_project(p: &Project) -> String {
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    let slow = format!("RUN sleep 3 && mkdir -p /www && echo {} > /www/greeting.txt", p.name);
    let with_slow = dockerfile.replace("RUN mkdir -p /www && echo \"$GREETING\" > /www/greeting.txt", &slow);
    assert!(with_slow.contains("sleep 3"), "the example's RUN line changed: {dockerfile}");
    p.write("app/Dockerfile", &with_slow);
    slow
}

/// CI on the stack's buildkitd: build, push, and export every step's cache to `{registry}/cache/{name}`.
fn ci_build(p: &Project, slow: &str) -> String {
    let (out, err) = p.ok(&["build", "--cache-to", "type=registry,ref={registry}/cache/{name},mode=max"]);
    let ((cached, total), digest) = result(&out, &p.name);
    assert!(cached < total && err.contains(&format!("{slow} DONE")), "CI ran the RUN: {out}\n{err}");
    assert!(registry_digest(&p.registry, &format!("cache/{}", p.name), "latest").is_some(), "no cache manifest in the registry: {err}");
    digest
}

/// A fresh BuildKit installed in its own namespace (empty: asserted).
fn fresh_buildkit(p: &Project, prefix: &str) -> Namespace {
    let bk = Namespace::new(prefix);
    p.ok(&[
        "buildkit", "install", "--namespace", &bk.0, "--image", &env("DEVLOOP_STACK_BUILDKIT_IMAGE"),
        "--insecure-registry", &p.registry,
    ]);
    let (status, _) = p.ok(&["buildkit", "status", "--namespace", &bk.0]);
    assert!(status.contains(" in 0 record(s)"), "not an empty BuildKit: {status}");
    bk
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_cache_exported_by_ci_makes_a_fresh_buildkits_first_build_all_cached_with_the_same_digest() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let slow = slow_project(&p);
    let digest = ci_build(&p, &slow);

    // A developer's first build on a fresh BuildKit in the cluster, with the config's cache-from.
    let bk = fresh_buildkit(&p, "cache-bk");
    p.write_config_full(
        &format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0),
        "",
        "cache-from = \"type=registry,ref={registry}/cache/{name}\"",
    );
    // --force: the tag is already in the registry (CI pushed it); build it again all the same.
    let (out, err) = p.ok(&["build", "--force"]);
    let ((cached, _), again) = result(&out, &p.name);
    // The step list: every instruction after FROM is CACHED (none ran), and those are the cached steps
    // `build` counts; the build took less than the RUN's own 3 s.
    let steps: Vec<&str> = err.lines().filter(|l| l.contains("/4] ") && !l.contains("/4] FROM ") && (l.ends_with("CACHED") || l.contains(" DONE "))).collect();
    assert_eq!(steps.len(), 3, "RUN, COPY, COPY: {err}");
    assert!(steps.iter().all(|l| l.ends_with("CACHED")), "a step ran: {err}");
    assert_eq!(cached, 3, "{out}");
    let secs: f64 = out.split(" in ").nth(1).and_then(|r| r.split('s').next()).unwrap().parse().unwrap();
    assert!(secs < 3.0, "the slow RUN ran ({secs}s): {out}\n{err}");
    assert_eq!(again, digest, "the same image: {out}\n{err}");
}

/// `curl` GET of a registry path, as text.
fn registry_get(registry: &str, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"])
        .arg(format!("http://{registry}/v2/{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `up` reads the cache too: a save on a fresh BuildKit builds the changed COPY only, the slow RUN comes from
/// the registry's cache.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_on_a_fresh_buildkit_starts_from_the_registry_cache() {
    let app = Namespace::new("cache-up");
    let p = manifest_project(&app.0, "");
    let slow = slow_project(&p);
    ci_build(&p, &slow);
    let bk = fresh_buildkit(&p, "cache-up-bk");
    p.write_config_full(
        &format!("addr = \"kube-deployment://buildkitd?namespace={}\"", bk.0),
        "",
        &format!(
            "cache-from = \"type=registry,ref={{registry}}/cache/{{name}}\"\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n\
             [[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n",
            app.0, p.name
        ),
    );
    // New content (the tag CI pushed would be a registry hit, nothing built).
    p.write("app/www/index.html", "<p>Hello from the travelled cache.</p>\n");
    let mut up = Up::start(&p);
    let it = up.wait("iteration", 120);
    up.interrupt();
    assert_eq!(it["registry_hit"], false, "{it}");
    // RUN and COPY serve.sh from the registry's cache, COPY www/ built; the RUN's 3 s not spent.
    assert!(it["cached_steps"].as_u64().unwrap() >= 2, "{it}");
    assert!(it["build_ms"].as_u64().unwrap() < 3000, "the slow RUN ran: {it}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn an_inline_cache_goes_into_the_pushed_image_and_the_tag_stays() {
    let registry = env("DEVLOOP_REGISTRY");
    let p = Project::hello(&registry);
    let tag = p.tag();
    p.write_config("cache-to = \"type=inline\"");
    assert_eq!(p.tag(), tag, "same bytes, same tag");
    let (out, err) = p.ok(&["build"]);
    assert!(out.contains(&format!("{}: pushed {registry}/{}:{tag}@", p.name, p.name)), "{out}\n{err}");
    // The image's config carries BuildKit's cache metadata: the cache travels inside the image.
    let manifest: serde_json::Value = serde_json::from_str(&registry_get(&registry, &format!("{}/manifests/{tag}", p.name))).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap_or_else(|| panic!("{manifest}"));
    let config = registry_get(&registry, &format!("{}/blobs/{config}", p.name));
    assert!(config.contains("moby.buildkit.cache.v0"), "no inline cache in the image config: {config}");
}
