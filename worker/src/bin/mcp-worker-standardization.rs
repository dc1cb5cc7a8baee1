//! `mcp-worker-standardization`: a worker that runs only the standardization stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-standardization",
        &[mcp_shared::domain::pipeline::Stage::Standardization.capability()],
    )
}
