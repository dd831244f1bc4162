//! A gateway frontend end to end: BuildKit's own Dockerfile frontend, built from its Go module into an image
//! FROM scratch by `scripts/stack up`, used as `frontend = "gateway.v0"` with `frontend-source`, through
//! `devloop deploy`. Run through scripts/test.

mod common;
use common::*;

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_gateway_frontend_builds_and_deploys_and_its_source_and_options_are_in_the_tag() {
    let ns = Namespace::new("gateway");
    let p = manifest_project(&ns.0, "");
    let frontend = env("DEVLOOP_STACK_FRONTEND");
    let with = |source: &str, greeting: &str| {
        let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
        let image_table_end = cfg.find("[kube]").unwrap();
        let keys = format!(
            "frontend = \"gateway.v0\"\nfrontend-source = \"{source}\"\nfrontend-opts = {{ \"build-arg:GREETING\" = \"{greeting}\" }}\n"
        );
        let base = cfg.lines().filter(|l| !l.starts_with("frontend")).collect::<Vec<_>>().join("\n") + "\n";
        let at = base.find("[kube]").unwrap_or(image_table_end);
        std::fs::write(p.path("devloop.toml"), format!("{}{keys}{}", &base[..at], &base[at..])).unwrap();
    };

    with(&frontend, "via-gateway");
    let tag = p.tag();
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{out}\n{err}");
    assert!(registry_digest(&p.registry, &p.name, &tag).is_some(), "pushed as the content tag");
    assert!(err.contains(&format!("resolve image config for docker-image://{frontend}")), "ran through the gateway: {err}");
    // The frontend option reached the Dockerfile's ARG: the running image says so.
    let pod = eventually("one pod", 60, || match live_pods(&ns.0, "hello").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    let greeting = eventually("greeting.txt", 30, || {
        try_kubectl(&["get", "--raw", &format!("/api/v1/namespaces/{}/pods/{pod}:8080/proxy/greeting.txt", ns.0)])
    });
    assert_eq!(greeting.trim(), "via-gateway");

    // The frontend's source and its options are inputs of the content tag.
    with(&frontend, "other-greeting");
    let other_opt = p.tag();
    with(&format!("{frontend}-renamed"), "via-gateway");
    let other_source = p.tag();
    assert!(other_opt != tag && other_source != tag && other_opt != other_source, "{tag} {other_opt} {other_source}");

    // A frontend image that is not there: the build fails naming it, nothing is deployed.
    let run = p.devloop(&["build"]);
    let e = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{e}");
    assert!(e.contains("dockerfile-frontend"), "{e}");
    assert_eq!(registry_digest(&p.registry, &p.name, &other_source), None);
}
