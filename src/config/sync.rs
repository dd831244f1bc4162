//! `[[image.sync]]`: live-update rules. A change whose paths all match an image's rules is copied into the
//! running containers instead of rebuilding (the engine decides when; the sync layer carries it out).
//!
//! Mapping, as Docker's `COPY www/ /www/` would: a glob `src` (`www/**`) is anchored at its literal directory
//! prefix (`www`), and what follows it goes under `dest` (`www/a/b.html` → `/www/a/b.html`); a literal `src`
//! names a file (`dest` is then its path in the container, or the directory it goes in when `dest` ends with
//! `/`) or a directory (its files go under `dest`).

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;

/// One sync rule.
#[derive(Debug, Clone)]
pub struct SyncRule {
    /// The glob (or literal path), relative to the image's context.
    pub src: String,
    /// Absolute path in the container.
    pub dest: String,
    /// Commands run (`sh -c`, from `/`) in the container after the files land.
    pub run: Vec<RunStep>,
    /// Restart the container's processes after the files land and the commands ran.
    pub restart: bool,
    matcher: GlobMatcher,
    /// The literal directory prefix of a glob `src`; `None` for a literal `src`.
    base: Option<String>,
}

impl PartialEq for SyncRule {
    fn eq(&self, o: &Self) -> bool {
        (&self.src, &self.dest, &self.run, self.restart) == (&o.src, &o.dest, &o.run, o.restart)
    }
}

/// One `run` entry.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// The shell command.
    pub cmd: String,
    /// Globs (relative to the context): the command runs only when a synced path matches one. Empty: always.
    pub trigger: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

impl PartialEq for RunStep {
    fn eq(&self, o: &Self) -> bool {
        (&self.cmd, &self.trigger) == (&o.cmd, &o.trigger)
    }
}

impl RunStep {
    /// Whether this command runs after `paths` (context-relative) were synced.
    pub fn triggered_by<'a>(&self, mut paths: impl Iterator<Item = &'a str>) -> bool {
        self.matchers.is_empty() || paths.any(|p| self.matchers.iter().any(|m| m.is_match(p)))
    }
}

impl SyncRule {
    /// Where `path` (relative to the context, `/`-separated) goes in the container, if this rule covers it.
    pub fn dest_of(&self, path: &str) -> Option<String> {
        let dest = self.dest.trim_end_matches('/');
        match &self.base {
            None if path == self.src => Some(if self.dest.ends_with('/') {
                format!("{dest}/{}", path.rsplit('/').next().unwrap_or(path))
            } else {
                self.dest.clone()
            }),
            None => path.strip_prefix(self.src.trim_end_matches('/')).and_then(|r| r.strip_prefix('/')).filter(|r| !r.is_empty()).map(|r| format!("{dest}/{r}")),
            Some(base) => {
                if !self.matcher.is_match(path) {
                    return None;
                }
                let rel = if base.is_empty() { Some(path) } else { path.strip_prefix(base.as_str()).and_then(|r| r.strip_prefix('/')) };
                rel.filter(|r| !r.is_empty()).map(|r| format!("{dest}/{r}"))
            }
        }
    }
}

/// The first rule covering `path`, and where it goes: (rule index, container path).
pub fn route(rules: &[SyncRule], path: &str) -> Option<(usize, String)> {
    rules.iter().enumerate().find_map(|(i, r)| r.dest_of(path).map(|d| (i, d)))
}

