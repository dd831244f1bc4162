//! The `devloop` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use devloop::engine::checked::Checked;
use devloop::interrupt::Interrupt;
use devloop::{config, engine};

/// The inner dev loop for Kubernetes: content-tagged images built by BuildKit, rolled out without deleting pods.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// devloop.toml to use (default: the nearest one in this directory or a parent).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// More output: build log lines, files sent, debug logs (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Never prompt, never colour or redraw (also when CI is set, or stdout is not a terminal).
    #[arg(long, global = true)]
    non_interactive: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each image's content tag: `<name> <registry>/<name>:<tag>`.
    Hash {
        /// Images to hash (default: all).
        images: Vec<String>,
    },
    /// Build and push images whose content tag the registry does not have yet.
    Build {
        /// Images to build (default: all).
        images: Vec<String>,
        /// Build even if the registry already has the tag.
        #[arg(long)]
        force: bool,
        /// Also import this BuildKit cache (`type=registry,ref={registry}/cache/{name}`), besides the images'
        /// `cache-from`. Repeatable.
        #[arg(long, value_name = "SPEC")]
        cache_from: Vec<String>,
        /// Export the build cache here instead of the images' `cache-to` (`type=registry,ref=…,mode=max` or
        /// `type=inline`), e.g. from CI. Repeatable.
        #[arg(long, value_name = "SPEC")]
        cache_to: Vec<String>,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// BuildKit in the cluster: install it, or ask any BuildKit how it is.
    Buildkit {
        #[command(subcommand)]
        action: BuildkitAction,
    },
    /// Watch, and on every change build, push, roll out, stream logs and keep port-forwards (Ctrl-C stops).
    /// On a terminal, keys act on the status block's images: ↑/↓ select, r rebuild, p pause/resume, t trigger,
    /// Enter builds what every `trigger = "manual"` image holds, ? help.
    Up {
        /// Only these images (default: all); the others' workloads stay as deployed.
        images: Vec<String>,
        #[command(flatten)]
        kube: KubeArgs,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// On exit, delete what devloop applied (manifest mode).
        #[arg(long)]
        cleanup: bool,
        /// Ignore [[image.sync]] rules: every change builds and rolls out.
        #[arg(long)]
        no_sync: bool,
        /// Serve a read-only status page (images, last failures, a chart of the last iterations) on ADDR;
        /// alone, on a free port of 127.0.0.1. The URL is printed.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
        ui: Option<std::net::SocketAddr>,
    },
    /// The pre-push check: build, deploy into a throwaway namespace, run [check] commands, clean up.
    Check {
        #[command(flatten)]
        kube: KubeArgs,
        /// Keep the namespace for debugging.
        #[arg(long)]
        keep: bool,
        /// Write a JUnit XML report here (each build, rollout and command a test case), also when the check
        /// fails or is interrupted.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Ask the running `devloop up` of this project to build what its manual images hold (the named ones;
    /// default: every image holding a change).
    Trigger {
        /// Images to build.
        images: Vec<String>,
    },
    /// Write a commented devloop.toml for the project in DIR (default: here) from its Dockerfiles, manifests,
    /// charts and kustomizations, the kube context and the registry it finds. Asks nothing.
    Init {
        /// The project folder.
        dir: Option<PathBuf>,
        /// Overwrite an existing devloop.toml.
        #[arg(long)]
        force: bool,
    },
    /// Git hooks.
    Hook {
        #[command(subcommand)]
        action: HookAction,
    },
    /// Roll the configured workloads to the images' content tags (building them if needed) and watch.
    Deploy {
        /// Deploy this tag instead of the current content tag (it must be in the registry).
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// Delete what devloop applied in the namespace (the [[deploy]] manifests' objects), and the namespace
    /// if devloop created it. Patched Deployments are left.
    Down {
        #[command(flatten)]
        kube: KubeArgs,
    },
}

#[derive(Subcommand)]
enum BuildkitAction {
    /// Apply a buildkitd Deployment (+ its config) into the namespace, wait until it is ready, and print the
    /// `[buildkit] addr` to use. Running it again updates it in place.
    Install {
        #[command(flatten)]
        kube: KubeArgs,
        /// The Deployment's name.
        #[arg(long, default_value = devloop::deploy::buildkitd::DEFAULT_NAME)]
        name: String,
        /// The buildkitd image (laid out like moby/buildkit: ENTRYPOINT buildkitd, buildctl on PATH).
        #[arg(long, default_value = devloop::deploy::buildkitd::DEFAULT_IMAGE)]
        image: String,
        /// Trust this CA certificate for a registry (repeatable): HOST[:PORT]=FILE.
        #[arg(long = "registry-ca", value_name = "HOST=FILE")]
        registry_ca: Vec<String>,
        /// Speak plain HTTP to this registry (repeatable): HOST[:PORT].
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registry: Vec<String>,
        /// Keep BuildKit's state (its cache) on a PersistentVolumeClaim of this size (default: an emptyDir,
        /// lost with the pod).
        #[arg(long, value_name = "SIZE")]
        pvc: Option<String>,
        /// buildkitd's OCI worker snapshotter (e.g. native where overlayfs does not work); default: its own choice.
        #[arg(long)]
        snapshotter: Option<String>,
        /// How long to wait for the Deployment to be ready.
        #[arg(long, default_value = "5m")]
        timeout: humantime::Duration,
        /// How many BuildKit replicas, each with its own cache (more than 1: a StatefulSet, each image always
        /// built on the same replica; running install again with another N changes the count).
        #[arg(long, default_value_t = 1)]
        replicas: u32,
    },
    /// Whether BuildKit answers (workers, platforms, version) and what it has cached. Exit 1 when it does not
    /// answer. Default address: [buildkit] addr (or BUILDKIT_HOST); `--name`/`--namespace` ask an installed one.
    Status {
        #[command(flatten)]
        kube: KubeArgs,
        /// The Deployment `devloop buildkit install` created (default buildkitd when --namespace is given).
        #[arg(long)]
        name: Option<String>,
        /// Any BuildKit address instead.
        #[arg(long, conflicts_with = "name")]
        addr: Option<String>,
    },
}

#[derive(Subcommand)]
enum HookAction {
    /// Write .git/hooks/pre-push running `devloop check`.
    Install {
        /// Replace a pre-push hook devloop did not write.
        #[arg(long)]
        force: bool,
    },
}

/// Which cluster and namespace.
#[derive(clap::Args)]
struct KubeArgs {
    /// Kube context (default: [kube] context, else the kubeconfig's current context).
    #[arg(long)]
    kube_context: Option<String>,
    /// Namespace (default: [kube] namespace, else the context's, else `default`).
    #[arg(long, short)]
    namespace: Option<String>,
    /// Allow this context for this run, besides [kube] allow-contexts and the local names.
    #[arg(long)]
    allow_context: Vec<String>,
}

impl KubeArgs {
    /// The options, `--namespace`'s `{user}` / `{git-user}` expanded (as in `[kube] namespace`).
    fn options(&self, cfg: &config::Config) -> Result<devloop::cluster::KubeOptions, engine::Error> {
        let namespace = match &self.namespace {
            Some(ns) => Some(
                devloop::cluster::namespace::resolve(ns, &cfg.root).map_err(|m| engine::Error::BadFlag(format!("--namespace: {m}")))?,
            ),
            None => None,
        };
        let no_prompt = NO_PROMPT.load(std::sync::atomic::Ordering::Relaxed);
        Ok(devloop::cluster::KubeOptions { context: self.kube_context.clone(), namespace, allow: self.allow_context.clone(), no_prompt })
    }
}

/// Whether devloop runs for a person at a terminal: not under CI (`CI` set, as every CI service does), not
/// `--non-interactive`, and `stream` is a terminal. Nothing is coloured or redrawn on a stream that is not;
/// nothing prompts without a terminal on stdin.
fn interactive(cli: &Cli, stream: &impl std::io::IsTerminal) -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    !cli.non_interactive && !ci && stream.is_terminal()
}

/// No prompt may wait for an answer ([`interactive`] for stdin said no): read where kube options are made.
static NO_PROMPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() -> ExitCode {
    let cli = Cli::parse();
    NO_PROMPT.store(!interactive(&cli, &std::io::stdin()), std::sync::atomic::Ordering::Relaxed);
    let interactive = interactive(&cli, &std::io::stdout()) && interactive(&cli, &std::io::stderr());
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("devloop={default_level}"))),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a CI log would show their escape sequences.
        .with_ansi(interactive)
        .init();

    // A report that cannot be written is said before anything runs.
    if let Command::Check { report: Some(path), .. } = &cli.command {
        if let Err(e) = devloop::junit::check_path(path) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    // init writes the config: it runs before (and without) loading one.
    if let Command::Init { dir, force } = &cli.command {
        return init_command(dir.as_deref(), *force);
    }
    let kube_context = match &cli.command {
        Command::Deploy { kube, .. }
        | Command::Check { kube, .. }
        | Command::Up { kube, .. }
        | Command::Down { kube }
        | Command::Build { kube, .. }
        | Command::Buildkit { action: BuildkitAction::Install { kube, .. } | BuildkitAction::Status { kube, .. } } => {
            kube.kube_context.as_deref()
        }
        _ => None,
    };
    let cfg = match load_config(cli.config.as_deref(), kube_context) {
        Ok(c) => c,
        // `buildkit install/status` are useful before a project has a devloop.toml: the defaults then.
        Err(config::Error::NotFound(_)) if cli.config.is_none() && matches!(cli.command, Command::Buildkit { .. }) => {
            match config::load_text(std::path::Path::new("devloop.toml"), "", |k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            if let Command::Check { report: Some(path), .. } = &cli.command {
                let _ = write_report(path, &mut Checked::default(), Err(engine::Error::Usage(e.to_string())));
            }
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let intr = Interrupt::new();
    let mut rec = Checked::default();
    let result = runtime.block_on(run(&cli, &cfg, &intr, interactive, &mut rec));
    let result = match &cli.command {
        Command::Check { report: Some(path), .. } => write_report(path, &mut rec, result),
        _ => result,
    };
    // A check or deploy that a signal stopped (after cleaning up and saying so) exits 128 + the signal.
    let interrupted = matches!(cli.command, Command::Check { .. } | Command::Deploy { .. }).then(|| intr.exit_code()).flatten();
    match result {
        Err(e) if interrupted.is_some() => {
            if !matches!(e, engine::Error::Interrupted(_)) {
                eprintln!("error: {e}");
            }
            eprintln!("devloop: interrupted by {}", intr.name());
            ExitCode::from(interrupted.unwrap_or(130))
        }
        Ok(_) if interrupted.is_some() => {
            eprintln!("devloop: interrupted by {} (after the run had finished)", intr.name());
            ExitCode::from(interrupted.unwrap_or(130))
        }
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                engine::Error::UnknownImage { .. }
                | engine::Error::Filter(_)
                | engine::Error::BadFlag(_)
                | engine::Error::NoRegistry(_)
                | engine::Error::Buildkit(devloop::buildkit::Error::NotAllowed { .. })
                | engine::Error::Deploy(devloop::deploy::Error::NotAllowed(_)) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Writes `check --report`'s file, whatever the result (an error before the check began is its one case);
/// a report that cannot be written turns a pass into a failure (exit 1), since CI would miss it.
fn write_report(path: &std::path::Path, rec: &mut Checked, result: Result<bool, engine::Error>) -> Result<bool, engine::Error> {
    if rec.cases.is_empty() {
        if let Err(e) = &result {
            rec.close(Some(&e.to_string()), std::time::Duration::ZERO);
        }
    }
    match devloop::junit::write(path, rec) {
        Ok(()) => {
            eprintln!("devloop: JUnit report written to {}", path.display());
            result
        }
        Err(e) => {
            eprintln!("error: {e}");
            result.map(|_| false)
        }
    }
}

/// `devloop init`: the refusal first (no scan, no cluster call), then the cluster, then the file.
fn init_command(dir: Option<&std::path::Path>, force: bool) -> ExitCode {
    use devloop::init;
    let dir = dir.unwrap_or(std::path::Path::new("."));
    let fail = |e: init::Error| {
        eprintln!("error: {e}");
        ExitCode::from(e.exit_code())
    };
    if let Err(e) = init::check_target(dir, force) {
        return fail(e);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let cluster = runtime.block_on(init::probe(|k| std::env::var(k).ok()));
    let written = match init::generate(dir, force, &cluster) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let p = &written.plan;
    println!(
        "wrote {}: {} image(s), {} deploy(s), {} port-forward(s); read its comments, then run `devloop up`",
        written.path.display(),
        p.images.len(),
        p.deploys.len(),
        p.forwards.len()
    );
    for u in &p.undecided {
        eprintln!("devloop init: not decided: {u}");
    }
    if let init::Registry::None(why) = &cluster.registry {
        eprintln!("devloop init: no registry ({why}): set [registry] host, or load, in {}", written.path.display());
    }
    if let Some((ctx, false)) = &cluster.context {
        eprintln!("devloop init: context {ctx} is not a local cluster: left commented in [kube]; allow-list it to deploy there");
    }
    ExitCode::SUCCESS
}

/// `build --cache-from/--cache-to`, checked as the config's `cache-from`/`cache-to` are (exit code 2).
fn cache_flags(from: &[String], to: &[String]) -> Result<devloop::buildkit::cache::Flags, engine::Error> {
    use config::cache::Direction;
    let parse = |specs: &[String], dir: Direction, flag: &str| -> Result<Vec<config::CacheSpec>, engine::Error> {
        specs.iter().map(|s| config::CacheSpec::parse(s, dir).map_err(|m| engine::Error::BadFlag(format!("{flag} {s}: {m}")))).collect()
    };
    Ok(devloop::buildkit::cache::Flags { from: parse(from, Direction::From, "--cache-from")?, to: parse(to, Direction::To, "--cache-to")? })
}

/// `devloop buildkit install|status`.
async fn buildkit_command(cfg: &config::Config, action: &BuildkitAction, out: &mut std::io::Stdout) -> Result<bool, engine::Error> {
    use devloop::buildkit::{kube::Cluster, status};
    use devloop::deploy::buildkitd as install;
    match action {
        BuildkitAction::Install { kube, name, image, registry_ca, insecure_registry, pvc, snapshotter, timeout, replicas } => {
            let spec = install::Install {
                name: name.clone(),
                image: image.clone(),
                registry_ca: registry_ca.clone(),
                insecure_registry: insecure_registry.clone(),
                pvc: pvc.clone(),
                snapshotter: snapshotter.clone(),
                timeout: (*timeout).into(),
                replicas: *replicas,
            };
            // Bad flags are said before the cluster is asked anything.
            install::config_files(&spec).map_err(|e| engine::Error::BadFlag(e.to_string()))?;
            let target = devloop::cluster::connect(&cfg.kube, &kube.options(cfg)?).await?;
            match install::install(&target, &spec, out).await {
                Ok(()) => Ok(true),
                Err(install::Error::Deploy(e)) => Err(e.into()),
                Err(e @ install::Error::Flag { .. }) => Err(engine::Error::BadFlag(e.to_string())),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(false)
                }
            }
        }
        BuildkitAction::Status { kube, name, addr } => {
            let opts = kube.options(cfg)?;
            let mut bk = cfg.buildkit.clone();
            if let Some(a) = addr {
                bk.addr = a.clone();
            } else if name.is_some() || kube.namespace.is_some() {
                // The namespace comes from --namespace, as for every kube address without one.
                let name = name.as_deref().unwrap_or(devloop::deploy::buildkitd::DEFAULT_NAME);
                bk.addr = match &opts.namespace {
                    Some(ns) => devloop::deploy::buildkitd::addr(name, ns),
                    None => format!("kube-deployment://{name}"),
                };
            }
            let images: Vec<String> = cfg.images.iter().map(|i| i.name.clone()).collect();
            match status::status(&bk, Cluster { kube: &cfg.kube, opts: &opts }, &images, out).await {
                Ok(_) => Ok(true),
                Err(e @ devloop::buildkit::Error::NotAllowed { .. }) => Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(false)
                }
            }
        }
    }
}

fn load_config(explicit: Option<&std::path::Path>, kube_context: Option<&str>) -> Result<config::Config, config::Error> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let cwd = std::env::current_dir().map_err(|source| config::Error::Read { path: ".".into(), source })?;
            config::discover(&cwd)?
        }
    };
    devloop::resolve::load(&path, kube_context)
}

/// Ok(false): the run finished but something it watched failed (a rollout), already reported.
async fn run(cli: &Cli, cfg: &config::Config, intr: &Interrupt, interactive: bool, rec: &mut Checked) -> Result<bool, engine::Error> {
    let mut stdout = std::io::stdout();
    // Where images go, when devloop.toml does not say: the cluster's advertised registry.
    let kube = match &cli.command {
        Command::Deploy { kube, .. } | Command::Check { kube, .. } | Command::Up { kube, .. } | Command::Build { kube, .. } => {
            Some(kube.options(cfg)?)
        }
        Command::Hash { .. } | Command::Hook { .. } | Command::Down { .. } | Command::Buildkit { .. } | Command::Init { .. } | Command::Trigger { .. } => None,
    };
    let mut cfg = cfg.clone();
    if let Some(kube) = kube {
        devloop::resolve::registry(&mut cfg, &kube).await?;
    }
    let cfg = &cfg;
    // The long-running commands handle SIGINT and SIGTERM themselves (to clean up); the others die by them.
    if matches!(cli.command, Command::Check { .. } | Command::Deploy { .. } | Command::Up { .. }) {
        intr.listen().map_err(|e| engine::Error::Usage(format!("cannot handle signals: {e}")))?;
    }
    match &cli.command {
        Command::Hash { images } => {
            for h in engine::hash_images(cfg, images)? {
                println!("{} {}", h.image.name, h.reference);
            }
        }
        Command::Build { images, force, kube, cache_from, cache_to } => {
            let cache = cache_flags(cache_from, cache_to)?;
            engine::build_images(cfg, images, *force, cli.verbose > 0, &kube.options(cfg)?, &cache, &mut stdout).await?;
        }
        Command::Buildkit { action } => return buildkit_command(cfg, action, &mut stdout).await,
        Command::Deploy { tag, kube } => {
            let opts = engine::deploy::DeployOptions { kube: kube.options(cfg)?, tag: tag.clone(), verbose: cli.verbose > 0 };
            return engine::deploy::deploy_all(cfg, &opts, &mut stdout, intr).await;
        }
        Command::Check { kube, keep, .. } => {
            let opts = engine::check::CheckOptions {
                deploy: engine::deploy::DeployOptions { kube: kube.options(cfg)?, tag: None, verbose: cli.verbose > 0 },
                keep: *keep,
            };
            return engine::check::check(cfg, &opts, &mut stdout, intr, rec).await;
        }
        Command::Hook { action: HookAction::Install { force } } => {
            let here = std::env::current_dir().map_err(|e| engine::Error::Usage(e.to_string()))?;
            let path = devloop::hook::install(&here, *force).map_err(|e| engine::Error::Usage(e.to_string()))?;
            println!("installed {}: `git push` now runs `devloop check` first", path.display());
        }
        Command::Init { .. } => unreachable!("init runs before the config is loaded"),
        Command::Down { kube } => {
            engine::down::down(cfg, &kube.options(cfg)?, &mut stdout).await?;
        }
        Command::Trigger { images } => {
            // An image `up` does not run is a usage error (2); no `up` to ask is a plain failure (1).
            match engine::control::trigger(&cfg.path, images).await {
                Ok(said) => println!("triggered: {said}"),
                Err(e @ engine::control::Error::Refused(_)) => return Err(engine::Error::BadFlag(e.to_string())),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(false);
                }
            }
        }
        Command::Up { images, kube, json, cleanup, no_sync, ui } => {
            use devloop::ui::{page, Ui};
            let triggers = engine::control::Triggers::new();
            // With -v, BuildKit's steps go to stderr line by line; a block redrawn on stdout would be torn by them;
            // and no block is redrawn for a CI log (--non-interactive, CI set).
            let mut out = Ui::stdout(*json, cli.verbose == 0 && interactive);
            let mut served = None;
            if let Some(addr) = ui {
                // Bound before anything starts, so that a taken address is an error at once.
                let listener = page::server::bind(*addr).await.map_err(|e| engine::Error::BadFlag(format!("--ui: {e}")))?;
                served = Some(listener.local_addr().map_err(|e| engine::Error::Usage(e.to_string()))?);
                let hub = std::sync::Arc::new(page::Hub::default());
                hub.take_triggers(triggers.clone());
                out = out.with_page(hub.clone());
                tokio::spawn(page::server::serve(listener, hub, intr.stop().child_token()));
            }
            let opts = engine::up::UpOptions {
                kube: kube.options(cfg)?,
                json: *json,
                cleanup: *cleanup,
                verbose: cli.verbose > 0,
                no_sync: *no_sync,
                page: served,
                only: images.clone(),
                triggers: Some(triggers.clone()),
            };
            // Keys on the terminal, while the block is shown and stdin is the person's (not CI, not
            // --non-interactive): the terminal is put back when this guard goes, whatever `up` returns.
            let stdin_interactive = !NO_PROMPT.load(std::sync::atomic::Ordering::Relaxed);
            let _keys = stdin_interactive.then(|| devloop::ui::keys::start(&out, triggers.clone(), intr.stop().clone())).flatten();
            // SIGINT (Ctrl-C) or SIGTERM stops the loop.
            let done = engine::up::up(cfg.clone(), opts, std::sync::Arc::new(out.clone()), intr.stop().clone()).await;
            // The last lines (what was left running, "stopped") are written unless nobody reads them.
            out.flush(std::time::Duration::from_secs(2));
            done?;
        }
    }
    Ok(true)
}
