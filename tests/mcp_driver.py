"""Drives TechDeck MCP's /mcp endpoint with the official MCP Python SDK (`mcp` on PyPI).

Run by the black-box tests (tests/mcp.rs) from the test virtual environment:

    python -m mcp_driver URL AUTHORIZATION STEPS_JSON

Each run is a fresh client and connection (the server keeps no session). STEPS_JSON is a list
of steps; the script prints one JSON document: {"protocol_version", "results": [...]}, one
result per step. Steps:

    {"op": "tools"}                                  -> tool names
    {"op": "tool_schemas"}                           -> {name: inputSchema}
    {"op": "call", "tool": N, "args": {...}}         -> {"is_error", "structured", "text"}
        with "progress": true, also the progress notifications received: "progress": [...]
    {"op": "call_task", "tool": N, "args": {...}}    -> the task handle (tasks extension)
    {"op": "task_get", "id": ID}                     -> tasks/get result, or {"error": ...}
    {"op": "task_cancel", "id": ID}                  -> {} or {"error": ...}
    {"op": "follow", "id": ID, "timeout": S}         -> polls tasks/get until a terminal status:
                                                        {"statuses": [...], "final": {...}}
    {"op": "resources"} / {"op": "templates"}        -> uris
    {"op": "read", "uri": U}                         -> the resource's JSON, or {"error": ...}
    {"op": "prompts"} / {"op": "prompt", "name": N, "args": {...}}
    {"op": "listen", "uris": [...], "then": [steps], "timeout": S}
                                                     -> subscriptions/listen to the URIs, runs the
                                                        steps, then collects resource updates
                                                        until every honoured URI was updated:
                                                        {"honored", "then", "updated"}

With "tasks": false at the top ({"tasks": false, "steps": [...]}) the client does not declare
the tasks extension; with "mode": "legacy" it uses the 2025-11-25 `initialize` handshake.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Literal

import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, Field

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = {"completed", "failed", "cancelled"}


class TaskHandle(types.Result):
    """`CreateTaskResult`: what a tools/call answers when it became a durable task."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str


class TaskIdParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class AnyResult(types.Result):
    model_config = ConfigDict(extra="allow")


async def _unresolved(handle: TaskHandle, _ctx: ClaimContext) -> types.CallToolResult:
    raise RuntimeError("the test reads task handles itself (allow_claimed=True)")


class DurableTasks(ClientExtension):
    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=_unresolved)]


def _error(e: MCPError) -> dict[str, Any]:
    err = e.error
    return {"error": {"code": err.code, "message": err.message, "data": err.data}}


def _call_result(r: Any) -> dict[str, Any]:
    if isinstance(r, TaskHandle):
        return {"task": r.model_dump(by_alias=True, mode="json")}
    return {
        "is_error": bool(r.is_error),
        "structured": r.structured_content,
        "text": "".join(getattr(c, "text", "") for c in r.content),
    }


async def _task_get(session, task_id: str) -> dict[str, Any]:
    result = await session.send_request(GetTask(params=TaskIdParams(taskId=task_id)), AnyResult)
    return result.model_dump(by_alias=True, mode="json")


async def step(client: Client, s: dict[str, Any]) -> Any:
    session = client.session
    op = s["op"]
    try:
        if op == "tools":
            return [t.name for t in (await client.list_tools()).tools]
        if op == "tool_schemas":
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}
        if op == "call":
            await client.list_tools()
            progress: list[dict[str, Any]] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append({"progress": value, "total": total, "message": message})

            r = await session.call_tool(
                s["tool"],
                s.get("args", {}),
                progress_callback=on_progress if s.get("progress") else None,
                allow_claimed=True,
            )
            out = _call_result(r)
            if s.get("progress"):
                out["progress"] = progress
            return out
        if op == "call_task":
            await client.list_tools()
            r = await session.call_tool(s["tool"], s.get("args", {}), allow_claimed=True)
            return _call_result(r)
        if op == "task_get":
            return await _task_get(session, s["id"])
        if op == "task_cancel":
            await session.send_request(CancelTask(params=TaskIdParams(taskId=s["id"])), AnyResult)
            return {}
        if op == "follow":
            deadline = time.monotonic() + s.get("timeout", 60)
            statuses: list[str] = []
            while True:
                got = await _task_get(session, s["id"])
                if not statuses or statuses[-1] != got["status"]:
                    statuses.append(got["status"])
                if got["status"] in TERMINAL:
                    return {"statuses": statuses, "final": got}
                if time.monotonic() > deadline:
                    return {"statuses": statuses, "final": got, "timed_out": True}
                await asyncio.sleep(got.get("pollIntervalMs", 500) / 1000)
        if op == "resources":
            return [str(r.uri) for r in (await client.list_resources()).resources]
        if op == "templates":
            return [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        if op == "read":
            r = await client.read_resource(s["uri"])
            return json.loads(r.contents[0].text)
        if op == "listen":
            async with client.listen(resource_subscriptions=s["uris"]) as sub:
                honored = sorted(sub.honored.resource_subscriptions or [])
                wanted = set(honored)
                then = [await step(client, t) for t in s.get("then", [])]
                updated: list[str] = []
                try:
                    async with asyncio.timeout(s.get("timeout", 30)):
                        async for event in sub:
                            updated.append(str(getattr(event, "uri", type(event).__name__)))
                            if wanted <= set(updated):
                                break
                except TimeoutError:
                    pass
                return {"honored": honored, "then": then, "updated": updated}
        if op == "prompts":
            return [p.name for p in (await client.list_prompts()).prompts]
        if op == "prompt":
            r = await client.get_prompt(s["name"], s.get("args", {}))
            return {"text": "".join(getattr(m.content, "text", "") for m in r.messages)}
    except MCPError as e:
        return _error(e)
    raise ValueError(f"unknown step {op!r}")


async def main() -> None:
    url, authorization, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if isinstance(spec, list):
        spec = {"steps": spec}
    extensions = [DurableTasks()] if spec.get("tasks", True) else []
    http = create_mcp_http_client(headers={"Authorization": authorization})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(
            transport, extensions=extensions, cache=None, mode=spec.get("mode", "auto")
        ) as client:
            results = [await step(client, s) for s in spec["steps"]]
            print(json.dumps({"protocol_version": client.protocol_version, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
