#!/usr/bin/env bash
# A cargo runner for a user other than root (set by scripts/test.sh): the REPL sandbox gives
# each REPL a user id of its own, which takes the capabilities to switch users. This grants
# them (through sudo) to the test binary about to run and to the rlmd binary that tests
# start as a server, then runs the test. REPL children get none: they run under
# no_new_privs, which ignores file capabilities.
set -euo pipefail
capabilities="cap_setuid,cap_setgid,cap_chown,cap_kill,cap_dac_override,cap_fowner+ep"
binary="$1"
server="$(dirname "$binary")/../rlmd"
for file in "$binary" "$server"; do
  if [[ -f "$file" ]] && ! getcap "$file" 2>/dev/null | grep -q cap_setuid; then
    sudo setcap "$capabilities" "$file"
  fi
done
exec "$@"
