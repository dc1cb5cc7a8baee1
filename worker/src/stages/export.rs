//! Stage 6: write the kept records as files (`jsonl` canonical, `chat_jsonl` ready for
//! fine-tuning, `csv`) and the execution's report, merged from every shard's statistics.

use std::{collections::BTreeMap, io::Write};

use mcp_shared::domain::pipeline::{ExportFormat, Record, Stage};
use serde_json::{Map, Value, json};

use super::{MAX_REJECTS_KEPT, Reject, quality::HISTOGRAM_BINS};

/// Roles as fine-tuning tools expect them.
fn chat_role(role: &str) -> &str {
    match role {
        "client" => "user",
        "therapist" => "assistant",
        other => other,
    }
}

/// Writes records in one format to any sink.
pub enum FormatWriter<W: Write> {
    Jsonl(W),
    ChatJsonl(W),
    // Boxed: the CSV writer carries its own buffer and would bloat the other variants.
    Csv(Box<csv::Writer<W>>),
}

pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "source",
    "turns",
    "quality_score",
    "token_estimate",
    "messages",
];

impl<W: Write> FormatWriter<W> {
    pub fn new(format: ExportFormat, out: W) -> std::io::Result<Self> {
        Ok(match format {
            ExportFormat::Jsonl => Self::Jsonl(out),
            ExportFormat::ChatJsonl => Self::ChatJsonl(out),
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Self::Csv(Box::new(w))
            }
        })
    }

    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        match self {
            Self::Jsonl(out) => {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")
            }
            Self::ChatJsonl(out) => {
                let messages: Vec<Value> = r
                    .messages
                    .iter()
                    .map(|m| json!({"role": chat_role(&m.role), "content": m.content}))
                    .collect();
                serde_json::to_writer(&mut *out, &json!({ "messages": messages }))?;
                out.write_all(b"\n")
            }
            Self::Csv(w) => {
                let field = |key: &str| {
                    r.metadata
                        .get(key)
                        .map(|v| match v {
                            Value::Object(o) => {
                                o.get("score").map(Value::to_string).unwrap_or_default()
                            }
                            other => other.to_string(),
                        })
                        .unwrap_or_default()
                };
                let messages = serde_json::to_string(&r.messages)?;
                let turns = r.messages.len().to_string();
                w.write_record([
                    r.id.as_str(),
                    r.source.as_str(),
                    turns.as_str(),
                    field("quality").as_str(),
                    field("token_estimate").as_str(),
                    messages.as_str(),
                ])
                .map_err(std::io::Error::other)
            }
        }
    }

    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Self::Jsonl(out) | Self::ChatJsonl(out) => Ok(out),
            Self::Csv(w) => (*w)
                .into_inner()
                .map_err(|e| std::io::Error::other(e.to_string())),
        }
    }
}

