//! What log output must never carry: credentials (tokens, keys, passwords, URL passwords) and
//! personal data (found by [`crate::pii`], the pipeline's own detector). Every log line of every
//! binary passes through [`sanitize`] (see [`crate::telemetry`]).

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;
use serde_json::Value;

use crate::pii::{self, PiiKind};

/// What replaces a secret's value in log output.
pub const SECRET_PLACEHOLDER: &str = "[REDACTED]";

/// Credentials that are not personal data but must never be written out: JWTs, agent keys,
/// well-known API key formats, the token after `Bearer`/`Basic`/`Agent`, the value of
/// `password=`/`"secret": "…"`-style pairs and the password in a URL's user info. Each
/// alternative names what it replaces; the scheme, key, quotes and URL host are kept so a log
/// line still says what was there.
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        concat!(
            // eyJ… is base64url of `{"`: every JWT header starts so.
            r"(?P<jwt>\beyJ[A-Za-z0-9_-]{{8,}}(?:\.[A-Za-z0-9_-]*){{0,2}})",
            r"|(?P<agent_key>\b{prefix}[A-Za-z0-9_-]+)",
            r"|(?P<api_key>\b(?:(?:sk|rk)-[A-Za-z0-9_-]{{16,}}|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{{16,}}",
            r"|AKIA[0-9A-Z]{{16}}|gh[pousr]_[A-Za-z0-9]{{30,}}|xox[abprs]-[A-Za-z0-9-]{{10,}}))",
            r"|(?P<scheme>\b(?:Bearer|Basic|Agent|Token|Digest)\s+)[A-Za-z0-9._~+/-]{{12,}}=*",
            // `password=x`, `"api_key": "x"`, `\"token\":\"x\"` (inside a JSON-encoded log line),
            // `password: Some("x")` (Debug output). An ANSI colour code may sit around the `=`.
            r#"|(?P<pair>(?i:[a-z0-9_.-]*(?:password|passwd|passphrase|secret|secret[_-]?key|token|api[_-]?key|access[_-]?key|private[_-]?key|signing[_-]?key|credentials?))"#,
            r#"(?:\\?")?(?:\x1b\[[0-9;]*m)*\s*[:=](?:\x1b\[[0-9;]*m)*\s*(?:Some\()?)"#,
            r#"(?:\\?"(?P<quoted>(?:[^"\\]|\\[^"])*)|(?P<bare>[^\s"\\,;&)}}\[\]][^\s"\\,;&)}}\]]*))"#,
            // scheme://user:password@host
            r#"|(?P<userinfo>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"'\\]*:)[^/\s@"'\\]+@"#,
        ),
        prefix = crate::domain::agent::AGENT_KEY_PREFIX,
    ))
    .expect("secret patterns compile")
});

/// Replaces the credentials [`SECRET`] finds; borrows when there are none.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    // Iterating captures allocates their slots: look first, which does not.
    if !SECRET.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out: Option<String> = None;
    let mut last = 0;
    for c in SECRET.captures_iter(text) {
        let Some(whole) = c.get(0) else { continue };
        let Some(replacement) = secret_replacement(&c) else {
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
        o.push_str(&text[last..whole.start()]);
        o.push_str(&replacement);
        last = whole.end();
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[last..]);
            Cow::Owned(o)
        }
    }
}

/// What replaces one [`SECRET`] match, or `None` when it is not a credential after all.
fn secret_replacement(c: &regex::Captures<'_>) -> Option<String> {
    let whole = c.get(0)?;
    if c.name("jwt").is_some() {
        Some("[JWT]".to_owned())
    } else if c.name("agent_key").is_some() {
        Some("[AGENT_KEY]".to_owned())
    } else if c.name("api_key").is_some() {
        Some("[API_KEY]".to_owned())
    } else if let Some(scheme) = c.name("scheme") {
        // A credential is random: letters and digits. `Bearer expires_in=3600` is not one.
        let token = &whole.as_str()[scheme.len()..];
        let credential = token.bytes().any(|b| b.is_ascii_digit())
            && token.bytes().any(|b| b.is_ascii_alphabetic());
        credential.then(|| format!("{}{SECRET_PLACEHOLDER}", scheme.as_str()))
    } else if c.name("pair").is_some() {
        let value = c.name("quoted").or(c.name("bare"))?;
        // An empty value or one already replaced: nothing to hide.
        if value.is_empty() || value.as_str().starts_with('[') {
            return None;
        }
        let keep = &whole.as_str()[..value.start() - whole.start()];
        Some(format!("{keep}{SECRET_PLACEHOLDER}"))
    } else {
        c.name("userinfo")
            .map(|keep| format!("{}{SECRET_PLACEHOLDER}@", keep.as_str()))
    }
}

/// Everything a log line must not carry: credentials ([`redact_secrets`]) and then PII (the
/// same detector as the pipeline's, [`pii::find_pii`]). Borrows, without allocating, when there is nothing to hide,
/// which is nearly always: log lines are hot.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    // Secrets first: once `postgres://u:pw@db.example.com` has become
    // `postgres://u:[REDACTED]@db.example.com`, the e-mail pattern no longer takes the host.
    match redact_secrets(text) {
        Cow::Borrowed(t) => redact_pii_cow(t),
        Cow::Owned(t) => match redact_pii_cow(&t) {
            Cow::Borrowed(_) => Cow::Owned(t),
            Cow::Owned(r) => Cow::Owned(r),
        },
    }
}

