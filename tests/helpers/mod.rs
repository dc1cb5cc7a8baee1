//! Starting servers and the application, and waiting for things.

pub mod app;
#[allow(dead_code, reason = "used by the benchmarks only")]
pub mod cost;
pub mod mcp;
pub mod servers;
pub mod soak;
pub mod synth;
pub mod wait;
pub mod ws;

pub use app::{App, Mode};
pub use wait::wait_for;
