//! `rlmd submit|runs|show|cancel|export`: a command-line client of a running rlmd, at
//! `RLMD_URL` (default http://127.0.0.1:8080) with `RLMD_API_KEY`. It speaks only the
//! public HTTP API.

mod client;
mod follow;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use client::{CliError, Client};

/// Where the server is, for every client command.
#[derive(Debug, Args)]
pub struct Server {
    /// rlmd's base URL.
    #[arg(
        long,
        env = "RLMD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// An API key, when the server requires one.
    #[arg(long, env = "RLMD_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit a run; with --follow, show its progress and print its answer.
    Submit(Submit),
    /// List runs, newest first.
    Runs {
        /// Only runs in this status (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a run (the API's JSON).
    Show { id: String },
    /// Cancel a run.
    Cancel { id: String },
    /// Print a run's whole trajectory.
    Export {
        id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// rlmd's trajectory JSON, children nested.
    Json,
    /// JSON Lines as the `rlms` logger writes them (its visualizer opens them).
    Rlms,
}

#[derive(Debug, Args)]
pub struct Submit {
    /// The question.
    prompt: String,
    /// A file whose text is the run's context (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    context_file: Option<String>,
    /// Read the context file as JSON (a list or an object) instead of text.
    #[arg(long, requires = "context_file")]
    json_context: bool,
    /// The root model's provider (default: the server's).
    #[arg(long)]
    provider: Option<String>,
    /// The root model (default: the provider's).
    #[arg(long)]
    model: Option<String>,
    /// The model of sub-calls and child runs.
    #[arg(long)]
    sub_model: Option<String>,
    /// Turns the root model gets.
    #[arg(long)]
    max_iterations: Option<u32>,
    /// How deep child runs may nest.
    #[arg(long)]
    max_depth: Option<u32>,
    /// Show progress until the run ends, then print its answer.
    #[arg(long)]
    follow: bool,
}

/// Runs a client command; the exit code is 0 only when it did what was asked (for
/// `submit --follow`: the run succeeded).
pub async fn run(command: ClientCommand, server: Server) -> ExitCode {
    let client = Client::new(&server.url, server.api_key);
    match execute(command, &client).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rlmd: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: ClientCommand, client: &Client) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::Submit(submit) => submit_run(submit, client).await,
        ClientCommand::Runs {
            status,
            limit,
            json,
        } => {
            let mut path = format!("/v1/runs?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let page = client.json(Method::GET, &path, None).await?;
            if json {
                println!("{}", pretty(&page));
            } else {
                print_table(&page["runs"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Show { id } => {
            let run = client.json(Method::GET, &run_path(&id)?, None).await?;
            println!("{}", pretty(&run));
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Cancel { id } => {
            let path = format!("{}/cancel", run_path(&id)?);
            let run = client.json(Method::POST, &path, None).await?;
            println!(
                "{} {}",
                run["id"].as_str().unwrap_or(&id),
                run["status"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Export { id, format } => {
            let mut path = format!("{}/trajectory", run_path(&id)?);
            if let ExportFormat::Rlms = format {
                path.push_str("?format=rlms");
            }
            let text = client.text(&path).await?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn submit_run(submit: Submit, client: &Client) -> Result<ExitCode, CliError> {
    let mut body = json!({"prompt": submit.prompt});
    if let Some(file) = &submit.context_file {
        let bytes = if file == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
        } else {
            std::fs::read(file)
        }
        .map_err(|e| CliError::Other(format!("cannot read {file}: {e}")))?;
        // Uploaded, not pasted into the body: a context may be larger than a request body
        // may be, and the same file sent again is stored once.
        let format = if submit.json_context { "json" } else { "text" };
        let uploaded = client
            .upload(&format!("/v1/contexts?format={format}"), bytes)
            .await?;
        body["context_id"] = uploaded["id"].clone();
    }
    let options = [
        ("provider", submit.provider.map(Value::from)),
        ("model", submit.model.map(Value::from)),
        ("sub_model", submit.sub_model.map(Value::from)),
        ("max_iterations", submit.max_iterations.map(Value::from)),
        ("max_depth", submit.max_depth.map(Value::from)),
    ];
    for (name, value) in options {
        if let Some(value) = value {
            body[name] = value;
        }
    }
    let run = client
        .json(Method::POST, "/v1/runs", Some(body.to_string()))
        .await?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if !submit.follow {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("run {id}");
    follow::follow(client, &id).await?;
    let run = client.json(Method::GET, &run_path(&id)?, None).await?;
    if run["status"] == "succeeded" {
        println!("{}", run["answer_text"].as_str().unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let error = &run["error"];
    eprintln!(
        "rlmd: run {id} {}: {} {}",
        run["status"].as_str().unwrap_or("ended"),
        error["code"].as_str().unwrap_or(""),
        error["message"].as_str().unwrap_or("")
    );
    if let Some(partial) = run["answer_text"].as_str().filter(|a| !a.is_empty()) {
        eprintln!("partial answer:\n{partial}");
    }
    Ok(ExitCode::FAILURE)
}

/// `/v1/runs/{id}`, with an id that cannot change the path.
fn run_path(id: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CliError::Other(format!("{id:?} is not a run id")));
    }
    Ok(format!("/v1/runs/{id}"))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn print_table(runs: &Value) {
    println!(
        "{:<36}  {:<9}  {:<24}  {:>4}  {:>9}  {:>9}  PROMPT",
        "ID", "STATUS", "MODEL", "ITER", "TOKENS", "COST"
    );
    for run in runs.as_array().into_iter().flatten() {
        let preview: String = run["prompt_preview"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(50)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        println!(
            "{:<36}  {:<9}  {:<24}  {:>4}  {:>9}  {:>9}  {preview}",
            run["id"].as_str().unwrap_or_default(),
            run["status"].as_str().unwrap_or_default(),
            format!(
                "{}/{}",
                run["provider"].as_str().unwrap_or_default(),
                run["model"].as_str().unwrap_or_default()
            ),
            run["iterations"],
            run["usage"]["total_tokens"],
            format!("${:.4}", run["cost_usd"].as_f64().unwrap_or(0.0)),
        );
    }
}
