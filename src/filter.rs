//! The one ignore decision per image. The hasher, the DiffCopy sender (and later the watcher) all ask the same
//! [`Filter`], so "what is hashed", "what BuildKit sees" and "what triggers a build" can never disagree.
//!
//! Patterns follow `.dockerignore` semantics (moby/patternmatcher): paths are relative to the context root,
//! `*` and `?` stop at `/`, `**` spans directories, a pattern matching a directory excludes everything below
//! it, `!` re-includes, and the last matching pattern wins.

use std::path::Path;

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// Errors building a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pattern that is not a valid glob.
    #[error("invalid ignore pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// `.dockerignore` exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// A pattern in `.dockerignore` is invalid.
    #[error("{file}:{line}: {source}")]
    InFile { file: String, line: usize, source: Box<Error> },
}

/// Files no build wants and editors write while saving: always excluded, whatever `.dockerignore` says.
pub const BUILTIN_IGNORES: &[&str] = &[
    "**/.git",
    "**/*.swp",
    "**/*.swx",
    "**/.*.sw?",        // vim's other swap names (.swo, .swn, …)
    "**/4913",          // vim's probe that a directory is writable
    "**/*~",            // vim/emacs backups
    "**/#*#",           // emacs autosave
    "**/.#*",           // emacs lock files
    "**/*___jb_tmp___", // JetBrains safe write
    "**/*___jb_old___",
    "**/*.kate-swp",
    "**/.goutputstream-*", // gedit
    "**/*.crswap",         // browser-based editors
    "**/.DS_Store",
];

/// One `.dockerignore`-style pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    negate: bool,
    glob: Glob,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Parses a pattern; a leading `!` re-includes what earlier patterns excluded.
    pub fn parse(raw: &str) -> Result<Pattern, Error> {
        let raw = raw.trim();
        let (negate, body) = match raw.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, raw),
        };
        let cleaned = clean(body);
        let glob = glob(&cleaned).map_err(|e| Error::BadPattern { pattern: raw.to_string(), reason: e.kind().to_string() })?;
        let matcher = glob.compile_matcher();
        Ok(Pattern { text: raw.to_string(), negate, glob, matcher })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        let mut end = path.len();
        loop {
            if self.matcher.is_match(&path[..end]) {
                return true;
            }
            match path[..end].rfind('/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }
}

/// `a/b/c`, `a/b`, `a`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rfind('/').map(|i| &p[..i]))
}

/// One set of the patterns' globs, indexed like `patterns`.
fn set_of(patterns: &[Pattern]) -> Result<GlobSet, Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(p.glob.clone());
    }
    b.build().map_err(|e| Error::BadPattern { pattern: patterns.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" "), reason: e.to_string() })
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build()
}

/// Like Go's filepath.Clean for a relative slash path, with any leading `/` dropped.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile, which BuildKit prefers to the context's `.dockerignore`.
pub fn beside_dockerignore(dockerfile: &Path) -> std::path::PathBuf {
    let name = dockerfile.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    dockerfile.with_file_name(format!("{name}.dockerignore"))
}

/// Parses `.dockerignore` text: one pattern a line, `#` comments and blank lines skipped.
pub fn parse_dockerignore(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i, l.to_string()))
        .collect()
}

/// The ignore decision for one image's context.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The built-ins as one set, and the user's patterns as one set whose match indices are pattern
    /// positions: one automaton pass per path prefix instead of one per pattern (the walk asks for every
    /// entry of a 100k-file context).
    builtin: GlobSet,
    set: GlobSet,
    patterns: Vec<Pattern>,
    has_negation: bool,
    /// The context's `.gitignore`, when the image opts in (`gitignore = true`).
    gitignore: Option<ignore::gitignore::Gitignore>,
}

