//! `mcp-worker-ingestion`: a worker that runs only the ingestion stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-ingestion",
        &[mcp_shared::domain::pipeline::Stage::Ingestion.capability()],
    )
}
