//! `mcp-worker`: pulls jobs from Redis and runs them. Configured by the same environment as
//! `mcp-api`; without flags it serves everything the built-in handlers run (`generic`, every
//! typed task type and all six pipeline stages); `--capabilities a,b` and `--stages a,b` narrow it.

fn main() -> std::process::ExitCode {
    mcp_worker::cli::main("mcp-worker", &mcp_worker::builtin_capabilities())
}
