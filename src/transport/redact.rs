//! Keeping secrets out of messages: URLs without credentials, and transport errors described
//! by their kind and causes, never by reqwest's own message (which repeats the URL whole).

use anyhow::anyhow;
use url::Url;

/// A URL without user and password, for messages and records.
pub fn redact_url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Like `redact_url` for a string that may not parse.
pub fn redact(s: &str) -> String {
    match Url::parse(s) {
        Ok(u) => redact_url(&u),
        Err(_) => match (s.find("://"), s.find('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://…@{}", &s[..scheme_end], &s[at + 1..])
            }
            _ => s.to_string(),
        },
    }
}

/// Says what kind of failure a transport error was (DNS, refused, TLS, timeout), for `url`.
pub fn describe(e: reqwest::Error, url: &str) -> anyhow::Error {
    let chain = {
        let mut parts = Vec::new();
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            parts.push(s.to_string());
            src = s.source();
        }
        parts.join(": ").to_lowercase()
    };
    let kind = if e.is_timeout() {
        "timed out"
    } else if chain.contains("dns error")
        || chain.contains("failed to lookup address")
        || chain.contains("name or service not known")
    {
        "DNS lookup failed"
    } else if chain.contains("connection refused") {
        "connection refused"
    } else if chain.contains("certificate")
        || chain.contains("tls")
        || chain.contains("handshake")
        // A TCP connection was made but the TLS layer failed (e.g. a plain-HTTP server).
        || (url.starts_with("https:") && e.is_connect() && !chain.contains("tcp connect error"))
    {
        "TLS failed"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transfer failed"
    };
    // reqwest's own message repeats the URL with credentials; keep only the causes, each once
    // (hyper, the resolver and the OS often say the same thing at three levels).
    let mut causes: Vec<String> = Vec::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        push_cause(&mut causes, s.to_string());
        src = s.source();
    }
    let detail = if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join(": "))
    };
    let hint = match kind {
        "DNS lookup failed" | "could not connect" | "timed out" => {
            "; no network? with the image in the cache, --offline uses it without one"
        }
        _ => "",
    };
    // After redirects the failing URL is another one: name where it was sent, too.
    let via = match e
        .url()
        .and_then(|first| super::redirected_to(first.as_str()))
        .and_then(|to| url::Url::parse(&to).ok())
    {
        Some(to) => format!(" (redirected to {})", redact_url(&to)),
        None => String::new(),
    };
    anyhow!("GET {url}{via}: {kind}{detail}{hint}")
}

/// The message for a redirect that was not followed (to another scheme, such as `file://`),
/// naming where it led; `None` when `status` is no redirect.
pub fn unfollowed_redirect(
    status: reqwest::StatusCode,
    location: Option<&str>,
    url: &str,
) -> Option<String> {
    if !status.is_redirection() || status == reqwest::StatusCode::NOT_MODIFIED {
        return None;
    }
    Some(match location {
        Some(to) => format!(
            "GET {url}: the server answered {status}, redirecting to {}, which is not an \
             http(s) URL this tool follows; refusing it",
            redact(to)
        ),
        None => format!("GET {url}: the server answered {status} without a Location"),
    })
}

/// Adds `cause` unless it repeats one already there (or is contained in one, or contains one,
/// which then goes).
fn push_cause(causes: &mut Vec<String>, cause: String) {
    let c = cause.trim().to_string();
    if c.is_empty() || causes.iter().any(|k| k.contains(&c)) {
        return;
    }
    causes.retain(|k| !c.contains(k.as_str()));
    causes.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let mut causes = Vec::new();
        for c in [
            "client error (Connect)",
            "dns error: failed to lookup address information: Name or service not known",
            "failed to lookup address information: Name or service not known",
            "Name or service not known",
        ] {
            push_cause(&mut causes, c.to_string());
        }
        assert_eq!(
            causes,
            [
                "client error (Connect)",
                "dns error: failed to lookup address information: Name or service not known"
            ]
        );
    }

    #[test]
    fn credentials_never_show() {
        let u = Url::parse("https://user:secret@h/x.tar").unwrap();
        assert_eq!(redact_url(&u), "https://h/x.tar");
        assert!(!redact("https://user:secret@h x/").contains("secret"));
        assert!(!redact("https://user:secret@h x/").contains("user"));
        assert_eq!(redact("not a url"), "not a url");
    }
}
