//! sea-orm entities, one per table (see the `mcp-migrations` crate for the schema).

pub mod agent_allocations;
pub mod agents;
pub mod audit_anchors;
pub mod audit_records;
pub mod capabilities;
pub mod datasets;
pub mod pipeline_executions;
pub mod queue_states;
pub mod refresh_tokens;
pub mod schedule_runs;
pub mod schedules;
pub mod stage_runs;
pub mod tasks;
pub mod users;
