//! The `mcp-api` command line: `serve` (the default), `migrate`, `admin create`, `openapi`.

use std::{io::Read, process::ExitCode, sync::Arc};

use mcp_shared::{
    Settings,
    artifacts::ArtifactStore,
    auth::Role,
    crypto,
    db::{audit, users},
    telemetry,
};

use mcp_migrations::{MigrationStatus, Migrator, MigratorTrait};

use crate::{
    services::{
        keys,
        users::{validate_password, validate_username},
    },
    startup::{Application, connect_and_migrate, openapi_json},
};

const USAGE: &str = "usage:
  mcp-api [serve]                 run the server (configured by environment variables)
  mcp-api migrate [up]            apply pending database migrations and exit (serve also does)
  mcp-api migrate status          list every migration, applied or pending
  mcp-api migrate down [N]        roll back the newest N applied migrations (default 1); stop
                                  every server first, and start the older release after
  mcp-api admin create --username NAME --password-stdin [--role admin|operator|viewer]
                                  create a user, reading the password from standard input
  mcp-api keys generate [--id ID] print a new field-encryption key entry for MCP_ENCRYPTION_KEYS
  mcp-api keys status             how many values, artifacts and audit rows each key holds
  mcp-api keys rotate [--batch-size N]
                                  re-seal every value and artifact, and re-key the audit chain,
                                  under the first MCP_ENCRYPTION_KEYS key, in batches, while the
                                  service runs; retire older keys afterwards
  mcp-api openapi                 print the OpenAPI document
  mcp-api --version";

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--version"] | ["-V"] => {
            println!("mcp-api {}", mcp_shared::VERSION);
            return ExitCode::SUCCESS;
        }
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["openapi"] => {
            print!("{}", openapi_json());
            return ExitCode::SUCCESS;
        }
        ["keys", "generate", rest @ ..] => {
            let id = match rest {
                ["--id", id] => id.to_string(),
                [] => format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S")),
                _ => {
                    eprintln!("mcp-api: usage: mcp-api keys generate [--id ID]");
                    return ExitCode::from(2);
                }
            };
            println!("{}", crypto::KeyRing::generate_entry(&id));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcp-api: {}", telemetry::sanitize(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.is_production());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match args.as_slice() {
            [] | ["serve"] => serve(settings).await,
            ["migrate"] | ["migrate", "up"] => {
                connect_and_migrate(&settings).await?;
                println!("migrations applied");
                Ok(())
            }
            ["migrate", "status"] => migrate_status(settings).await,
            ["migrate", "down", rest @ ..] => migrate_down(settings, rest).await,
            ["admin", "create", rest @ ..] => admin_create(settings, rest).await,
            ["keys", "status"] => keys_status(settings).await,
            ["keys", "rotate", rest @ ..] => keys_rotate(settings, rest).await,
            _ => Err(anyhow::anyhow!("unknown command\n{USAGE}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error chain can quote what failed: a URL, a value from the environment.
            eprintln!("mcp-api: {}", telemetry::sanitize(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.ephemeral_secrets {
        tracing::warn!(
            "development mode with an in-memory database: MCP_SECRET_KEY and JWT_SECRET_KEY are \
             not set, so secrets were generated for this process; tokens and encrypted fields \
             will not survive a restart"
        );
    } else if let Some(path) = &settings.secrets_file {
        tracing::info!(
            file = %path.display(),
            "development mode: generated secrets are kept in this file (mode 0600) and reused at \
             every start; set MCP_SECRET_KEY and JWT_SECRET_KEY to use your own"
        );
    }
    let app = Application::build(settings).await?;
    app.run_until(mcp_shared::shutdown::signal()).await
}

/// Every migration this release knows, oldest first, with whether the database has it.
async fn migrate_status(settings: Settings) -> anyhow::Result<()> {
    let db = mcp_shared::db::Database::connect(settings.database_url.expose()).await?;
    let all = Migrator::get_migration_with_status(&db.conn).await?;
    let mut pending = 0;
    for m in &all {
        let applied = m.status() == MigrationStatus::Applied;
        pending += usize::from(!applied);
        println!(
            "{:<8} {}",
            if applied { "applied" } else { "pending" },
            m.name()
        );
    }
    println!("{} applied, {pending} pending", all.len() - pending);
    Ok(())
}

/// Rolls back the newest `N` applied migrations (default 1), naming each.
async fn migrate_down(settings: Settings, args: &[&str]) -> anyhow::Result<()> {
    let steps = match args {
        [] => 1,
        [n] => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| anyhow::anyhow!("N must be a whole number of at least 1"))?,
        _ => anyhow::bail!("usage: mcp-api migrate down [N]"),
    };
    let db = mcp_shared::db::Database::connect(settings.database_url.expose()).await?;
    let applied = Migrator::get_applied_migrations(&db.conn).await?;
    anyhow::ensure!(
        steps as usize <= applied.len(),
        "only {} migrations are applied; nothing was rolled back",
        applied.len()
    );
    Migrator::down(&db.conn, Some(steps)).await?;
    for m in applied.iter().rev().take(steps as usize) {
        println!("rolled back {}", m.name());
    }
    Ok(())
}

async fn admin_create(settings: Settings, args: &[&str]) -> anyhow::Result<()> {
    let mut username = None;
    let mut role = Role::Admin;
    let mut from_stdin = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--username" => username = it.next().map(|s| s.to_string()),
            "--role" => {
                let r = it.next().copied().unwrap_or_default();
                role = Role::parse(r)
                    .filter(|r| *r != Role::Agent)
                    .ok_or_else(|| anyhow::anyhow!("--role must be admin, operator or viewer"))?;
            }
            "--password-stdin" => from_stdin = true,
            other => anyhow::bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let username = username.ok_or_else(|| anyhow::anyhow!("--username is required\n{USAGE}"))?;
    anyhow::ensure!(
        from_stdin,
        "--password-stdin is required (passwords are never taken as arguments)"
    );
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    validate_username(&username).map_err(|e| anyhow::anyhow!(e.message))?;
    validate_password(&password).map_err(|e| anyhow::anyhow!(e.message))?;
    let db = connect_and_migrate(&settings).await?;
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password)).await??;
    users::create(&db.conn, &username, hash, role).await?;
    println!("created {} user {username}", role.as_str());
    Ok(())
}

fn key_ring(settings: &Settings) -> anyhow::Result<crypto::KeyRing> {
    Ok(crypto::KeyRing::from_settings(settings)?)
}

/// The audit chain as the server sees it: its head in Redis or beside the SQLite database, its
/// checkpoints in the artifact store.
async fn audit_chain(
    settings: &Settings,
    ring: &crypto::KeyRing,
) -> anyhow::Result<(audit::Chain, Arc<dyn ArtifactStore>)> {
    let redis = match &settings.redis_url {
        Some(url) => Some(mcp_shared::queue::connect_redis(url.expose()).await?),
        None => None,
    };
    let ring = Arc::new(ring.clone());
    let artifacts = mcp_shared::artifacts::open(&settings.artifact_store, ring.clone())?;
    let chain = audit::Chain::from_settings(settings, ring, redis, Some(artifacts.clone()));
    Ok((chain, artifacts))
}

async fn keys_status(settings: Settings) -> anyhow::Result<()> {
    let ring = key_ring(&settings)?;
    let db = connect_and_migrate(&settings).await?;
    println!("active key: {}", ring.active_key_id());
    for (key, n) in keys::status(&db).await? {
        println!(
            "sealed by {key}: {} tasks, {} task results, {} agents",
            n.tasks, n.results, n.agents
        );
    }
    for (key, n) in audit::mac_counts(&db.conn).await? {
        println!("audit chain keyed by {key}: {n} records and anchors");
    }
    let (_, artifacts) = audit_chain(&settings, &ring).await?;
    for (key, n) in keys::artifact_status(artifacts.as_ref()).await? {
        println!("artifacts sealed by {key}: {n}");
    }
    Ok(())
}

async fn keys_rotate(settings: Settings, args: &[&str]) -> anyhow::Result<()> {
    let batch = match args {
        [] => 500,
        ["--batch-size", n] => n
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| anyhow::anyhow!("--batch-size must be 1-10000"))?,
        _ => anyhow::bail!("usage: mcp-api keys rotate [--batch-size N]"),
    };
    let ring = key_ring(&settings)?;
    let db = connect_and_migrate(&settings).await?;
    let (chain, artifacts) = audit_chain(&settings, &ring).await?;
    let report = keys::rotate(&db, &ring, &chain, artifacts.as_ref(), batch, true).await?;
    println!(
        "re-sealed under {}: {} tasks, {} further task results, {} agents, {} artifacts, {} audit records and anchors; {} unreadable; {} changed meanwhile",
        ring.active_key_id(),
        report.tasks,
        report.results,
        report.agents,
        report.artifacts,
        report.audit,
        report.unreadable,
        report.changed
    );
    anyhow::ensure!(
        report.unreadable == 0,
        "{} values are sealed by keys no longer configured",
        report.unreadable
    );
    anyhow::ensure!(
        report.changed == 0,
        "{} tasks changed while they were re-sealed; run `mcp-api keys rotate` again",
        report.changed
    );
    Ok(())
}
