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

/// The built-in catalog: the six pipeline stages and the general task kinds.
pub const BUILTIN_CAPABILITIES: &[&str] = &[
    "ingestion",
    "standardization",
    "validation",
    "processing",
    "quality_assessment",
    "export",
    "bias_detection",
    "analysis",
    "generic",
    "pipeline_processing",
];

/// Prefix of every agent key, so leaked keys are recognisable by scanners.
pub const AGENT_KEY_PREFIX: &str = "mcp_ak_";
