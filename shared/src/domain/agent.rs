//! Agents: who does the work, what they can do, and how alive they are.

use serde::{Deserialize, Serialize};

use super::string_enum;

string_enum!(
    AgentType {
        AiModel => "ai_model",
        DataProcessor => "data_processor",
        Validation => "validation",
        ExternalApi => "external_api",
    }
);

string_enum!(
    /// `stale` and `offline` are derived from missed heartbeats, never set by the agent.
    AgentStatus {
        Active => "active",
        Busy => "busy",
        Stale => "stale",
        Offline => "offline",
        Paused => "paused",
    }
);

impl AgentStatus {
    /// Lower is healthier; discovery orders by this first.
    pub fn health_rank(self) -> u8 {
        match self {
            AgentStatus::Active => 0,
            AgentStatus::Busy => 1,
            AgentStatus::Paused => 2,
            AgentStatus::Stale => 3,
            AgentStatus::Offline => 4,
        }
    }

    /// Can take new work.
    pub fn is_healthy(self) -> bool {
        matches!(self, AgentStatus::Active | AgentStatus::Busy)
    }
}

/// A capability an agent declares, optionally versioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A capability name: lowercase letters, digits and `_`, 1–64 characters.
pub fn valid_capability(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The built-in catalog: the six pipeline stages, the capabilities that run a stage's shards
/// (`stage_*`, the queues the stage workers serve, which an external agent may serve too), and
/// the general task kinds.
pub const BUILTIN_CAPABILITIES: &[&str] = &[
    "ingestion",
    "standardization",
    "validation",
    "processing",
    "quality_assessment",
    "export",
    "stage_ingestion",
    "stage_standardization",
    "stage_validation",
    "stage_processing",
    "stage_quality_assessment",
    "stage_export",
    "bias_detection",
    "analysis",
    "generic",
    "pipeline_processing",
];

/// Prefix of every agent key, so leaked keys are recognisable by scanners.
pub const AGENT_KEY_PREFIX: &str = "mcp_ak_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_are_short_lowercase_words() {
        for good in ["generic", "stage_export", "a", "gpu2"] {
            assert!(valid_capability(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "Generic", "a-b", "a b", "a:b", "a+b", long.as_str()] {
            assert!(!valid_capability(bad), "{bad}");
        }
        assert!(BUILTIN_CAPABILITIES.iter().all(|c| valid_capability(c)));
        for stage in crate::domain::pipeline::Stage::ALL {
            assert!(BUILTIN_CAPABILITIES.contains(&stage.capability().as_str()));
        }
    }
}
