//! `[registry] pull-secret`: whether deployed pods pull with an imagePullSecret devloop keeps, and its name.

use serde::Deserialize;

/// `[registry] pull-secret = true | false | "<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PullSecret {
    /// No Secret (the default): the kubelet pulls anonymously, or with what the cluster already has.
    #[default]
    Off,
    /// `true`: a Secret named `devloop-registry-<registry host, sanitized>`.
    Default,
    /// A Secret with this name.
    Named(String),
}

impl PullSecret {
    /// The Secret's name for a registry `host`, None when off.
    pub fn name(&self, host: &str) -> Option<String> {
        match self {
            PullSecret::Off => None,
            PullSecret::Default => Some(default_name(host)),
            PullSecret::Named(n) => Some(n.clone()),
        }
    }
}

/// `devloop-registry-<host>`, the host lower-cased with every character but `[a-z0-9]` as `-` (a valid
/// Secret name: `10.201.0.2:5443` gives `devloop-registry-10-201-0-2-5443`).
pub fn default_name(host: &str) -> String {
    let mut s: String = host.chars().map(|c| c.to_ascii_lowercase()).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.truncate(253 - "devloop-registry-".len());
    let s = s.trim_matches('-');
    if s.is_empty() {
        "devloop-registry".into()
    } else {
        format!("devloop-registry-{s}")
    }
}

/// A Secret name must be a DNS-1123 subdomain: lower-case alphanumerics, `-` and `.`, at most 253, starting and
/// ending alphanumeric.
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    if super::names::is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a Secret name (lower-case letters, digits, `-` and `.`, at most 253)"))
    }
}

impl<'de> Deserialize<'de> for PullSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use super::BoolOrName;
        match BoolOrName::deserialize(d).map_err(|_| serde::de::Error::custom("expected true, false or a Secret name"))? {
            BoolOrName::Bool(false) => Ok(PullSecret::Off),
            BoolOrName::Bool(true) => Ok(PullSecret::Default),
            BoolOrName::Name(n) => Ok(PullSecret::Named(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(PullSecret::Off.name("r:1"), None);
        assert_eq!(PullSecret::Default.name("10.201.0.2:5443").unwrap(), "devloop-registry-10-201-0-2-5443");
        assert_eq!(PullSecret::Default.name("Reg.Example.COM").unwrap(), "devloop-registry-reg-example-com");
        assert_eq!(PullSecret::Named("mine".into()).name("r").unwrap(), "mine");
        assert!(validate_secret_name(&default_name("[::1]:5000")).is_ok());
        assert!(validate_secret_name("Bad_Name").unwrap_err().contains("Bad_Name"));
    }
}
