//! The broadcasts the gateway publishes, by namespace: claiming one for an encoder (a new
//! broadcast is announced to the relay first, and only the relay's PUBLISH_NAMESPACE answer
//! lets the encoder's `publish` through), resuming it when the same key comes back within the
//! grace period (or at once, taking it over from the old connection, when the encoder calls
//! again before the gateway noticed the old one was gone), and ending it (PUBLISH_DONE, complete catalog) when the encoder unpublishes,
//! stays away too long, or the gateway shuts down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_media::codec::TrackConfig;
use banyan_moq::coding::TrackNamespace;
use banyan_publisher::broadcast::{Broadcast, MediaTrack};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::IngestConfig;
use crate::keys::{key_digest, key_hash, Target};
use crate::metrics::Metrics;

/// The media tracks of a broadcast once its catalog is published, with the configurations they
/// were made for (a resuming encoder must send the same ones).
#[derive(Debug, Clone)]
pub struct Tracks {
    /// The video track and its configuration.
    pub video: Option<(TrackConfig, Arc<MediaTrack>)>,
    /// The audio track and its configuration.
    pub audio: Option<(TrackConfig, Arc<MediaTrack>)>,
}

/// One broadcast being published.
#[derive(Debug)]
pub struct Live {
    /// The namespace, `/`-separated.
    pub namespace: String,
    /// The broadcast the relay session serves.
    pub broadcast: Arc<Broadcast>,
    /// Set by the first encoder connection once it knows its codecs.
    pub tracks: Mutex<Option<Tracks>>,
    /// The connection publishing it (0: none, waiting for a reconnect).
    holder: AtomicU64,
    /// The SHA-256 of the stream key it was claimed with ([`key_digest`]).
    key: String,
    /// Set once the relay accepted its PUBLISH_NAMESPACE (before that it cannot be taken over).
    announced: AtomicBool,
    /// Bumped at each release, so a grace timer knows whether the broadcast was resumed since.
    releases: AtomicU64,
}

impl Live {
    /// Whether connection `conn` still publishes this broadcast (a newer connection with the
    /// same key takes it over: the older one must stop writing and close).
    pub fn held_by(&self, conn: u64) -> bool {
        self.holder.load(Ordering::Acquire) == conn
    }
}

/// Why an encoder may not publish.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another stream key is publishing this broadcast (or the same key's first connection is
    /// still waiting for the relay's answer).
    #[error("another encoder is publishing {0}")]
    Busy(String),
    /// The relay refused the key (or could not be reached).
    #[error("the relay refused {namespace}: {reason}")]
    Refused {
        /// The namespace asked for.
        namespace: String,
        /// The relay's answer.
        reason: String,
    },
}

/// Every broadcast, and the relay sessions publishing them.
#[derive(Debug)]
pub struct Registry {
    config: IngestConfig,
    metrics: Arc<Metrics>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: IngestConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            live: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Claim `target`'s broadcast for connection `conn` (non-zero), with stream key `key`. A
    /// broadcast waiting for its encoder is resumed at once (`true`), and so is one still held
    /// by an older connection with the same key: an encoder that lost its link calls again
    /// before the gateway can tell the old connection is dead (SRT has no unpublish, a dead TCP
    /// peer is only noticed by `--idle-timeout`), and the key says it is the same broadcaster.
    /// The older connection sees [`Live::held_by`] turn false and closes. Another key for a
    /// broadcast in use is refused. Otherwise a new broadcast is announced to the relay with
    /// the target's token and returned once the relay accepts it.
    pub async fn claim(
        &self,
        target: &Target,
        key: &str,
        conn: u64,
    ) -> Result<(Arc<Live>, bool), ClaimError> {
        let namespace = target.broadcast.clone();
        let key = key_digest(key);
        let live = {
            let mut map = self.live.lock();
            if let Some(live) = map.get(&namespace) {
                if live.key != key || !live.announced.load(Ordering::Acquire) {
                    return Err(ClaimError::Busy(namespace));
                }
                let previous = live.holder.swap(conn, Ordering::AcqRel);
                if previous != 0 {
                    tracing::info!(broadcast = %namespace, "the same key connected again: the new connection takes the broadcast over");
                }
                self.metrics.reconnects.inc();
                return Ok((live.clone(), true));
            }
            let live = Arc::new(Live {
                namespace: namespace.clone(),
                broadcast: Arc::new(Broadcast::new()),
                tracks: Mutex::new(None),
                holder: AtomicU64::new(conn),
                key,
                announced: AtomicBool::new(false),
                releases: AtomicU64::new(0),
            });
            map.insert(namespace.clone(), live.clone());
            live
        };
        match self.announce(&live, target).await {
            Ok(()) => {
                live.announced.store(true, Ordering::Release);
                self.metrics.streams.inc();
                self.metrics.streams_total.inc();
                Ok((live, false))
            }
            Err(reason) => {
                self.remove(&live);
                live.broadcast.end();
                Err(ClaimError::Refused { namespace, reason })
            }
        }
    }

