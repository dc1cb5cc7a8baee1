//! Task handlers by task type. A handler gets the task row and returns its result, or an error
//! that counts as a failed attempt.

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
        // A pipeline shard carries its stage; other pipeline_processing tasks are generic work.
        TaskType::PipelineProcessing if task.stage.is_some() => {
            crate::pipeline::run_shard(deps, task).await
        }
        TaskType::Generic
        | TaskType::PipelineProcessing
        | TaskType::BiasDetection
        | TaskType::Validation
        | TaskType::Analysis
        | TaskType::Export => generic::run(task).await,
    }
}
