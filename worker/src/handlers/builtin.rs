//! The built-in handlers of the typed task types, on the same code the pipeline's stages run:
//! `bias_detection` (bias scoring), `validation` (the validation stage: structure, PII, bias),
//! `analysis` (quality features, token estimates, duplicates), `export` (the export stage's
//! renderers) and `pipeline_processing` without a stage (all six stages on inline records).
//! The payload is parsed by [`mcp_shared::domain::builtin`], which the API also applies at
//! submit time; the work runs on a blocking thread.

use std::collections::{BTreeMap, HashMap};

use mcp_shared::domain::{
    builtin::{self, BuiltinPayload},
    pipeline::{DatasetFormat, ExportFormat, PipelineOptions, Record, Stage},
    task::TaskType,
};
use serde_json::{Map, Value, json};

use super::failure::{HandlerError, permanent};
use crate::{
    analysis::{bias, dedup, quality},
    stages::{self, Control, Reject, Rejects, export::StageSummary},
};

/// Runs a typed task's payload through its built-in handler.
pub async fn run(task_type: TaskType, payload: &Value) -> Result<Value, HandlerError> {
    let parsed = builtin::parse(task_type, payload)
        .map_err(|e| permanent(format!("{}: {}", e.field, e.message)))?
        .ok_or_else(|| permanent(format!("{task_type} tasks have no built-in handler")))?;
    tokio::task::spawn_blocking(move || execute(parsed))
        .await
        .map_err(|e| format!("handler panicked: {e}"))?
}

