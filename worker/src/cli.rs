//! The command line shared by `mcp-worker` and the stage binaries (`mcp-worker-ingestion`, …):
//! `--capabilities a,b` (or `--capabilities all`: `generic` and every typed task type) and
//! `--stages a,b` (or `--stages all`) pick the queues, together; without either, the binary's
//! default. A stage named with `--stages ingestion` is served as the
//! capability `stage_ingestion`.

use std::process::ExitCode;

use mcp_shared::{Settings, domain::pipeline::Stage, telemetry};

/// Parses arguments, loads settings from the environment and runs until SIGTERM or Ctrl-C.
pub fn main(program: &str, defaults: &[String]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut capabilities: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--version" | "-V" => {
                println!("{program} {}", mcp_shared::VERSION);
                return ExitCode::SUCCESS;
            }
            "--capabilities" | "--stages" => match it.next() {
                Some(list) => {
                    let names = list.split(',').map(str::trim).filter(|s| !s.is_empty());
                    if arg == "--stages" {
                        for name in names {
                            if name == "all" {
                                capabilities.extend(Stage::ALL.iter().map(|s| s.capability()));
                                continue;
                            }
                            match Stage::parse(name) {
                                Some(stage) => capabilities.push(stage.capability()),
                                None => {
                                    eprintln!(
                                        "{program}: unknown stage {name:?}; stages are {}",
                                        Stage::allowed()
                                    );
                                    return ExitCode::from(2);
                                }
                            }
                        }
                    } else {
                        for name in names {
                            if name == "all" {
                                capabilities
                                    .extend(crate::TASK_CAPABILITIES.iter().map(|c| c.to_string()));
                            } else {
                                capabilities.push(name.to_string());
                            }
                        }
                    }
                }
                None => {
                    eprintln!("{program}: {arg} needs a comma-separated list");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "{program}: unexpected argument {other:?}\nusage: {program} [--capabilities all | a,b,...] [--stages all | ingestion,standardization,...]"
                );
                return ExitCode::from(2);
            }
        }
    }
    if capabilities.is_empty() {
        capabilities = defaults.to_vec();
    }
    capabilities.sort();
    capabilities.dedup();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{program}: {}", telemetry::sanitize(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.is_production());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(crate::run_standalone(
        settings,
        capabilities,
        mcp_shared::shutdown::signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", telemetry::sanitize(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