/// One stage's shards, summarised for the report.
#[derive(Debug, Clone)]
pub struct StageSummary {
    pub stage: Stage,
    pub records_in: u64,
    pub records_out: u64,
    pub duration_ms: Option<i64>,
    /// Each shard's `stats` JSON.
    pub stats: Vec<Value>,
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: Option<&Value>) {
    if let Some(Value::Object(m)) = from {
        for (k, v) in m {
            *into.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
}

/// The execution's report: counts in/out per stage, PII by kind, bias by category, the quality
/// histogram, rejects with reasons and per-stage timings.
pub fn build_report(stages: &[StageSummary]) -> Value {
    let mut per_stage = Vec::new();
    let mut pii: BTreeMap<String, u64> = BTreeMap::new();
    let mut pii_records = 0u64;
    let mut bias_sum: BTreeMap<String, f64> = BTreeMap::new();
    let mut bias_max: BTreeMap<String, f64> = BTreeMap::new();
    let mut bias_flagged: BTreeMap<String, u64> = BTreeMap::new();
    let mut bias_scored = 0u64;
    let mut histogram = [0u64; HISTOGRAM_BINS];
    let mut quality_sum = 0.0;
    let mut quality_scored = 0u64;
    let mut rejects_total = 0u64;
    let mut rejects_by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut rejects: Vec<Reject> = Vec::new();
    let mut duplicates = (0u64, 0u64);
    let mut tokens = 0u64;
    for s in stages {
        let mut stage_rejects = 0u64;
        for st in &s.stats {
            if let Some(r) = st.get("rejects") {
                let total = r.get("total").and_then(Value::as_u64).unwrap_or(0);
                stage_rejects += total;
                rejects_total += total;
                let mut by: BTreeMap<String, u64> = BTreeMap::new();
                add_counts(&mut by, r.get("by_reason"));
                for (k, v) in by {
                    *rejects_by_reason
                        .entry(format!("{}.{k}", s.stage))
                        .or_default() += v;
                }
                if let Some(kept) = r.get("kept").and_then(Value::as_array) {
                    for item in kept {
                        if rejects.len() < MAX_REJECTS_KEPT
                            && let Ok(rej) = serde_json::from_value::<Reject>(item.clone())
                        {
                            rejects.push(rej);
                        }
                    }
                }
            }
            add_counts(&mut pii, st.get("pii_found"));
            pii_records += st.get("pii_records").and_then(Value::as_u64).unwrap_or(0);
            if let Some(b) = st.get("bias") {
                bias_scored += b.get("scored").and_then(Value::as_u64).unwrap_or(0);
                add_counts(&mut bias_flagged, b.get("flagged"));
                if let Some(Value::Object(m)) = b.get("sum") {
                    for (k, v) in m {
                        *bias_sum.entry(k.clone()).or_default() += v.as_f64().unwrap_or(0.0);
                    }
                }
                if let Some(Value::Object(m)) = b.get("max") {
                    for (k, v) in m {
                        let e = bias_max.entry(k.clone()).or_default();
                        *e = e.max(v.as_f64().unwrap_or(0.0));
                    }
                }
            }
            if let Some(h) = st.get("histogram").and_then(Value::as_array) {
                for (i, c) in h.iter().enumerate().take(HISTOGRAM_BINS) {
                    histogram[i] += c.as_u64().unwrap_or(0);
                }
                quality_sum += st.get("score_sum").and_then(Value::as_f64).unwrap_or(0.0);
                quality_scored += st.get("scored").and_then(Value::as_u64).unwrap_or(0);
            }
            duplicates.0 += st
                .get("exact_duplicates")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            duplicates.1 += st
                .get("near_duplicates")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            tokens += st.get("tokens").and_then(Value::as_u64).unwrap_or(0);
        }
        per_stage.push(json!({
            "stage": s.stage,
            "records_in": s.records_in,
            "records_out": s.records_out,
            "rejected": stage_rejects,
            "shards": s.stats.len(),
            "duration_ms": s.duration_ms,
        }));
    }
    let bias: Map<String, Value> = bias_sum
        .iter()
        .map(|(k, sum)| {
            let mean = if bias_scored == 0 {
                0.0
            } else {
                sum / bias_scored as f64
            };
            (
                k.clone(),
                json!({
                    "mean": round3(mean),
                    "max": round3(bias_max.get(k).copied().unwrap_or(0.0)),
                    "flagged": bias_flagged.get(k).copied().unwrap_or(0),
                }),
            )
        })
        .collect();
    let bins: Vec<Value> = histogram
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "from": i as f64 / HISTOGRAM_BINS as f64,
                "to": (i + 1) as f64 / HISTOGRAM_BINS as f64,
                "count": c,
            })
        })
        .collect();
    json!({
        "stages": per_stage,
        "records_in": stages.first().map_or(0, |s| s.records_in),
        "records_out": stages.last().map_or(0, |s| s.records_out),
        "pii": {"found_by_kind": pii, "records_with_pii": pii_records},
        "bias": {"by_category": bias, "records_scored": bias_scored},
        "duplicates": {"exact": duplicates.0, "near": duplicates.1},
        "tokens_estimated": tokens,
        "quality": {
            "histogram": bins,
            "mean": if quality_scored == 0 { 0.0 } else { round3(quality_sum / quality_scored as f64) },
            "scored": quality_scored,
        },
        "rejects": {
            "total": rejects_total,
            "by_reason": rejects_by_reason,
            "items": rejects,
            "items_truncated": rejects_total > rejects.len() as u64,
        },
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_shared::domain::pipeline::Message;

    fn rec() -> Record {
        let mut metadata = Map::new();
        metadata.insert("quality".into(), json!({"score": 0.8}));
        metadata.insert("token_estimate".into(), json!(12));
        Record {
            id: "r1".into(),
            source: "s".into(),
            messages: vec![
                Message {
                    role: "client".into(),
                    content: "I feel \"stuck\", honestly".into(),
                },
                Message {
                    role: "therapist".into(),
                    content: "What would help?".into(),
                },
            ],
            metadata,
        }
    }

    fn written(format: ExportFormat) -> String {
        let mut w = FormatWriter::new(format, Vec::new()).unwrap();
        w.write(&rec()).unwrap();
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn formats() {
        let line: Value = serde_json::from_str(written(ExportFormat::Jsonl).trim()).unwrap();
        assert_eq!(line["id"], "r1");
        let chat: Value = serde_json::from_str(written(ExportFormat::ChatJsonl).trim()).unwrap();
        assert_eq!(chat["messages"][0]["role"], "user");
        assert_eq!(chat["messages"][1]["role"], "assistant");
        let csv = written(ExportFormat::Csv);
        let mut rows = csv::Reader::from_reader(csv.as_bytes());
        let row = rows.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "r1");
        assert_eq!(&row[3], "0.8");
        assert_eq!(&row[4], "12");
        let msgs: Vec<Message> = serde_json::from_str(&row[5]).unwrap();
        assert_eq!(msgs[0].content, "I feel \"stuck\", honestly");
    }

    #[test]
    fn report_merges_shards() {
        let stages = vec![
            StageSummary {
                stage: Stage::Validation,
                records_in: 4,
                records_out: 3,
                duration_ms: Some(5),
                stats: vec![
                    json!({"pii_found": {"email": 2}, "pii_records": 1, "rejects": {"total": 1, "by_reason": {"pii": 1}, "kept": [{"stage": "validation", "id": "x", "reason": "contains PII: email"}]},
                           "bias": {"sum": {"gender": 0.5}, "max": {"gender": 0.5}, "flagged": {}, "scored": 2}}),
                    json!({"pii_found": {"email": 1, "phone": 1}, "pii_records": 1, "rejects": {"total": 0, "by_reason": {}, "kept": []},
                           "bias": {"sum": {"gender": 0.3}, "max": {"gender": 0.3}, "flagged": {}, "scored": 2}}),
                ],
            },
            StageSummary {
                stage: Stage::QualityAssessment,
                records_in: 3,
                records_out: 3,
                duration_ms: None,
                stats: vec![
                    json!({"histogram": [0,0,0,0,0,0,0,1,2,0], "score_sum": 2.4, "scored": 3, "rejects": {"total": 0, "by_reason": {}, "kept": []}}),
                ],
            },
        ];
        let r = build_report(&stages);
        assert_eq!(r["pii"]["found_by_kind"]["email"], 3);
        assert_eq!(r["pii"]["found_by_kind"]["phone"], 1);
        assert_eq!(r["bias"]["by_category"]["gender"]["mean"], 0.2);
        assert_eq!(r["bias"]["by_category"]["gender"]["max"], 0.5);
        assert_eq!(r["quality"]["histogram"][8]["count"], 2);
        assert_eq!(r["rejects"]["by_reason"]["validation.pii"], 1);
        assert_eq!(r["records_in"], 4);
        assert_eq!(r["records_out"], 3);
    }
}
