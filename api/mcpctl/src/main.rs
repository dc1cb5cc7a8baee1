//! `mcpctl`: the operator and integrator command line of TechDeck MCP.
//!
//! # Layout
//! - [`cli`] parses the command line and runs one command; the exit codes live in [`error`].
//! - [`config`] resolves the server URL, token and output format (flags > environment > file)
//!   and keeps the stored session (`credentials.json`, mode 0600).
//! - [`client`] is the HTTP side: envelopes, error mapping, token refresh.
//! - [`batch`] submits JSON Lines files in chunks, resumably; [`watch`] follows a task or a
//!   pipeline execution over the WebSocket; [`output`] draws tables and progress bars on stderr.
//! - [`schedules`] lists, creates, pauses, resumes and deletes recurring schedules.

mod batch;
mod cli;
mod client;
mod config;
mod error;
mod output;
mod schedules;
mod watch;

fn main() -> std::process::ExitCode {
    cli::main()
}