/// `[[image.sync]]` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct RawSync {
    src: Option<String>,
    dest: Option<String>,
    #[serde(default)]
    run: Vec<RawRun>,
    #[serde(default)]
    restart: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRun {
    Cmd(String),
    Table(RawRunTable),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawRunTable {
    cmd: String,
    #[serde(default)]
    trigger: Triggers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Triggers {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    // `*` stays within one directory, `**` crosses them: what .dockerignore and Tilt users expect.
    GlobBuilder::new(pattern).literal_separator(true).build().map(|g: Glob| g.compile_matcher()).map_err(|e| format!("`{pattern}` is not a glob: {e}"))
}

fn relative_path_problem(p: &str) -> Option<&'static str> {
    if p.trim().is_empty() {
        Some("is empty")
    } else if p.starts_with('/') {
        Some("must be relative to the image's context")
    } else if p.split('/').any(|c| c == "..") {
        Some("must stay inside the image's context (no `..`)")
    } else {
        None
    }
}

/// Validates one rule; errors are (key below `sync[j].`, message).
pub(super) fn validate(raw: RawSync) -> Result<SyncRule, (String, String)> {
    let bad = |k: &str, m: String| Err((k.to_string(), m));
    let Some(src) = raw.src else { return bad("src", "missing: a glob relative to the context, e.g. \"www/**\"".into()) };
    if let Some(p) = relative_path_problem(&src) {
        return bad("src", format!("`{src}` {p}"));
    }
    let Some(dest) = raw.dest else { return bad("dest", "missing: an absolute path in the container, e.g. \"/www\"".into()) };
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return bad("dest", format!("`{dest}` is not an absolute path in the container (like \"/www\"), without `..`"));
    }
    let matcher = glob(&src).map_err(|m| ("src".to_string(), m))?;
    let meta = |c: &str| c.contains(['*', '?', '[', '{']);
    let base = src.split('/').any(meta).then(|| src.split('/').take_while(|c| !meta(c)).collect::<Vec<_>>().join("/"));
    let mut run = Vec::new();
    for (k, r) in raw.run.into_iter().enumerate() {
        let (cmd, trigger) = match r {
            RawRun::Cmd(cmd) => (cmd, vec![]),
            RawRun::Table(t) => (
                t.cmd,
                match t.trigger {
                    Triggers::None => vec![],
                    Triggers::One(t) => vec![t],
                    Triggers::Many(t) => t,
                },
            ),
        };
        if cmd.trim().is_empty() {
            return bad(&format!("run[{k}]"), "an empty command".into());
        }
        let mut matchers = Vec::new();
        for t in &trigger {
            if let Some(p) = relative_path_problem(t) {
                return bad(&format!("run[{k}].trigger"), format!("`{t}` {p}"));
            }
            matchers.push(glob(t).map_err(|m| (format!("run[{k}].trigger"), m))?);
        }
        run.push(RunStep { cmd, trigger, matchers });
    }
    Ok(SyncRule { src, dest, run, restart: raw.restart, matcher, base })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str, dest: &str) -> SyncRule {
        validate(RawSync { src: Some(src.into()), dest: Some(dest.into()), run: vec![], restart: false }).unwrap()
    }

    #[test]
    fn paths_map_like_docker_copy() {
        // (src, dest, path, where it goes)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("www/**", "/www", "www/index.html", Some("/www/index.html")),
            ("www/**", "/www/", "www/a/b.css", Some("/www/a/b.css")),
            ("www/**", "/www", "www", None),
            ("www/**", "/www", "wwwx/a", None),
            ("www/**", "/www", "Dockerfile", None),
            ("www/*.html", "/srv", "www/a.html", Some("/srv/a.html")),
            ("www/*.html", "/srv", "www/sub/a.html", None),
            ("**/*.py", "/app", "pkg/m.py", Some("/app/pkg/m.py")),
            ("src/{a,b}/*.js", "/app", "src/a/x.js", Some("/app/a/x.js")),
            ("serve.sh", "/serve.sh", "serve.sh", Some("/serve.sh")),
            ("serve.sh", "/bin/", "serve.sh", Some("/bin/serve.sh")),
            ("serve.sh", "/serve.sh", "serve.shx", None),
            ("www", "/www", "www/a/b", Some("/www/a/b")),
            ("www", "/www", "www", Some("/www")), // a literal src may name a file
        ];
        for (src, dest, path, want) in cases {
            assert_eq!(rule(src, dest).dest_of(path).as_deref(), *want, "{src} → {dest}: {path}");
        }
    }

    #[test]
    fn the_first_rule_that_covers_a_path_wins() {
        let rules = [rule("www/*.css", "/css"), rule("www/**", "/www")];
        assert_eq!(route(&rules, "www/a.css"), Some((0, "/css/a.css".into())));
        assert_eq!(route(&rules, "www/a.html"), Some((1, "/www/a.html".into())));
        assert_eq!(route(&rules, "serve.sh"), None);
    }

    #[test]
    fn run_steps_run_always_or_on_their_trigger() {
        let raw: RawSync = toml::from_str("src = \"**\"\ndest = \"/app\"\nrun = [\"make\", { cmd = \"npm ci\", trigger = \"package.json\" }, { cmd = \"x\", trigger = [\"a/*\", \"b\"] }]").unwrap();
        let r = validate(raw).unwrap();
        let runs = |paths: &[&str]| r.run.iter().filter(|s| s.triggered_by(paths.iter().copied())).map(|s| s.cmd.as_str()).collect::<Vec<_>>();
        assert_eq!(runs(&["index.js"]), ["make"]);
        assert_eq!(runs(&["package.json", "a/x"]), ["make", "npm ci", "x"]);
        assert_eq!(runs(&["a/x/y"]), ["make"], "`*` does not cross directories");
    }
}
