//! The Model Context Protocol entry point at `/mcp`: LLM agents submit, follow and steer work as
//! MCP tools, read tasks, executions and queues as resources, and start from prompts.
//!
//! Built on the official Rust SDK (`rmcp`), over its Streamable HTTP transport, served
//! **statelessly**: every POST carries everything needed to answer it (the credential, and on
//! 2026-07-28 the protocol version and client capabilities in `_meta`), and nothing about a
//! session lives in a replica. A load balancer may send each request to any replica, and a
//! client that reconnects after a restart carries on: long operations are durable MCP tasks
//! whose ids are our task and execution ids, read from the database on every `tasks/get`.
//!
//! The edge is the REST API's: the same request middleware (request id, body limit, audit
//! record), the same credentials (`Authorization: Bearer <token>` or `Agent <key>`, checked
//! before the protocol is even parsed), the same permission table (`tools/list` shows only the
//! tools the caller may call), and the same closed table of error codes: a tool that fails
//! answers an MCP tool error carrying `{code, message, details}` exactly as the REST envelope.
//!
//! - [`tools`]: the tool catalog and what each tool calls.
//! - [`durable`]: the `io.modelcontextprotocol/tasks` extension over tasks and executions.
//! - [`resources`]: `task://`, `pipeline://` and `queue://` resources, and the prompts.
//! - [`schema`]: JSON Schemas from the REST request types.

mod durable;
mod resources;
mod results;
pub mod schema;
mod tools;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use poem::{Endpoint, Request, Response};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, GetPromptRequestParams,
        GetPromptResponse, GetTaskParams, GetTaskResult, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
        SubscriptionFilter,
    },
    service::{RequestContext, SubscriptionContext},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    },
};

use crate::{
    audit::{self, Note},
    error::{ApiError, REQUEST_ID},
    principal::Principal,
    services::sessions,
    state::AppState,
};

/// Who is calling and the request they came in, handed from the HTTP edge to the handler.
#[derive(Clone)]
struct Caller {
    principal: Principal,
    request_id: String,
    /// The audit record of the HTTP request, so tools name their action on it.
    note: Option<Arc<Mutex<Note>>>,
}

impl Caller {
    /// Runs `fut` as part of the HTTP request: its request id and audit record.
    async fn scope<F: Future>(&self, fut: F) -> F::Output {
        let fut = REQUEST_ID.scope(self.request_id.clone(), fut);
        match &self.note {
            Some(note) => audit::scope(note.clone(), fut).await,
            None => fut.await,
        }
    }
}

fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| McpError::internal_error("the request carries no caller", None))
}

/// The MCP server for one request (stateless: built per request, holding only the state).
#[derive(Clone)]
pub struct McpServer {
    state: AppState,
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_prompts()
                .enable_tasks()
                .build(),
        )
        .with_server_info(
            Implementation::new("techdeck-mcp", mcp_shared::VERSION).with_title("TechDeck MCP"),
        )
        .with_instructions(
            "TechDeck MCP runs prioritised tasks and a six-stage conversation-data pipeline. \
             Submit work with submit_task or run_pipeline, follow it with get_task or \
             get_execution (or the durable MCP task they return), and steer it with \
             cancel_task, retry_task and the queue tools. Every id is a UUID. Failed tools \
             answer {code, message, details}; `code` is one of a fixed list (not_found, \
             forbidden, validation_failed with details.field, illegal_transition, ...).",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = caller(&context)?;
        Ok(ListToolsResult::with_all_items(tools::visible_to(
            &caller.principal,
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&context)?;
        let tasks_supported = context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        let call = tools::Call {
            state: &self.state,
            principal: &caller.principal,
            tasks_supported,
            context: &context,
        };
        caller.scope(tools::call(call, request)).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let caller = caller(&context)?;
        caller
            .scope(durable::get(
                &self.state,
                &caller.principal,
                &request.task_id,
            ))
            .await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let caller = caller(&context)?;
        caller
            .scope(durable::cancel(
                &self.state,
                &caller.principal,
                &request.task_id,
            ))
            .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let caller = caller(&context)?;
        caller
            .scope(resources::list(&self.state, &caller.principal))
            .await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        caller(&context)?;
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = caller(&context)?;
        caller
            .scope(resources::read(
                &self.state,
                &caller.principal,
                &request.uri,
            ))
            .await
            .map(ReadResourceResponse::from)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        resources::accepted(requested)
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let caller = caller(subscription.request_context())?;
        resources::listen(&self.state, &caller.principal, subscription).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        caller(&context)?;
        Ok(ListPromptsResult::with_all_items(resources::prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        caller(&context)?;
        resources::prompt(&request).map(GetPromptResponse::from)
    }
}

/// `/mcp`: authenticates like every REST operation, then hands the request to the SDK's
/// Streamable HTTP service.
pub struct McpEndpoint {
    service: StreamableHttpService<McpServer, NeverSessionManager>,
}

impl McpEndpoint {
    pub fn new(state: &AppState) -> Self {
        let settings = &state.settings;
        // Every request is authenticated, so DNS rebinding gains nothing: any Host is served.
        // Browser origins follow the REST API's CORS list.
        let mut config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(Some(std::time::Duration::from_secs(15)))
            .with_max_request_body_bytes(settings.max_body_bytes)
            .disable_allowed_hosts();
        config = if settings.cors_origins.is_empty() {
            config.disable_allowed_origins()
        } else {
            config.with_allowed_origins(settings.cors_origins.iter().cloned())
        };
        let server = McpServer {
            state: state.clone(),
        };
        Self {
            service: StreamableHttpService::new(
                move || Ok(server.clone()),
                Arc::new(NeverSessionManager::default()),
                config,
            ),
        }
    }
}

impl Endpoint for McpEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let state = req
            .data::<AppState>()
            .cloned()
            .ok_or_else(|| ApiError::internal("application state missing"))?;
        let header = req.header("authorization").unwrap_or_default().to_owned();
        if header.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "send `Authorization: Bearer <token>` (from /api/v1/auth/login) or `Agent <key>`",
            )
            .into());
        }
        let principal = sessions::resolve(&state, &header).await?;
        audit::set_actor(principal.actor());
        let caller = Caller {
            principal,
            request_id: crate::error::current_request_id(),
            note: audit::current_note(),
        };

        let mut forwarded = http::Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version());
        for (name, value) in req.headers() {
            forwarded = forwarded.header(name, value);
        }
        let body: http_body_util::combinators::BoxBody<Bytes, std::io::Error> =
            req.take_body().into();
        let mut forwarded = forwarded
            .body(body)
            .map_err(|e| ApiError::internal(format!("forwarding the request: {e}")))?;
        forwarded.extensions_mut().insert(caller);

        let answer = self.service.handle(forwarded).await;
        let (parts, body) = answer.into_parts();
        let body = poem::Body::from(body.map_err(|never| match never {}).boxed());
        let mut response = Response::builder()
            .status(parts.status)
            .version(parts.version)
            .body(body);
        response.headers_mut().extend(parts.headers);
        Ok(response)
    }
}
