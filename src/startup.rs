//! Builds the application from its configuration: store, providers, workers, HTTP server.
//! Tests boot the very same `Application` on port 0.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::{Engine, SessionRepls};
use crate::events::EventBus;
use crate::providers::{PriceError, PriceTable, Providers};
use crate::store::{Store, StoreError};
use crate::worker::{RunningJobs, StopReason, WorkerPool, WorkerSettings};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not open the database: {0}")]
    Store(#[from] StoreError),
    #[error("could not build the provider clients: {0}")]
    Providers(#[from] reqwest::Error),
    #[error(transparent)]
    Prices(#[from] PriceError),
    #[error("could not listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("could not create the scratch directory {path}: {source}")]
    Scratch {
        path: String,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    pool: WorkerPool,
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        crate::repl::protect_server_process();
        let store = Store::connect(&config.database_url).await?;
        let providers = Providers::from_config(&config)?;
        let prices = Arc::new(PriceTable::with_overrides(config.prices_file.as_deref())?);
        let scratch = &config.sandbox.scratch_root;
        std::fs::create_dir_all(scratch).map_err(|source| StartupError::Scratch {
            path: scratch.display().to_string(),
            source,
        })?;
        match crate::engine::sweep_scratch(&store, scratch).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed stale scratch directories"),
            Err(error) => tracing::warn!(%error, "could not sweep the scratch directory"),
        }
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    address: config.bind.to_string(),
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: config.bind.to_string(),
                source,
            })?
            .port();
        let sandbox = match crate::repl::probe(&config.sandbox).await {
            Ok(report) => {
                tracing::info!(%report, "sandbox checked");
                Ok(report)
            }
            Err(error) => {
                tracing::error!(%error, "the REPL sandbox does not start; runs will fail");
                Err(error)
            }
        };
        let bus = EventBus::new(4096);
        let jobs = RunningJobs::default();
        let wake = Arc::new(Notify::new());
        let sessions = SessionRepls::default();
        let engine = Engine {
            store: store.clone(),
            bus: bus.clone(),
            providers: providers.clone(),
            prices: prices.clone(),
            sandbox: Arc::new(config.sandbox.clone()),
            default_context_window: config.default_context_window,
            sessions: sessions.clone(),
        };
        let pool = WorkerPool::new(
            engine,
            jobs.clone(),
            wake.clone(),
            WorkerSettings {
                workers: config.workers,
                lease_ttl: config.lease_ttl,
                max_attempts: config.max_attempts,
                poll_interval: config.poll_interval,
            },
        );
        let state = AppState {
            store,
            bus,
            providers,
            prices,
            defaults: Arc::new(config.defaults.clone()),
            jobs,
            wake,
            shutdown: CancellationToken::new(),
            sessions,
            session_idle_timeout: config.session_idle_timeout,
            sandbox: Arc::new(sandbox),
        };
        Ok(Self {
            listener,
            port,
            state,
            pool,
            config,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token shuts the application down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until the shutdown token fires, then stops claiming, lets running jobs end
    /// within the grace period, hands the rest back to the queue, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.state.shutdown.clone();
        let tracker = TaskTracker::new();
        self.pool.spawn(&tracker, shutdown.clone());
        tracing::info!(address = %self.listener.local_addr()?, workers = self.config.workers, "rlmd is serving");
        let router = api::router(self.state.clone(), self.config.max_body_bytes);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::info!("grace period over; handing running jobs back to the queue");
            self.state.jobs.stop_all(StopReason::Shutdown);
            tracker.wait().await;
        }
        self.state.store.close().await;
        tracing::info!("rlmd stopped");
        served
    }
}
