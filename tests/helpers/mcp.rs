//! A Model Context Protocol client from outside the project: the official Python SDK (`mcp` on
//! PyPI, in the test virtual environment), run by `tests/mcp_driver.py`. Each call is a fresh
//! client and connection, so nothing carries over between calls but what the server stores.

use std::path::PathBuf;

use serde_json::Value;

use super::servers::python_module;

/// Runs `steps` (see `tests/mcp_driver.py`) against `{base}/mcp` with `authorization`; returns
/// `{"protocol_version", "results": [...]}`.
pub async fn session(base: &str, authorization: &str, steps: Value) -> Value {
    let url = format!("{base}/mcp");
    let authorization = authorization.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = python_module("mcp_driver")
            .env("PYTHONPATH", &dir)
            .args([&url, &authorization, &steps.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the MCP client failed on {steps}:\n{stdout}\n{stderr}"
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the MCP client printed no JSON ({e}):\n{stdout}\n{stderr}"))
    })
    .await
    .unwrap()
}

/// One step's result.
pub async fn one(base: &str, authorization: &str, step: Value) -> Value {
    let out = session(base, authorization, Value::Array(vec![step])).await;
    out["results"][0].clone()
}
