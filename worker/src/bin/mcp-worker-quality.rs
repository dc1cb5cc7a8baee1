//! `mcp-worker-quality`: a worker that runs only the quality_assessment stage (`mcp-worker --stages a,b` serves several).

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main(
        "mcp-worker-quality",
        &[mcp_shared::domain::pipeline::Stage::QualityAssessment.capability()],
    )
}
