#!/usr/bin/env bash
# Runs rlmd's whole test suite on a fresh machine (installing what it needs: scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

exec cargo test --locked "$@"
