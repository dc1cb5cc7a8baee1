#!/usr/bin/env python3
"""A pipeline stage run by an external service: standardization, Python 3.11 standard library only.

An operator registers the agent with the stage's capability and hands it the key:

    POST /api/v1/agents/register
    {"name": "py-standardizer", "type": "data_processor", "capabilities": ["stage_standardization"]}

Then the agent runs until stopped (or, with MCP_STAGE_SHARDS=N, until it has run N shards):

    MCP_URL=http://localhost:5001 MCP_AGENT_ID=<id> MCP_AGENT_KEY=<key> \\
        python3 docs/examples/stage_agent.py

For each shard it claims it reads the shard's input (`GET /api/v1/tasks/{id}/shard/input`: raw
records as `{"line": n, "raw": {...}}`, one per line), maps each record to the canonical shape,
streams the records back (`PUT /api/v1/tasks/{id}/shard/output`, chunked), reports progress
with `records_done` at least every second or every 1,000 records, and completes the task with
the records that could not be mapped as `rejects`. The server stores and seals what it sends,
and moves the execution on to validation once every shard of the stage is done. Turn off the
built-in standardization workers (leave `stage_standardization` out of `mcp-worker --stages`
or `MCP_EMBEDDED_CAPABILITIES`) so that every shard comes here.
"""

import json
import os
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.request

BASE = os.environ.get("MCP_URL", "http://localhost:5001").rstrip("/")
AGENT_ID = os.environ.get("MCP_AGENT_ID", "")
AGENT_KEY = os.environ.get("MCP_AGENT_KEY", "")
SHARDS = int(os.environ.get("MCP_STAGE_SHARDS", "0"))  # 0: run until stopped
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "5"))
PROGRESS_EVERY_RECORDS = 1000
PROGRESS_EVERY_SECONDS = 1.0

AUTH = {"authorization": f"Agent {AGENT_KEY}"}


class ApiError(Exception):
    def __init__(self, status, body):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code")
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


def request(method, path, body=None, headers=None, timeout=60):
    """Opens a request; raises ApiError for an error envelope."""
    req = urllib.request.Request(
        BASE + path, data=body, headers={**AUTH, **(headers or {})}, method=method
    )
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = raw.decode(errors="replace")
        raise ApiError(e.code, parsed) from None


def call(method, path, body=None, timeout=60):
    """A JSON call; returns (status, data)."""
    data = json.dumps(body).encode() if body is not None else None
    with request(method, path, data, {"content-type": "application/json"}, timeout) as resp:
        raw = resp.read()
        return resp.status, (json.loads(raw)["data"] if raw else None)


