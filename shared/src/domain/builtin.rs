//! The payloads of the task types that built-in workers run (`bias_detection`, `validation`,
//! `analysis`, `export`, and `pipeline_processing` without a stage), parsed once here so the API
//! refuses a bad payload at submit time with the same rules the worker applies when it runs it.
//!
//! Every typed payload carries its data inline as `records`: canonical conversations
//! (`{id?, source?, messages: [{role, content}], metadata?}`), or for `pipeline_processing` raw
//! records in any shape standardization detects. `generic` is the one echo and has no schema.

use serde_json::{Map, Value};

use super::{
    pipeline::{ExportFormat, Message, PiiPolicy, PipelineOptions, Record, SourceFormat},
    task::TaskType,
};

/// Most records one task may carry inline (larger sets go through `POST /datasets`).
pub const MAX_INLINE_RECORDS: usize = 10_000;

/// A payload field that is missing or invalid: its path (`payload.records[2].messages`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a built-in handler gets, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinPayload {
    /// Scores each record (or the one `text`) per bias category; flags those over the threshold.
    BiasDetection {
        records: Vec<Record>,
        bias_threshold: f64,
    },
    /// The validation stage's rules: structure, PII under `pii`, bias flags or rejects.
    Validation {
        records: Vec<Record>,
        options: PipelineOptions,
    },
    /// Quality score and features, token estimate and duplicates per record, plus a summary.
    Analysis {
        records: Vec<Record>,
        near_duplicate_threshold: f64,
    },
    /// Renders the records in one export format.
    Export {
        records: Vec<Record>,
        format: ExportFormat,
    },
    /// Runs all six stages on raw records held inline.
    Pipeline {
        records: Vec<Map<String, Value>>,
        options: PipelineOptions,
    },
}

/// Whether a task of this type with these required capabilities runs on a built-in handler:
/// a typed type that names no capability beyond its own default.
pub fn runs_builtin(task_type: TaskType, required_capabilities: &[String]) -> bool {
    task_type != TaskType::Generic
        && required_capabilities
            .iter()
            .all(|c| c == task_type.default_capability())
}

