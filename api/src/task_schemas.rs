//! The payload and result of each task type, as OpenAPI schemas. The payloads are checked at
//! submit time by [`mcp_shared::domain::builtin::parse`] (422 naming the field) when a built-in
//! handler will run the task; these types only document them. A task's `payload` and `result`
//! stay free JSON on the wire ([`TaskPayload`], [`TaskResult`]), described as `anyOf` the
//! per-type schemas (the type field, not the payload, tells which applies).

use std::borrow::Cow;

use mcp_shared::domain::pipeline::{ExportFormat, PiiPolicy, SourceFormat};
use poem_openapi::{
    Object,
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Reading and writing a wrapper of any JSON value: the value as it is (its schema, which
/// differs by wrapper, is in its `Type` impl).
macro_rules! json_value_io {
    ($wrapper:ty) => {
        impl ParseFromJSON for $wrapper {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                Ok(Self(value.unwrap_or_default()))
            }
        }

        impl ToJSON for $wrapper {
            fn to_json(&self) -> Option<Value> {
                Some(self.0.clone())
            }
        }
    };
}

/// One message of a conversation.
#[derive(Object)]
pub struct ConversationMessage {
    /// `user`, `assistant`, `system`, `client` or `therapist` (validation rejects others).
    pub role: String,
    pub content: String,
}

/// A canonical conversation record.
#[derive(Object)]
pub struct ConversationRecord {
    /// Default `record-{n}` (1-based position).
    pub id: Option<String>,
    /// Default `task`.
    pub source: Option<String>,
    pub messages: Vec<ConversationMessage>,
    pub metadata: Option<Value>,
}

/// `bias_detection`: either `text` or `records` (1–10,000).
#[derive(Object)]
pub struct BiasDetectionPayload {
    /// One text to score.
    pub text: Option<String>,
    /// Or conversations to score, each separately.
    pub records: Option<Vec<ConversationRecord>>,
    /// 0..1, default 0.7: a category scoring above it is flagged.
    pub bias_threshold: Option<f64>,
}

/// `validation`: the pipeline's validation stage on `records` (1–10,000).
#[derive(Object)]
pub struct ValidationPayload {
    pub records: Vec<ConversationRecord>,
    /// `redact` (default), `reject` or `allow`.
    pub pii: Option<PiiPolicy>,
    /// 0..1, default 0.7.
    pub bias_threshold: Option<f64>,
    /// Reject (rather than flag) records over `bias_threshold`. Default false.
    pub reject_biased: Option<bool>,
}

/// `analysis`: quality features, token estimates and duplicates of `records` (1–10,000).
#[derive(Object)]
pub struct AnalysisPayload {
    pub records: Vec<ConversationRecord>,
    /// 0.9..1, default 0.95: SimHash similarity at which a later record is a near-duplicate.
    pub near_duplicate_threshold: Option<f64>,
}

/// `export`: `records` (1–10,000) rendered in one format.
#[derive(Object)]
pub struct ExportPayload {
    pub records: Vec<ConversationRecord>,
    /// Default `jsonl`.
    pub format: Option<ExportFormat>,
}

/// `pipeline_processing` (without a stage): all six stages on raw `records` (1–10,000, any shape
/// standardization detects). Larger datasets go through `POST /datasets` and
/// `POST /pipeline/agent-execute`.
#[derive(Object)]
pub struct PipelineProcessingPayload {
    pub records: Vec<Value>,
    /// Default `auto`.
    pub source_format: Option<SourceFormat>,
    /// The pipeline options (`shard_size` does not apply: one task is one shard).
    pub options: Option<OptionsRequest>,
}

/// `generic`: any object, returned unchanged as the result (the one echo handler).
#[derive(Object)]
pub struct GenericPayload {
    /// Milliseconds the built-in handler waits before answering.
    pub sleep_ms: Option<u64>,
    /// `true` makes the attempt fail.
    pub fail: Option<bool>,
}

/// One record's bias scores.
#[derive(Object)]
pub struct BiasRecordScore {
    pub id: String,
    /// 0..1 per category: gender, race_ethnicity, age, religion, disability, sexual_orientation.
    pub scores: Value,
    pub max_category: String,
    pub max_score: f64,
    /// Categories over `bias_threshold`.
    pub flagged: Vec<String>,
}

/// Result of `bias_detection`.
#[derive(Object)]
pub struct BiasDetectionResult {
    pub bias_threshold: f64,
    pub records: Vec<BiasRecordScore>,
    /// `{scored, flagged_records, categories: {<category>: {mean, max, flagged}}}`.
    pub summary: Value,
}

/// Result of `validation`.
#[derive(Object)]
pub struct ValidationResult {
    pub records_in: u64,
    pub records_out: u64,
    /// The valid records, PII redacted under `redact`, with `metadata.bias_scores`.
    pub records: Vec<Value>,
    pub pii_policy: PiiPolicy,
    /// PII items found, by kind.
    pub pii_found: Value,
    pub pii_records: u64,
    /// `{sum, max, flagged, scored}` per category.
    pub bias: Value,
    /// `{total, by_reason, kept: [{stage, id, reason}]}`.
    pub rejects: Value,
}

/// Result of `analysis`.
#[derive(Object)]
pub struct AnalysisResult {
    /// Per record: `{id, turns, quality_score, features, token_estimate, duplicate_of?,
    /// near_duplicate_of?}`.
    pub records: Vec<Value>,
    /// `{records, mean_quality, quality_histogram (10 bins), tokens, exact_duplicates,
    /// near_duplicates}`.
    pub summary: Value,
}

/// Result of `export`.
#[derive(Object)]
pub struct ExportResult {
    pub format: ExportFormat,
    pub content_type: String,
    pub records: u64,
    /// The rendered file.
    pub content: String,
}

/// Result of `pipeline_processing` without a stage.
#[derive(Object)]
pub struct PipelineProcessingResult {
    pub records_in: u64,
    pub records_out: u64,
    /// The same report as `GET /pipeline/{id}/report`.
    pub report: Value,
    /// The rendered file per export format.
    pub exports: Value,
}

fn any_of(description: &'static str, refs: Vec<MetaSchemaRef>) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        any_of: refs,
        ..MetaSchema::ANY
    }))
}

