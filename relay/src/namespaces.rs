//! Published namespaces: which session publishes what, and who wants to hear about it.
//!
//! A PUBLISH_NAMESPACE registers its namespace here (replacing the old publisher when the
//! namespace is already live, `--publisher-takeover`, or refused without it); a SUBSCRIBE
//! finds its publisher by the longest published prefix of its namespace, and a track held for
//! a rendezvous waits here for one to appear; SUBSCRIBE_NAMESPACE watchers receive NAMESPACE /
//! NAMESPACE_DONE as namespaces come and go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::TrackNamespace;
use banyan_moq::session::{NamespaceEvent, Session};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

/// A session that publishes a namespace.
#[derive(Clone, Debug)]
pub struct Publisher {
    /// Unique per registration, so a stale guard never removes a newer publisher.
    pub id: u64,
    /// The publisher's session, to subscribe through.
    pub session: Session,
    /// The namespace it published.
    pub namespace: TrackNamespace,
    /// Set when another publisher replaces this one (`--publisher-takeover`).
    replaced: Arc<watch::Sender<bool>>,
}

impl Publisher {
    /// Resolves once another session has replaced this publisher of its namespace.
    pub async fn replaced(&self) {
        let mut rx = self.replaced.subscribe();
        // The sender lives in `self`, so this only ends when the flag is set.
        let _ = rx.wait_for(|replaced| *replaced).await;
    }
}

/// Why a namespace could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Another session already publishes it and replacement is off.
    #[error("namespace {0} is already published by another session")]
    AlreadyPublished(TrackNamespace),
}

#[derive(Debug)]
struct Watcher {
    id: u64,
    prefix: TrackNamespace,
    events: mpsc::UnboundedSender<NamespaceEvent>,
}

#[derive(Debug, Default)]
struct Inner {
    namespaces: HashMap<TrackNamespace, Publisher>,
    watchers: Vec<Watcher>,
}

/// The relay's namespace registry.
#[derive(Debug, Default)]
pub struct Namespaces {
    inner: Mutex<Inner>,
    changed: Notify,
    next_id: AtomicU64,
}

impl Namespaces {
    /// Register `session` as the publisher of `namespace`. With `replace`, a live publisher of
    /// the same namespace is displaced (its registration ends); otherwise this is refused.
    pub fn publish(
        self: &Arc<Self>,
        namespace: TrackNamespace,
        session: Session,
        replace: bool,
    ) -> Result<PublishGuard, PublishError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        if let Some(existing) = inner.namespaces.get(&namespace) {
            if !replace && !existing.session.is_closed() {
                return Err(PublishError::AlreadyPublished(namespace));
            }
        }
        let publisher = Publisher {
            id,
            session,
            namespace: namespace.clone(),
            replaced: Arc::new(watch::Sender::new(false)),
        };
        let guard = PublishGuard {
            namespaces: self.clone(),
            namespace: namespace.clone(),
            publisher: publisher.clone(),
        };
        let old = inner.namespaces.insert(namespace.clone(), publisher);
        let replaced = old.is_some();
        if let Some(old) = old {
            // Its PUBLISH_NAMESPACE and the tracks routed through it end (see `replaced`).
            old.replaced.send_replace(true);
        }
        if !replaced {
            notify_watchers(&mut inner.watchers, &NamespaceEvent::Published(namespace.clone()));
        }
        drop(inner);
        self.changed.notify_waiters();
        tracing::info!(%namespace, replaced, "namespace published");
        Ok(guard)
    }

    /// The publisher of the longest published prefix of `namespace`.
    pub fn route(&self, namespace: &TrackNamespace) -> Option<Publisher> {
        let inner = self.inner.lock();
        inner
            .namespaces
            .values()
            .filter(|p| namespace.has_prefix(&p.namespace) && !p.session.is_closed())
            .max_by_key(|p| p.namespace.fields().len())
            .cloned()
    }

    /// Like [`route`](Self::route), waiting up to `wait` for a publisher to appear.
    pub async fn wait_route(&self, namespace: &TrackNamespace, wait: Duration) -> Option<Publisher> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(publisher) = self.route(namespace) {
                return Some(publisher);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Watch namespaces under `prefix`: the current ones are reported at once, then changes.
    pub fn watch(self: &Arc<Self>, prefix: TrackNamespace) -> NamespaceWatch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.inner.lock();
        for namespace in inner.namespaces.keys() {
            if namespace.has_prefix(&prefix) {
                let _ = tx.send(NamespaceEvent::Published(namespace.clone()));
            }
        }
        inner.watchers.push(Watcher {
            id,
            prefix,
            events: tx,
        });
        NamespaceWatch {
            namespaces: self.clone(),
            id,
            events: rx,
        }
    }

    /// Every published namespace.
    pub fn namespaces(&self) -> Vec<TrackNamespace> {
        self.inner.lock().namespaces.keys().cloned().collect()
    }

    fn unpublish(&self, namespace: &TrackNamespace, id: u64) {
        let mut inner = self.inner.lock();
        if inner.namespaces.get(namespace).is_some_and(|p| p.id == id) {
            inner.namespaces.remove(namespace);
            notify_watchers(&mut inner.watchers, &NamespaceEvent::Done(namespace.clone()));
            tracing::info!(%namespace, "namespace withdrawn");
        }
    }
}

fn notify_watchers(watchers: &mut Vec<Watcher>, event: &NamespaceEvent) {
    let namespace = match event {
        NamespaceEvent::Published(n) | NamespaceEvent::Done(n) => n,
    };
    watchers.retain(|w| !namespace.has_prefix(&w.prefix) || w.events.send(event.clone()).is_ok());
}

/// Keeps a namespace registered; dropping it withdraws the namespace.
#[derive(Debug)]
pub struct PublishGuard {
    namespaces: Arc<Namespaces>,
    namespace: TrackNamespace,
    publisher: Publisher,
}

impl PublishGuard {
    /// Resolves once another session has replaced this registration.
    pub async fn replaced(&self) {
        self.publisher.replaced().await;
    }
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        self.namespaces.unpublish(&self.namespace, self.publisher.id);
    }
}

/// A SUBSCRIBE_NAMESPACE's view of the registry.
#[derive(Debug)]
pub struct NamespaceWatch {
    namespaces: Arc<Namespaces>,
    id: u64,
    events: mpsc::UnboundedReceiver<NamespaceEvent>,
}

impl NamespaceWatch {
    /// The next change under the prefix.
    pub async fn next(&mut self) -> Option<NamespaceEvent> {
        self.events.recv().await
    }
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.namespaces.inner.lock().watchers.retain(|w| w.id != self.id);
    }
}
