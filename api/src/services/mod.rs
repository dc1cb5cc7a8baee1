//! Application services: the logic behind the routes, free of HTTP concerns.

pub mod agents;
pub mod audit;
pub mod datasets;
pub mod dispatcher;
pub mod keys;
pub mod pipelines;
pub mod retention;
pub mod tasks;
