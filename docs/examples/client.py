#!/usr/bin/env python3
"""TechDeck MCP client, Python 3.11 standard library only.

Logs in, submits a task and follows it over Server-Sent Events until it completes, then uploads
a small dataset and runs the six-stage pipeline over it with `wait`, and downloads the export.

    MCP_URL=http://localhost:5001 MCP_USERNAME=admin MCP_PASSWORD=... python3 docs/examples/client.py

Exits non-zero on any failure.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("MCP_URL", "http://localhost:5001").rstrip("/")
TIMEOUT_SECONDS = float(os.environ.get("TIMEOUT_SECONDS", "60"))
TERMINAL = {"completed", "dead", "cancelled"}


class ApiError(Exception):
    """An answer in the error envelope: `{"success": false, "error": {code, message, details?}}`."""

    def __init__(self, status, body):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code")
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


class Client:
    def __init__(self, base):
        self.base = base
        self.token = None

    def _request(self, method, path, body=None, content_type="application/json", timeout=30):
        headers = {}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["content-type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                raise ApiError(e.code, json.loads(raw)) from None
            except json.JSONDecodeError:
                raise ApiError(e.code, raw.decode(errors="replace")) from None

    def call(self, method, path, body=None, **kw):
        """Returns (status, data) of a success envelope; raises ApiError otherwise."""
        status, raw = self._request(method, path, body, **kw)
        envelope = json.loads(raw)
        return status, envelope["data"]

    def login(self, username, password):
        _, data = self.call("POST", "/api/v1/auth/login", {"username": username, "password": password})
        self.token = data["access_token"]
        return data

    def follow_task(self, task_id, deadline):
        """Reads `/api/v1/events` for this task until it ends; returns the final task.

        The stream is opened first and the task read once after: an event that happened before
        the stream opened is then seen in the task itself, and none after it can be missed."""
        query = urllib.parse.urlencode({
            "task_id": task_id,
            "type": "task.started,task.progress,task.completed,task.failed,task.dead,task.cancelled",
        })
        req = urllib.request.Request(
            f"{self.base}/api/v1/events?{query}",
            headers={"authorization": f"Bearer {self.token}", "accept": "text/event-stream"},
        )
        # The server sends a keep-alive comment every 15 s, so a read never waits longer than that.
        with urllib.request.urlopen(req, timeout=30) as stream:
            _, task = self.call("GET", f"/api/v1/tasks/{task_id}")
            if task["status"] in TERMINAL:
                return task
            event_type, data = None, []
            while time.monotonic() < deadline:
                line = stream.readline()
                if not line:
                    raise RuntimeError("the event stream ended; reconnect with Last-Event-ID to resume")
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event_type = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    event = json.loads("\n".join(data))
                    print(f"  event {event_type} {json.dumps(event.get('data', {}), sort_keys=True)}")
                    if event_type in {"task.completed", "task.dead", "task.cancelled"}:
                        _, task = self.call("GET", f"/api/v1/tasks/{task_id}")
                        return task
                    event_type, data = None, []
        raise TimeoutError(f"task {task_id} did not end in time")


def main():
    username = os.environ.get("MCP_USERNAME")
    password = os.environ.get("MCP_PASSWORD")
    if not username or not password:
        print("set MCP_USERNAME and MCP_PASSWORD", file=sys.stderr)
        return 2
    deadline = time.monotonic() + TIMEOUT_SECONDS
    mcp = Client(BASE)

    login = mcp.login(username, password)
    print(f"logged in as {username}; the access token expires in {login['expires_in']} s")

    # A task, followed over Server-Sent Events. `sleep_ms` makes the built-in generic handler
    # take that long, so there is something to follow; it returns the payload as the result.
    status, task = mcp.call("POST", "/api/v1/tasks", {
        "type": "generic",
        "priority": "high",
        "payload": {"question": "what is the capital of France?", "sleep_ms": 500},
    })
    assert status == 201, status
    print(f"submitted task {task['id']} ({task['status']}, priority {task['priority']})")
    task = mcp.follow_task(task["id"], deadline)
    if task["status"] != "completed":
        raise RuntimeError(f"task ended {task['status']}: {task.get('error')}")
    print(f"task {task['id']} completed with result {json.dumps(task['result'], sort_keys=True)}")

    # A small dataset: NDJSON, one conversation per line (chat `messages`, ShareGPT
    # `conversations` and question/answer pairs are all recognised).
    conversations = [
        {"messages": [
            {"role": "user", "content": "How do I reset my router to factory settings?"},
            {"role": "assistant", "content": "Hold the reset button on the back for ten seconds until the lights blink, then wait two minutes for it to restart."},
        ]},
        {"conversations": [
            {"from": "human", "value": "Please email the invoice to jane.doe@example.com by Friday."},
            {"from": "gpt", "value": "I will send the invoice to that address before Friday afternoon."},
        ]},
        {"question": "What does a sourdough starter need each day?",
         "answer": "Feed it equal weights of flour and water and keep it somewhere warm."},
    ]
    ndjson = "".join(json.dumps(c) + "\n" for c in conversations).encode()
    status, dataset = mcp.call(
        "POST", "/api/v1/datasets?name=client-example", ndjson, content_type="application/x-ndjson"
    )
    assert status == 201, status
    print(f"uploaded dataset {dataset['dataset_id']}: {dataset['records']} records, {dataset['bytes']} bytes, {dataset['format']}")

    # Run the six stages and wait for the end (200), or get 202 and poll when it takes longer.
    remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    status, execution = mcp.call("POST", "/api/v1/pipeline/agent-execute", {
        "dataset_id": dataset["dataset_id"],
        "options": {"pii": "redact", "quality_threshold": 0.0, "export_formats": ["chat_jsonl", "jsonl"]},
        "wait": True,
        "wait_timeout_ms": min(remaining_ms, 300000),
    }, timeout=remaining_ms / 1000 + 10)
    execution_id = execution["execution_id"]
    while execution["status"] not in {"completed", "failed", "cancelled"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_id} is still {execution['status']}")
        time.sleep(0.2)
        _, execution = mcp.call("GET", f"/api/v1/pipeline/{execution_id}")
    if execution["status"] != "completed":
        raise RuntimeError(f"execution {execution_id} {execution['status']}: {execution.get('error')}")
    print(f"pipeline {execution_id} completed: {execution['results']['records_out']} records out")

    _, progress = mcp.call("GET", f"/api/v1/pipeline/{execution_id}/agent-progress")
    for stage in progress["stages"]:
        print(f"  stage {stage['stage']}: {stage['status']}, {stage['records_in']} in, {stage['records_out']} out")

    _, exported = mcp._request("GET", f"/api/v1/pipeline/{execution_id}/results?format=chat_jsonl")
    lines = [json.loads(line) for line in exported.decode().splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("the chat_jsonl export is empty")
    text = exported.decode()
    if "jane.doe@example.com" in text or "[EMAIL]" not in text:
        raise RuntimeError("the e-mail address was not redacted in the export")
    print(f"downloaded chat_jsonl: {len(lines)} conversations, e-mail addresses redacted as [EMAIL]")

    _, report = mcp.call("GET", f"/api/v1/pipeline/{execution_id}/report")
    print(f"report sections: {', '.join(sorted(report))}")
    print("client.py: OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - an example reports any failure and exits non-zero
        print(f"client.py: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
