//! Stage 4: exact and near-duplicate removal across every shard of the execution, text
//! normalisation and a token estimate per record.
//!
//! Global de-duplication without a coordinator: records have a global order (shard, position),
//! and a record is dropped when an earlier kept record is its exact or near duplicate. Shard k
//! replays the same decision over the fingerprints of shards 0..k (written by validation), so
//! every shard reaches the decisions the others made, whichever worker runs it and however often.

use std::collections::HashSet;

use mcp_shared::domain::pipeline::Record;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Control, Reject, Rejects, Stopped, validation::FINGERPRINT_BYTES};
use crate::analysis::dedup;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingStats {
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    pub tokens: u64,
    pub rejects: Rejects,
}

/// The de-duplication state built from the fingerprints seen so far.
struct Seen {
    exact: HashSet<[u8; 16]>,
    near: dedup::NearDupIndex,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Exact,
    Near,
}

impl Seen {
    fn judge(&mut self, fingerprint: &[u8]) -> Verdict {
        let mut key = [0u8; 16];
        key.copy_from_slice(&fingerprint[..16]);
        let mut sim = [0u8; 8];
        sim.copy_from_slice(&fingerprint[16..FINGERPRINT_BYTES]);
        let sim = u64::from_le_bytes(sim);
        if !self.exact.insert(key) {
            return Verdict::Exact;
        }
        if self.near.find_within(sim) {
            return Verdict::Near;
        }
        self.near.insert(sim);
        Verdict::Keep
    }
}

/// Collapses runs of spaces and tabs, drops zero-width characters and keeps at most one blank
/// line in a row: differences no reader sees and tokenizers charge for.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut in_space = false;
        for c in line.chars() {
            match c {
                '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{FEFF}' => {}
                ' ' | '\t' | '\r' | '\u{A0}' => {
                    if !in_space {
                        cleaned.push(' ');
                    }
                    in_space = true;
                }
                _ => {
                    cleaned.push(c);
                    in_space = false;
                }
            }
        }
        let cleaned = cleaned.trim();
        if cleaned.is_empty() {
            blank_lines += 1;
            if blank_lines > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(cleaned);
    }
    out.trim_end().to_string()
}

/// Processes shard `earlier.len() / FINGERPRINT_BYTES`… given the fingerprints of all earlier
/// shards in order (`earlier`) and this shard's records with their fingerprints.
pub fn process(
    earlier: &[u8],
    own: &[u8],
    records: Vec<Record>,
    near_duplicate_threshold: f64,
    ctl: &Control<'_>,
) -> Result<(Vec<Record>, ProcessingStats), Stopped> {
    if own.len() != records.len() * FINGERPRINT_BYTES {
        // Validation writes both from the same loop; a mismatch means a torn re-run.
        panic!("fingerprints do not match the shard's records");
    }
    let mut seen = Seen {
        exact: HashSet::new(),
        near: dedup::NearDupIndex::for_threshold(near_duplicate_threshold),
    };
    for fp in earlier.chunks_exact(FINGERPRINT_BYTES) {
        seen.judge(fp);
    }
    let mut stats = ProcessingStats::default();
    let mut kept = Vec::with_capacity(records.len());
    for (i, (mut r, fp)) in records
        .into_iter()
        .zip(own.chunks_exact(FINGERPRINT_BYTES))
        .enumerate()
    {
        ctl.tick(i as u64 + 1)?;
        let (kind, reason) = match seen.judge(fp) {
            Verdict::Keep => {
                for m in &mut r.messages {
                    m.content = normalize_text(&m.content);
                }
                let tokens = dedup::estimate_tokens(&r);
                stats.tokens += tokens as u64;
                r.metadata.insert("token_estimate".into(), json!(tokens));
                kept.push(r);
                continue;
            }
            Verdict::Exact => {
                stats.exact_duplicates += 1;
                ("exact_duplicate", "exact duplicate of an earlier record")
            }
            Verdict::Near => {
                stats.near_duplicates += 1;
                ("near_duplicate", "near duplicate of an earlier record")
            }
        };
        stats.rejects.add(
            kind,
            Reject {
                stage: "processing".into(),
                line: None,
                id: Some(r.id.clone()),
                reason: reason.into(),
            },
        );
    }
    Ok((kept, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, text: &str) -> Record {
        crate::test_support::record(
            id,
            &[
                ("user", text),
                (
                    "assistant",
                    "Thank you for telling me; what helps you most on hard days?",
                ),
            ],
        )
    }

    fn fps(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(&dedup::exact_key(r));
            out.extend_from_slice(&dedup::simhash(r).to_le_bytes());
        }
        out
    }

    #[test]
    fn normalises_whitespace_and_invisible_characters() {
        assert_eq!(
            normalize_text("  a \t b\u{200B}c \n\n\n\nnext  "),
            "a bc\n\nnext"
        );
    }

    #[test]
    fn duplicates_across_shards_keep_the_first_in_global_order() {
        let shard0 = vec![
            rec(
                "a",
                "I have been feeling anxious before work every single morning lately.",
            ),
            rec(
                "b",
                "My sister and I argued about the holidays again and I feel guilty.",
            ),
        ];
        let shard1 = vec![
            rec(
                "c",
                "I have been feeling anxious before work every single morning lately.",
            ),
            rec(
                "d",
                "I have been feeling anxious before work every single morning lately!",
            ),
            rec(
                "e",
                "Sleep has been hard since the move, I wake at three and cannot rest.",
            ),
        ];
        let earlier = fps(&shard0);
        let own = fps(&shard1);
        let (kept, stats) = process(&earlier, &own, shard1, 0.95, &Control::detached()).unwrap();
        let ids: Vec<_> = kept.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["e"]);
        assert_eq!((stats.exact_duplicates, stats.near_duplicates), (1, 1));
        assert!(kept[0].metadata["token_estimate"].as_u64().unwrap() > 0);

        // Shard 0 itself keeps both of its records.
        let (kept, _) = process(&[], &earlier, shard0, 0.95, &Control::detached()).unwrap();
        assert_eq!(kept.len(), 2);
    }
}