/// Parses a typed task's payload. `Ok(None)` for `generic`, which takes any object.
pub fn parse(task_type: TaskType, payload: &Value) -> Result<Option<BuiltinPayload>, FieldError> {
    let Some(obj) = payload.as_object() else {
        return Err(FieldError::new("payload", "payload must be a JSON object"));
    };
    Ok(Some(match task_type {
        TaskType::Generic => return Ok(None),
        TaskType::BiasDetection => {
            let records = match (obj.get("text"), obj.get("records")) {
                (Some(_), Some(_)) => {
                    return Err(FieldError::new(
                        "payload.text",
                        "send either text or records, not both",
                    ));
                }
                (Some(Value::String(t)), None) if !t.trim().is_empty() => vec![Record {
                    id: "text".into(),
                    source: "task".into(),
                    messages: vec![Message {
                        role: "user".into(),
                        content: t.clone(),
                    }],
                    metadata: Map::new(),
                }],
                (Some(_), None) => {
                    return Err(FieldError::new(
                        "payload.text",
                        "text must be a non-empty string",
                    ));
                }
                (None, _) => records(obj)?,
            };
            BuiltinPayload::BiasDetection {
                records,
                bias_threshold: fraction(obj, "bias_threshold", 0.0, 1.0, 0.7)?,
            }
        }
        TaskType::Validation => BuiltinPayload::Validation {
            records: records(obj)?,
            options: options(obj, "payload")?,
        },
        TaskType::Analysis => BuiltinPayload::Analysis {
            records: records(obj)?,
            near_duplicate_threshold: fraction(obj, "near_duplicate_threshold", 0.9, 1.0, 0.95)?,
        },
        TaskType::Export => BuiltinPayload::Export {
            records: records(obj)?,
            format: match obj.get("format") {
                None | Some(Value::Null) => ExportFormat::Jsonl,
                Some(v) => v.as_str().and_then(ExportFormat::parse).ok_or_else(|| {
                    FieldError::new(
                        "payload.format",
                        format!("format must be one of: {}", ExportFormat::allowed()),
                    )
                })?,
            },
        },
        TaskType::PipelineProcessing => {
            let raw = records_array(obj)?
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.as_object().cloned().ok_or_else(|| {
                        FieldError::new(
                            format!("payload.records[{i}]"),
                            "each record must be a JSON object",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut options = match obj.get("options") {
                None | Some(Value::Null) => PipelineOptions::default(),
                Some(Value::Object(o)) => options(o, "payload.options")?,
                Some(_) => {
                    return Err(FieldError::new(
                        "payload.options",
                        "options must be a JSON object",
                    ));
                }
            };
            options.source_format = match obj.get("source_format") {
                None | Some(Value::Null) => SourceFormat::Auto,
                Some(v) => v.as_str().and_then(SourceFormat::parse).ok_or_else(|| {
                    FieldError::new(
                        "payload.source_format",
                        format!("source_format must be one of: {}", SourceFormat::allowed()),
                    )
                })?,
            };
            BuiltinPayload::Pipeline {
                records: raw,
                options,
            }
        }
    }))
}

fn records_array(obj: &Map<String, Value>) -> Result<&Vec<Value>, FieldError> {
    let list = match obj.get("records") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "payload.records",
                "payload.records is required: an array of conversation records",
            ));
        }
        Some(_) => {
            return Err(FieldError::new(
                "payload.records",
                "records must be an array of conversation records",
            ));
        }
    };
    if list.is_empty() || list.len() > MAX_INLINE_RECORDS {
        return Err(FieldError::new(
            "payload.records",
            format!("records must hold 1 to {MAX_INLINE_RECORDS} records"),
        ));
    }
    Ok(list)
}

/// Canonical records; `id` defaults to `record-{n}` (1-based) and `source` to `task`.
fn records(obj: &Map<String, Value>) -> Result<Vec<Record>, FieldError> {
    records_array(obj)?
        .iter()
        .enumerate()
        .map(|(i, r)| record(i, r))
        .collect()
}

fn record(i: usize, value: &Value) -> Result<Record, FieldError> {
    let at = |f: &str| format!("payload.records[{i}]{f}");
    let Some(r) = value.as_object() else {
        return Err(FieldError::new(
            at(""),
            "each record must be an object with messages",
        ));
    };
    let text = |key: &str, default: String| match r.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(FieldError::new(
            at(&format!(".{key}")),
            format!("{key} must be a non-empty string"),
        )),
    };
    let id = text("id", format!("record-{}", i + 1))?;
    let source = text("source", "task".into())?;
    let Some(Value::Array(list)) = r.get("messages") else {
        return Err(FieldError::new(
            at(".messages"),
            "messages is required: an array of {role, content}",
        ));
    };
    let mut messages = Vec::with_capacity(list.len());
    for (j, m) in list.iter().enumerate() {
        let field = |k: &str| {
            m.get(k).and_then(Value::as_str).ok_or_else(|| {
                FieldError::new(
                    at(&format!(".messages[{j}].{k}")),
                    format!("{k} must be a string"),
                )
            })
        };
        messages.push(Message {
            role: field("role")?.to_string(),
            content: field("content")?.to_string(),
        });
    }
    let metadata = match r.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(FieldError::new(
                at(".metadata"),
                "metadata must be an object",
            ));
        }
    };
    Ok(Record {
        id,
        source,
        messages,
        metadata,
    })
}

fn fraction(
    obj: &Map<String, Value>,
    key: &str,
    lo: f64,
    hi: f64,
    default: f64,
) -> Result<f64, FieldError> {
    fraction_at(obj, key, "payload", lo, hi, default)
}

