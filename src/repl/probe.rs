//! The sandbox self-check run at start-up: one REPL child reports what confines it, and
//! the server reports that in its log and at `/readyz`. It also proves early that Python
//! starts at all (a missing libpython is an error at start, not at the first run).

use std::time::Duration;

use serde_json::Value;

use super::{Host, HostCall, ReplProcess};
use crate::config::SandboxConfig;

const PROBE: &str = r#"
import json, os, resource, socket, sys
status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    network = 'open'
except OSError:
    network = 'blocked'
try:
    os.listdir('/')
    filesystem = 'open'
except OSError:
    filesystem = 'restricted'
print(json.dumps({
    'environment': sorted(os.environ),
    'no_new_privs': status.get('NoNewPrivs', '').strip() == '1',
    'seccomp': status.get('Seccomp', '').strip() == '2',
    'network': network,
    'filesystem': filesystem,
    'capabilities_dropped': int(status.get('CapEff', '0').strip() or '0', 16) == 0,
    'python': sys.version.split()[0],
    'memory_limit_bytes': resource.getrlimit(resource.RLIMIT_AS)[0],
    'file_size_limit_bytes': resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    'open_files_limit': resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    'uid': os.getuid(),
}))
"#;

struct NoModels;

impl Host for NoModels {
    async fn call(&self, _: HostCall) -> Result<Value, String> {
        Err("the sandbox probe makes no model calls".into())
    }
}

/// Starts a REPL child and asks it what it can and cannot do.
pub async fn probe(config: &SandboxConfig) -> Result<Value, String> {
    let dir = config
        .scratch_root
        .join(format!("probe-{}", std::process::id()));
    let result = async {
        let mut repl = ReplProcess::spawn(config, &dir.join("work"), &dir.join("repl-stderr.log"))
            .map_err(|e| e.to_string())?;
        repl.init("\"\"", &[]).await.map_err(|e| e.to_string())?;
        let outcome = repl
            .exec(PROBE, 100_000, Duration::from_secs(30), &NoModels)
            .await
            .map_err(|e| e.to_string())?;
        repl.kill().await;
        if let Some(error) = outcome.error {
            return Err(format!("the probe failed in Python: {error}"));
        }
        serde_json::from_str(outcome.stdout.trim()).map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}
