//! Database URLs without their passwords, for logs and error messages.

use percent_encoding::percent_decode_str;
use url::Url;

/// What stands in for a password.
const MASK: &str = "***";

/// `url` with its password (in the user info or a `password=` query parameter) replaced by
/// `***`, so the database can be named in logs. Text that does not parse as a URL may hold a
/// password anywhere, so none of it is shown.
#[must_use]
pub fn redact_database_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return "<unparseable database URL>".into();
    };
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
        return "<database URL>".into();
    }
    if parsed.query_pairs().any(|(name, _)| name == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "password" {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%2A%2A%2A", MASK)
}

/// `text` (typically a driver's error message) with every occurrence of the password of
/// `url`, as written or percent-decoded, replaced by `***`.
#[must_use]
pub fn redact_secrets(text: &str, url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return text.to_owned();
    };
    let mut secrets: Vec<String> = parsed
        .query_pairs()
        .filter(|(name, _)| name == "password")
        .map(|(_, value)| value.into_owned())
        .collect();
    if let Some(password) = parsed.password() {
        secrets.push(password.to_owned());
        secrets.push(percent_decode_str(password).decode_utf8_lossy().into_owned());
    }
    let mut redacted = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        redacted = redacted.replace(secret.as_str(), MASK);
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::{redact_database_url, redact_secrets};

    #[test]
    fn passwords_never_reach_messages() {
        let url = "postgres://ens:s%40cret@db.internal:5432/ens?sslmode=require&password=other";
        let shown = redact_database_url(url);
        assert_eq!(
            shown,
            "postgres://ens:***@db.internal:5432/ens?sslmode=require&password=***"
        );
        assert_eq!(
            redact_secrets("login as ens with s@cret or s%40cret or other failed", url),
            "login as ens with *** or *** or *** failed"
        );
        assert_eq!(
            redact_database_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert!(!redact_database_url("not a url with s3cret").contains("s3cret"));
    }
}
