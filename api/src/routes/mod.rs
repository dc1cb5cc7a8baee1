//! The REST API, one module per resource. Each operation authenticates with [`crate::auth::Auth`],
//! names its permission, calls a service, and returns the success envelope or an
//! [`crate::error::ApiError`]. Route modules never import each other: what two share is in
//! this module (the envelopes, the tags) or in [`crate::views`].

pub mod agents;
pub mod audit;
pub mod auth;
pub mod capabilities;
pub mod events;
pub mod health;
pub mod metrics;
pub mod pipeline;
pub mod queues;
pub mod schedules;
pub mod system;
pub mod tasks;
pub mod users;

use poem_openapi::{
    Object, Tags,
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};

/// The API's tag groups, as shown in Swagger UI.
#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and readiness.
    System,
    /// Logging in and refreshing tokens.
    Auth,
    /// User management (admin).
    Users,
    /// Creating and following tasks.
    Tasks,
    /// Agent registry, discovery, heartbeats and the capability catalog.
    Agents,
    /// Datasets and the six-stage pipeline.
    Pipeline,
    /// Recurring schedules that start tasks or pipeline executions.
    Schedules,
}

/// `{"success": true, "data": …, "message"?}`.
#[derive(Object)]
pub struct Envelope<T: ParseFromJSON + ToJSON + Send + Sync> {
    pub success: bool,
    pub data: T,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
}

/// A page of a list: `{"success": true, "data": [...], "count", "next_cursor"?}`.
#[derive(Object)]
pub struct ListEnvelope<T: ParseFromJSON + ToJSON + Send + Sync> {
    pub success: bool,
    pub data: Vec<T>,
    pub count: u64,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

pub fn ok<T: ParseFromJSON + ToJSON + Send + Sync>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        success: true,
        data,
        message: None,
    })
}

pub fn page<T: ParseFromJSON + ToJSON + Send + Sync>(
    data: Vec<T>,
    next_cursor: Option<String>,
) -> Json<ListEnvelope<T>> {
    Json(ListEnvelope {
        success: true,
        count: data.len() as u64,
        data,
        next_cursor,
    })
}
