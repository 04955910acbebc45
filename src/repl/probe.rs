//! The sandbox self-check run at start-up: one REPL child reports what confines it, and
//! the server reports that in its log and at `/readyz`. What the sandbox found available
//! but the child does not show enforced stops every REPL from starting (fail closed). It
//! also proves early that Python starts at all (a missing libpython is an error at start,
//! not at the first run).

use std::time::Duration;

use serde_json::Value;

use super::{Host, HostCall, ReplProcess, Sandbox};

const PROBE: &str = r#"
import json, os, resource, socket, sys
status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)
def refused(family):
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        return False
    except OSError:
        return True
network = 'blocked' if refused(socket.AF_INET) and refused(socket.AF_INET6) else 'open'
unix_sockets = 'blocked' if refused(socket.AF_UNIX) else 'open'
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
    'unix_sockets': unix_sockets,
    'filesystem': filesystem,
    'capabilities_dropped': int(status.get('CapEff', '0').strip() or '0', 16) == 0,
    'python': sys.version.split()[0],
    'memory_limit_bytes': resource.getrlimit(resource.RLIMIT_AS)[0],
    'file_size_limit_bytes': resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    'open_files_limit': resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    'process_limit': resource.getrlimit(resource.RLIMIT_NPROC)[0],
    'uid': os.getuid(),
}))
"#;

struct NoModels;

impl Host for NoModels {
    async fn call(&self, _: HostCall) -> Result<Value, String> {
        Err("the sandbox probe makes no model calls".into())
    }
}

/// Starts a REPL child and asks it what it can and cannot do. The report is the
/// sandbox's own (mode, features, limits) with what the child observed under `observed`.
pub async fn probe(sandbox: &Sandbox) -> Result<Value, String> {
    if let Some(why) = sandbox.refusal() {
        return Err(why);
    }
    let config = &sandbox.config;
    let dir = config
        .scratch_root
        .join(format!("probe-{}", std::process::id()));
    let observed = async {
        let mut repl = ReplProcess::spawn(sandbox, &dir.join("work"), &dir.join("repl-stderr.log"))
            .map_err(|e| e.to_string())?;
        let context = crate::contexts::ContextFile::empty().map_err(|e| e.to_string())?;
        repl.init(&context, &[]).await.map_err(|e| e.to_string())?;
        let outcome = repl
            .exec(PROBE, 100_000, Duration::from_secs(30), &NoModels)
            .await
            .map_err(|e| e.to_string())?;
        repl.kill().await;
        if let Some(error) = outcome.error {
            return Err(format!("the probe failed in Python: {error}"));
        }
        serde_json::from_str::<Value>(outcome.stdout.trim()).map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let observed = observed?;
    let unenforced = unenforced(sandbox, &observed);
    if !unenforced.is_empty() {
        let why = format!(
            "the sandbox self-check found confinement not enforced: {}",
            unenforced.join(", ")
        );
        sandbox.refuse(why.clone());
        return Err(why);
    }
    let mut report = sandbox.report();
    report["observed"] = observed;
    Ok(report)
}

/// What the sandbox applies but the child did not show.
fn unenforced(sandbox: &Sandbox, observed: &Value) -> Vec<&'static str> {
    let features = sandbox.features;
    let mut missing = Vec::new();
    let is = |key: &str, value: Value| observed[key] == value;
    if !is("no_new_privs", Value::Bool(true)) {
        missing.push("no_new_privs");
    }
    if !is("capabilities_dropped", Value::Bool(true)) {
        missing.push("capabilities");
    }
    if features.landlock_abi > 0 && !is("filesystem", "restricted".into()) {
        missing.push("landlock");
    }
    if features.seccomp
        && !(is("seccomp", Value::Bool(true))
            && is("network", "blocked".into())
            && is("unix_sockets", "blocked".into()))
    {
        missing.push("seccomp");
    }
    // SAFETY: getuid cannot fail.
    let server_uid = unsafe { libc::getuid() };
    if features.separate_users
        && (observed["uid"] == server_uid
            || observed["process_limit"] != sandbox.config.max_processes)
    {
        missing.push("separate_users");
    }
    missing
}