fn fraction_at(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    lo: f64,
    hi: f64,
    default: f64,
) -> Result<f64, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_f64().filter(|x| (lo..=hi).contains(x)).ok_or_else(|| {
            FieldError::new(
                format!("{prefix}.{key}"),
                format!("{key} must be a number between {lo} and {hi}"),
            )
        }),
    }
}

/// The pipeline options a payload (or its `options` object) names, with defaults filled in.
fn options(obj: &Map<String, Value>, prefix: &str) -> Result<PipelineOptions, FieldError> {
    let d = PipelineOptions::default();
    let pii = match obj.get("pii") {
        None | Some(Value::Null) => d.pii,
        Some(v) => v.as_str().and_then(PiiPolicy::parse).ok_or_else(|| {
            FieldError::new(
                format!("{prefix}.pii"),
                format!("pii must be one of: {}", PiiPolicy::allowed()),
            )
        })?,
    };
    let reject_biased = match obj.get("reject_biased") {
        None | Some(Value::Null) => d.reject_biased,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(FieldError::new(
                format!("{prefix}.reject_biased"),
                "reject_biased must be true or false",
            ));
        }
    };
    let export_formats = match obj.get("export_formats") {
        None | Some(Value::Null) => d.export_formats,
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut out = Vec::new();
            for (i, f) in list.iter().enumerate() {
                let f = f.as_str().and_then(ExportFormat::parse).ok_or_else(|| {
                    FieldError::new(
                        format!("{prefix}.export_formats[{i}]"),
                        format!("export formats are: {}", ExportFormat::allowed()),
                    )
                })?;
                if !out.contains(&f) {
                    out.push(f);
                }
            }
            out
        }
        Some(_) => {
            return Err(FieldError::new(
                format!("{prefix}.export_formats"),
                format!(
                    "export_formats needs at least one of: {}",
                    ExportFormat::allowed()
                ),
            ));
        }
    };
    Ok(PipelineOptions {
        pii,
        quality_threshold: fraction_at(
            obj,
            "quality_threshold",
            prefix,
            0.0,
            1.0,
            d.quality_threshold,
        )?,
        bias_threshold: fraction_at(obj, "bias_threshold", prefix, 0.0, 1.0, d.bias_threshold)?,
        reject_biased,
        near_duplicate_threshold: fraction_at(
            obj,
            "near_duplicate_threshold",
            prefix,
            0.9,
            1.0,
            d.near_duplicate_threshold,
        )?,
        export_formats,
        source_format: d.source_format,
        shard_size: d.shard_size,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = parse(TaskType::Validation, &json!({})).unwrap_err();
        assert_eq!(e.field, "payload.records");
        let e = parse(
            TaskType::Analysis,
            &json!({"records": [{"messages": [{"role": "user"}]}]}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.records[0].messages[0].content");
        let e = parse(
            TaskType::Export,
            &json!({"records": [{"messages": []}], "format": "pdf"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.format");
        let e = parse(
            TaskType::PipelineProcessing,
            &json!({"records": [{}], "options": {"pii": "maybe"}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "payload.options.pii");
        assert_eq!(parse(TaskType::Generic, &json!({"x": 1})).unwrap(), None);
    }

    #[test]
    fn defaults_fill_in() {
        let p = parse(TaskType::BiasDetection, &json!({"text": "hello"}))
            .unwrap()
            .unwrap();
        let BuiltinPayload::BiasDetection {
            records,
            bias_threshold,
        } = p
        else {
            panic!("wrong variant")
        };
        assert_eq!(records[0].messages[0].content, "hello");
        assert_eq!(bias_threshold, 0.7);
        assert!(runs_builtin(TaskType::Analysis, &["analysis".into()]));
        assert!(!runs_builtin(TaskType::Analysis, &["sentiment".into()]));
        assert!(!runs_builtin(TaskType::Generic, &[]));
    }
}
