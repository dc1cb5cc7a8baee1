//! `mcp-worker`: pulls jobs from Redis and runs them. Configured by the same environment as
//! `mcp-api`; `--capabilities a,b` or `--stages a,b` picks the queues (default: `generic` and every typed task type: `bias_detection`,
//! `validation`, `analysis`, `export`, `pipeline_processing`).

fn main() -> std::process::ExitCode {
    let defaults: Vec<String> = mcp_worker::DEFAULT_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    mcp_worker::cli::main("mcp-worker", &defaults)
}
