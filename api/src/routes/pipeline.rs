//! Datasets and pipeline executions.

use chrono::{DateTime, Utc};
use mcp_shared::{
    auth::Permission,
    domain::{
        pipeline::{DatasetFormat, ExportFormat, PipelineStatus},
        task::Priority,
    },
};
use poem::{Body, Request, RequestBody, web::Data};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json, Payload},
    registry::{
        MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef,
        Registry,
    },
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiTags, Envelope, ok};
use crate::{
    audit,
    auth::Auth,
    error::{ApiError, ApiResult, ErrorCode},
    payload::{ApiJson, from_value},
    services::{
        datasets,
        pipelines::{self as service, ExecuteRequest, Started},
    },
    state::AppState,
    views::{self, ExecutionProgress, ExecutionView},
};

pub struct PipelineApi;

/// A dataset body: NDJSON, CSV or a JSON array, read as a stream.
pub struct DatasetUpload {
    pub body: Body,
    pub format: DatasetFormat,
}

impl<'a> ApiExtractor<'a> for DatasetUpload {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let binary = || {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                format: Some("binary"),
                ..MetaSchema::new("string")
            }))
        };
        Some(MetaRequest {
            description: Some(
                "The dataset file: one record per line, CSV with a header row, or a JSON array of records.",
            ),
            content: ["application/x-ndjson", "text/csv", "application/json"]
                .into_iter()
                .map(|content_type| MetaMediaType {
                    content_type,
                    schema: binary(),
                })
                .collect(),
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let format = datasets::format_for(request.content_type())?;
        Ok(Self {
            body: body.take()?,
            format,
        })
    }
}

#[derive(Object)]
pub struct DatasetView {
    pub dataset_id: Uuid,
    pub name: String,
    pub records: i64,
    pub bytes: i64,
    pub sha256: String,
    /// `ndjson`, `csv` or `json`.
    pub format: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct ExecutionAccepted {
    pub execution_id: Uuid,
    pub status: String,
}

#[derive(Object, serde::Deserialize)]
pub struct BatchExecuteRequest {
    /// Execution requests, as for `agent-execute` (priority defaults to `low`; `wait` is ignored).
    pub executions: Vec<Value>,
}

#[derive(Object)]
pub struct BatchExecuteResult {
    pub execution_ids: Vec<Uuid>,
}

#[derive(ApiResponse)]
pub enum DatasetResponse {
    #[oai(status = 201)]
    Created(Json<Envelope<DatasetView>>),
}

#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)] // built once per request and returned at once
pub enum ExecuteResponse {
    /// The execution ended within `wait_timeout_ms`; or an earlier request with the same
    /// `idempotency_key` and body started it, and this is its current state.
    #[oai(status = 200)]
    Done(Json<Envelope<ExecutionView>>),
    /// Accepted; follow it with `GET /pipeline/{id}` or the WebSocket.
    #[oai(status = 202)]
    Accepted(Json<Envelope<ExecutionAccepted>>),
}

#[derive(ApiResponse)]
pub enum BatchExecuteResponse {
    #[oai(status = 202)]
    Accepted(Json<Envelope<BatchExecuteResult>>),
}

#[derive(ApiResponse)]
pub enum ExecutionResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<ExecutionView>>),
}

#[derive(ApiResponse)]
pub enum ProgressResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<ExecutionProgress>>),
}

#[derive(ApiResponse)]
pub enum ReportResponse {
    #[oai(status = 200)]
    Ok(Json<Envelope<Value>>),
}

/// The exported file. Written by hand because the derive keeps one content type per status,
/// and the file is NDJSON (`jsonl`, `chat_jsonl`) or CSV.
pub enum ResultsResponse {
    Ndjson(Body),
    Csv(Body),
}

impl poem::IntoResponse for ResultsResponse {
    fn into_response(self) -> poem::Response {
        let (content_type, body) = match self {
            ResultsResponse::Ndjson(b) => ("application/x-ndjson", b),
            ResultsResponse::Csv(b) => ("text/csv", b),
        };
        poem::Response::builder()
            .content_type(content_type)
            .body(body)
    }
}

