//! Image references, `[host[:port]/]path[:tag][@digest]`, taken apart once, here: which part is the
//! repository, the tag, the digest. A colon is a tag's only after the last `/` (before it, it is a registry
//! port's); `@` starts a digest. No normalisation (`docker.io/library/…`): devloop compares references as
//! manifests and its own destinations write them.
//!
//! Our own rather than a crate's: the grammar devloop needs is these three cuts, and oci-client's or
//! oci-spec's parsers normalise short names to `docker.io/library/…`, which would make `hello` in a
//! manifest differ from the `hello` devloop deploys.

use std::fmt;

/// A reference, cut into its parts (borrowed from the text it was parsed from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    /// `host[:port]/path`, or `path`: everything before the tag and the digest.
    pub repository: &'a str,
    /// The tag, without its `:`.
    pub tag: Option<&'a str>,
    /// The digest, without its `@` (`sha256:…`).
    pub digest: Option<&'a str>,
}

impl<'a> Reference<'a> {
    /// Cuts `text` into repository, tag and digest. Never fails: what is not a tag or a digest is repository.
    pub fn parse(text: &'a str) -> Reference<'a> {
        let (name, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
            None => (name, None),
        };
        Reference { repository, tag, digest }
    }

    /// The tag, or `latest` as a registry and a runtime take a reference without one.
    pub fn tag_or_latest(&self) -> &'a str {
        self.tag.unwrap_or("latest")
    }

    /// Whether it pins anything (a tag or a digest): without either it means `:latest`.
    pub fn pinned(&self) -> bool {
        self.tag.is_some() || self.digest.is_some()
    }

    /// The registry host (`host[:port]`) when the repository names one: a first path component with a `.` or
    /// a `:`, or `localhost`, as Docker tells a host from a Docker Hub user.
    pub fn host(&self) -> Option<&'a str> {
        let (first, _) = self.repository.split_once('/')?;
        (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
    }
}

impl fmt::Display for Reference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.repository)?;
        if let Some(t) = self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Reference;

    #[test]
    fn references_are_cut_at_the_tag_after_the_last_slash_and_at_the_digest() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        // (text, repository, tag, digest, host)
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            ("hello", "hello", None, None, None),
            ("hello:1", "hello", Some("1"), None, None),
            ("reg:5000/hello", "reg:5000/hello", None, None, Some("reg:5000")),
            ("reg:5000/hello:abc", "reg:5000/hello", Some("abc"), None, Some("reg:5000")),
            ("10.201.0.2:5000/team/app:t1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "10.201.0.2:5000/team/app", Some("t1"), Some(d), Some("10.201.0.2:5000")),
            ("reg.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "reg.example/app", None, Some(d), Some("reg.example")),
            ("localhost/app:dev", "localhost/app", Some("dev"), None, Some("localhost")),
            ("library/busybox:1.36", "library/busybox", Some("1.36"), None, None),
        ];
        for (text, repository, tag, digest, host) in cases {
            let r = Reference::parse(text);
            assert_eq!((r.repository, r.tag, r.digest, r.host()), (*repository, *tag, *digest, *host), "{text}");
            assert_eq!(r.to_string(), *text, "written back as it was");
        }
    }

    #[test]
    fn no_tag_means_latest_and_a_tag_or_a_digest_pins() {
        assert_eq!(Reference::parse("reg:5000/hello").tag_or_latest(), "latest", "not the tag `5000/hello`");
        assert_eq!(Reference::parse("reg:5000/hello@sha256:00").tag_or_latest(), "latest");
        assert!(!Reference::parse("reg:5000/hello").pinned());
        assert!(Reference::parse("hello@sha256:00").pinned() && Reference::parse("hello:1").pinned());
    }
}
