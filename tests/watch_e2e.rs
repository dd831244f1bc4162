//! What `devloop up` watches, against the real stack: every input of the content tag leads to exactly one
//! build of the tag `devloop hash` gives — the Dockerfile and ignore files even when `.dockerignore` excludes
//! them, a Dockerfile outside the context, devloop.toml itself — and a `git checkout`-like burst loses
//! nothing. `--cleanup` removes what was applied even when no rollout succeeded. Run through scripts/test.

mod common;
use common::*;

use std::time::Duration;

fn kind(v: &serde_json::Value) -> &str {
    v["event"].as_str().unwrap_or("")
}

fn count(events: &[serde_json::Value], what: &str) -> usize {
    events.iter().filter(|e| kind(e) == what).count()
}

/// Waits for the iteration after an edit, then for quiet; asserts that the edit was exactly one build, of the
/// tag `devloop hash` now gives, and returns that tag.
fn one_build(p: &Project, up: &mut Up, what: &str) -> String {
    let start = up.seen.len();
    let it = up.wait_for(&format!("the iteration after {what}"), 90, |v| kind(v) == "iteration" || kind(v) == "failed");
    assert_eq!(kind(&it), "iteration", "{what}: {it}");
    up.settle(Duration::from_millis(1500), 60);
    let events = &up.seen[start..];
    assert_eq!(count(events, "building"), 1, "{what} must be exactly one build: {events:#?}");
    let tag = it["tag"].as_str().unwrap().to_string();
    assert_eq!(tag, p.tag(), "{what}: the loop built another tag than `devloop hash` gives");
    tag
}

/// A project without [[deploy]] (the loop then stops at the build), whose .dockerignore excludes the
/// Dockerfile and itself — the common pattern that used to make edits to them go unseen.
fn self_ignoring_project() -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("app/.dockerignore", ".env\n*.log\nk8s/\nDockerfile\n.dockerignore\n");
    p
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn every_input_of_the_tag_is_watched_and_each_edit_is_one_build() {
    let p = self_ignoring_project();
    let mut up = Up::start(&p);
    let mut tag = one_build(&p, &mut up, "the start");

    // The Dockerfile, excluded from the context by .dockerignore.
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    p.write("app/Dockerfile", &format!("{dockerfile}ENV EDIT=1\n"));
    let t = one_build(&p, &mut up, "an edit of the excluded Dockerfile");
    assert_ne!(t, tag);
    tag = t;

    // .dockerignore, which excludes itself: a new pattern changes what the build sees.
    p.write("app/.dockerignore", ".env\n*.log\nk8s/\nDockerfile\n.dockerignore\nwww/nonce.txt\n");
    let t = one_build(&p, &mut up, "an edit of the self-excluding .dockerignore");
    assert_ne!(t, tag);
    tag = t;
    // …and the new filter decides what is watched: the newly excluded file no longer triggers anything.
    p.write("app/www/nonce.txt", "excluded now");
    let noise = up.quiet_for(Duration::from_millis(1500));
    assert_eq!(count(&noise, "building") + count(&noise, "unchanged"), 0, "{noise:#?}");

    // <Dockerfile>.dockerignore beside the Dockerfile, which BuildKit prefers: it takes over the filter.
    p.write("app/Dockerfile.dockerignore", "k8s/\nwww/index.html\n");
    let t = one_build(&p, &mut up, "a new Dockerfile.dockerignore");
    assert_ne!(t, tag);

    // An editor's save of an input that changes nothing the build sees: no build.
    p.write("app/Dockerfile.dockerignore", "k8s/\nwww/index.html\n");
    let noise = up.quiet_for(Duration::from_millis(1500));
    assert_eq!(count(&noise, "building"), 0, "{noise:#?}");
    assert!(up.alive());
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn devloop_toml_and_a_dockerfile_outside_the_context_are_watched() {
    let p = self_ignoring_project();
    let mut up = Up::start(&p);
    let first = one_build(&p, &mut up, "the start");

    // A build arg in devloop.toml: re-read, one build, without restarting.
    p.write_config_with_args("GREETING = \"bonjour\"", "");
    let second = one_build(&p, &mut up, "a new build arg in devloop.toml");
    assert_ne!(second, first);

    // A broken devloop.toml is reported with its file, line and key; the loop keeps the last good config.
    std::fs::write(p.path("devloop.toml"), std::fs::read_to_string(p.path("devloop.toml")).unwrap().replace("context = ", "contxt = ")).unwrap();
    let err = up.wait_for("the config error", 30, |v| kind(v) == "config");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("devloop.toml:") && msg.contains("key `image[0].contxt`") && msg.contains("keeping the last good config"), "{err}");
    p.write("app/www/index.html", "<p>still watched with the last good config</p>\n");
    let it = up.wait_for("the iteration of a save while devloop.toml is broken", 90, |v| kind(v) == "iteration" || kind(v) == "failed");
    assert_eq!(kind(&it), "iteration", "{it}");
    let third = it["tag"].as_str().unwrap().to_string();
    assert_ne!(third, second);

    // The Dockerfile moves out of the context (the fixed config names it): same bytes, same tag, no build.
    std::fs::create_dir_all(p.path("docker")).unwrap();
    std::fs::copy(p.path("app/Dockerfile"), p.path("docker/app.Dockerfile")).unwrap();
    p.write_config_with_args("GREETING = \"bonjour\"", "dockerfile = \"../docker/app.Dockerfile\"");
    up.wait_for("the reload", 30, |v| kind(v) == "config" && v["message"].as_str().unwrap_or("").contains("reloaded"));
    let after = up.settle(Duration::from_millis(1500), 60);
    assert_eq!(count(&after, "building"), 0, "the same Dockerfile elsewhere is the same tag: {after:#?}");
    assert_eq!(p.tag(), third);
    // An editor's save of the outside Dockerfile (write a temp file, rename it over): one build.
    let text = std::fs::read_to_string(p.path("docker/app.Dockerfile")).unwrap();
    p.write("docker/.app.Dockerfile.tmp", &format!("{text}ENV OUTSIDE=1\n"));
    std::fs::rename(p.path("docker/.app.Dockerfile.tmp"), p.path("docker/app.Dockerfile")).unwrap();
    let fourth = one_build(&p, &mut up, "an edit of a Dockerfile outside the context");
    assert_ne!(fourth, third);
    // Other files beside it are not inputs.
    p.write("docker/notes.md", "unrelated");
    let noise = up.quiet_for(Duration::from_millis(1500));
    assert_eq!(count(&noise, "building") + count(&noise, "unchanged"), 0, "{noise:#?}");

    // A new image in devloop.toml is built without a restart.
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let second_image = format!("{}-two", p.name);
    std::fs::write(
        p.path("devloop.toml"),
        format!("{cfg}[[image]]\nname = \"{second_image}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{}\", GREETING = \"two\" }}\n", p.registry),
    )
    .unwrap();
    let it = up.wait_for("the new image's iteration", 90, |v| kind(v) == "iteration" && v["image"] == second_image.as_str());
    let hashes = p.ok(&["hash"]).0;
    assert!(hashes.contains(&format!("{second_image}:{}", it["tag"].as_str().unwrap())), "{hashes}\n{it}");
}

