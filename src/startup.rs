//! Builds the application from its configuration: store, providers, workers, HTTP server.
//! Tests boot the very same `Application` on port 0.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, Auth};
use crate::config::{AuthMode, Config, SandboxMode};
use crate::contexts::ContextCache;
use crate::engine::{Engine, SessionRepls};
use crate::events::EventBus;
use crate::providers::{PriceError, PriceTable, Providers};
use crate::repl::Sandbox;
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
    #[error("could not create the directory {path}: {source}")]
    Scratch {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {0} without an API key: anyone who reaches it could run code \
         and spend the providers' credit. Create a key with `rlmd keys create NAME`, listen on \
         a loopback address, or set RLM_AUTH=off to serve without authentication"
    )]
    NoKeys(std::net::SocketAddr),
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
        let auth = Auth::new(&config.auth);
        check_exposure(&config, &store).await?;
        let providers = Providers::from_config(&config)?;
        crate::metrics::get().prime(providers.configured());
        let prices = Arc::new(PriceTable::with_overrides(config.prices_file.as_deref())?);
        let scratch = &config.sandbox.scratch_root;
        std::fs::create_dir_all(scratch).map_err(|source| StartupError::Scratch {
            path: scratch.display().to_string(),
            source,
        })?;
        let contexts = ContextCache::new(
            store.clone(),
            config.contexts.cache_dir.clone(),
            config.contexts.cache_bytes,
        )
        .map_err(|source| StartupError::Scratch {
            path: config.contexts.cache_dir.display().to_string(),
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
        let repl_sandbox = Arc::new(Sandbox::prepare(config.sandbox.clone()));
        let sandbox = match crate::repl::probe(&repl_sandbox).await {
            Ok(report) => {
                if config.sandbox.mode == SandboxMode::BestEffort {
                    tracing::warn!(%report, "RLM_SANDBOX=best_effort: REPLs run with only what this host offers");
                } else {
                    tracing::info!(%report, "sandbox checked");
                }
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
            sandbox: repl_sandbox,
            default_context_window: config.default_context_window,
            sessions: sessions.clone(),
            contexts: contexts.clone(),
            cache: config.defaults.cache.clone(),
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
                max_running_per_key: config.auth.max_concurrent_runs,
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
            auth: Arc::new(auth),
            contexts,
            max_context_bytes: config.contexts.max_upload_bytes,
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
        let signals = match self.state.store.signals().await {
            Ok(signals) => signals,
            Err(error) => {
                // Polling still finds everything, only later.
                tracing::warn!(%error, "cannot listen to other nodes; falling back to polling");
                None
            }
        };
        self.pool.spawn(&tracker, shutdown.clone(), signals);
        let webhooks = crate::webhooks::Dispatcher {
            store: self.state.store.clone(),
            bus: self.state.bus.clone(),
            policy: Arc::new(self.config.defaults.webhooks.clone()),
        };
        webhooks.spawn(&tracker, shutdown.clone());
        tracing::info!(address = %self.listener.local_addr()?, workers = self.config.workers, "rlmd is serving");
        let router = api::router(
            self.state.clone(),
            self.config.max_body_bytes,
            &self.config.auth.cors_origins,
        );
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

/// Secure by default: without a key, only loopback may be served, unless the operator
/// turned authentication off, which is logged.
async fn check_exposure(config: &Config, store: &Store) -> Result<(), StartupError> {
    let keys_exist = store.any_key_exists().await?;
    if config.auth.mode == AuthMode::Off {
        tracing::warn!(
            bind = %config.bind,
            keys_ignored = keys_exist,
            "RLM_AUTH=off: the API accepts every request without a key"
        );
        return Ok(());
    }
    if !keys_exist && !config.bind.ip().is_loopback() {
        return Err(StartupError::NoKeys(config.bind));
    }
    if !keys_exist {
        tracing::info!("no API key exists yet: the API is open (on loopback only)");
    }
    Ok(())
}