impl Filter {
    /// A filter from explicit patterns (`.dockerignore` syntax) plus the built-in ignores.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Filter, Error> {
        let builtin: Vec<Pattern> = BUILTIN_IGNORES.iter().map(|p| Pattern::parse(p)).collect::<Result<_, _>>()?;
        let patterns: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p.as_ref())).collect::<Result<_, _>>()?;
        let has_negation = patterns.iter().any(|p| p.negate);
        Ok(Filter { builtin: set_of(&builtin)?, set: set_of(&patterns)?, patterns, has_negation, gitignore: None })
    }

    /// The filter of a configured image: [`Filter::for_context`], plus the context's `.gitignore` when the
    /// image sets `gitignore = true` (off by default: a gitignored file, say a pre-built `node_modules/`,
    /// may well belong in the image). The config's images call it as `Image::filter`.
    pub fn for_image(context: &Path, dockerfile: &Path, extra: &[String], gitignore: bool) -> Result<Filter, Error> {
        let mut f = Self::for_context(context, dockerfile, extra)?;
        if gitignore {
            let path = context.join(".gitignore");
            let mut b = ignore::gitignore::GitignoreBuilder::new(context);
            if let Some(e) = b.add(&path) {
                if path.exists() {
                    return Err(Error::Read { path: path.display().to_string(), source: std::io::Error::other(e.to_string()) });
                }
            }
            f.gitignore = Some(b.build().map_err(|e| Error::BadPattern { pattern: path.display().to_string(), reason: e.to_string() })?);
            f.has_negation = true; // a `!` in .dockerignore may re-include what .gitignore excludes
        }
        Ok(f)
    }

    /// The filter for a build: the context's `.dockerignore` (or `<Dockerfile>.dockerignore` beside the
    /// Dockerfile, which BuildKit prefers), then the config's `ignore`, plus the built-ins.
    pub fn for_context(context: &Path, dockerfile: &Path, extra: &[String]) -> Result<Filter, Error> {
        let mut patterns = Vec::new();
        let file = [beside_dockerignore(dockerfile), context.join(".dockerignore")].into_iter().find(|p| p.is_file());
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file)
                .map_err(|source| Error::Read { path: file.display().to_string(), source })?;
            for (line, p) in parse_dockerignore(&text) {
                Pattern::parse(&p).map_err(|e| Error::InFile {
                    file: file.display().to_string(),
                    line,
                    source: Box::new(e),
                })?;
                patterns.push(p);
            }
        }
        patterns.extend(extra.iter().cloned());
        Filter::new(&patterns)
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded from the build.
    pub fn excluded(&self, path: &str) -> bool {
        if prefixes(path).any(|p| self.builtin.is_match_candidate(&Candidate::new(p))) {
            return true;
        }
        let mut excluded =
            self.gitignore.as_ref().is_some_and(|g| g.matched_path_or_any_parents(path, false).is_ignore());
        // The last pattern (in file order) that matches the path or a parent decides.
        let mut last: Option<usize> = None;
        let mut hits = Vec::new();
        for p in prefixes(path) {
            self.set.matches_candidate_into(&Candidate::new(p), &mut hits);
            last = last.max(hits.iter().copied().max());
        }
        if let Some(i) = last {
            excluded = !self.patterns[i].negate;
        }
        excluded
    }

    /// Whether a walk must look inside an excluded directory: only when a `!` pattern could re-include
    /// something below it.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        if !self.has_negation || prefixes(dir).any(|p| self.builtin.is_match_candidate(&Candidate::new(p))) {
            return false;
        }
        let prefix = format!("{dir}/");
        self.patterns.iter().filter(|p| p.negate).any(|p| {
            let body = clean(p.text.trim_start_matches('!').trim());
            body.starts_with(&prefix) || body.starts_with("**") || !body.contains('/')
        })
    }

    /// The user's patterns (`.dockerignore` + config), in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_semantics() {
        // (patterns, path, excluded?)
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*.log"], "a.log", true),
            (&["*.log"], "dir/a.log", false), // anchored at the root, unlike .gitignore
            (&["**/*.log"], "dir/a.log", true),
            (&["**/*.log"], "a.log", true),
            (&["build"], "build/out/x.o", true), // a directory excludes what is below it
            (&["/build/"], "build/x", true),
            (&["./build"], "build", true),
            (&["a/*/c"], "a/b/c", true),
            (&["a/*/c"], "a/b/x/c", false),
            (&["a/**/c"], "a/b/x/c", true),
            (&["?.txt"], "ab.txt", false),
            (&["?.txt"], "a.txt", true),
            (&["*", "!keep"], "keep", false),
            (&["*", "!keep"], "other", true),
            (&["*.md", "!README.md", "README*"], "README.md", true), // last match wins
            (&[".env"], ".env", true),
            (&[".env"], "src/.env", false),
            (&[], "src/main.rs", false),
        ];
        for (patterns, path, want) in cases {
            let f = Filter::new(patterns).unwrap();
            assert_eq!(f.excluded(path), *want, "patterns {patterns:?} path {path}");
        }
    }

    #[test]
    fn editor_temp_files_and_git_are_always_excluded() {
        let f = Filter::new(&["!*.swp"]).unwrap();
        for p in [
            ".git", ".git/HEAD", "src/.main.rs.swp", "src/.main.rs.swo", "4913", "src/4913", "main.rs~",
            "#main.rs#", ".#main.rs", "main.rs___jb_tmp___", "main.rs___jb_old___", "x.swp", "sub/.git/config",
        ] {
            assert!(f.excluded(p), "{p} should be excluded");
        }
        for p in ["src/main.rs", "Dockerfile", ".dockerignore", "git/x", "a#b", "swp"] {
            assert!(!f.excluded(p), "{p} should be included");
        }
    }

    #[test]
    fn walk_skips_excluded_dirs_unless_a_negation_reaches_inside() {
        let f = Filter::new(&["node_modules"]).unwrap();
        assert!(!f.may_reinclude_below("node_modules"));
        let f = Filter::new(&["docs", "!docs/keep.md"]).unwrap();
        assert!(f.may_reinclude_below("docs"));
        assert!(!f.excluded("docs/keep.md"));
        assert!(f.excluded("docs/other.md"));
    }

    #[test]
    fn gitignore_is_opt_in_and_dockerignore_can_reinclude() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".gitignore"), "node_modules/\n*.o\n").unwrap();
        std::fs::write(d.path().join(".dockerignore"), "!keep.o\n").unwrap();
        let for_image = |gitignore| Filter::for_image(d.path(), &d.path().join("Dockerfile"), &[], gitignore);
        let off = for_image(false).unwrap();
        assert!(!off.excluded("node_modules/x/index.js") && !off.excluded("a.o"));
        let on = for_image(true).unwrap();
        assert!(on.excluded("node_modules/x/index.js") && on.excluded("src/a.o"));
        assert!(!on.excluded("keep.o") && !on.excluded("src/main.c"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Pattern::parse("a[").is_err());
        assert!(Pattern::parse("a[b]").is_ok());
    }

    #[test]
    fn dockerignore_file_comments_and_line_numbers() {
        let parsed = parse_dockerignore("# secrets\n.env\n\n  *.log  \n");
        assert_eq!(parsed, vec![(2, ".env".to_string()), (4, "*.log".to_string())]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "ok\nbad[\n").unwrap();
        let err = Filter::for_context(dir.path(), &dir.path().join("Dockerfile"), &[]).unwrap_err();
        assert!(err.to_string().contains(".dockerignore:2:"), "{err}");
    }
}
