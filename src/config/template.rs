//! Templates of the values devloop puts in a chart (`[[deploy]] helm.set`) and of the tag itself
//! (`[[image]] tag`): `{placeholder}`s for the parts of the reference devloop deploys, so a chart that
//! spreads its image over values of its own (a registry, a user, a build number with a fixed suffix)
//! deploys unchanged. Parsed and checked when the config loads; expanded (pure) by the deployer, which
//! knows the reference.
//!
//! A placeholder is a name of lower-case letters, digits and `-` between single braces. Any other brace is
//! text, so the Go templates of `tpl` values (`{{ .Release.Name }}`) and JSON pass through unchanged.

use std::fmt;

/// A `{placeholder}` of a `set` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// `{registry}`: the registry host[:port] the cluster pulls from (`docker.io` for an image loaded into
    /// a node's store, the name a runtime gives it there).
    Registry,
    /// `{name}`: the `[[image]] name`.
    Name,
    /// `{repository}`: the repository deployed, without tag and digest (`<registry>/<name>`).
    Repository,
    /// `{tag}`: the tag deployed (the `[[image]] tag` template expanded).
    Tag,
    /// `{hash}`: the content hash inside the tag (the tag itself without a `tag` template).
    Hash,
    /// `{digest}`: the image's digest (`sha256:…`).
    Digest,
    /// `{image}`: the whole reference devloop deploys (`<repository>:<tag>@<digest>` for a registry).
    Image,
}

impl Var {
    /// Every placeholder, in the order the documentation lists them.
    pub const ALL: [Var; 7] = [Var::Registry, Var::Name, Var::Repository, Var::Tag, Var::Hash, Var::Digest, Var::Image];

    /// Its name, as written between braces.
    pub fn name(self) -> &'static str {
        match self {
            Var::Registry => "registry",
            Var::Name => "name",
            Var::Repository => "repository",
            Var::Tag => "tag",
            Var::Hash => "hash",
            Var::Digest => "digest",
            Var::Image => "image",
        }
    }

    /// Whether it pins the build deployed (not only where it lives): a chart given one of these takes
    /// devloop's image through the template.
    pub fn pins_build(self) -> bool {
        matches!(self, Var::Tag | Var::Hash | Var::Digest | Var::Image)
    }

    fn of(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A string with placeholders, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// Whether `s` can be a placeholder's name: lower-case letters, digits and `-`.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Template {
    /// Parses `text`, allowing the placeholders `allowed`. Err: what is wrong, for a message naming the key.
    pub fn parse(text: &str, allowed: &[Var]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            // `{{`: the opening of a Go template, text (both braces, so `{{x}}` is not read as `{x}`).
            if let Some(go) = after.strip_prefix('{') {
                literal.push_str("{{");
                rest = go;
                continue;
            }
            let name = after.find('}').map(|close| &after[..close]).filter(|n| is_name(n));
            let Some(name) = name else {
                literal.push('{');
                rest = after;
                continue;
            };
            let known = || allowed.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
            let var = match Var::of(name) {
                Some(v) if allowed.contains(&v) => v,
                Some(v) => return Err(format!("`{text}`: {v} is not known here (known: {})", known())),
                None => return Err(format!("`{text}`: unknown placeholder `{{{name}}}` (known: {})", known())),
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &after[name.len() + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { text: text.to_string(), parts })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The placeholders it names, in order (repeated ones repeated).
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Text(_) => None,
        })
    }

    /// Whether it names no placeholder (then it is its own text).
    pub fn is_plain(&self) -> bool {
        self.vars().next().is_none()
    }

    /// The text with each placeholder replaced by `value` (asked only for those present).
    pub fn expand(&self, value: &dyn Fn(Var) -> Result<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&value(*v)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `[[image]] tag`: the tag an image is pushed and deployed under, made of its content hash. `{hash}` must
/// appear exactly once, so the same bytes always give the same tag and the hash can be read back out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    /// The text before and after `{hash}`.
    prefix: String,
    suffix: String,
}

impl Default for TagTemplate {
    /// `{hash}`: the content hash is the tag.
    fn default() -> Self {
        TagTemplate { prefix: String::new(), suffix: String::new() }
    }
}

/// Length of the content hash in hex characters (128 bits of a SHA-256): what `{hash}` expands to.
pub const HASH_LEN: usize = 32;

/// An OCI distribution tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl TagTemplate {
    /// Checks a tag template: `{hash}` once, no other placeholder, and a valid OCI tag once expanded with a
    /// hash. Err: what is wrong.
    pub fn parse(text: &str) -> Result<TagTemplate, String> {
        let t = Template::parse(text, &[Var::Hash]).map_err(|e| format!("{e}: a tag template takes {} only", Var::Hash))?;
        let mut parts = t.parts.iter();
        let (prefix, suffix) = match (t.vars().count(), parts.next(), parts.next(), parts.next()) {
            (1, Some(Part::Var(_)), rest, None) => (String::new(), rest),
            (1, Some(Part::Text(p)), Some(Part::Var(_)), rest) => (p.clone(), rest),
            (0, ..) => return Err(format!("`{text}` has no {}: the content hash must be in the tag, so that new content gets a new tag", Var::Hash)),
            _ => return Err(format!("`{text}` names {} more than once: once is enough", Var::Hash)),
        };
        let suffix = match suffix {
            Some(Part::Text(s)) => s.clone(),
            _ => String::new(),
        };
        let tag = TagTemplate { prefix, suffix };
        let sample = tag.tag(&"0".repeat(HASH_LEN));
        if !is_tag(&sample) {
            return Err(format!(
                "`{text}` does not make a valid tag (`{sample}`): letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most 128 characters"
            ));
        }
        Ok(tag)
    }

    /// The tag of content hash `hash`.
    pub fn tag(&self, hash: &str) -> String {
        format!("{}{hash}{}", self.prefix, self.suffix)
    }

    /// The hash inside `tag`, when `tag` has the template's form (a `--tag` given by hand may not).
    pub fn hash_of<'a>(&self, tag: &'a str) -> Option<&'a str> {
        tag.strip_prefix(self.prefix.as_str())?.strip_suffix(self.suffix.as_str()).filter(|h| !h.is_empty())
    }

    /// Whether it is the default (`{hash}`).
    pub fn is_default(&self) -> bool {
        self.prefix.is_empty() && self.suffix.is_empty()
    }
}

