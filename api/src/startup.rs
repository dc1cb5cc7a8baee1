//! Building the application from settings: database and migrations, queue backend, event bus,
//! embedded workers, routes. [`Application::build`] binds the port, so callers know it before
//! serving (and, with `MCP_PORT_FILE`, so can another process).
//!
//! This is where the components meet: each is built here with what it needs (the route
//! templates, read once from the spec, go to the audit log, the metrics and the request
//! middleware), then gathered into the [`AppState`] the services work on.

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use mcp_migrations::{Migrator, MigratorTrait};
use mcp_shared::{
    Settings,
    auth::JwtKeys,
    bus::{EventBus, InProcessBus, RedisStreamBus},
    crypto::KeyRing,
    db::{Database, tasks},
    lifecycle::Lifecycle,
    queue::{self, JobQueue, MemoryQueue, RedisQueue},
};
use mcp_worker::{WorkerDeps, pool};
use poem::{
    EndpointExt, Route, Server, get,
    listener::{Acceptor, Listener, TcpListener},
};
use poem_openapi::OpenApiService;
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditLog,
    directory::AgentDirectory,
    dispatcher::Dispatcher,
    middleware::{BodyLimits, RequestPolicy, request_context},
    observability::{Observability, http::Track},
    routes::{
        agents::AgentsApi, audit::AuditApi, auth::AuthApi, capabilities::CapabilitiesApi,
        events::EventsApi, health::HealthApi, metrics, pipeline::PipelineApi, queues::QueuesApi,
        schedules::SchedulesApi, system::SystemApi, tasks::TasksApi, users::UsersApi,
    },
    security::Guard,
    services::{agents, assignments, monitoring, retention, users},
    slow_clients::{GuardedAcceptor, Limits},
    state::AppState,
    templates::RouteTemplates,
    ws,
};

/// The OpenAPI service: the source of `/openapi.json` and of the committed `openapi/openapi.json`.
pub fn api_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(
        (
            HealthApi,
            AuthApi,
            UsersApi,
            TasksApi,
            QueuesApi,
            AgentsApi,
            CapabilitiesApi,
            PipelineApi,
            EventsApi,
            AuditApi,
            SystemApi,
            SchedulesApi,
        ),
        "TechDeck MCP API",
        mcp_shared::VERSION,
    )
    .description(
        "Agents register with capabilities and take prioritised tasks; tasks and six-stage \
         pipelines run on priority-tiered queues. Authenticate with `Authorization: Bearer <token>` \
         (from /api/v1/auth/login) or `Authorization: Agent <key>`.",
    )
}

/// The spec as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    api_service().spec() + "\n"
}

/// The route templates of this build's API, read from its spec.
pub fn route_templates() -> Arc<RouteTemplates> {
    Arc::new(RouteTemplates::from_spec(&openapi_json()))
}

