//! `mcp-worker-export`: a worker that runs only the export stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-export",
        &[mcp_shared::domain::pipeline::Stage::Export.capability()],
    )
}
