//! The images' build contexts, checked when the config loads (they are on disk, not in the text).

use serde::Deserialize;

use super::{line_col, Config, Error, Located};

/// Every image's `context` is a directory: a missing one is a config error at its line (it would otherwise
/// surface as its Dockerfile missing).
pub fn check(cfg: &Config, text: &str) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Contexts {
        #[serde(default, rename = "image")]
        images: Vec<ContextOnly>,
    }
    #[derive(Deserialize)]
    struct ContextOnly {
        context: toml::Spanned<String>,
    }
    for (i, img) in cfg.images.iter().enumerate() {
        let why = match std::fs::metadata(&img.context) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => "is not a directory".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        // `parse` accepted the text: read again only for the place of the value.
        let given = toml::from_str::<Contexts>(text).ok().and_then(|c| c.images.into_iter().nth(i)).map(|c| c.context);
        let span = given.as_ref().map(|g| g.span());
        let given = given.map_or(String::new(), |g| format!("`{}` ", g.get_ref()));
        return Err(Error::Invalid(Box::new(Located {
            path: cfg.path.clone(),
            line_col: span.map(|s| line_col(text, s.start)),
            key: format!("image[{i}].context"),
            message: format!("the build context {given}{why} ({})", img.context.display()),
        })));
    }
    Ok(())
}
