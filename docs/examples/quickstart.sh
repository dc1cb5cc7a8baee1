#!/bin/sh
# TechDeck MCP quickstart: log in, submit a task, follow it to the end, and see the error
# envelope and idempotent creation at work. Needs only curl and POSIX tools (no jq).
#
#   MCP_URL=http://localhost:5001 MCP_USERNAME=admin MCP_PASSWORD=... sh docs/examples/quickstart.sh
#
# Exits non-zero on the first thing that is not as documented.
set -eu

MCP_URL="${MCP_URL:-http://localhost:5001}"
MCP_URL="${MCP_URL%/}"
: "${MCP_USERNAME:?set MCP_USERNAME}"
: "${MCP_PASSWORD:?set MCP_PASSWORD}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-60}"

fail() {
    echo "quickstart: FAILED: $*" >&2
    exit 1
}

# Escapes a value for a JSON string (backslashes and double quotes).
json_escape() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

# The first string value of a field in a JSON document: `field NAME < body`.
# Good enough for the API's flat answers; use a JSON parser for anything more.
field() {
    grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d '"' -f 4
}

# request METHOD PATH [BODY]: sets STATUS and BODY.
BODY_FILE="$(mktemp)"
trap 'rm -f "$BODY_FILE"' EXIT
request() {
    if [ -n "${3:-}" ]; then
        STATUS=$(curl -sS -o "$BODY_FILE" -w '%{http_code}' -X "$1" "$MCP_URL$2" \
            -H "authorization: Bearer ${TOKEN:-}" -H 'content-type: application/json' \
            --data-binary "$3") || fail "$1 $2: could not reach $MCP_URL"
    else
        STATUS=$(curl -sS -o "$BODY_FILE" -w '%{http_code}' -X "$1" "$MCP_URL$2" \
            -H "authorization: Bearer ${TOKEN:-}") || fail "$1 $2: could not reach $MCP_URL"
    fi
    BODY="$(cat "$BODY_FILE")"
}

# 1. Liveness needs no credentials.
request GET /api/v1/health
[ "$STATUS" = 200 ] || fail "health answered $STATUS: $BODY"
echo "server is up: $BODY"

# 2. Log in: the access token goes in `Authorization: Bearer …`.
request POST /api/v1/auth/login \
    "{\"username\":\"$(json_escape "$MCP_USERNAME")\",\"password\":\"$(json_escape "$MCP_PASSWORD")\"}"
[ "$STATUS" = 200 ] || fail "login answered $STATUS: $BODY"
TOKEN="$(printf '%s' "$BODY" | field access_token)"
[ -n "$TOKEN" ] || fail "no access_token in $BODY"
echo "logged in as $MCP_USERNAME"

# 3. Submit a task. The idempotency key makes a retried submission return the same task.
KEY="quickstart-$(date +%s)-$$"
TASK="{\"type\":\"generic\",\"priority\":\"high\",\"payload\":{\"greeting\":\"hello from quickstart\"},\"idempotency_key\":\"$KEY\"}"
request POST /api/v1/tasks "$TASK"
[ "$STATUS" = 201 ] || fail "create answered $STATUS: $BODY"
TASK_ID="$(printf '%s' "$BODY" | field id)"
[ -n "$TASK_ID" ] || fail "no task id in $BODY"
echo "submitted task $TASK_ID (201 Created)"

request POST /api/v1/tasks "$TASK"
[ "$STATUS" = 200 ] || fail "the repeated submission answered $STATUS: $BODY"
[ "$(printf '%s' "$BODY" | field id)" = "$TASK_ID" ] || fail "the repeated submission made another task: $BODY"
echo "repeated the submission with the same idempotency key: 200, same task"

# 4. Follow it until it ends (poll with a deadline).
DEADLINE=$(( $(date +%s) + TIMEOUT_SECONDS ))
while :; do
    request GET "/api/v1/tasks/$TASK_ID/status"
    [ "$STATUS" = 200 ] || fail "status answered $STATUS: $BODY"
    STATE="$(printf '%s' "$BODY" | field status)"
    case "$STATE" in
        completed) break ;;
        dead|cancelled) fail "task ended $STATE: $BODY" ;;
    esac
    [ "$(date +%s)" -lt "$DEADLINE" ] || fail "task still $STATE after ${TIMEOUT_SECONDS}s: $BODY"
    sleep 0.2
done
echo "task $TASK_ID completed"

request GET "/api/v1/tasks/$TASK_ID"
case "$BODY" in
    *'"result":{"greeting":"hello from quickstart"}'*) echo "result: {\"greeting\":\"hello from quickstart\"}" ;;
    *) fail "unexpected task: $BODY" ;;
esac

# 5. Every error has the same envelope: a snake_case code, a message and the field at fault.
request POST /api/v1/tasks '{"type":"generic","priority":"urgent","payload":{}}'
[ "$STATUS" = 422 ] || fail "an invalid priority answered $STATUS: $BODY"
[ "$(printf '%s' "$BODY" | field code)" = validation_failed ] || fail "unexpected error: $BODY"
[ "$(printf '%s' "$BODY" | field field)" = priority ] || fail "the error does not name the field: $BODY"
echo "an invalid priority is refused: 422 validation_failed on field priority"

TOKEN=""
request GET /api/v1/tasks
[ "$STATUS" = 401 ] || fail "a request without a token answered $STATUS: $BODY"
echo "a request without a token is refused: 401 $(printf '%s' "$BODY" | field code)"

echo "quickstart: OK"
