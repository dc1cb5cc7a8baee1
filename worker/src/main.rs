//! `mcp-worker`: pulls jobs from Redis and runs them. Configured by the same environment as
//! `mcp-api`; `--capabilities a,b` picks the queues (default: generic).

use std::process::ExitCode;

use mcp_shared::{Settings, telemetry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut capabilities: Vec<String> = mcp_worker::DEFAULT_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--version" | "-V" => {
                println!("mcp-worker {}", mcp_shared::VERSION);
                return ExitCode::SUCCESS;
            }
            "--capabilities" | "--stages" => match it.next() {
                Some(list) => {
                    capabilities = list
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                None => {
                    eprintln!("mcp-worker: {arg} needs a comma-separated list");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "mcp-worker: unexpected argument {other:?}\nusage: mcp-worker [--capabilities a,b,...]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcp-worker: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.is_production());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(mcp_worker::run_standalone(settings, capabilities)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
