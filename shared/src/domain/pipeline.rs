//! Pipeline types: the six stages, execution status, options and the canonical record that
//! standardization produces and every later stage consumes.

use serde::{Deserialize, Serialize};

use super::string_enum;

string_enum!(
    /// The six stages, in order. A worker runs a stage when it has the capability `stage_{name}`.
    Stage {
        Ingestion => "ingestion",
        Standardization => "standardization",
        Validation => "validation",
        Processing => "processing",
        QualityAssessment => "quality_assessment",
        Export => "export",
    }
);

impl Stage {
    pub fn next(self) -> Option<Stage> {
        let i = Stage::ALL.iter().position(|s| *s == self)?;
        Stage::ALL.get(i + 1).copied()
    }

    pub fn index(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The capability a worker needs to run this stage, `stage_{name}`. Prefixed so it never
    /// collides with the task types' default capabilities (`validation`, `export`, …).
    pub fn capability(self) -> String {
        format!("{STAGE_CAPABILITY_PREFIX}{}", self.as_str())
    }

    /// The stage a capability stands for, if it is a stage capability.
    pub fn from_capability(capability: &str) -> Option<Stage> {
        capability
            .strip_prefix(STAGE_CAPABILITY_PREFIX)
            .and_then(Stage::parse)
    }
}

pub const STAGE_CAPABILITY_PREFIX: &str = "stage_";

string_enum!(
    PipelineStatus {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl PipelineStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

string_enum!(
    /// What validation does with a record that contains PII.
    PiiPolicy {
        Redact => "redact",
        Reject => "reject",
        Allow => "allow",
    }
);

string_enum!(
    /// Files the export stage writes.
    ExportFormat {
        Jsonl => "jsonl",
        ChatJsonl => "chat_jsonl",
        Csv => "csv",
    }
);

impl ExportFormat {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Jsonl => "records.jsonl",
            Self::ChatJsonl => "chat.jsonl",
            Self::Csv => "records.csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl | Self::ChatJsonl => "application/x-ndjson",
            Self::Csv => "text/csv",
        }
    }
}

string_enum!(
    /// How a dataset's records are shaped. `auto` detects per record; the others insist.
    SourceFormat {
        Auto => "auto",
        ChatJsonl => "chat_jsonl",
        ShareGpt => "sharegpt",
        QaJson => "qa_json",
        QaCsv => "qa_csv",
    }
);

string_enum!(
    /// The container a dataset file uses.
    DatasetFormat {
        Ndjson => "ndjson",
        Json => "json",
        Csv => "csv",
    }
);

/// The options of one execution, with their defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineOptions {
    pub pii: PiiPolicy,
    /// Records scoring below this are dropped by quality assessment (0..1).
    pub quality_threshold: f64,
    /// Records with any bias category above this are flagged (0..1).
    pub bias_threshold: f64,
    /// `true`: records over `bias_threshold` are rejected; `false`: kept and flagged.
    pub reject_biased: bool,
    /// Two records at least this similar (0.9..1, SimHash) are near-duplicates; the later goes.
    pub near_duplicate_threshold: f64,
    pub export_formats: Vec<ExportFormat>,
    pub source_format: SourceFormat,
    pub shard_size: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            pii: PiiPolicy::Redact,
            quality_threshold: 0.5,
            bias_threshold: 0.7,
            reject_biased: false,
            near_duplicate_threshold: 0.95,
            export_formats: ExportFormat::ALL.to_vec(),
            source_format: SourceFormat::Auto,
            shard_size: DEFAULT_SHARD_SIZE,
        }
    }
}

pub const DEFAULT_SHARD_SIZE: usize = 10_000;
pub const MIN_SHARD_SIZE: usize = 1;
pub const MAX_SHARD_SIZE: usize = 100_000;

/// Roles a canonical message may carry.
pub const ROLES: &[&str] = &["user", "assistant", "system", "client", "therapist"];

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The canonical record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub source: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_chain_in_order() {
        let mut s = Stage::Ingestion;
        let mut seen = vec![s];
        while let Some(n) = s.next() {
            seen.push(n);
            s = n;
        }
        assert_eq!(seen, Stage::ALL);
        assert_eq!(Stage::Export.index(), 5);
    }
}
