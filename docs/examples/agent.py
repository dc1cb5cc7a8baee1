#!/usr/bin/env python3
"""An external TechDeck MCP agent, Python 3.11 standard library only.

Registers with a capability, keeps a heartbeat going, submits one task for that capability (as
the user, so the example is self-contained), claims it with a long poll, reports progress,
completes it, and deregisters.

    MCP_URL=http://localhost:5001 MCP_USERNAME=admin MCP_PASSWORD=... python3 docs/examples/agent.py

The user needs `agent.register` and `task.create` (admin or operator). MCP_AGENT_CAPABILITY
(default `summarize`) is added to the capability catalog when it is missing. Exits non-zero on
any failure.
"""

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

BASE = os.environ.get("MCP_URL", "http://localhost:5001").rstrip("/")
CAPABILITY = os.environ.get("MCP_AGENT_CAPABILITY", "summarize")
TIMEOUT_SECONDS = float(os.environ.get("TIMEOUT_SECONDS", "60"))
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "5"))


class ApiError(Exception):
    def __init__(self, status, body):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code")
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


def call(method, path, authorization=None, body=None, timeout=30):
    """Returns (status, data); raises ApiError for an error envelope."""
    headers = {"content-type": "application/json"}
    if authorization:
        headers["authorization"] = authorization
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw)["data"] if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        raise ApiError(e.code, body) from None


class Heartbeat(threading.Thread):
    """Beats every HEARTBEAT_SECONDS. An agent that stays silent for MCP_AGENT_STALE_AFTER_MISSED
    beats becomes `stale`, and the tasks it was running go back to their queues."""

    def __init__(self, agent_id, auth):
        super().__init__(daemon=True)
        self.agent_id, self.auth = agent_id, auth
        self.stop = threading.Event()
        self.load = 0

    def run(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                call("POST", f"/api/v1/agents/{self.agent_id}/heartbeat", self.auth,
                     {"current_load": self.load})
            except (ApiError, OSError) as e:
                print(f"  heartbeat failed: {e}", file=sys.stderr)


def main():
    username = os.environ.get("MCP_USERNAME")
    password = os.environ.get("MCP_PASSWORD")
    if not username or not password:
        print("set MCP_USERNAME and MCP_PASSWORD", file=sys.stderr)
        return 2
    deadline = time.monotonic() + TIMEOUT_SECONDS

    _, login = call("POST", "/api/v1/auth/login", body={"username": username, "password": password})
    user = f"Bearer {login['access_token']}"
    print(f"logged in as {username}")

    # Registration accepts only capabilities in the catalog; operators add their own.
    try:
        call("POST", "/api/v1/capabilities", user,
             {"name": CAPABILITY, "description": "summarises a text (example agent)"})
        print(f"added capability {CAPABILITY} to the catalog")
    except ApiError as e:
        if e.code != "capability_exists":
            raise
        print(f"capability {CAPABILITY} is already in the catalog")

    name = f"example-agent-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    status, registered = call("POST", "/api/v1/agents/register", user, {
        "name": name,
        "type": "ai_model",
        "capabilities": [{"name": CAPABILITY, "version": "1"}],
        "max_concurrency": 1,
        "metadata": {"example": True},
    })
    assert status == 201, status
    agent_id = registered["agent"]["id"]
    # The key is shown once: a real agent keeps it in its secret store.
    me = f"Agent {registered['agent_key']}"
    print(f"registered agent {name} ({agent_id}), status {registered['agent']['status']}")

    beat = Heartbeat(agent_id, me)
    _, ack = call("POST", f"/api/v1/agents/{agent_id}/heartbeat", me, {"current_load": 0})
    print(f"heartbeat acknowledged: {ack['status']}")
    beat.start()

    try:
        text = "TechDeck MCP routes tasks to agents by capability and priority. " * 3
        status, task = call("POST", "/api/v1/tasks", user, {
            "type": "analysis",
            "priority": "high",
            "required_capabilities": [CAPABILITY],
            "payload": {"text": text},
            "idempotency_key": f"agent-example-{agent_id}",
        })
        assert status == 201, status
        print(f"submitted task {task['id']} needing {CAPABILITY}")

        # Long poll: the server answers as soon as a task is routed to us, or 204 after wait_ms.
        claimed = None
        while claimed is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no task was claimed in time")
            status, claimed = call("POST", f"/api/v1/agents/{agent_id}/tasks/claim?wait_ms=10000", me,
                                   timeout=40)
            if status == 204:
                print("  nothing to claim yet; polling again")
        beat.load = 1
        print(f"claimed task {claimed['id']} (attempt {claimed['attempt']} of {claimed['max_attempts']}, status {claimed['status']})")
        if claimed["id"] != task["id"]:
            raise RuntimeError(f"claimed {claimed['id']}, expected {task['id']}")

        # Progress reports double as the cancellation check: 409 task_cancelled means stop.
        for pct in (25, 50, 75):
            try:
                call("POST", f"/api/v1/tasks/{claimed['id']}/progress", me,
                     {"progress": pct, "message": f"summarised {pct}%"})
            except ApiError as e:
                if e.code == "task_cancelled":
                    print("  the task was cancelled; stopping")
                    return 1
                raise
            print(f"  reported progress {pct}%")

        words = claimed["payload"]["text"].split()
        result = {"summary": " ".join(words[:8]) + " ...", "words": len(words)}
        _, done = call("POST", f"/api/v1/tasks/{claimed['id']}/complete", me, {"result": result})
        # Completing again (say, after a lost response) is harmless: same task, same result.
        _, again = call("POST", f"/api/v1/tasks/{claimed['id']}/complete", me, {"result": result})
        if done["status"] != "completed" or again["status"] != "completed":
            raise RuntimeError(f"task is {done['status']} after complete")
        beat.load = 0
        print(f"completed task {done['id']} with result {json.dumps(done['result'], sort_keys=True)}")

        _, seen = call("GET", f"/api/v1/tasks/{task['id']}", user)
        if seen["status"] != "completed" or seen.get("agent_id") != agent_id:
            raise RuntimeError(f"the user sees the task as {seen['status']} on {seen.get('agent_id')}")
        print(f"the user sees task {seen['id']} completed by agent {seen['agent_id']}")
    finally:
        beat.stop.set()
        _, gone = call("DELETE", f"/api/v1/agents/{agent_id}", me)
        print(f"deregistered agent {agent_id} ({gone['released_tasks']} tasks returned to their queues)")

    try:
        call("POST", f"/api/v1/agents/{agent_id}/heartbeat", me, {})
        raise RuntimeError("the key still works after deregistration")
    except ApiError as e:
        if e.status != 401:
            raise
    print("the agent key no longer works (401)")
    print("agent.py: OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - an example reports any failure and exits non-zero
        print(f"agent.py: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
