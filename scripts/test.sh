#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine with only Rust, it first installs what the
# black-box tests start for real: redis-server, PostgreSQL, Chromium (Debian packages) and the
# Kubernetes manifest validator (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v node >/dev/null 2>&1 || missing+=(nodejs)  # runs docs/examples/client.mjs
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  python3 -m pip install -q "moto[server]" >/dev/null 2>&1 \
    || echo "note: moto could not be installed; the S3 artifact-store test will fail"
fi
if ! python3 -c 'import schemathesis, sys; sys.exit(schemathesis.__version__ != "4.32.5")' >/dev/null 2>&1; then
  python3 -m pip install -q "schemathesis==4.32.5" >/dev/null 2>&1 \
    || echo "note: schemathesis could not be installed; the API fuzz test will fail"
fi
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 \
    || echo "note: kubernetes-validate could not be installed; the manifest test will fail"
fi

# The black-box tests run the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