    /// Start the relay session publishing `live` and wait (bounded) for its PUBLISH_NAMESPACE
    /// to be accepted.
    async fn announce(&self, live: &Arc<Live>, target: &Target) -> Result<(), String> {
        let connector = self
            .config
            .connect_args(target.token.clone())
            .and_then(|a| a.connector())
            .map_err(|e| format!("{e:#}"))?;
        let fields: Vec<bytes::Bytes> = live
            .namespace
            .split('/')
            .filter(|f| !f.is_empty())
            .map(|f| bytes::Bytes::copy_from_slice(f.as_bytes()))
            .collect();
        let namespace = TrackNamespace::new(fields).map_err(|e| format!("namespace: {e}"))?;
        let (tx, rx) = oneshot::channel();
        let (result_tx, result_rx) = oneshot::channel();
        let broadcast = live.broadcast.clone();
        let name = live.namespace.clone();
        let task = tokio::spawn(async move {
            let result =
                banyan_publisher::publish::run_announced(connector, namespace, broadcast, Some(tx)).await;
            if let Err(e) = &result {
                // E.g. the relay ended the session because the stream key's token expired
                // (a static token cannot be refreshed): say so where an operator looks.
                tracing::warn!(broadcast = %name, error = %format!("{e:#}"), "relay session ended");
            }
            let _ = result_tx.send(result.map_err(|e| format!("{e:#}")));
        });
        self.tasks.lock().push(task);
        let wait = self.config.connect_timeout * 2;
        tokio::select! {
            announced = rx => match announced {
                Ok(()) => Ok(()),
                Err(_) => Err(match result_rx.await {
                    Ok(Err(e)) => e,
                    _ => "the relay session ended".to_string(),
                }),
            },
            () = tokio::time::sleep(wait) => Err(format!("no answer from the relay within {wait:?}")),
        }
    }

    /// Connection `conn` stopped publishing `live`: end the broadcast now if the encoder
    /// unpublished (`clean`), else keep it for `--reconnect-grace` for the same key to return.
    pub fn release(self: &Arc<Self>, live: &Arc<Live>, conn: u64, clean: bool) {
        if live
            .holder
            .compare_exchange(conn, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let release = live.releases.fetch_add(1, Ordering::AcqRel) + 1;
        if clean {
            self.finish(live);
            return;
        }
        let grace = self.config.reconnect_grace;
        tracing::info!(broadcast = %live.namespace, ?grace, "encoder dropped; holding the broadcast for its return");
        let (registry, live) = (self.clone(), live.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = live.broadcast.ended() => return,
            }
            if live.releases.load(Ordering::Acquire) == release && live.holder.load(Ordering::Acquire) == 0 {
                tracing::info!(broadcast = %live.namespace, "encoder did not return; ending the broadcast");
                registry.finish(&live);
            }
        });
    }

    /// End `live`: its tracks end, the catalog says complete, the relay session sends
    /// PUBLISH_DONE and closes.
    pub fn finish(&self, live: &Arc<Live>) {
        if self.remove(live) {
            self.metrics.streams.dec();
        }
        live.broadcast.end();
    }

    fn remove(&self, live: &Arc<Live>) -> bool {
        let mut map = self.live.lock();
        match map.get(&live.namespace) {
            Some(current) if Arc::ptr_eq(current, live) => map.remove(&live.namespace).is_some(),
            _ => false,
        }
    }

    /// End every broadcast and wait (at most `limit`) for their relay sessions to finish.
    pub async fn shutdown(&self, limit: Duration) {
        let all: Vec<Arc<Live>> = self.live.lock().values().cloned().collect();
        for live in &all {
            self.finish(live);
        }
        let tasks = std::mem::take(&mut *self.tasks.lock());
        let _ = tokio::time::timeout(limit, futures_join(tasks)).await;
    }

    /// Forget relay-session tasks that have finished.
    pub fn prune(&self) {
        self.tasks.lock().retain(|t| !t.is_finished());
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// A log name for a key.
pub fn key_label(key: &str) -> String {
    format!("key#{}", key_hash(key))
}
