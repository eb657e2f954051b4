//! One module per subcommand.

mod kubeclient;
pub mod scheduler;
pub mod controller_manager;
pub mod agent;
pub mod images;
pub mod server;
pub mod sim;
pub mod store;
mod urls;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
