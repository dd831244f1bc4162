//! Kubernetes names, checked and made: DNS-1123 labels and subdomains, and the namespace templates
//! (`{user}`, `{git-user}`) expanded with values the caller supplies (pure: reading the OS or git user is
//! the cluster layer's, when it resolves the namespace).

/// A `{placeholder}` in a namespace template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{user}`: the OS user.
    User,
    /// `{git-user}`: the local part of `git config user.email`.
    GitUser,
}

/// Expands the placeholders of `template` with `value` (asked only for those present) and sanitizes the
/// result to a DNS-1123 label. Err: what is wrong, for a message naming the key.
pub fn expand(template: &str, value: &dyn Fn(Placeholder) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{template}`: `{{` without a closing `}}`"))?;
        let p = match &after[..close] {
            "user" => Placeholder::User,
            "git-user" => Placeholder::GitUser,
            other => return Err(format!("`{template}`: unknown placeholder `{{{other}}}` (known: {{user}}, {{git-user}})")),
        };
        out.push_str(&value(p)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let label = sanitize(&out);
    if label.is_empty() {
        return Err(format!("`{template}` expands to `{out}`, which leaves no valid namespace name ([a-z0-9-])"));
    }
    Ok(label)
}

/// A DNS-1123 label from `s`: lower case, every other character than `[a-z0-9-]` as `-`, at most 63
/// characters, no leading or trailing `-`. May be empty.
pub fn sanitize(s: &str) -> String {
    let mapped: String =
        s.chars().map(|c| c.to_ascii_lowercase()).map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).collect();
    let mapped: String = mapped.chars().take(63).collect();
    mapped.trim_matches('-').to_string()
}

/// A DNS-1123 label (namespaces, Deployment names for services): `[a-z0-9-]`, at most 63, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (pods, Deployments, Secrets): dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_sanitize_to_a_dns_label() {
        let values = |p: Placeholder| -> Result<String, String> {
            Ok(match p {
                Placeholder::User => "Alice".into(),
                Placeholder::GitUser => "bob.smith+dev".into(),
            })
        };
        let long = "x".repeat(70);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("dev-{user}", Ok("dev-alice")),
            ("dev-{git-user}", Ok("dev-bob-smith-dev")),
            ("{user}-{git-user}", Ok("alice-bob-smith-dev")),
            ("plain", Ok("plain")),
            ("Team_A.{user}", Ok("team-a-alice")),
            ("-{user}-", Ok("alice")),
            (&long, Ok(&long[..63])),
            ("dev-{host}", Err("unknown placeholder `{host}`")),
            ("dev-{user", Err("without a closing")),
            ("---", Err("no valid namespace name")),
            ("ü", Err("no valid namespace name")),
        ];
        for (template, want) in cases {
            let got = expand(template, &values);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{template}"),
                Err(w) => assert!(got.as_ref().is_err_and(|e| e.contains(w)), "{template}: {got:?}"),
            }
        }
    }

    #[test]
    fn truncation_does_not_leave_a_trailing_dash_and_lookups_are_lazy() {
        assert_eq!(sanitize(&format!("{}-tail", "a".repeat(62))), "a".repeat(62));
        assert_eq!(sanitize("ÄBC"), "bc");
        // {git-user} is not asked for (no git run) when the template does not name it.
        let only_user = |p: Placeholder| match p {
            Placeholder::User => Ok("u".to_string()),
            Placeholder::GitUser => Err("git asked".to_string()),
        };
        assert_eq!(expand("dev-{user}", &only_user).unwrap(), "dev-u");
        assert_eq!(expand("dev-{git-user}", &only_user).unwrap_err(), "git asked");
        // An empty value expands to nothing, and a template left empty is refused.
        let empty = |_: Placeholder| Ok(String::new());
        assert!(expand("{user}", &empty).is_err());
    }
}
