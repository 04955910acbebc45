#!/usr/bin/env bash
# Runs rlmd's whole test suite on a fresh machine (installing what it needs: scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

# The tests run the real sandbox, which needs root or the capabilities to switch users.
if [[ "$(id -u)" -ne 0 ]]; then
  host="$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')"
  export "CARGO_TARGET_${host}_RUNNER=$PWD/scripts/with-capabilities.sh"
fi

exec cargo test --locked "$@"
