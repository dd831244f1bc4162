//! Many services under one `up` (issue 22 item 4), on the stack: two copies of examples/hello, `db` and
//! `api`, in manifest mode. `api` depends on `db` (its first rollout waits for db's), is built only when
//! asked (`trigger = "manual"`, asked with `devloop trigger` from another process), and one build runs at a
//! time (`[buildkit] parallel = 1`). Then `up <api>` alone: db is left as deployed, even by a manifest of
//! api's deploy that names db's image. Run through scripts/test.

mod common;
use common::*;

/// `app` (a copy of examples/hello under `dir`) as Deployment `app` running image `image`; `delay` seconds
/// before its readiness probe first passes.
fn service(p: &Project, dir: &str, image: &str, delay: u32) {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for f in ["Dockerfile", "serve.sh", "www/index.html"] {
        p.write(&format!("{dir}/{f}"), "");
        std::fs::copy(example.join(f), p.path(&format!("{dir}/{f}"))).unwrap(); // serve.sh stays executable
    }
    p.write(&format!("{dir}/www/nonce.txt"), &format!("{image}\n"));
    let dep = std::fs::read_to_string(example.join("k8s/deployment.yaml")).unwrap();
    let dep = dep.replace("image: hello", &format!("image: {image}")).replace("hello", dir);
    let dep = dep.replace("periodSeconds: 1", &format!("periodSeconds: 1\n            initialDelaySeconds: {delay}"));
    p.write(&format!("{dir}/k8s/deployment.yaml"), &dep);
}

fn config(p: &Project, ns: &str, db: &str, api: &str, api_extra: &str, api_manifests: &str) {
    let reg = &p.registry;
    let bk = std::env::var("BUILDKIT_HOST").unwrap();
    p.write(
        "devloop.toml",
        &format!(
            "[buildkit]\naddr = \"{bk}\"\nparallel = 1\n[registry]\nhost = \"{reg}\"\ninsecure = true\n\
             [[image]]\nname = \"{db}\"\ncontext = \"db\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n\
             [[image]]\nname = \"{api}\"\ncontext = \"api\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n{api_extra}\n\
             [kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
             [[deploy]]\nimage = \"{db}\"\nmanifests = [\"db/k8s/*.yaml\"]\n\
             [[deploy]]\nimage = \"{api}\"\nmanifests = [{api_manifests}]\n"
        ),
    );
}

fn image_of(ns: &str, deployment: &str) -> String {
    kubectl(&["-n", ns, "get", "deployment", deployment, "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
}

/// Where `event` of `image` is in what `up` said.
fn at(seen: &[serde_json::Value], event: &str, image: &str) -> Option<usize> {
    seen.iter().position(|v| v["event"] == event && v["image"] == image)
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_dependent_manual_service_waits_for_its_dependency_builds_when_triggered_and_runs_alone() {
    let ns = Namespace::new("services");
    let mut p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (db, api) = (format!("{}-db", p.name), format!("{}-api", p.name));
    p.name = api.clone();
    service(&p, "db", &db, 4);
    service(&p, "api", &api, 0);
    config(&p, &ns.0, &db, &api, &format!("depends-on = [\"{db}\"]\ntrigger = \"manual\""), "\"api/k8s/*.yaml\"");

    let mut up = Up::start(&p);
    // Both roll out; api's first rollout waits for db's, which takes its 4 s probe delay.
    up.wait_for("api's iteration", 180, |v| v["event"] == "iteration" && v["image"] == api.as_str());
    let seen = up.seen.clone();
    assert!(seen.iter().any(|v| v["event"] == "queued"), "two new images, one build at a time: one waited for a slot: {seen:#?}");
    let waited = at(&seen, "waiting", &api).unwrap_or_else(|| panic!("api said it waits for db: {seen:#?}"));
    assert_eq!(seen[waited]["on"], serde_json::json!([db]));
    let db_done = at(&seen, "iteration", &db).expect("db rolled out first");
    assert!(waited < db_done && db_done < at(&seen, "iteration", &api).unwrap(), "{seen:#?}");

    // A save to the manual api is held: nothing built until asked.
    let before = image_of(&ns.0, "api");
    p.write("api/www/index.html", "<h1>api v2</h1>\n");
    let held = up.wait("held", 30);
    assert_eq!((held["image"].as_str(), held["changes"].as_u64()), (Some(api.as_str()), Some(1)));
    let meanwhile = up.quiet_for(std::time::Duration::from_secs(2));
    assert!(!meanwhile.iter().any(|v| v["event"] == "building"), "held, not built: {meanwhile:#?}");
    assert_eq!(image_of(&ns.0, "api"), before);

    // Another shell asks; an unknown image is a usage error naming the configured ones.
    let wrong = p.devloop(&["trigger", "nope"]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{err}");
    assert!(err.contains("no image named `nope`") && err.contains(&db) && err.contains(&api), "{err}");
    let (said, _) = p.ok(&["trigger", &api]);
    assert_eq!(said.trim(), format!("triggered: {api}"));
    up.wait("triggered", 10);
    let it = up.wait_for("api's new iteration", 120, |v| v["event"] == "iteration" && v["image"] == api.as_str());
    assert_ne!(image_of(&ns.0, "api"), before);
    let pod = live_pods(&ns.0, "api").pop().expect("an api pod");
    eventually("the triggered build served", 60, || page(&ns.0, &pod).and_then(|t| if t.contains("api v2") { Ok(()) } else { Err(t) }));
    assert!(it["tag"].is_string());
    up.interrupt();
    let gone = p.devloop(&["trigger", &api]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no `devloop up` is running"), "{}", String::from_utf8_lossy(&gone.stderr));

    // `up <api>` alone, its deploy also naming db's Deployment: db is left as deployed, its edits unseen.
    let db_image = image_of(&ns.0, "db");
    config(&p, &ns.0, &db, &api, "", "\"api/k8s/*.yaml\", \"db/k8s/deployment.yaml\"");
    p.write("db/www/index.html", "<h1>db v2, never built</h1>\n");
    p.write("api/www/index.html", "<h1>api v3</h1>\n");
    let mut up = Up::start_with(&p, &[&api]);
    let start = up.wait("start", 30);
    assert!(start["message"].as_str().unwrap().contains(&format!("watching 1 image(s) (left as deployed: {db})")), "{start}");
    up.wait_for("api's iteration", 120, |v| v["event"] == "iteration" && v["image"] == api.as_str());
    let said: Vec<String> = up.seen.iter().filter_map(|v| v["message"].as_str().map(str::to_string)).collect();
    assert!(said.iter().any(|m| m.contains("Deployment/db left as deployed") && m.contains(&db)), "{said:#?}");
    assert!(!up.seen.iter().any(|v| v["image"] == db.as_str() && v["event"] == "building"), "{:#?}", up.seen);
    assert_eq!(image_of(&ns.0, "db"), db_image, "the left-out image's Deployment is untouched");
    up.interrupt();
    let unknown = p.devloop(&["up", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no [[image]] named `nope`"));
}
