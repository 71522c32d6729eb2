//! `rollcall serve`: the HTTP service.

use std::sync::Arc;

use anyhow::Context;

use crate::engine::clock::SystemClock;
use crate::settings::{ServeArgs, Settings};

/// Logs to stderr; `RUST_LOG` overrides the default level. Logs never carry
/// a raw ID, name or phone (IDs' `Debug` is masked; handlers log none).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let settings = Settings::resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rollcall-rt")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let running = crate::http::start(&settings, Arc::new(SystemClock)).await?;
        if let Some(t) = &running.generated_admin_token {
            // Printed once, on standard output, so an operator can capture it.
            println!("admin token: {t}");
        }
        println!("rollcall listening on http://{}", running.addr);
        tracing::info!(addr = %running.addr, "serving");
        // The store's integrity check may finish after the server is up; a
        // file that fails it takes no writes, and the server stops rather
        // than keep serving from it.
        let store = running.state.store.clone();
        let failed = async move {
            match store.checked().await {
                Err(e) => e,
                Ok(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = shutdown_signal() => {
                r?;
                tracing::info!("shutting down");
                running.stop().await;
                Ok(())
            }
            e = failed => {
                tracing::error!(error = %e, "stopping: the store failed its integrity check");
                running.stop().await;
                Err(anyhow::Error::new(e).context(format!(
                    "the store in {} failed its integrity check after start; it was not written to",
                    settings.data.display()
                )))
            }
        }
    })
}

/// Ctrl-C or SIGTERM (what systemd and Kubernetes send).
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
