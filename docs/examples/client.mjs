#!/usr/bin/env node
// TechDeck MCP client for Node 20 (built-in fetch, no packages): logs in, submits a task and
// follows it to completion over Server-Sent Events read from a fetch stream.
//
//   MCP_URL=http://localhost:5001 MCP_USERNAME=admin MCP_PASSWORD=... node docs/examples/client.mjs
//
// Node 20 has no global WebSocket; SSE (`GET /api/v1/events`) carries the same events.
// Exits non-zero on any failure.

const BASE = (process.env.MCP_URL ?? "http://localhost:5001").replace(/\/+$/, "");
const TIMEOUT_MS = Number(process.env.TIMEOUT_SECONDS ?? "60") * 1000;
const TERMINAL = new Set(["completed", "dead", "cancelled"]);

class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(`${status} ${error.code}: ${error.message ?? JSON.stringify(body)}`);
    this.status = status;
    this.code = error.code;
  }
}

async function call(method, path, { token, body, signal } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await resp.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, parsed);
  return { status: resp.status, data: parsed?.data };
}

// Yields each SSE event as {event, id, data} from a fetch response body.
async function* sseEvents(body) {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { event: "message", id: undefined, data: [] };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (event.data.length) yield { ...event, data: JSON.parse(event.data.join("\n")) };
        event = { event: "message", id: undefined, data: [] };
      } else if (line.startsWith("event:")) {
        event.event = line.slice(6).trim();
      } else if (line.startsWith("id:")) {
        event.id = line.slice(3).trim();
      } else if (line.startsWith("data:")) {
        event.data.push(line.slice(5).trim());
      }
    }
  }
}

// Follows a task until it ends. The stream is opened before the task is read once, so an event
// from before the stream opened shows in the task itself and none after it is missed.
async function followTask(token, taskId, signal) {
  const query = new URLSearchParams({
    task_id: taskId,
    type: "task.started,task.progress,task.completed,task.failed,task.dead,task.cancelled",
  });
  const resp = await fetch(`${BASE}/api/v1/events?${query}`, {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    signal,
  });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  try {
    const { data: task } = await call("GET", `/api/v1/tasks/${taskId}`, { token, signal });
    if (TERMINAL.has(task.status)) return task;
    let lastId;
    for await (const e of sseEvents(resp.body)) {
      lastId = e.id ?? lastId;
      console.log(`  event ${e.event} ${JSON.stringify(e.data.data ?? {})}`);
      if (e.event === "lagged") {
        throw new Error(`fell behind; reconnect with Last-Event-ID: ${lastId}`);
      }
      if (["task.completed", "task.dead", "task.cancelled"].includes(e.event)) {
        return (await call("GET", `/api/v1/tasks/${taskId}`, { token, signal })).data;
      }
    }
    throw new Error("the event stream ended before the task did");
  } finally {
    await resp.body?.cancel().catch(() => {});
  }
}

async function main() {
  const username = process.env.MCP_USERNAME;
  const password = process.env.MCP_PASSWORD;
  if (!username || !password) {
    console.error("set MCP_USERNAME and MCP_PASSWORD");
    return 2;
  }
  const signal = AbortSignal.timeout(TIMEOUT_MS);

  const { data: login } = await call("POST", "/api/v1/auth/login", {
    body: { username, password },
    signal,
  });
  const token = login.access_token;
  console.log(`logged in as ${username} (${login.token_type} token, ${login.expires_in} s)`);

  // `sleep_ms` makes the built-in generic handler take that long, so there is something to follow.
  const { status, data: task } = await call("POST", "/api/v1/tasks", {
    token,
    body: { type: "generic", priority: "critical", payload: { from: "client.mjs", sleep_ms: 500 } },
    signal,
  });
  if (status !== 201) throw new Error(`expected 201, got ${status}`);
  console.log(`submitted task ${task.id} (${task.status}, priority ${task.priority})`);

  const done = await followTask(token, task.id, signal);
  if (done.status !== "completed") {
    throw new Error(`task ended ${done.status}: ${done.error ?? ""}`);
  }
  console.log(`task ${done.id} completed with result ${JSON.stringify(done.result)}`);

  // The status endpoint is the cheap way to check on a task.
  const { data: st } = await call("GET", `/api/v1/tasks/${task.id}/status`, { token, signal });
  console.log(`status: ${st.status}, progress ${st.progress}, attempt ${st.attempt}`);
  console.log("client.mjs: OK");
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`client.mjs: FAILED: ${err.message}`);
    process.exit(1);
  },
);
