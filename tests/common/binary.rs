//! The real `rlmd serve` binary in a child process, for what only a process shows: its
//! log, its signals, its restarts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{FakeModel, TEST_API_KEY};

/// The real `rlmd serve`, its address, and its log so far.
pub struct Server {
    process: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
    /// Reads the log until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts it in `dir` (its database and scratch live there), with `vars` on top of
    /// the test defaults.
    pub fn start(dir: &Path, model: &FakeModel, vars: &[(&str, &str)]) -> Server {
        let mut process = Command::new(env!("CARGO_BIN_EXE_rlmd"))
            .arg("serve")
            .env("RLM_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", super::database::fresh_url(dir))
            .env("RLM_SCRATCH_DIR", dir.join("scratch"))
            .env("RLM_CONTEXT_CACHE_DIR", dir.join("contexts"))
            .env("OPENAI_API_KEY", TEST_API_KEY)
            .env("OPENAI_BASE_URL", &model.base_url)
            .env("RLM_PROVIDER_MAX_RETRIES", "0")
            .env("RLM_WORKERS", "4")
            .env("RLM_POLL_INTERVAL_S", "0.2")
            .envs(vars.iter().copied())
            .current_dir(dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(process.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let address = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "the server exited: {}",
                log.lock().unwrap()
            );
            log.lock().unwrap().push_str(&line);
            if let Some(at) = line.find("address=") {
                break line[at + "address=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
            }
        };
        // Keep reading, so the server never blocks on a full pipe.
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Server {
            process,
            base: format!("http://{address}"),
            log,
            reader: Some(reader),
        }
    }

    /// SIGTERM, then waits for the process to exit by itself; its whole log.
    pub fn terminate(mut self) -> String {
        // SAFETY: kill with the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                assert!(status.success(), "rlmd exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "rlmd did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> Value {
        serde_json::from_str(&self.text(path).await).unwrap()
    }

    /// The body of a GET, as it came.
    pub async fn text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls a run until it ends (90 s at most); the run as it ended.
    pub async fn wait_for_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let run = self.get(&format!("/v1/runs/{id}")).await;
            let status = run["status"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "cancelled"].contains(&status) {
                return run;
            }
            assert!(Instant::now() < deadline, "the run did not end: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits a run; its id.
    pub async fn submit(&self, body: &Value) -> String {
        let run: Value = reqwest::Client::new()
            .post(format!("{}/v1/runs", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        run["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
