//! One shutdown signal shared by every task.
//!
//! A [`Shutdown`] is cheap to clone; every server and background loop selects on
//! [`Shutdown::wait`] and finishes its in-flight work when it fires. The bins
//! fire it on SIGINT or SIGTERM through [`Shutdown::on_signals`].

use tokio::sync::watch;

/// A broadcast "stop now" flag that can be awaited.
#[derive(Clone)]
pub struct Shutdown {
    /// `true` once shutdown has been requested; receivers wake on the change.
    rx: watch::Receiver<bool>,
    /// Kept so any clone can trigger shutdown (a fatal error in one task).
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            tx: std::sync::Arc::new(tx),
        }
    }

    /// A shutdown that fires on SIGINT or SIGTERM (must be called inside a runtime).
    pub fn on_signals() -> Self {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("Shutdown requested, finishing in-flight work");
            trigger.trigger();
        });
        shutdown
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been requested (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which can only happen at exit.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let waiter = shutdown.clone();
        assert!(!waiter.is_triggered());
        let task = tokio::spawn(async move { waiter.wait().await });
        shutdown.trigger();
        task.await.expect("waiter finished");
        assert!(shutdown.is_triggered());
    }
}