impl ApiResponse for ResultsResponse {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The exported file: NDJSON for `jsonl` and `chat_jsonl`, CSV for `csv`.",
                status: Some(200),
                status_range: None,
                content: ["application/x-ndjson", "text/csv"]
                    .into_iter()
                    .map(|content_type| MetaMediaType {
                        content_type,
                        schema: <Binary<Body> as Payload>::schema_ref(),
                    })
                    .collect(),
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// Most executions one batch may carry.
pub const MAX_BATCH_EXECUTIONS: usize = 1000;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Pipeline")]
impl PipelineApi {
    /// Upload a dataset (streamed to the artifact store; `MCP_MAX_DATASET_BYTES` bounds it).
    #[oai(path = "/datasets", method = "post", operation_id = "uploadDataset")]
    async fn upload(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Query<Option<String>>,
        upload: DatasetUpload,
    ) -> ApiResult<DatasetResponse> {
        auth.0.require(Permission::PipelineExecute)?;
        let d =
            datasets::upload(&state, upload.body, upload.format, name.0, &auth.0.actor()).await?;
        audit::note(
            "dataset.upload",
            Some(d.id.to_string()),
            Some(json!({"records": d.records, "bytes": d.bytes, "format": d.format})),
        );
        Ok(DatasetResponse::Created(ok(DatasetView {
            dataset_id: d.id,
            name: d.name,
            records: d.records,
            bytes: d.bytes,
            sha256: d.sha256,
            format: d.format,
            created_at: d.created_at,
        })))
    }

