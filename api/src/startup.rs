//! Building the application from settings: database and migrations, queue backend, event bus,
//! embedded workers, routes. [`Application::build`] binds the port, so callers know it before
//! serving.

use std::{future::Future, sync::Arc, time::Duration};

use mcp_migrations::{Migrator, MigratorTrait};
use mcp_shared::{
    Settings,
    auth::{JwtKeys, Role},
    bus::{EventBus, InProcessBus, RedisStreamBus},
    crypto::{self, KeyRing},
    db::{Database, tasks, users},
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
    directory::AgentDirectory,
    middleware::{BodyLimits, RequestPolicy, request_context},
    observability::{self, Observability, http::Track},
    routes::{
        agents::AgentsApi, audit::AuditApi, auth::AuthApi, capabilities::CapabilitiesApi,
        events::EventsApi, health::HealthApi, pipeline::PipelineApi, queues::QueuesApi,
        system::SystemApi, tasks::TasksApi, users::UsersApi,
    },
    services,
    services::dispatcher::Dispatcher,
    slow_clients::HeaderDeadlineAcceptor,
    state::AppState,
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

pub struct Application {
    acceptor: poem::listener::TcpAcceptor,
    port: u16,
    state: AppState,
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

        let artifacts = mcp_shared::artifacts::open(&settings.artifact_store)?;
        let state = AppState {
            jwt: Arc::new(JwtKeys::new(
                &settings.jwt_secret_key,
                settings.jwt_access_ttl,
                settings.jwt_refresh_ttl,
            )),
            settings: settings.clone(),
            db: db.clone(),
            queue: queue.clone(),
            lifecycle: Lifecycle::new(db.conn.clone(), bus.clone()),
            bus: bus.clone(),
            cipher: Arc::new(KeyRing::from_settings(&settings)?),
            directory: AgentDirectory::new(),
            dispatcher: Dispatcher::new(),
            redis: redis_conn.clone(),
            artifacts: artifacts.clone(),
            connections: Default::default(),
            audit: services::audit::AuditLog::start(db.clone()),
            guard: crate::security::Guard::new(&settings, redis_conn.clone()),
            observability: Observability::new(&settings, &shutdown),
        };
        observability::spawn(state.clone(), shutdown.clone());
        state.dispatcher.spawn(state.clone(), shutdown.clone());
        state.directory.sync(&db).await?;
        state.directory.spawn_sync(db.clone(), shutdown.clone());
        spawn_sweeper(state.clone(), shutdown.clone());
        services::retention::spawn(state.clone(), shutdown.clone());

        bootstrap_admin(&state).await?;

        let mut background = Vec::new();
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
            };
            let capabilities = mcp_worker::embedded_capabilities();
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
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or(settings.port);
        Ok(Self {
            acceptor,
            port,
            state,
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
            .at("/metrics", get(observability::metrics_endpoint))
            .nest("/", api)
            .data(self.state.clone())
            .with_if(cors.is_some(), cors.unwrap_or_default())
            .around(move |ep, req| request_context(ep, req, policy.clone()))
            .with(Track::new(&self.state.observability));
        tracing::info!(
            port = self.port,
            mode = if self.state.settings.distributed() {
                "distributed"
            } else {
                "single node"
            },
            "listening"
        );
        let shutdown = self.shutdown.clone();
        let acceptor = HeaderDeadlineAcceptor::new(self.acceptor, settings.read_timeout);
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

/// In development, when no user exists, creates `admin` with a generated password and prints it
/// once. Production never does this: use `mcp-api admin create`.
async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    if state.settings.is_production() || users::count(&state.db.conn).await? > 0 {
        return Ok(());
    }
    let password = crypto::random_token(18);
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&to_hash)).await??;
    match users::create(&state.db.conn, "admin", hash, Role::Admin).await {
        Ok(_) => {
            // Printed, not logged: logs must never carry secrets.
            eprintln!(
                "\n  development mode: created user `admin` with password `{password}`\n  (shown once; create real users with `mcp-api admin create`)\n"
            );
        }
        // Another replica created it first.
        Err(mcp_shared::Error::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Marks silent agents stale and offline. Safe on every replica at once: each transition is a
/// conditional update that only one sweeper wins.
fn spawn_sweeper(state: AppState, shutdown: CancellationToken) {
    let period = (state.settings.agent_heartbeat / 2)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = services::agents::sweep(&state).await {
                tracing::warn!(error = %e, "agent sweep failed");
            }
        }
    });
}
