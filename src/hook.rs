//! `devloop hook install`: a git pre-push hook that runs `devloop check`, so what is pushed has been built,
//! deployed and checked on a local cluster first.

use std::path::{Path, PathBuf};

/// The line that marks a hook as devloop's own (so it may be replaced without --force).
pub const MARKER: &str = "# installed by devloop hook install";

/// Errors installing the hook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not inside a git work tree.
    #[error("no .git directory in {0} or any parent: run this inside a git repository")]
    NoRepo(PathBuf),
    /// A hook that is not ours is in the way.
    #[error("{0} exists and was not written by devloop; keep it, or replace it with --force")]
    Foreign(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Writes `.git/hooks/pre-push` for the repository containing `start`. Returns the hook's path.
pub fn install(start: &Path, force: bool) -> Result<PathBuf, Error> {
    let git = start.ancestors().map(|d| d.join(".git")).find(|g| g.is_dir()).ok_or_else(|| Error::NoRepo(start.into()))?;
    let hooks = git.join("hooks");
    let path = hooks.join("pre-push");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.contains(MARKER) && !force {
            return Err(Error::Foreign(path));
        }
    }
    let script = format!(
        "#!/bin/sh\n{MARKER}\n# Builds every image, deploys into a throwaway namespace, runs [check] commands; \
         a failure stops the push.\n# Skip once with: git push --no-verify\nexec devloop check\n"
    );
    let write = |e| Error::Write { path: path.clone(), source: e };
    std::fs::create_dir_all(&hooks).map_err(write)?;
    std::fs::write(&path, script).map_err(write)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(write)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_replaces_its_own_and_refuses_a_foreign_hook() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git/hooks")).unwrap();
        let sub = d.path().join("src");
        std::fs::create_dir(&sub).unwrap();
        let p = install(&sub, false).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("exec devloop check"));
        install(&sub, false).unwrap(); // ours: replaced quietly
        std::fs::write(&p, "#!/bin/sh\nrun-my-linter\n").unwrap();
        assert!(matches!(install(&sub, false), Err(Error::Foreign(_))));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "#!/bin/sh\nrun-my-linter\n", "a refused install changes nothing");
        install(&sub, true).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains(MARKER));
        let none = tempfile::tempdir().unwrap();
        assert!(matches!(install(none.path(), false), Err(Error::NoRepo(_))));
    }
}
