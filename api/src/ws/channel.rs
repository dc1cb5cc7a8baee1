//! The WebSocket channels: what each carries, who may follow it, and what a channel-wide
//! subscriber is sent first.

use mcp_shared::{auth::Permission, domain::event::Event};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{directory, principal::Principal, services::agents, state::AppState};

/// Which events a channel carries.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    AgentsStatus,
    TasksProgress,
    PipelineUpdates,
    SystemEvents,
    Task(Uuid),
}

impl Channel {
    pub fn permission(self) -> Permission {
        match self {
            Channel::AgentsStatus => Permission::AgentBasic,
            Channel::TasksProgress | Channel::Task(_) => Permission::TaskRead,
            Channel::PipelineUpdates => Permission::PipelineRead,
            Channel::SystemEvents => Permission::SystemRead,
        }
    }

    pub fn carries(self, event: &Event) -> bool {
        let kind = event.kind.as_str();
        match self {
            Channel::AgentsStatus => kind.starts_with("agent."),
            Channel::TasksProgress => kind.starts_with("task."),
            Channel::PipelineUpdates => kind.starts_with("stage.") || kind.starts_with("pipeline."),
            Channel::SystemEvents => true,
            Channel::Task(id) => event.task_id == Some(id),
        }
    }
}

/// The wire form of an event: `{type, id, ts, data}`.
pub fn render(event: &Event) -> String {
    event.wire().to_string()
}

/// What a channel-wide subscriber sees first.
pub async fn channel_snapshot(state: &AppState, principal: &Principal, channel: Channel) -> Value {
    match channel {
        Channel::AgentsStatus => {
            let found = agents::discover(
                state,
                &directory::Query {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await;
            let agents: Vec<Value> = found
                .iter()
                .filter(|e| principal.agent_id().is_none_or(|me| me == e.model.id))
                .map(|e| json!({"agent_id": e.model.id, "name": e.model.name, "status": e.status, "current_load": e.load()}))
                .collect();
            json!({"agents": agents})
        }
        _ => json!({}),
    }
}
