//! A simulated team (issue 23): K developers, each a Kubernetes user with the roles of
//! examples/team/rbac.yaml, each running `devloop up --json` on their own copy of examples/hello (the same
//! image name for all, told apart by namespace: `dev-{user}`), all building on one in-cluster BuildKit that
//! the bench installs once, pushing to the authenticated registry with their own Docker config. Once every
//! session serves, each developer saves the page every DEVLOOP_BENCH_EVERY seconds (default 3, ±50 %) for
//! DEVLOOP_BENCH_SECONDS (default 120), and waits for the new page through their own port-forward before the
//! next save. For each K of DEVLOOP_BENCH_K (default "1,4,10", K = 1 first: the loop alone to compare with):
//! save → served p50/p95 per developer and overall, the CPU of BuildKit's pod (its cgroup), of the
//! developers' `devloop up`s, of the node's daemons and of the machine, the load average before and after,
//! and the isolation checks (each namespace runs only its own builds; no build cancelled by another).
//!
//! Needs the stack: `eval "$(scripts/stack env)"; cargo bench --bench team`. DEVLOOP_BENCH_REPLICAS (default
//! 1) installs that many BuildKit replicas (`devloop buildkit install --replicas N`).

use std::time::Duration;

mod common;
use common::team::{install_buildkit, run, Figures, Sim};
use common::{mean, ms, pct, sh};

/// `d` as a share of `wall` on one core, with the seconds.
fn share(d: Duration, wall: Duration) -> String {
    format!("{:.1} s ({:.0} % of a core)", d.as_secs_f64(), 100.0 * d.as_secs_f64() / wall.as_secs_f64())
}

fn report(f: &Figures, base: Option<Duration>) {
    let all = f.all_served();
    let saves: usize = f.devs.iter().map(|d| d.saves).sum();
    let ratio = base.map(|b| format!(" · p50 {:.2}x K = 1", pct(&all, 0.5).as_secs_f64() / b.as_secs_f64())).unwrap_or_default();
    println!(
        "  K = {:>2}: save → served p50 {} · p95 {} · mean {} · max {} ({} of {saves} saves served){ratio} · all up and serving after {}",
        f.k,
        ms(pct(&all, 0.5)),
        ms(pct(&all, 0.95)),
        ms(mean(&all)),
        ms(pct(&all, 1.0)),
        all.len(),
        ms(f.startup),
    );
    for d in &f.devs {
        let (p50, p95) = if d.served.is_empty() { ("-".into(), "-".into()) } else { (ms(pct(&d.served, 0.5)), ms(pct(&d.served, 0.95))) };
        println!("    {:<24} p50 {p50:>8} · p95 {p95:>8} · {} saves · devloop CPU {}", d.user, d.saves, share(d.cpu, f.wall));
    }
    let split: Vec<[u64; 3]> = f.devs.iter().flat_map(|d| d.split.iter().copied()).collect();
    let mean_of = |i: usize| split.iter().map(|s| s[i]).sum::<u64>() / split.len().max(1) as u64;
    println!("    devloop's split, mean of {} iterations: build {} ms · rollout {} ms · change to rolled out {} ms", split.len(), mean_of(0), mean_of(1), mean_of(2));
    let c = &f.cpu;
    let devloop: Duration = f.devs.iter().map(|d| d.cpu).sum();
    println!("    CPU over {:.0} s of saving (2 cores = 200 %):", f.wall.as_secs_f64());
    println!("      BuildKit pod (cgroup cpuacct) {}", c.buildkit.map(|d| share(d, f.wall)).unwrap_or_else(|| "unreadable".into()));
    println!("      all pods (kubepods cgroup)    {}", c.pods.map(|d| share(d, f.wall)).unwrap_or_else(|| "unreadable".into()));
    println!("      devloop up × {:<2}             {}", f.k, share(devloop, f.wall));
    for (name, d) in &c.node {
        println!("      {name:<29} {}", share(*d, f.wall));
    }
    println!("      machine (everyone's)          {}", share(c.machine, f.wall));
    println!("    load average before {} · after {}", f.load.0, f.load.1);
    let (unserved, crossings, failures, foreign) = f.devs.iter().fold((0, 0, 0, 0), |a, d| (a.0 + d.unserved.len(), a.1 + d.crossings.len(), a.2 + d.failures.len(), a.3 + d.foreign.len()));
    println!("    isolation: {foreign} pod(s) running another's image · {crossings} build(s) cancelled by another · {failures} failure event(s) · {unserved} save(s) never served");
    for d in &f.devs {
        for x in d.foreign.iter().chain(&d.crossings).chain(&d.failures).chain(&d.unserved) {
            println!("      {}: {x}", d.user);
        }
    }
}

fn main() {
    if std::env::var("DEVLOOP_STACK_AUTH_REGISTRY").is_err() || std::env::var("DEVLOOP_STACK_PKI").is_err() {
        println!("team bench: skipped (needs the stack: eval \"$(scripts/stack env)\")");
        return;
    }
    let num = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    let (seconds, every, replicas) = (num("DEVLOOP_BENCH_SECONDS", 120.0) as u64, Duration::from_secs_f64(num("DEVLOOP_BENCH_EVERY", 3.0)), num("DEVLOOP_BENCH_REPLICAS", 1.0) as u32);
    let mut ks: Vec<usize> = std::env::var("DEVLOOP_BENCH_K").unwrap_or_else(|_| "1,4,10".into()).split(',').filter_map(|k| k.trim().parse().ok()).collect();
    // K = 1 first: the loop alone, on the same BuildKit, is what the others compare with.
    ks.retain(|k| *k != 1);
    ks.insert(0, 1);
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let bk = format!("bench-team-bk-{nonce}");
    install_buildkit(&bk, replicas);
    let mut base = None;
    println!(
        "team bench: K developers on one in-cluster BuildKit ({replicas} replica(s)) and the authenticated registry, each saving every {:.1} s ±50 % for {seconds} s, waiting for the page before the next save",
        every.as_secs_f64()
    );
    for (i, k) in ks.iter().enumerate() {
        let f = run(&Sim { k: *k, seconds, every, bk: bk.clone(), nonce: format!("{nonce}r{i}") });
        report(&f, base);
        base = base.or(Some(pct(&f.all_served(), 0.5)));
    }
    let _ = sh("kubectl", &["delete", "namespace", &bk, "--wait=false"]);
}