fn redact_pii_cow(text: &str) -> Cow<'_, str> {
    let mut found = pii::find_pii(text);
    // A process's own bind address (`listening addr=127.0.0.1:5001`) identifies nobody.
    found.retain(|m| {
        !matches!(m.kind, PiiKind::Ipv4 | PiiKind::Ipv6)
            || !text[m.range.clone()]
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    });
    if found.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(pii::replace(text, &found))
    }
}

/// Whether a JSON key names a credential (`password`, `db_password`, `apiKey`, `refresh_token`…):
/// its whole value is hidden, whatever it looks like.
pub fn is_secret_key(key: &str) -> bool {
    static KEY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)^[a-z0-9_.-]*(?:password|passwd|passphrase|secret|secret[_-]?key|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|signing[_-]?key|credentials?|authorization|cookie)$",
        )
        .expect("secret key pattern compiles")
    });
    KEY.is_match(key)
}

/// [`sanitize`] for a JSON document (a structured log event): every string is sanitised, and the
/// values of credential keys ([`is_secret_key`]) are replaced whole. Returns whether anything
/// changed.
pub fn sanitize_json(value: &mut Value) -> bool {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = sanitize(s) {
                *s = clean;
                true
            } else {
                false
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| sanitize_json(v) | changed),
        Value::Object(map) => map.iter_mut().fold(false, |changed, (k, v)| {
            let hidden = match v {
                Value::String(s) if is_secret_key(k) && !s.is_empty() && !s.starts_with('[') => {
                    *v = Value::String(SECRET_PLACEHOLDER.to_owned());
                    true
                }
                _ => sanitize_json(v),
            };
            hidden | changed
        }),
        _ => false,
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[track_caller]
    fn becomes(cases: &[(&str, &str)]) {
        for (text, want) in cases {
            assert_eq!(sanitize(text), *want, "{text:?}");
        }
    }

    #[test]
    fn hides_credentials() {
        becomes(&[
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXZhbHVl rejected",
                "token [JWT] rejected",
            ),
            ("key mcp_ak_Zm9vYmFy-_baz9 used", "key [AGENT_KEY] used"),
            (
                "authorization: Bearer abcdefghijklmnop1234",
                "authorization: Bearer [REDACTED]",
            ),
            ("Agent s3cr3t-agent-key-value", "Agent [REDACTED]"),
            ("openai sk-proj-0123456789abcdefABCD", "openai [API_KEY]"),
            ("stripe sk_live_0123456789abcdefABCD", "stripe [API_KEY]"),
            ("aws AKIAIOSFODNN7EXAMPLE", "aws [API_KEY]"),
            ("password=hunter2 next", "password=[REDACTED] next"),
            ("db_password = hunter2", "db_password = [REDACTED]"),
            (
                r#"{"password":"correct horse"}"#,
                r#"{"password":"[REDACTED]"}"#,
            ),
            (
                r#"{\"api_key\":\"abc\",\"n\":1}"#,
                r#"{\"api_key\":\"[REDACTED]\",\"n\":1}"#,
            ),
            (
                r#"Login { password: Some("x y") }"#,
                r#"Login { password: Some("[REDACTED]") }"#,
            ),
            (
                "GET /ws/tasks/progress?token=abc123&x=1",
                "GET /ws/tasks/progress?token=[REDACTED]&x=1",
            ),
            (
                "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0mhunter2",
                "\x1b[3mpassword\x1b[0m\x1b[2m=\x1b[0m[REDACTED]",
            ),
            (
                "postgres://mcp:pw@db.example.com:5432/mcp",
                "postgres://mcp:[REDACTED]@db.example.com:5432/mcp",
            ),
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://:[REDACTED]@127.0.0.1:6379/0",
            ),
            (
                "client_ip=203.0.113.7 listening addr=0.0.0.0:5001",
                "client_ip=[IP_ADDRESS] listening addr=0.0.0.0:5001",
            ),
        ]);
    }

    #[test]
    fn hides_pii_in_log_lines() {
        becomes(&[
            (
                "login failed user=ann@example.org",
                "login failed user=[EMAIL]",
            ),
            (
                "card 4111-1111-1111-1111 declined",
                "card [CREDIT_CARD] declined",
            ),
        ]);
    }

    #[test]
    fn leaves_ordinary_lines_alone() {
        for text in [
            "INFO request{request_id=0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8091 method=POST path=/api/v1/tasks}: request handled status=201 elapsed_ms=3.2",
            "token_type=Bearer expires_in=3600",
            "refresh token reused; session family revoked",
            "password=[REDACTED]",
            r#"{"password":""}"#,
            "max_tokens=512 secret_count",
            "http://127.0.0.1:5001/api/v1/health",
            "workers started instance=worker-host-4242-ab12cd",
        ] {
            let out = sanitize(text);
            assert!(matches!(out, Cow::Borrowed(_)), "{text:?} → {out:?}");
        }
        assert!(matches!(
            sanitize("token_type=Bearer expires_in=3600"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_values_under_secret_keys_are_hidden() {
        let mut v = serde_json::json!({
            "fields": {"message": "ok", "password": "x", "apiKey": "y", "user": "ann@example.org"},
            "spans": [{"name": "request", "refresh_token": "z"}],
            "token_type": "Bearer",
        });
        assert!(sanitize_json(&mut v));
        assert_eq!(
            v,
            serde_json::json!({
                "fields": {"message": "ok", "password": "[REDACTED]", "apiKey": "[REDACTED]", "user": "[EMAIL]"},
                "spans": [{"name": "request", "refresh_token": "[REDACTED]"}],
                "token_type": "Bearer",
            })
        );
    }
}