/// A task's payload: a JSON object whose schema depends on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskPayload(pub Value);

impl Type for TaskPayload {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "TaskPayload".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        any_of(
            "Input for the handler, by task `type`: `bias_detection` → BiasDetectionPayload, \
             `validation` → ValidationPayload, `analysis` → AnalysisPayload, `export` → \
             ExportPayload, `pipeline_processing` → PipelineProcessingPayload, `generic` → any \
             object (GenericPayload). Checked at submit time (422 naming the field) when a \
             built-in handler runs the task, that is when `required_capabilities` names nothing \
             beyond the type's own capability.",
            vec![
                BiasDetectionPayload::schema_ref(),
                ValidationPayload::schema_ref(),
                AnalysisPayload::schema_ref(),
                ExportPayload::schema_ref(),
                PipelineProcessingPayload::schema_ref(),
                GenericPayload::schema_ref(),
            ],
        )
    }

    fn register(registry: &mut Registry) {
        BiasDetectionPayload::register(registry);
        ValidationPayload::register(registry);
        AnalysisPayload::register(registry);
        ExportPayload::register(registry);
        PipelineProcessingPayload::register(registry);
        GenericPayload::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

json_value_io!(TaskPayload);

/// A finished task's result: by `type`, as the built-in handlers write it, or whatever the
/// agent that ran it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskResult(pub Value);

impl Type for TaskResult {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "TaskResult".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        any_of(
            "The handler's output, by task `type`, when a built-in handler ran it: \
             `bias_detection` → BiasDetectionResult, `validation` → ValidationResult, \
             `analysis` → AnalysisResult, `export` → ExportResult, `pipeline_processing` → \
             PipelineProcessingResult (a pipeline shard: the shard's outcome), `generic` → the \
             payload. An external agent's result is what it reported.",
            vec![
                BiasDetectionResult::schema_ref(),
                ValidationResult::schema_ref(),
                AnalysisResult::schema_ref(),
                ExportResult::schema_ref(),
                PipelineProcessingResult::schema_ref(),
                // A pipeline shard's outcome, a `generic` echo, an agent's own result.
                MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)),
            ],
        )
    }

    fn register(registry: &mut Registry) {
        BiasDetectionResult::register(registry);
        ValidationResult::register(registry);
        AnalysisResult::register(registry);
        ExportResult::register(registry);
        PipelineProcessingResult::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

json_value_io!(TaskResult);

/// Options as a client sends them; every field optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, poem_openapi::Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct OptionsRequest {
    /// `redact` (default), `reject` or `allow`.
    pub pii: Option<PiiPolicy>,
    /// 0..1, default 0.5: records scoring lower are dropped.
    pub quality_threshold: Option<f64>,
    /// 0..1, default 0.7: records with a category above it are flagged.
    pub bias_threshold: Option<f64>,
    /// Reject (rather than flag) records over `bias_threshold`. Default false.
    pub reject_biased: Option<bool>,
    /// 0.9..1, default 0.95: SimHash similarity at which a later record is a near-duplicate.
    pub near_duplicate_threshold: Option<f64>,
    /// Default all three: `jsonl`, `chat_jsonl`, `csv`.
    pub export_formats: Option<Vec<ExportFormat>>,
    /// Records per shard, 1..100000, default 10000.
    pub shard_size: Option<u32>,
}
