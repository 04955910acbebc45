#!/usr/bin/env bash
# Builds and starts the service on a fresh machine (installing what it needs: scripts/deps.sh).
# Arguments go to `rlmd serve`; configuration comes from the environment and ./.env.
#
# The REPL sandbox gives each REPL a user id of its own, which takes root or the
# capabilities to switch users. Run as another user, this script grants the built binary
# just those capabilities (through sudo, like the package install): the REPL children it
# starts get none (they run under no_new_privs). Set RLM_SANDBOX=best_effort to skip that
# and run REPLs with only what an unprivileged server can apply.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

cargo build --release --locked --bin rlmd
binary=target/release/rlmd
if [[ "$(id -u)" -ne 0 && "${RLM_SANDBOX:-strict}" != "best_effort" ]]; then
  capabilities="cap_setuid,cap_setgid,cap_chown,cap_kill,cap_dac_override,cap_fowner+ep"
  if ! getcap "$binary" 2>/dev/null | grep -q cap_setuid; then
    echo "granting $binary the capabilities to give each REPL its own user id (sudo setcap)"
    sudo setcap "$capabilities" "$binary"
  fi
fi
exec "$binary" serve "$@"
