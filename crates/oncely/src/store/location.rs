//! What may be shown of a store location: the password of a URL or of a key-value string is
//! replaced by `***` everywhere a location is printed or handed back (`Store.location` in every
//! language, error messages, logs).

/// `url` with any password replaced by `***`: what to show of a location in messages and logs.
/// Works on URLs (`postgres://user:password@host/db`) and key-value strings
/// (`host=h password=secret`).
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(s) = url.find("://") {
        // The userinfo ends at the last '@' before the path.
        let rest = &url[s + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(c) = rest[..at].find(':') {
                out = format!("{}{}:***{}", &url[..s + 3], &rest[..c], &rest[at..]);
            }
        }
    }
    // `password=…` in a query string or a key-value string.
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let starts_word = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'\t');
        let value = i + "password=".len();
        redacted.push_str(&rest[..value]);
        rest = &rest[value..];
        if starts_word {
            let end = rest.find(['&', ' ', '\t']).unwrap_or(rest.len());
            redacted.push_str("***");
            rest = &rest[end..];
        }
    }
    redacted.push_str(rest);
    redacted
}