pub struct Application {
    acceptor: poem::listener::TcpAcceptor,
    port: u16,
    state: AppState,
    routes: Arc<RouteTemplates>,
    shutdown: CancellationToken,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Connects to the database and runs pending migrations.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<Database> {
    let db = Database::connect(settings.database_url.expose()).await?;
    Migrator::up(&db.conn, None).await?;
    Ok(db)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let shutdown = CancellationToken::new();
        let db = connect_and_migrate(&settings).await?;

        let mut redis_conn = None;
        let (queue, bus, source): (Arc<dyn JobQueue>, Arc<dyn EventBus>, pool::Source) =
            match &settings.redis_url {
                Some(url) => {
                    let conn = queue::connect_redis(url.expose()).await?;
                    redis_conn = Some(conn.clone());
                    let client = redis::Client::open(url.expose())?;
                    let redis_queue = RedisQueue::new(conn.clone());
                    let bus = RedisStreamBus::with_reader(conn, client.clone(), shutdown.clone());
                    (
                        Arc::new(redis_queue.clone()),
                        bus,
                        pool::Source::Redis {
                            queue: redis_queue,
                            client,
                        },
                    )
                }
                None => {
                    anyhow::ensure!(
                        !settings.database_url.expose().starts_with("postgres"),
                        "the embedded queue runs on a single node with SQLite; with PostgreSQL set REDIS_URL"
                    );
                    // The queue starts empty: every job the last run had pushed is owed again.
                    let owed = tasks::dispatch::forget_all_pushes(&db.conn).await?;
                    if owed > 0 {
                        tracing::info!(
                            owed,
                            "re-queueing the tasks that were waiting at the last stop"
                        );
                    }
                    let q = MemoryQueue::new();
                    (
                        Arc::new(q.clone()),
                        InProcessBus::new(),
                        pool::Source::Memory(q),
                    )
                }
            };

        let cipher = Arc::new(KeyRing::from_settings(&settings)?);
        let artifacts = mcp_shared::artifacts::open(&settings.artifact_store, cipher.clone())?;
        let routes = route_templates();
        let lifecycle = Lifecycle::new(&db, bus.clone());
        let chain = mcp_shared::db::audit::Chain::from_settings(
            &settings,
            cipher.clone(),
            redis_conn.clone(),
            Some(artifacts.clone()),
        );
        // Records written before the chain was keyed get their MACs, once their chain holds.
        let keyed = mcp_shared::db::audit::key_unkeyed(&db, &chain).await?;
        if keyed > 0 {
            tracing::info!(
                keyed,
                "audit records written before the chain was keyed are keyed"
            );
        }
        let state = AppState {
            jwt: Arc::new(JwtKeys::new(
                &settings.jwt_secret_key,
                settings.jwt_access_ttl,
                settings.jwt_refresh_ttl,
            )),
            settings: settings.clone(),
            db: db.clone(),
            queue: queue.clone(),
            lifecycle: lifecycle.clone(),
            bus: bus.clone(),
            cipher,
            directory: AgentDirectory::new(settings.cache_ttl),
            dispatcher: Dispatcher::new(
                settings.clone(),
                db.clone(),
                queue.clone(),
                lifecycle,
                redis_conn.clone(),
            ),
            redis: redis_conn.clone(),
            artifacts: artifacts.clone(),
            connections: Default::default(),
            audit: AuditLog::start(
                db.clone(),
                chain.clone(),
                routes.clone(),
                settings.preauth_window,
            ),
            chain,
            guard: Guard::new(&settings, redis_conn.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the revoked tokens and lockouts kept beside the database: {e}"
                )
            })?,
            observability: Observability::new(&settings, routes.clone(), &shutdown),
        };
        monitoring::spawn(state.clone(), shutdown.clone());
        state.dispatcher.spawn(shutdown.clone());
        state.directory.sync(&db).await?;
        state.directory.spawn_sync(db.clone(), shutdown.clone());
        agents::spawn_sweeper(state.clone(), shutdown.clone());
        retention::spawn(state.clone(), shutdown.clone());
        crate::services::keys::spawn_background(state.clone(), shutdown.clone());
        assignments::spawn(state.clone(), shutdown.clone());
        crate::services::schedules::spawn(state.clone(), shutdown.clone());
        spawn_audit_checkpoints(&state, shutdown.clone());

        users::bootstrap_admin(&db, settings.is_production()).await?;

        let mut background = vec![state.audit.spawn_denial_flush(shutdown.clone())];
        if settings.embedded_workers {
            let deps = WorkerDeps {
                db,
                bus,
                lifecycle: state.lifecycle.clone(),
                queue,
                settings: settings.clone(),
                agent_id: None,
                artifacts: artifacts.clone(),
                cipher: state.cipher.clone(),
                stats: Arc::default(),
            };
            let capabilities = settings
                .embedded_capabilities
                .clone()
                .unwrap_or_else(mcp_worker::builtin_capabilities);
            let token = shutdown.clone();
            background.push(tokio::spawn(async move {
                if let Err(e) = pool::run(deps, source, capabilities, token).await {
                    tracing::error!(error = %e, "embedded workers stopped");
                }
            }));
        }

        let acceptor = TcpListener::bind(format!("{}:{}", settings.host, settings.port))
            .into_acceptor()
            .await?;
        let bound = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied());
        let port = bound.map_or(settings.port, |a| a.port());
        if let Some(path) = &settings.port_file {
            let address =
                bound.map_or_else(|| format!("{}:{port}", settings.host), |a| a.to_string());
            write_port_file(path, &address)?;
        }
        Ok(Self {
            acceptor,
            port,
            state,
            routes,
            shutdown,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `signal` completes, then drains requests and stops the workers.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let api = api_service().server("/");
        let policy = RequestPolicy {
            limits: BodyLimits {
                default: self.state.settings.max_body_bytes as u64,
                dataset: self.state.settings.max_dataset_bytes,
            },
            production: self.state.settings.is_production(),
            audit: self.state.audit.clone(),
            read_timeout: self.state.settings.read_timeout,
            trusted_proxies: Arc::new(self.state.settings.trusted_proxies.clone()),
            routes: self.routes.clone(),
            guard: self.state.guard.clone(),
            jwt: self.state.jwt.clone(),
        };
        let settings = self.state.settings.clone();
        let mut routes = Route::new();
        if settings.docs_enabled {
            routes = routes
                .at("/openapi.json", api.spec_endpoint())
                .nest("/docs", api.swagger_ui());
        }
        if settings.dashboard_enabled {
            routes = routes.nest("/dashboard", crate::dashboard::routes());
        }
        // Closed by default: without configured origins no CORS headers are sent at all.
        let cors = (!settings.cors_origins.is_empty()).then(|| {
            poem::middleware::Cors::new()
                .allow_origins(settings.cors_origins.iter().map(String::as_str))
                .allow_headers([
                    "authorization",
                    "content-type",
                    "x-request-id",
                    "last-event-id",
                ])
                .expose_header("x-request-id")
                .max_age(600)
        });
        let app = routes
            .at("/ws/tasks/:id", get(ws::task_channel))
            .at("/ws/agents/status", get(ws::agents_status))
            .at("/ws/tasks/progress", get(ws::tasks_progress))
            .at("/ws/pipeline/updates", get(ws::pipeline_updates))
            .at("/ws/system/events", get(ws::system_events))
            .at("/metrics", get(metrics::metrics))
            .at("/mcp", crate::mcp::McpEndpoint::new(&self.state))
            .nest("/", api)
            .data(self.state.clone())
            .with_if(cors.is_some(), cors.unwrap_or_default())
            .around(move |ep, req| request_context(ep, req, policy.clone()))
            .with(Track::new(&self.state.observability));
        announce(&settings, self.port);
        let shutdown = self.shutdown.clone();
        let acceptor = GuardedAcceptor::new(
            self.acceptor,
            Limits {
                read_timeout: settings.read_timeout,
                idle_timeout: settings.idle_timeout,
                max_connections: settings.max_connections,
            },
        );
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, signal, Some(Duration::from_secs(10)))
            .await?;
        shutdown.cancel();
        for handle in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        Ok(())
    }
}

