//! `mcp-worker-validation`: a worker that runs only the validation stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-validation",
        &[mcp_shared::domain::pipeline::Stage::Validation.capability()],
    )
}
