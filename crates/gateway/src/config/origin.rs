//! Which configuration source a key came from, so that an error in a merged configuration (several `--config`
//! files, then `GATEWAYD_*` variables) names the file that holds the bad value as well as the key.

use figment::{Figment, Metadata, Source};

/// The file path of a value read from a file, the provider's name (`GATEWAYD_` environment variables) for a value
/// from elsewhere, nothing for a built-in default.
fn name(metadata: &Metadata) -> Option<String> {
    match &metadata.source {
        Some(Source::File(path)) => Some(path.display().to_string()),
        Some(_) => None,
        None => Some(metadata.name.to_string()),
    }
}

/// The source of the value at the dotted `key`, or of the nearest enclosing table that has one.
pub fn source_of(figment: &Figment, key: &str) -> Option<String> {
    let mut key = key;
    while !key.is_empty() {
        if let Some(found) = figment.find_metadata(key).and_then(name) {
            return Some(found);
        }
        key = key.rsplit_once('.').map_or("", |(parent, _)| parent);
    }
    None
}

/// Every extraction error on its own line: source, full key path (an unknown key included), what is wrong.
pub fn describe(figment: &Figment, error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = source_of(figment, &key).or_else(|| e.metadata.as_ref().and_then(name));
            let kind = e.kind.to_string();
            match (source, key.is_empty()) {
                (Some(source), false) => format!("{source}: {key}: {kind}"),
                (Some(source), true) => format!("{source}: {kind}"),
                (None, false) => format!("{key}: {kind}"),
                (None, true) => kind,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::PathBuf;

    /// Loads `main` and `auth` written to files, returning the error text and both paths.
    fn error(main: &str, auth: &str) -> (String, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = ["gatewayd.toml", "auth.toml"]
            .iter()
            .map(|name| dir.path().join(name))
            .collect();
        std::fs::write(&paths[0], main).unwrap();
        std::fs::write(&paths[1], auth).unwrap();
        let error = Config::load(&paths).unwrap_err().to_string();
        let [main, auth] = [0, 1].map(|i| paths[i].display().to_string());
        (error, main, auth)
    }

    #[test]
    fn a_bad_value_names_its_file_and_key() {
        let (error, main, auth) = error(
            "[stomp.auth]\nrequired = false\n",
            "[stomp.auth]\nrequired = \"yes\"\n",
        );
        assert!(
            error.starts_with(&format!("{auth}: stomp.auth.required:")),
            "{error}"
        );
        assert!(!error.contains(&main), "{error}");
    }

    #[test]
    fn an_unknown_key_names_the_file_that_has_it() {
        let (error, main, auth) = error(
            "[stomp.auth]\nrequird = true\n",
            "[stomp.auth]\nrequired = true\n",
        );
        assert!(
            error.starts_with(&format!("{main}: stomp.auth.requird:")),
            "{error}"
        );
        assert!(!error.contains(&auth), "{error}");
    }

    #[test]
    fn a_syntax_error_names_its_file() {
        let (error, _, auth) = error("", "[stomp.auth\n");
        assert!(error.starts_with(&auth), "{error}");
    }

    #[test]
    fn a_validation_error_names_the_file_of_its_key() {
        let (error, _, auth) = error(
            "[stomp.auth]\nrequired = true\n",
            "[stomp.auth.jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/jwt.pem\"\n",
        );
        assert!(
            error.starts_with(&format!("{auth}: stomp.auth.jwt.public_key_file")),
            "{error}"
        );
    }
}