class Heartbeat(threading.Thread):
    """Beats every HEARTBEAT_SECONDS, so the agent stays `active` while it works."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                call("POST", f"/api/v1/agents/{AGENT_ID}/heartbeat", {})
            except (ApiError, OSError) as e:
                print(f"heartbeat failed: {e}", file=sys.stderr)


# --- the stage itself: raw record -> canonical record ------------------------------------

QA_KEYS = [("question", "answer"), ("prompt", "response"), ("instruction", "output"), ("input", "output")]
ROLES = {
    "human": "user", "user": "user", "patient": "user", "customer": "user",
    "gpt": "assistant", "bot": "assistant", "assistant": "assistant", "ai": "assistant",
    "model": "assistant", "chatgpt": "assistant",
    "system": "system", "client": "client",
    "therapist": "therapist", "counselor": "therapist", "counsellor": "therapist",
}


class Reject(Exception):
    pass


def text(value):
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def messages_from(items, role_key, content_key):
    out = []
    for i, m in enumerate(items, 1):
        role = m.get(role_key) if isinstance(m, dict) else None
        content = text(m.get(content_key)) if isinstance(m, dict) else None
        if not isinstance(role, str) or content is None:
            raise Reject(f"message {i} lacks a string `{role_key}` or `{content_key}`")
        name = role.strip().lower()
        out.append({"role": ROLES.get(name, name), "content": content})
    return out


def standardize(raw, line, default_source):
    """Chat (`messages`), ShareGPT (`conversations`) or a question/answer pair -> canonical."""
    if isinstance(raw.get("messages"), list):
        messages = messages_from(raw["messages"], "role", "content")
    elif isinstance(raw.get("conversations"), list):
        messages = messages_from(raw["conversations"], "from", "value")
    else:
        pair = next(((q, a) for q, a in QA_KEYS if q in raw and a in raw), None)
        if pair is None:
            raise Reject("unrecognised record shape: expected `messages`, `conversations`, "
                         "or a question/answer pair")
        q, a = pair
        question, answer = text(raw[q]), text(raw[a])
        if question is None or answer is None:
            raise Reject(f"`{q}` or `{a}` is not text")
        extra = text(raw.get("input")) if q == "instruction" else None
        if extra:
            question = f"{question}\n\n{extra}"
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    source = text(raw.get("source")) or default_source
    rid = raw.get("id")
    if isinstance(rid, str) and rid.strip():
        rid = rid.strip()
    elif isinstance(rid, (int, float)) and not isinstance(rid, bool):
        rid = str(rid)
    else:
        rid = f"{source}:{line}"
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    metadata = {**metadata, "standardized_by": "stage_agent.py"}
    return {"id": rid, "source": source, "messages": messages, "metadata": metadata}


# --- one shard --------------------------------------------------------------------------

def run_shard(task):
    tid = task["id"]
    stage = task.get("stage")
    if stage != "standardization":
        call("POST", f"/api/v1/tasks/{tid}/fail",
             {"error": f"this agent runs standardization, not {stage}", "retryable": True})
        return False
    source = f"execution-{task['execution_id'][:8]}"
    done = 0
    total = 0
    rejects = []
    last_report = time.monotonic()

    def report():
        nonlocal last_report
        last_report = time.monotonic()
        call("POST", f"/api/v1/tasks/{tid}/progress",
             {"progress": min(99, done * 100 // max(total, 1)), "records_done": done,
              "message": f"{done} records standardized"})

    def records():
        """Reads the input line by line and yields output lines: nothing is held whole."""
        nonlocal done, total
        with request("GET", f"/api/v1/tasks/{tid}/shard/input", timeout=300) as resp:
            total = int(resp.headers.get("x-records-total", "0"))
            for raw_line in resp:
                if not raw_line.strip():
                    continue
                item = json.loads(raw_line)
                done += 1
                try:
                    record = standardize(item["raw"], item["line"], source)
                    yield (json.dumps(record, ensure_ascii=False) + "\n").encode()
                except Reject as reason:
                    rejects.append({"line": item["line"], "reason": str(reason),
                                    "kind": "unrecognised"})
                if done % PROGRESS_EVERY_RECORDS == 0 or \
                        time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                    report()

    # An iterable body without a length goes out with chunked transfer encoding.
    with request("PUT", f"/api/v1/tasks/{tid}/shard/output", records(),
                 {"content-type": "application/x-ndjson"}, timeout=300) as resp:
        stored = json.loads(resp.read())["data"]
    report()
    call("POST", f"/api/v1/tasks/{tid}/complete",
         {"result": {"records_in": done, "records_out": stored["records"], "rejects": rejects}})
    print(f"standardized shard {task['payload'].get('shard')} of execution "
          f"{task['execution_id']}: {done} records in, {stored['records']} out, "
          f"{len(rejects)} rejected", flush=True)
    return True


def main():
    if not AGENT_ID or not AGENT_KEY:
        sys.exit("set MCP_AGENT_ID and MCP_AGENT_KEY (from POST /api/v1/agents/register)")
    beat = Heartbeat()
    beat.start()
    print(f"stage agent {AGENT_ID} serving standardization at {BASE}", flush=True)
    ran = 0
    try:
        while SHARDS == 0 or ran < SHARDS:
            status, task = call("POST", f"/api/v1/agents/{AGENT_ID}/tasks/claim?wait_ms=10000",
                                timeout=40)
            if status == 204 or task is None:
                continue
            try:
                if run_shard(task):
                    ran += 1
            except (ApiError, OSError, ValueError) as e:
                # Report and keep serving: the task is retried (here or elsewhere).
                print(f"shard {task['id']} failed: {e}", file=sys.stderr, flush=True)
                try:
                    call("POST", f"/api/v1/tasks/{task['id']}/fail",
                         {"error": str(e)[:1000], "retryable": True})
                except (ApiError, OSError) as again:
                    print(f"could not report the failure: {again}", file=sys.stderr)
    finally:
        beat.stop.set()
    print(f"stage_agent.py: OK ({ran} shards)", flush=True)


if __name__ == "__main__":
    main()