/// The work itself, synchronous.
pub fn execute(payload: BuiltinPayload) -> Result<Value, HandlerError> {
    Ok(match payload {
        BuiltinPayload::BiasDetection {
            records,
            bias_threshold,
        } => bias_detection(&records, bias_threshold),
        BuiltinPayload::Validation { records, options } => validation(records, &options)?,
        BuiltinPayload::Analysis {
            records,
            near_duplicate_threshold,
        } => analysis(&records, near_duplicate_threshold),
        BuiltinPayload::Export { records, format } => {
            let content = render(format, &records)?;
            json!({
                "format": format,
                "content_type": format.content_type(),
                "records": records.len(),
                "content": content,
            })
        }
        BuiltinPayload::Pipeline { records, options } => pipeline(records, &options)?,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn bias_detection(records: &[Record], threshold: f64) -> Value {
    let mut sum: BTreeMap<&str, f64> = BTreeMap::new();
    let mut max: BTreeMap<&str, f64> = BTreeMap::new();
    let mut flagged_counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut flagged_records = 0u64;
    let per_record: Vec<Value> = records
        .iter()
        .map(|r| {
            let scores = bias::score_record(r);
            let mut by: Map<String, Value> = Map::new();
            for (cat, s) in scores.iter() {
                by.insert(cat.as_str().into(), json!(round3(s)));
                *sum.entry(cat.as_str()).or_default() += s;
                let m = max.entry(cat.as_str()).or_default();
                *m = m.max(s);
            }
            let flagged: Vec<&str> = scores
                .over(threshold)
                .into_iter()
                .map(bias::BiasCategory::as_str)
                .collect();
            for f in &flagged {
                *flagged_counts.entry(*f).or_default() += 1;
            }
            if !flagged.is_empty() {
                flagged_records += 1;
            }
            let (top, top_score) = scores.max();
            json!({
                "id": r.id,
                "scores": by,
                "max_category": top.as_str(),
                "max_score": round3(top_score),
                "flagged": flagged,
            })
        })
        .collect();
    let n = records.len().max(1) as f64;
    let categories: Map<String, Value> = sum
        .iter()
        .map(|(k, s)| {
            (
                k.to_string(),
                json!({
                    "mean": round3(s / n),
                    "max": round3(max[k]),
                    "flagged": flagged_counts.get(k).copied().unwrap_or(0),
                }),
            )
        })
        .collect();
    json!({
        "bias_threshold": threshold,
        "records": per_record,
        "summary": {
            "scored": records.len(),
            "flagged_records": flagged_records,
            "categories": categories,
        },
    })
}

fn validation(records: Vec<Record>, options: &PipelineOptions) -> Result<Value, HandlerError> {
    let n_in = records.len();
    let out = stages::validation::validate(records, options, &Control::detached())
        .map_err(|_| "validation stopped")?;
    Ok(json!({
        "records_in": n_in,
        "records_out": out.records.len(),
        "records": out.records,
        "pii_policy": options.pii,
        "pii_found": out.stats.pii_found,
        "pii_records": out.stats.pii_records,
        "bias": out.stats.bias,
        "rejects": out.stats.rejects,
    }))
}

fn analysis(records: &[Record], near_duplicate_threshold: f64) -> Value {
    let mut exact: HashMap<[u8; 16], &str> = HashMap::new();
    let mut near: Vec<(u64, &str)> = Vec::new();
    let max_distance = dedup::max_distance(near_duplicate_threshold);
    let mut histogram = vec![0u64; stages::quality::HISTOGRAM_BINS];
    let (mut score_sum, mut tokens, mut exact_dups, mut near_dups) = (0.0, 0u64, 0u64, 0u64);
    let per_record: Vec<Value> = records
        .iter()
        .map(|r| {
            let q = quality::assess(r);
            histogram[quality::histogram_bin(q.score).min(stages::quality::HISTOGRAM_BINS - 1)] +=
                1;
            score_sum += q.score;
            let t = dedup::estimate_tokens(r) as u64;
            tokens += t;
            let mut item = json!({
                "id": r.id,
                "turns": r.messages.len(),
                "quality_score": round3(q.score),
                "features": q.features,
                "token_estimate": t,
            });
            if let Some(first) = exact.get(&dedup::exact_key(r)) {
                exact_dups += 1;
                item["duplicate_of"] = json!(first);
            } else {
                exact.insert(dedup::exact_key(r), r.id.as_str());
                let hash = dedup::simhash(r);
                if let Some((_, first)) = near
                    .iter()
                    .find(|(h, _)| dedup::hamming(*h, hash) <= max_distance)
                {
                    near_dups += 1;
                    item["near_duplicate_of"] = json!(first);
                } else {
                    near.push((hash, r.id.as_str()));
                }
            }
            item
        })
        .collect();
    json!({
        "records": per_record,
        "summary": {
            "records": records.len(),
            "mean_quality": round3(score_sum / records.len().max(1) as f64),
            "quality_histogram": histogram,
            "tokens": tokens,
            "exact_duplicates": exact_dups,
            "near_duplicates": near_dups,
        },
    })
}

fn render(format: ExportFormat, records: &[Record]) -> Result<String, HandlerError> {
    let mut w = stages::export::FormatWriter::new(format, Vec::new())?;
    for r in records {
        w.write(r)?;
    }
    Ok(String::from_utf8(w.finish()?)?)
}

/// All six stages over inline raw records, in one shard: the pipeline's report plus every
/// requested export format's content.
fn pipeline(
    raw: Vec<Map<String, Value>>,
    options: &PipelineOptions,
) -> Result<Value, HandlerError> {
    let ctl = Control::detached();
    let stopped = |_| -> HandlerError { "pipeline stopped".into() };
    let mut summaries = Vec::new();
    let mut stage = |stage: Stage, records_in: usize, records_out: usize, stats: Value| {
        summaries.push(StageSummary {
            stage,
            records_in: records_in as u64,
            records_out: records_out as u64,
            duration_ms: None,
            stats: vec![stats],
        });
    };

    // 1 ingestion: the records as a one-shard NDJSON dataset.
    let mut input = Vec::new();
    for r in &raw {
        serde_json::to_writer(&mut input, r)?;
        input.push(b'\n');
    }
    let mut shard = Vec::new();
    let found = stages::ingestion::ingest(
        input.as_slice(),
        DatasetFormat::Ndjson,
        raw.len().max(1),
        &ctl,
        |_, bytes| {
            shard.extend(bytes);
            Ok(())
        },
    )
    .map_err(|e| format!("ingestion failed: {e:?}"))?;
    stage(
        Stage::Ingestion,
        raw.len(),
        found.records as usize,
        json!({"records": found.records, "shards": 1, "rejects": found.rejects}),
    );

    // 2 standardization
    let mut rejects = Rejects::default();
    let mut records = Vec::new();
    for line in shard.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        #[derive(serde::Deserialize)]
        struct Raw {
            line: u64,
            raw: Map<String, Value>,
        }
        let raw: Raw = serde_json::from_slice(line)?;
        match stages::standardization::standardize(
            &raw.raw,
            raw.line,
            options.source_format,
            "task",
        ) {
            Ok(r) => records.push(r),
            Err(reason) => rejects.add(
                "unrecognised",
                Reject {
                    stage: Stage::Standardization.as_str().into(),
                    line: Some(raw.line),
                    id: None,
                    reason,
                },
            ),
        }
    }
    let n = found.records as usize;
    stage(
        Stage::Standardization,
        n,
        records.len(),
        json!({"rejects": rejects}),
    );

    // 3 validation
    let n = records.len();
    let validated = stages::validation::validate(records, options, &ctl).map_err(stopped)?;
    stage(
        Stage::Validation,
        n,
        validated.records.len(),
        serde_json::to_value(&validated.stats)?,
    );

    // 4 processing
    let n = validated.records.len();
    let (records, stats) = stages::processing::process(
        &[],
        &validated.fingerprints,
        validated.records,
        options.near_duplicate_threshold,
        &ctl,
    )
    .map_err(stopped)?;
    stage(
        Stage::Processing,
        n,
        records.len(),
        serde_json::to_value(&stats)?,
    );

    // 5 quality assessment
    let n = records.len();
    let (records, stats) =
        stages::quality::assess(records, options.quality_threshold, &ctl).map_err(stopped)?;
    stage(
        Stage::QualityAssessment,
        n,
        records.len(),
        serde_json::to_value(&stats)?,
    );

    // 6 export
    let mut exports = Map::new();
    for f in &options.export_formats {
        exports.insert(f.as_str().into(), json!(render(*f, &records)?));
    }
    stage(
        Stage::Export,
        records.len(),
        records.len(),
        json!({"records": records.len()}),
    );
    Ok(json!({
        "records_in": raw.len(),
        "records_out": records.len(),
        "report": stages::export::build_report(&summaries),
        "exports": exports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: TaskType, payload: Value) -> Value {
        execute(builtin::parse(t, &payload).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn validation_redacts_and_rejects() {
        let out = run(
            TaskType::Validation,
            json!({"records": [
                {"id": "a", "messages": [{"role": "user", "content": "mail ann@example.org"}]},
                {"id": "b", "messages": [{"role": "robot", "content": "beep"}]},
            ]}),
        );
        assert_eq!(out["records_out"], 1);
        assert_eq!(out["records"][0]["messages"][0]["content"], "mail [EMAIL]");
        assert_eq!(out["pii_found"]["email"], 1);
        assert_eq!(out["rejects"]["by_reason"]["unknown_role"], 1);
    }

    #[test]
    fn export_renders_chat_jsonl() {
        let out = run(
            TaskType::Export,
            json!({"format": "chat_jsonl", "records": [
                {"messages": [{"role": "client", "content": "hi"}, {"role": "therapist", "content": "hello"}]},
            ]}),
        );
        let line: Value = serde_json::from_str(out["content"].as_str().unwrap().trim()).unwrap();
        assert_eq!(
            line,
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
        );
    }

    #[test]
    fn analysis_finds_duplicates() {
        let conv = json!({"messages": [{"role": "user", "content": "How do I sleep better at night?"}, {"role": "assistant", "content": "Keep a steady routine and avoid screens late."}]});
        let out = run(TaskType::Analysis, json!({"records": [conv.clone(), conv]}));
        assert_eq!(out["summary"]["exact_duplicates"], 1);
        assert_eq!(out["records"][1]["duplicate_of"], "record-1");
        assert!(out["records"][0]["quality_score"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn pipeline_runs_six_stages() {
        let out = run(
            TaskType::PipelineProcessing,
            json!({"records": [
                {"question": "How do I sleep better?", "answer": "Keep a steady routine, and avoid screens before bed."},
                {"question": "How do I sleep better?", "answer": "Keep a steady routine, and avoid screens before bed."},
                {"nonsense": true},
            ], "options": {"quality_threshold": 0.0, "export_formats": ["jsonl"]}}),
        );
        assert_eq!(out["records_in"], 3);
        assert_eq!(out["records_out"], 1);
        let stages = out["report"]["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 6);
        assert_eq!(out["exports"]["jsonl"].as_str().unwrap().lines().count(), 1);
    }
}