    /// Run the six-stage pipeline over a dataset. With `wait`, answers 200 with the results
    /// when the execution ends within `wait_timeout_ms`, else 202 with its id. A repeat with
    /// the same `idempotency_key` and body answers 200 with the execution the first started.
    #[oai(
        path = "/pipeline/agent-execute",
        method = "post",
        operation_id = "runPipeline"
    )]
    async fn execute(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<ExecuteRequest>,
    ) -> ApiResult<ExecuteResponse> {
        auth.0.require(Permission::PipelineExecute)?;
        let req = body.0;
        let started = service::submit(&state, &req, Priority::High, &auth.0.actor()).await?;
        let replayed = matches!(started, Started::Existing(_));
        let execution = match started {
            Started::New(e) => {
                audit::note("pipeline.execute", Some(e.id.to_string()), None);
                e
            }
            Started::Existing(e) => e,
        };
        if req.wait.unwrap_or(false) {
            let timeout = std::time::Duration::from_millis(
                req.wait_timeout_ms.unwrap_or(service::DEFAULT_WAIT_MS),
            );
            let now = service::wait(&state, execution.id, timeout).await?;
            if replayed
                || PipelineStatus::parse(&now.status).is_some_and(PipelineStatus::is_terminal)
            {
                return Ok(ExecuteResponse::Done(ok(ExecutionView::for_reader(
                    now, &auth.0,
                ))));
            }
        }
        // Without `wait`, a replay answers as the first request did: 202 with the execution.
        Ok(ExecuteResponse::Accepted(ok(ExecutionAccepted {
            execution_id: execution.id,
            status: execution.status,
        })))
    }

    /// Start many executions (priority defaults to `low`). All are checked first: one invalid
    /// item rejects the batch with its index, and nothing is started. An item whose
    /// `idempotency_key` an earlier execution holds (with the same body) gets that execution's
    /// id at its index; so does a key repeated within the batch.
    #[oai(
        path = "/pipeline/batch",
        method = "post",
        operation_id = "runPipelineBatch"
    )]
    async fn batch(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: ApiJson<BatchExecuteRequest>,
    ) -> ApiResult<BatchExecuteResponse> {
        auth.0.require(Permission::PipelineExecute)?;
        let items = body.0.executions;
        if items.len() > MAX_BATCH_EXECUTIONS {
            return Err(ApiError::new(
                ErrorCode::BatchTooLarge,
                format!("a batch holds at most {MAX_BATCH_EXECUTIONS} executions; split it"),
            ));
        }
        let parsed = items
            .into_iter()
            .map(from_value::<ExecuteRequest>)
            .collect();
        let (ids, replayed) = service::start_batch(&state, parsed, &auth.0.actor()).await?;
        audit::note(
            "pipeline.batch",
            None,
            Some(json!({"executions": ids.len() - replayed, "replayed": replayed})),
        );
        Ok(BatchExecuteResponse::Accepted(ok(BatchExecuteResult {
            execution_ids: ids,
        })))
    }

    /// One execution.
    #[oai(
        path = "/pipeline/:execution_id",
        method = "get",
        operation_id = "getExecution"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        execution_id: Path<Uuid>,
    ) -> ApiResult<ExecutionResponse> {
        auth.0.require(Permission::PipelineRead)?;
        let e = service::find(&state, execution_id.0).await?;
        Ok(ExecutionResponse::Ok(ok(ExecutionView::read(
            e,
            &auth.0,
            &state.observability.alerts,
        ))))
    }

    /// Per-stage state: which agents ran each stage, records in and out, progress.
    #[oai(
        path = "/pipeline/:execution_id/agent-progress",
        method = "get",
        operation_id = "getExecutionProgress"
    )]
    async fn progress(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        execution_id: Path<Uuid>,
    ) -> ApiResult<ProgressResponse> {
        auth.0.require(Permission::PipelineRead)?;
        let (e, stages, progress) = service::progress(&state, execution_id.0).await?;
        Ok(ProgressResponse::Ok(ok(ExecutionProgress {
            waiting_for: views::execution_waiting_for(&e, &state.observability.alerts),
            execution_id: e.id,
            status: e.status,
            progress,
            current_stage: e.current_stage,
            stages,
        })))
    }

    /// The exported file, streamed: `format` is `jsonl` (default), `chat_jsonl` or `csv`.
    #[oai(
        path = "/pipeline/:execution_id/results",
        method = "get",
        operation_id = "getExecutionResults"
    )]
    async fn results(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        execution_id: Path<Uuid>,
        format: Query<Option<String>>,
    ) -> ApiResult<ResultsResponse> {
        auth.0.require(Permission::PipelineRead)?;
        let format = match format.0.as_deref() {
            None => ExportFormat::Jsonl,
            Some(f) => ExportFormat::parse(f).ok_or_else(|| {
                ApiError::invalid_field(
                    "format",
                    format!(
                        "unknown format {f:?}; supported: {}",
                        ExportFormat::allowed()
                    ),
                )
            })?,
        };
        let reader = service::export(&state, execution_id.0, format).await?;
        let body = Body::from_async_read(reader);
        Ok(match format {
            ExportFormat::Csv => ResultsResponse::Csv(body),
            ExportFormat::Jsonl | ExportFormat::ChatJsonl => ResultsResponse::Ndjson(body),
        })
    }

    /// The report: counts per stage, PII found by kind, bias by category, the quality
    /// histogram, rejects with reasons, per-stage timings.
    #[oai(
        path = "/pipeline/:execution_id/report",
        method = "get",
        operation_id = "getExecutionReport"
    )]
    async fn report(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        execution_id: Path<Uuid>,
    ) -> ApiResult<ReportResponse> {
        auth.0.require(Permission::PipelineRead)?;
        let report = service::report(&state, execution_id.0).await?;
        Ok(ReportResponse::Ok(ok(report)))
    }

    /// Cancel an execution: waiting shards are cancelled at once, running ones stop at their
    /// next progress point.
    #[oai(
        path = "/pipeline/:execution_id/cancel",
        method = "post",
        operation_id = "cancelExecution"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        execution_id: Path<Uuid>,
    ) -> ApiResult<ExecutionResponse> {
        auth.0.require(Permission::PipelineExecute)?;
        let e = service::cancel(&state, execution_id.0).await?;
        audit::note("pipeline.cancel", Some(e.id.to_string()), None);
        Ok(ExecutionResponse::Ok(ok(ExecutionView::for_reader(
            e, &auth.0,
        ))))
    }
}
