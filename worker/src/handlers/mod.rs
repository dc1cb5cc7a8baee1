//! Task handlers by task type. A handler gets the task row and returns its result, or an error
//! that counts as a failed attempt.

pub mod builtin;
pub mod failure;
mod generic;

use mcp_shared::{domain::task::TaskType, entities::tasks::Model};
use serde_json::Value;

use failure::HandlerError;

pub async fn run(
    deps: &crate::WorkerDeps,
    task_type: TaskType,
    task: &Model,
) -> Result<Value, HandlerError> {
    match task_type {
        // A pipeline shard carries its stage; other pipeline_processing tasks carry their
        // records inline and run all six stages at once.
        TaskType::PipelineProcessing if task.stage.is_some() => {
            crate::pipeline::run_shard(deps, task).await
        }
        TaskType::Generic => generic::run(task).await,
        TaskType::PipelineProcessing
        | TaskType::BiasDetection
        | TaskType::Validation
        | TaskType::Analysis
        | TaskType::Export => builtin::run(task_type, &task.payload).await,
    }
}
