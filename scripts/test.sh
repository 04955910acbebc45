#!/usr/bin/env bash
# Runs rlmd's whole test suite on a fresh machine (installing what it needs: scripts/deps.sh,
# and the real clients the tests drive: scripts/clients.sh),
# twice: on SQLite, then on PostgreSQL (scripts/postgres.sh starts the local server).
# Arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
source scripts/postgres.sh
source scripts/clients.sh

# The tests run the real sandbox, which needs root or the capabilities to switch users.
if [[ "$(id -u)" -ne 0 ]]; then
  host="$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')"
  export "CARGO_TARGET_${host}_RUNNER=$PWD/scripts/with-capabilities.sh"
fi

echo "== the suite on SQLite"
cargo test --locked "$@"
echo "== the suite on PostgreSQL"
RLMD_TEST_BACKEND=postgres cargo test --locked --test '*' "$@"
rlmd_drop_test_databases
