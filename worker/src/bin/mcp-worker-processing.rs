//! `mcp-worker-processing`: a worker that runs only the processing stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-processing",
        &[mcp_shared::domain::pipeline::Stage::Processing.capability()],
    )
}
