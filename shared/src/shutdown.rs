//! The one shutdown signal every binary stops on, and periodic background work that stops with
//! a cancellation token.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Completes on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}

/// Runs `job` every `period`, the first time at once, until `shutdown`. A run that overruns
/// delays the next one rather than causing a burst of catch-up runs; a job handles (logs) its
/// own failures.
pub fn spawn_every<F, Fut>(
    period: Duration,
    shutdown: CancellationToken,
    mut job: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            job().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn periodic_work_repeats_until_shutdown() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let handle = spawn_every(Duration::from_millis(5), shutdown.clone(), move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
            }
        });
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the job runs again")
                .unwrap();
        }
        shutdown.cancel();
        handle.await.unwrap();
        while rx.try_recv().is_ok() {}
        // The task is gone and its sender with it: nothing can run any more.
        assert!(rx.recv().await.is_none());
    }
}
