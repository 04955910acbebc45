#!/usr/bin/env bash
# Builds and starts the service on a fresh machine (installing what it needs: scripts/deps.sh).
# Arguments go to `rlmd serve`; configuration comes from the environment and ./.env.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

exec cargo run --release --locked -- serve "$@"
