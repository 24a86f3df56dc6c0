//! Background work with an owner: a set of tasks that whoever holds it spawns into, that
//! reaps the finished ones as it goes, and that [`Tasks::shutdown`] aborts and awaits.
//!
//! The library spawns nothing on its own: the relay owns one set for work that outlives a
//! request (a track's upstream feed, the interaction sweeper), each session owns one for
//! its requests, the interaction hub one for its broadcasts and the parent links one for their
//! sessions (see the crate's module map). Dropping a set aborts its tasks.

use std::future::Future;

use parking_lot::Mutex;
use tokio::task::JoinSet;

/// A set of tasks owned by its holder.
#[derive(Debug)]
pub struct Tasks {
    /// `None` once shut down: what is spawned then is dropped unrun.
    set: Mutex<Option<JoinSet<()>>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }
}

impl Tasks {
    /// Run `task` in the background until it ends or the set shuts down.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.set.lock();
        let Some(set) = set.as_mut() else { return };
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// How many tasks are running (finished ones not yet reaped may be counted).
    pub fn len(&self) -> usize {
        self.set.lock().as_ref().map_or(0, JoinSet::len)
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Abort every task without waiting for them to stop (for an owner going away in `Drop`),
    /// and refuse new ones from now on.
    pub fn abort(&self) {
        // Dropping a `JoinSet` aborts its tasks.
        drop(self.set.lock().take());
    }

    /// Abort every task, wait for them to stop, and refuse new ones from now on.
    pub async fn shutdown(&self) {
        let set = self.set.lock().take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_aborts_running_tasks_and_refuses_new_ones() {
        let tasks = Tasks::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            // Holds the sender until aborted.
            std::future::pending::<()>().await;
            drop(tx);
        });
        assert_eq!(tasks.len(), 1);
        tasks.shutdown().await;
        // The aborted task dropped its sender.
        assert!(rx.await.is_err());
        tasks.spawn(async {});
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn abort_stops_running_tasks_without_waiting() {
        let tasks = Tasks::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            std::future::pending::<()>().await;
            drop(tx);
        });
        tasks.abort();
        assert!(rx.await.is_err());
        tasks.spawn(async {});
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped_on_spawn() {
        let tasks = Tasks::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.spawn(async move {
            let _ = tx.send(());
        });
        assert!(rx.await.is_ok());
        // Let the finished task's JoinSet entry complete.
        tokio::task::yield_now().await;
        tasks.spawn(std::future::pending());
        assert_eq!(tasks.len(), 1);
        tasks.shutdown().await;
    }
}