/// Says where to go, on the address actually bound: the API, Swagger UI, the dashboard and the
/// MCP endpoint, and how to log in. Logged always; also printed as a short banner outside
/// production, where a newcomer reads the terminal rather than a log pipeline.
fn announce(settings: &Settings, port: u16) {
    let mode = if settings.distributed() {
        "distributed"
    } else {
        "single node"
    };
    let everywhere = matches!(settings.host.as_str(), "0.0.0.0" | "::" | "[::]");
    let host = match settings.host.as_str() {
        // Listening on every interface: this machine reaches it on loopback.
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    let base = format!("http://{host}:{port}");
    let mut places = vec![("API", format!("{base}/api/v1"))];
    if settings.docs_enabled {
        places.push(("Swagger UI", format!("{base}/docs")));
    }
    if settings.dashboard_enabled {
        places.push(("dashboard", format!("{base}/dashboard")));
    }
    places.push(("MCP endpoint", format!("{base}/mcp")));
    tracing::info!(
        port,
        mode,
        url = %base,
        every_interface = everywhere,
        places = %places
            .iter()
            .map(|(what, url)| format!("{what} {url}"))
            .collect::<Vec<_>>()
            .join(", "),
        "serving"
    );
    if settings.is_production() {
        return;
    }
    let mut banner = format!("\n  TechDeck MCP ({mode}) is serving on {base}");
    if everywhere {
        banner.push_str(" (and on every other interface)");
    }
    banner.push('\n');
    for (what, url) in &places {
        banner.push_str(&format!("    {what:<13} {url}\n"));
    }
    banner.push_str(
        "    log in        the dashboard asks for a user's name and password; for the API, POST \
         them to /api/v1/auth/login and send the access token as `Authorization: Bearer …` \
         (Swagger UI: Authorize); add users with `mcp-api admin create`\n",
    );
    eprintln!("{banner}");
}

/// Writes the bound address (`host:port`) to `path` whole: to a file beside it first, then
/// renamed over it, so a reader never sees half of it.
fn write_port_file(path: &Path, address: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{address}\n"))?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Now and then, the audit chain's newest record, signed, goes to the artifact store: a second
/// place outside the database that a truncation of the trail must also get past.
fn spawn_audit_checkpoints(state: &AppState, shutdown: CancellationToken) {
    let Some(period) = state.settings.audit_checkpoint_interval else {
        return;
    };
    let (db, chain) = (state.db.clone(), state.chain.clone());
    mcp_shared::shutdown::spawn_every(period, shutdown, move || {
        let (db, chain) = (db.clone(), chain.clone());
        async move {
            if let Err(e) = chain.write_checkpoint(&db.conn).await {
                tracing::warn!(error = %e, "audit checkpoint not written; retrying next interval");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::UNMATCHED;

    #[test]
    fn paths_map_to_bounded_templates() {
        let routes = route_templates();
        assert_eq!(
            routes.template("/api/v1/tasks/0192f5a0-0000-7000-8000-000000000000"),
            "/api/v1/tasks/{id}"
        );
        assert_eq!(
            routes.template("/api/v1/tasks/batch"),
            "/api/v1/tasks/batch"
        );
        assert_eq!(
            routes.template("/api/v1/queues/mcp:generic/pause"),
            "/api/v1/queues/{name}/pause"
        );
        assert_eq!(routes.template("/ws/tasks/abc"), "/ws/tasks/{id}");
        assert_eq!(routes.template("/metrics"), "/metrics");
        assert_eq!(routes.template("/mcp"), "/mcp");
        assert_eq!(routes.allowed_methods("/mcp"), "POST");
        assert_eq!(routes.template("/docs/index.css"), "/docs");
        assert_eq!(routes.template("/wp-admin/x.php"), UNMATCHED);
        assert_eq!(routes.template("/api/v1/tasks/"), UNMATCHED);
    }

    #[test]
    fn allowed_methods_follow_the_most_literal_template() {
        let routes = route_templates();
        assert_eq!(routes.allowed_methods("/api/v1/agents/discover"), "GET");
        let by_id = routes.allowed_methods("/api/v1/agents/0190c0de-0000-7000-8000-000000000000");
        assert!(by_id.contains("GET") && by_id.contains("DELETE"), "{by_id}");
        let tasks = routes.allowed_methods("/api/v1/tasks");
        assert!(tasks.contains("GET") && tasks.contains("POST"), "{tasks}");
        assert_eq!(routes.allowed_methods("/api/v1/tasks/batch"), "POST");
        assert_eq!(routes.allowed_methods("/ws/tasks/progress"), "GET");
        assert_eq!(routes.template("/no/such/route"), UNMATCHED);
    }

    #[test]
    fn the_port_file_holds_the_whole_address() {
        let dir = std::env::temp_dir().join(format!("mcp-port-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.port");
        write_port_file(&path, "127.0.0.1:41234").unwrap();
        write_port_file(&path, "127.0.0.1:41235").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1:41235\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no partial file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
