//! `tenure serve`: Tenure's HTTP service.
//!
//! [`app`] assembles the routes (today the SCIM 2.0 service provider at
//! `/scim/v2`; health, metrics and the REST API are meant to be nested
//! beside it); [`serve`] binds, prints the address, and serves plain HTTP or
//! TLS (rustls, ring) until SIGINT or SIGTERM, then finishes the requests in
//! flight.

use anyhow::{Context, Result};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tenure_engine::Engine;
use tenure_engine::scim::ScimService;
use tenure_scim::{ScimState, ServiceConfig};

/// Options of `tenure serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The public URL of the SCIM root, for `meta.location` (default: from the Host header).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Requests per second each token may make, sustained (0: no limit).
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Requests a token may make in a burst.
    #[arg(long, default_value_t = 200)]
    pub burst: u32,
    /// The largest request body, in bytes (bulk requests: see --bulk-max-payload).
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_body: usize,
    /// The most operations in one bulk request.
    #[arg(long, default_value_t = 1000)]
    pub bulk_max_operations: usize,
    /// The largest bulk request, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub bulk_max_payload: usize,
    /// Serve HTTP only: do not watch sources, plan, reconcile or execute the
    /// queue (another `tenure serve` or `tenure work` does).
    #[arg(long)]
    pub no_scheduler: bool,
}

/// `tenure scim …`: operator commands for the SCIM source.
#[derive(clap::Subcommand, Debug)]
pub enum ScimCommand {
    /// Let a SCIM client deactivate COUNT more people than the mass-change
    /// guard allows, for MINUTES (recorded in the audit log with your name).
    AllowDeactivations {
        /// How many more deactivations.
        #[arg(long)]
        count: u64,
        /// For how long.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
}

/// Runs a `tenure scim` command.
pub async fn scim_command(engine: &Engine, cmd: &ScimCommand) -> Result<()> {
    match cmd {
        ScimCommand::AllowDeactivations { count, minutes } => {
            let until = tenure_engine::scim::allow_deactivations(engine, *count, *minutes).await?;
            println!(
                "SCIM clients may deactivate {count} more people than the mass-change guard allows, until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            );
        }
    }
    Ok(())
}

/// Whether a SCIM source is configured (then `/scim/v2` is served).
fn scim_enabled(engine: &Engine) -> bool {
    engine
        .policy
        .config()
        .sources
        .iter()
        .any(|s| s.item.format == tenure_core::config::SourceFormat::Scim)
}

/// Every route of the service. `ready` is set once the scheduler finished its first round.
pub fn app(engine: Arc<Engine>, args: &ServeArgs, ready: Arc<AtomicBool>) -> Result<Router> {
    let ops = crate::ops::OpsState::new(Arc::clone(&engine), ready);
    let router = Router::new().merge(crate::ops::router(ops));
    if !scim_enabled(&engine) {
        // Nothing pushes people in over SCIM: the service still runs the lifecycle.
        return Ok(router);
    }
    let scim = ScimService::new(Arc::clone(&engine))?;
    let config = ServiceConfig {
        public_url: args.public_url.clone(),
        base_path: "/scim/v2".into(),
        tls: args.tls_cert.is_some(),
        max_body_bytes: args.max_body,
        bulk_max_operations: args.bulk_max_operations,
        bulk_max_payload: args.bulk_max_payload,
        requests_per_second: args.rate,
        burst: args.burst,
        ..ServiceConfig::default()
    };
    let state = ScimState::new(Arc::new(scim), config);
    Ok(router.nest("/scim/v2", tenure_scim::router(state)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The scheduler's loop: a round every `[service] tick` until `stop` says so.
/// A round in progress is finished first (its batches complete or their
/// leases expire for another process to take over).
async fn schedule(
    engine: Arc<Engine>,
    dispatcher: Option<tenure_notify::Dispatcher>,
    ready: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut scheduler = tenure_engine::service::Scheduler::new(&engine);
    if let Some(d) = dispatcher {
        scheduler = scheduler.with_dispatcher(d);
    }
    let tick = engine
        .policy
        .service()
        .tick
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(1));
    loop {
        let report = scheduler.tick().await;
        ready.store(true, Ordering::SeqCst);
        if !report.imported.is_empty()
            || report.planned > 0
            || !report.reconciled.is_empty()
            || report.executed.done + report.executed.failed > 0
            || report.notified > 0
        {
            tracing::info!(
                imported = report.imported.len(),
                planned = report.planned,
                reconciled = report.reconciled.len(),
                done = report.executed.done,
                failed = report.executed.failed,
                notified = report.notified,
                "scheduler round"
            );
        }
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(tick) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(engine: Engine, args: &ServeArgs) -> Result<()> {
    let engine = Arc::new(engine);
    let ready = Arc::new(AtomicBool::new(args.no_scheduler));
    let router = app(Arc::clone(&engine), args, Arc::clone(&ready))?;
    let suffix = if scim_enabled(&engine) {
        "/scim/v2"
    } else {
        ""
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Notification secrets are read once, here: a missing one stops the start.
    let dispatcher = match (&engine.notifier, args.no_scheduler) {
        (Some(_), false) => Some(
            tenure_notify::Dispatcher::new(engine.policy.config(), &engine.config_dir)
                .context("cannot set up notification delivery")?,
        ),
        _ => None,
    };
    let scheduler = (!args.no_scheduler).then(|| {
        tokio::spawn(schedule(
            Arc::clone(&engine),
            dispatcher,
            Arc::clone(&ready),
            stopped,
        ))
    });
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            let listener = std::net::TcpListener::bind(args.listen)
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            println!("listening on https://{addr}{suffix}");
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(router.into_make_service())
                .await
                .context("serving HTTPS")?;
        }
        _ => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            println!("listening on http://{}{suffix}", listener.local_addr()?);
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("serving HTTP")?;
        }
    }
    let _ = stop.send(true);
    if let Some(s) = scheduler
        && let Err(e) = s.await
    {
        tracing::error!(error = %e, "the scheduler stopped abnormally");
    }
    engine.store.close().await;
    Ok(())
}
