//! `[[deploy]] image-paths` and `ready-when`: custom resources (an Argo Rollout, a Knative Service, a
//! resource of the team's own operator) whose image lives at a path devloop is told, and whose readiness is a
//! status condition. Keyed by `<group>/<Kind>` as the object's `apiVersion` group and `kind` say it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One segment of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A map key.
    Key(String),
    /// Every item of a list (`[*]`).
    All,
    /// One item of a list (`[2]`).
    Index(usize),
}

/// A path to image references in an object: `spec.template.spec.containers[*].image`, `spec.image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Parses the dotted form; an error says what is wrong with it.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = part.find('[').map_or((part, ""), |i| (&part[..i], &part[i..]));
            if key.is_empty() {
                return Err(format!("`{text}`: an empty key (write keys separated by dots, lists as `name[*]` or `name[0]`)"));
            }
            segments.push(Segment::Key(key.to_string()));
            while let Some(open) = rest.strip_prefix('[') {
                let (inside, after) = open.split_once(']').ok_or_else(|| format!("`{text}`: a `[` without its `]`"))?;
                segments.push(match inside {
                    "*" => Segment::All,
                    n => Segment::Index(n.parse().map_err(|_| format!("`{text}`: `[{n}]` is neither `[*]` nor a list index"))?),
                });
                rest = after;
            }
            if !rest.is_empty() {
                return Err(format!("`{text}`: `{rest}` after `]` (a key goes after a dot)"));
            }
        }
        Ok(FieldPath(segments))
    }
}

/// What devloop knows of one custom kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custom {
    /// Where its image references are (besides any `containers` list, which is always looked at).
    pub image_paths: Vec<FieldPath>,
    /// The status condition that says it is ready (`Ready`, `Available`, `Healthy`): its rollout is watched
    /// until that condition is `True` for the object's current generation.
    pub ready_when: Option<String>,
}

/// A path or a list of paths, as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMore {
    One(String),
    More(Vec<String>),
}

/// Validates `image-paths` and `ready-when` into one map by kind; the error names the sub-key and says why.
pub(super) fn validate(paths: BTreeMap<String, OneOrMore>, ready: BTreeMap<String, String>) -> Result<BTreeMap<String, Custom>, (String, String)> {
    let mut out: BTreeMap<String, Custom> = BTreeMap::new();
    let check_kind = |key: &str, k: &str| -> Result<(), (String, String)> {
        let ok = k.split_once('/').is_some_and(|(g, kind)| !g.is_empty() && g.contains('.') && kind.starts_with(|c: char| c.is_ascii_uppercase()) && !kind.contains('/'));
        match ok {
            true => Ok(()),
            false => Err((format!("{key}.\"{k}\""), format!("`{k}` is not `<group>/<Kind>` (e.g. \"argoproj.io/Rollout\": the group of its apiVersion, then its kind)"))),
        }
    };
    for (kind, p) in paths {
        check_kind("image-paths", &kind)?;
        let list = match p {
            OneOrMore::One(p) => vec![p],
            OneOrMore::More(l) => l,
        };
        let parsed = list.iter().map(|p| FieldPath::parse(p)).collect::<Result<Vec<_>, _>>().map_err(|m| (format!("image-paths.\"{kind}\""), m))?;
        out.entry(kind).or_default().image_paths = parsed;
    }
    for (kind, condition) in ready {
        check_kind("ready-when", &kind)?;
        if condition.trim().is_empty() || condition.contains(char::is_whitespace) {
            return Err((format!("ready-when.\"{kind}\""), format!("`{condition}` is not a condition type (e.g. \"Ready\", \"Available\")")));
        }
        out.entry(kind).or_default().ready_when = Some(condition);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_keys_and_list_steps_and_bad_ones_say_why() {
        use Segment::*;
        let p = FieldPath::parse("spec.template.spec.containers[*].image").unwrap();
        assert_eq!(p.0, [Key("spec".into()), Key("template".into()), Key("spec".into()), Key("containers".into()), All, Key("image".into())]);
        assert_eq!(FieldPath::parse("spec.images[1][*]").unwrap().0, [Key("spec".into()), Key("images".into()), Index(1), All]);
        for (bad, why) in [("spec..image", "an empty key"), ("spec.x[", "without its `]`"), ("spec.x[a]", "neither"), ("spec.x[0]y", "after `]`")] {
            let e = FieldPath::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn kinds_are_group_slash_kind_and_conditions_one_word() {
        let paths = BTreeMap::from([("example.com/Widget".to_string(), OneOrMore::One("spec.image".into()))]);
        let ready = BTreeMap::from([("example.com/Widget".to_string(), "Ready".to_string())]);
        let c = validate(paths, ready).unwrap();
        assert_eq!(c["example.com/Widget"].ready_when.as_deref(), Some("Ready"));
        assert_eq!(c["example.com/Widget"].image_paths.len(), 1);
        let e = validate(BTreeMap::from([("Widget".to_string(), OneOrMore::More(vec![]))]), BTreeMap::new()).unwrap_err();
        assert_eq!(e.0, "image-paths.\"Widget\"");
        let e = validate(BTreeMap::new(), BTreeMap::from([("example.com/Widget".to_string(), "is ready".to_string())])).unwrap_err();
        assert!(e.1.contains("not a condition type"), "{e:?}");
    }
}
