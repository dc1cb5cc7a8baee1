//! Stage 3: structural checks, PII (redact / reject / allow) and bias scoring. Also records
//! each valid record's fingerprints (exact key and SimHash) for processing's global
//! de-duplication, so no later stage has to re-read earlier shards' records.

use std::collections::BTreeMap;

use mcp_shared::{
    domain::pipeline::{PiiPolicy, PipelineOptions, ROLES, Record},
    pii,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Control, Reject, Rejects, Stopped};
use crate::analysis::{bias, dedup};

/// Longest conversation accepted, in messages.
pub const MAX_MESSAGES: usize = 500;
/// Longest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Bytes per record in the fingerprint artifact: 16 (exact key) + 8 (SimHash).
pub const FINGERPRINT_BYTES: usize = 24;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiasStats {
    /// Sum of scores per category (the report divides by the records scored).
    pub sum: BTreeMap<String, f64>,
    pub max: BTreeMap<String, f64>,
    /// Records over `bias_threshold`, per category.
    pub flagged: BTreeMap<String, u64>,
    pub scored: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationStats {
    /// PII items found, by kind.
    pub pii_found: BTreeMap<String, u64>,
    /// Records that contained any PII.
    pub pii_records: u64,
    pub bias: BiasStats,
    pub rejects: Rejects,
}

fn structural_problem(r: &Record) -> Option<(&'static str, String)> {
    if r.messages.is_empty() {
        return Some(("no_messages", "the conversation has no messages".into()));
    }
    if r.messages.len() > MAX_MESSAGES {
        return Some((
            "too_long",
            format!("{} messages; at most {MAX_MESSAGES}", r.messages.len()),
        ));
    }
    for (i, m) in r.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Some((
                "unknown_role",
                format!(
                    "message {} has unknown role {:?} (known: {})",
                    i + 1,
                    m.role,
                    ROLES.join(", ")
                ),
            ));
        }
        if m.content.trim().is_empty() {
            return Some(("empty_turn", format!("message {} is empty", i + 1)));
        }
        if m.content.len() > MAX_MESSAGE_BYTES {
            return Some((
                "too_long",
                format!("message {} exceeds {MAX_MESSAGE_BYTES} bytes", i + 1),
            ));
        }
    }
    None
}

fn reject(stats: &mut ValidationStats, kind: &str, r: &Record, reason: String) {
    stats.rejects.add(
        kind,
        Reject {
            stage: "validation".into(),
            line: None,
            id: Some(r.id.clone()),
            reason,
        },
    );
}

pub struct Validated {
    pub records: Vec<Record>,
    /// [`FINGERPRINT_BYTES`] per kept record, in order.
    pub fingerprints: Vec<u8>,
    pub stats: ValidationStats,
}

pub fn validate(
    records: Vec<Record>,
    options: &PipelineOptions,
    ctl: &Control<'_>,
) -> Result<Validated, Stopped> {
    let mut stats = ValidationStats::default();
    let mut kept = Vec::with_capacity(records.len());
    let mut fingerprints = Vec::with_capacity(records.len() * FINGERPRINT_BYTES);
    for (i, mut r) in records.into_iter().enumerate() {
        ctl.tick(i as u64 + 1)?;
        if let Some((kind, reason)) = structural_problem(&r) {
            reject(&mut stats, kind, &r, reason);
            continue;
        }

        let mut kinds = Vec::new();
        let mut redacted = Vec::with_capacity(r.messages.len());
        for m in &r.messages {
            let (clean, found) = pii::redact_text(&m.content);
            kinds.extend(found);
            redacted.push(clean);
        }
        if !kinds.is_empty() {
            stats.pii_records += 1;
            for k in &kinds {
                *stats.pii_found.entry(k.as_str().to_string()).or_default() += 1;
            }
            match options.pii {
                PiiPolicy::Reject => {
                    let mut names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    reject(
                        &mut stats,
                        "pii",
                        &r,
                        format!("contains PII: {}", names.join(", ")),
                    );
                    continue;
                }
                PiiPolicy::Redact => {
                    for (m, clean) in r.messages.iter_mut().zip(redacted) {
                        m.content = clean;
                    }
                }
                PiiPolicy::Allow => {}
            }
        }

        let scores = bias::score_record(&r);
        stats.bias.scored += 1;
        for (cat, s) in scores.iter() {
            let name = cat.as_str().to_string();
            *stats.bias.sum.entry(name.clone()).or_default() += s;
            let max = stats.bias.max.entry(name).or_default();
            *max = max.max(s);
        }
        let flagged: Vec<&str> = scores
            .over(options.bias_threshold)
            .into_iter()
            .map(bias::BiasCategory::as_str)
            .collect();
        for name in &flagged {
            *stats.bias.flagged.entry(name.to_string()).or_default() += 1;
        }
        if !flagged.is_empty() {
            if options.reject_biased {
                reject(
                    &mut stats,
                    "bias",
                    &r,
                    format!(
                        "bias score over {} in: {}",
                        options.bias_threshold,
                        flagged.join(", ")
                    ),
                );
                continue;
            }
            r.metadata.insert("bias_flags".into(), json!(flagged));
        }
        r.metadata.insert(
            "bias_scores".into(),
            serde_json::to_value(scores).unwrap_or(Value::Null),
        );

        fingerprints.extend_from_slice(&dedup::exact_key(&r));
        fingerprints.extend_from_slice(&dedup::simhash(&r).to_le_bytes());
        kept.push(r);
    }
    Ok(Validated {
        records: kept,
        fingerprints,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record;

    #[test]
    fn structural_rejects_name_the_problem() {
        let out = validate(
            vec![
                record("a", &[]),
                record("b", &[("user", "hi"), ("robot", "beep")]),
                record("c", &[("user", "  ")]),
                record(
                    "d",
                    &[
                        ("user", "How do I sleep better?"),
                        ("assistant", "Keep a routine."),
                    ],
                ),
            ],
            &PipelineOptions::default(),
            &Control::detached(),
        )
        .unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.fingerprints.len(), FINGERPRINT_BYTES);
        let kinds: Vec<_> = out.stats.rejects.by_reason.keys().cloned().collect();
        assert_eq!(kinds, ["empty_turn", "no_messages", "unknown_role"]);
    }

    #[test]
    fn pii_policies() {
        let input = || {
            vec![record(
                "p",
                &[
                    ("user", "mail me at ann@example.org"),
                    ("assistant", "Sure."),
                ],
            )]
        };
        let mut opts = PipelineOptions::default();
        let out = validate(input(), &opts, &Control::detached()).unwrap();
        assert_eq!(out.records[0].messages[0].content, "mail me at [EMAIL]");
        assert_eq!(out.stats.pii_found["email"], 1);

        opts.pii = PiiPolicy::Reject;
        let out = validate(input(), &opts, &Control::detached()).unwrap();
        assert!(out.records.is_empty());
        assert_eq!(out.stats.rejects.kept[0].reason, "contains PII: email");

        opts.pii = PiiPolicy::Allow;
        let out = validate(input(), &opts, &Control::detached()).unwrap();
        assert_eq!(
            out.records[0].messages[0].content,
            "mail me at ann@example.org"
        );
        assert_eq!(out.stats.pii_records, 1);
    }
}