/// `git checkout` of another branch: hundreds of files rewritten, renamed, moved into new directories and
/// deleted within a moment. At most two builds, and what is deployed is what `devloop hash` gives after.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_checkout_burst_is_at_most_two_builds_and_deploys_the_final_tree() {
    let ns = Namespace::new("burst");
    let p = manifest_project(&ns.0, "");
    for i in 0..500 {
        p.write(&format!("app/www/gen/f{i:03}.txt"), &format!("branch a {i}\n"));
    }
    let mut up = Up::start(&p);
    up.wait("iteration", 120);
    up.settle(Duration::from_millis(1500), 60);
    let start = up.seen.len();

    let gen = p.path("app/www/gen");
    for i in 0..500 {
        // Rewritten through a temporary name, as git does.
        std::fs::write(gen.join(format!(".f{i:03}.lock")), format!("branch b {i}\n")).unwrap();
        std::fs::rename(gen.join(format!(".f{i:03}.lock")), gen.join(format!("f{i:03}.txt"))).unwrap();
    }
    std::fs::create_dir_all(p.path("app/www/moved/deep")).unwrap();
    for i in 0..100 {
        std::fs::rename(gen.join(format!("f{i:03}.txt")), p.path(&format!("app/www/moved/deep/g{i:03}.txt"))).unwrap();
    }
    for i in 400..500 {
        std::fs::remove_file(gen.join(format!("f{i:03}.txt"))).unwrap();
    }
    std::fs::rename(p.path("app/www/moved"), p.path("app/www/renamed")).unwrap();

    up.wait_for("an iteration after the burst", 120, |v| kind(v) == "iteration");
    let events = up.settle(Duration::from_secs(3), 120);
    let all = &up.seen[start..];
    assert!(count(all, "building") <= 2, "a burst must be at most two builds: {all:#?}");
    assert_eq!(count(&events, "failed"), 0, "{all:#?}");
    let final_tag = p.tag();
    let image = template_image(&ns.0, "hello");
    assert!(image.contains(&format!(":{final_tag}@sha256:")), "deployed {image}, but the tree now hashes to {final_tag}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn cleanup_removes_what_was_applied_even_when_no_rollout_succeeded() {
    let ns = Namespace::new("cleanup");
    let p = manifest_project(&ns.0, "");
    // A container that crashes at once: the first rollout can never succeed.
    p.write("app/serve.sh", "#!/bin/sh\necho crashing\nexit 1\n");
    let mut up = Up::start_with(&p, &["--cleanup"]);
    up.wait_for("the apply", 90, |v| kind(v) == "deploy" && v["message"].as_str().unwrap_or("").contains("deployment ") && v["message"].as_str().unwrap_or("").contains(" applied"));
    assert!(try_kubectl(&["-n", &ns.0, "get", "deployment", "hello"]).is_ok());
    up.interrupt();
    up.quiet_for(Duration::from_millis(200));
    let cleanup = up.seen.iter().find(|v| kind(v) == "cleanup").unwrap_or_else(|| panic!("no cleanup: {:#?}", up.seen)).clone();
    assert!(cleanup["message"].as_str().unwrap().contains("deleted 2 object(s)"), "{cleanup}");
    for obj in ["deployment/hello", "service/hello"] {
        eventually(&format!("{obj} deleted by up --cleanup"), 30, || match try_kubectl(&["-n", &ns.0, "get", obj]) {
            Err(e) if e.contains("NotFound") => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
}
