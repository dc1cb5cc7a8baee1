//! Builders shared by the stage and analysis unit tests.

use mcp_shared::domain::pipeline::{Message, Record};

/// A record with these `(role, content)` turns.
pub fn record(id: &str, turns: &[(&str, &str)]) -> Record {
    Record {
        id: id.into(),
        source: format!("{id}.jsonl"),
        messages: turns
            .iter()
            .map(|(role, content)| Message {
                role: (*role).into(),
                content: (*content).into(),
            })
            .collect(),
        metadata: serde_json::Map::new(),
    }
}
