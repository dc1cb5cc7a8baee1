//! Task handlers by task type. A handler gets the task row and returns its result, or an error
//! that counts as a failed attempt.

mod generic;

use mcp_shared::{domain::task::TaskType, entities::tasks::Model};
use serde_json::Value;

pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A failure that another attempt cannot fix (the input is gone or unreadable): the task goes
/// straight to `dead` instead of retrying.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Boxes a [`Permanent`] failure.
pub fn permanent(message: impl Into<String>) -> HandlerError {
    Box::new(Permanent(message.into()))
}

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
