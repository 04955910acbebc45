use std::process::ExitCode;

use clap::{Parser, Subcommand};

use rlmd::config::Config;
use rlmd::startup::Application;

#[derive(Parser)]
#[command(
    name = "rlmd",
    version,
    about = "Recursive Language Model tasks as durable jobs behind an HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: rlmd::cli::Server,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and its workers (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage API keys (in the database at DATABASE_URL).
    Keys {
        #[command(subcommand)]
        command: rlmd::keys::KeysCommand,
    },
    #[command(flatten)]
    Client(rlmd::cli::ClientCommand),
    /// The process sandboxed Python REPLs are forked from; started by the server, never
    /// by hand.
    #[command(hide = true)]
    Zygote,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Zygote) = cli.command {
        // No tokio, no tracing, no configuration: the zygote knows nothing but its socket.
        return ExitCode::from(rlmd::repl::zygote::run() as u8);
    }
    if let Some(Command::Client(command)) = cli.command {
        // A client of a server elsewhere: none of the server's configuration applies.
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        return runtime.block_on(rlmd::cli::run(command, cli.server));
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("rlmd: {error}");
            return ExitCode::from(2);
        }
    };
    rlmd::telemetry::init(&config.log_filter);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Migrate) => {
                rlmd::store::Store::connect(&config.database_url).await?;
                tracing::info!("database is up to date");
                Ok(())
            }
            Some(Command::Keys { command }) => {
                let store = rlmd::store::Store::connect(&config.database_url).await?;
                let output = rlmd::keys::run(command, &store).await;
                store.close().await;
                println!("{}", output?);
                Ok(())
            }
            _ => serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("rlmd: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::build(config).await?;
    let shutdown = app.shutdown_token();
    let running = app.run_until_stopped();
    tokio::pin!(running);
    tokio::select! {
        served = &mut running => return Ok(served?),
        _ = wait_for_signal() => {
            tracing::info!("shutdown signal received; draining");
            shutdown.cancel();
        }
    }
    running.await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