impl fmt::Display for TagTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.prefix, Var::Hash, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: Var) -> Result<String, String> {
        Ok(match v {
            Var::Registry => "10.0.0.1:5000".into(),
            Var::Name => "kiamol/bulletin-board".into(),
            Var::Repository => "10.0.0.1:5000/kiamol/bulletin-board".into(),
            Var::Tag => "0123-kiamol".into(),
            Var::Hash => "0123".into(),
            Var::Digest => return Err("no digest".into()),
            Var::Image => "10.0.0.1:5000/kiamol/bulletin-board:0123-kiamol@sha256:aa".into(),
        })
    }

    #[test]
    fn placeholders_expand_and_other_braces_are_text() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("{registry}", Ok("10.0.0.1:5000")),
            ("{hash}", Ok("0123")),
            ("{repository}:{tag}", Ok("10.0.0.1:5000/kiamol/bulletin-board:0123-kiamol")),
            ("{image}", Ok("10.0.0.1:5000/kiamol/bulletin-board:0123-kiamol@sha256:aa")),
            ("build-{hash}-{hash}", Ok("build-0123-0123")),
            ("{name}.local", Ok("kiamol/bulletin-board.local")),
            ("plain", Ok("plain")),
            ("", Ok("")),
            // Go templates (tpl values) and JSON are not placeholders.
            ("{{ .Release.Name }}-{tag}", Ok("{{ .Release.Name }}-0123-kiamol")),
            ("{{tag}}", Ok("{{tag}}")),
            ("{\"a\": 1}", Ok("{\"a\": 1}")),
            ("{ tag }", Ok("{ tag }")),
            ("{Tag}", Ok("{Tag}")),
            ("open { and }", Ok("open { and }")),
            ("{tag", Ok("{tag")),
            ("{digest}", Err("no digest")),
            ("{registy}", Err("unknown placeholder `{registy}`")),
            ("x-{git-user}", Err("unknown placeholder `{git-user}` (known: {registry}, {name}, {repository}, {tag}, {hash}, {digest}, {image})")),
        ];
        for (text, want) in cases {
            let got = Template::parse(text, &Var::ALL).and_then(|t| t.expand(&values));
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{text}"),
                Err(w) => assert!(got.as_ref().is_err_and(|e| e.contains(w)), "{text}: {got:?}"),
            }
        }
        assert!(Template::parse("{tag}", &[Var::Hash]).unwrap_err().contains("{tag} is not known here (known: {hash})"));
        let t = Template::parse("{registry}/x:{hash}", &Var::ALL).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), [Var::Registry, Var::Hash]);
        assert!(!t.is_plain() && Template::parse("{{ x }}", &Var::ALL).unwrap().is_plain());
        assert!(Var::Hash.pins_build() && !Var::Registry.pins_build() && !Var::Repository.pins_build());
    }

    #[test]
    fn tag_templates_keep_the_hash_and_make_valid_tags() {
        let t = TagTemplate::parse("{hash}-kiamol").unwrap();
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(t.tag(hash), format!("{hash}-kiamol"));
        assert_eq!(t.hash_of(&t.tag(hash)), Some(hash), "the hash reads back");
        assert_eq!(t.hash_of("v2-kiamol"), Some("v2"));
        assert_eq!(t.hash_of("other"), None);
        assert_eq!(t.to_string(), "{hash}-kiamol");
        let d = TagTemplate::parse("{hash}").unwrap();
        assert!(d.is_default() && d == TagTemplate::default());
        assert_eq!(d.tag(hash), hash);
        assert_eq!(TagTemplate::parse("dev_{hash}.1").unwrap().tag("ab"), "dev_ab.1");

        let bad: &[(&str, &str)] = &[
            ("latest", "has no {hash}"),
            ("{hash}-{hash}", "more than once"),
            ("{hash}-{tag}", "{tag} is not known here"),
            ("{hash}-{build}", "unknown placeholder `{build}`"),
            ("{hash}/x", "does not make a valid tag"),
            ("-{hash}", "does not make a valid tag"),
            (".{hash}", "does not make a valid tag"),
            ("{hash}:1", "does not make a valid tag"),
            ("{hash} x", "does not make a valid tag"),
            ("{hash}{{x}}", "does not make a valid tag"),
        ];
        for (text, want) in bad {
            let e = TagTemplate::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // 128 characters at most, with the 32 of the hash.
        assert!(TagTemplate::parse(&format!("{{hash}}{}", "x".repeat(96))).is_ok());
        assert!(TagTemplate::parse(&format!("{{hash}}{}", "x".repeat(97))).unwrap_err().contains("at most 128"));
        assert!(is_tag("_a") && is_tag("A.b-c_d") && !is_tag("") && !is_tag("é"));
    }
}
