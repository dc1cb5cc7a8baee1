//! `mcp-api`: see [`mcp_api::cli`] for the commands.

fn main() -> std::process::ExitCode {
    mcp_api::cli::main()
}
