//! PII redaction for free text and JSON: emails, phone numbers, US SSNs and payment-card numbers
//! (Luhn-checked, so order numbers that merely look long are left alone).
//!
//! Used on agent metadata before it is stored; the pipeline's validation stage builds on it.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The kinds of PII this module finds, with their placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Ssn,
    CreditCard,
}

impl PiiKind {
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::CreditCard => "[CREDIT_CARD]",
        }
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b").expect("email regex")
});
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").expect("ssn regex"));
/// 13–19 digits, optionally grouped by spaces or dashes.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:\d[ \-]?){12,18}\d\b").expect("card regex"));
/// North-American and international phone shapes: +CC, area code in parentheses, separators.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)|\b\d{3})[\s.\-]?\d{3}[\s.\-]\d{4}\b")
        .expect("phone regex")
});

/// Luhn checksum over the digits of `s`.
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Redacts PII in `text`, returning the new text and the kinds found (with repeats).
pub fn redact_text(text: &str) -> (String, Vec<PiiKind>) {
    let mut found = Vec::new();
    let mut out = EMAIL
        .replace_all(text, |_: &regex::Captures<'_>| {
            found.push(PiiKind::Email);
            PiiKind::Email.placeholder()
        })
        .into_owned();
    out = SSN
        .replace_all(&out, |_: &regex::Captures<'_>| {
            found.push(PiiKind::Ssn);
            PiiKind::Ssn.placeholder()
        })
        .into_owned();
    out = CARD
        .replace_all(&out, |c: &regex::Captures<'_>| {
            if luhn_valid(&c[0]) {
                found.push(PiiKind::CreditCard);
                PiiKind::CreditCard.placeholder().to_string()
            } else {
                c[0].to_string()
            }
        })
        .into_owned();
    out = PHONE
        .replace_all(&out, |_: &regex::Captures<'_>| {
            found.push(PiiKind::Phone);
            PiiKind::Phone.placeholder()
        })
        .into_owned();
    (out, found)
}

/// Redacts every string in a JSON value (keys are left as they are). Returns the kinds found.
pub fn redact_json(value: &mut Value) -> Vec<PiiKind> {
    let mut found = Vec::new();
    match value {
        Value::String(s) => {
            let (clean, kinds) = redact_text(s);
            if !kinds.is_empty() {
                *s = clean;
                found.extend(kinds);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| found.extend(redact_json(v))),
        Value::Object(map) => map.values_mut().for_each(|v| found.extend(redact_json(v))),
        _ => {}
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_each_kind() {
        let (out, kinds) = redact_text(
            "mail ann.lee@example.org, call (555) 123-4567 or +1 555.987.6543, ssn 123-45-6789, card 4111 1111 1111 1111",
        );
        assert_eq!(
            out,
            "mail [EMAIL], call [PHONE] or [PHONE], ssn [SSN], card [CREDIT_CARD]"
        );
        assert_eq!(kinds.len(), 5);
    }

    #[test]
    fn leaves_look_alikes() {
        for text in [
            "order 4111 1111 1111 1112 shipped",
            "version 1.2.3.4 released",
            "in 2024 we had 42 items",
            "lot 20231105",
        ] {
            assert_eq!(redact_text(text).0, text, "{text}");
        }
    }

    #[test]
    fn redacts_nested_json_strings_only() {
        let mut v = serde_json::json!({"owner": {"email": "x@y.io", "n": 5}, "tags": ["ok", "555-123-4567"]});
        let kinds = redact_json(&mut v);
        assert_eq!(kinds, vec![PiiKind::Email, PiiKind::Phone]);
        assert_eq!(v["owner"]["email"], "[EMAIL]");
        assert_eq!(v["owner"]["n"], 5);
        assert_eq!(v["tags"][1], "[PHONE]");
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("1234"));
    }
}
