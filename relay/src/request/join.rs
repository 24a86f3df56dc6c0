//! The session's SUBSCRIBEs a joining FETCH can name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use banyan_moq::coding::{FullTrackName, Location};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::track::Track;

/// A subscription a joining FETCH can refer to: its track and its joining location.
pub(super) type Joinable = (Arc<Track>, Option<Location>);

/// How long a joining FETCH waits for the answer to the SUBSCRIBE it joins.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// How long a joining FETCH waits for its SUBSCRIBE to arrive: the two come on separate
/// streams, so the FETCH can be read first even when it was sent second.
const JOIN_ARRIVAL: Duration = Duration::from_secs(1);

/// A session's SUBSCRIBEs that a joining FETCH can name, by Request ID: each from its arrival
/// (a watch holding `None`) through its SUBSCRIBE_OK (`Some`) to its end (removed).
#[derive(Debug, Default)]
pub(super) struct JoinMap {
    subscriptions: Mutex<HashMap<u64, JoinEntry>>,
    arrived: tokio::sync::Notify,
}

/// One SUBSCRIBE in a [`JoinMap`].
#[derive(Debug)]
struct JoinEntry {
    /// The track it asks for (`None` if the name was invalid).
    name: Option<FullTrackName>,
    /// Its subscription, once accepted.
    joinable: watch::Sender<Option<Joinable>>,
}

impl JoinMap {
    /// Subscription `id` was accepted: joining FETCHes for it may proceed.
    pub(super) fn established(&self, id: u64, joinable: Joinable) {
        if let Some(tx) = self.subscriptions.lock().get(&id).map(|e| e.joinable.clone()) {
            tx.send_replace(Some(joinable));
        }
    }

    /// Whether the session has a SUBSCRIBE for `name` (held, answered or live).
    pub(super) fn subscribes_to(&self, name: &FullTrackName) -> bool {
        self.subscriptions
            .lock()
            .values()
            .any(|e| e.name.as_ref() == Some(name))
    }

    /// The subscription `id` names, once it is established; `None` if it never arrives,
    /// is refused or ends first.
    pub(super) async fn join(&self, id: u64) -> Option<Joinable> {
        let arrival = tokio::time::Instant::now() + JOIN_ARRIVAL;
        let mut rx = loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(rx) = self.subscriptions.lock().get(&id).map(|e| e.joinable.subscribe()) {
                break rx;
            }
            tokio::time::timeout_at(arrival, arrived).await.ok()?;
        };
        let established = match tokio::time::timeout(JOIN_WAIT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(joinable)) => joinable.clone(),
            Ok(Err(_)) | Err(_) => None,
        };
        established
    }
}

/// A SUBSCRIBE's entry in the session's [`JoinMap`], from its arrival to its end.
pub(super) struct JoinSlot {
    map: Arc<JoinMap>,
    id: u64,
}

impl JoinSlot {
    pub(super) fn new(map: &Arc<JoinMap>, id: u64, name: Option<FullTrackName>) -> Self {
        map.subscriptions.lock().insert(
            id,
            JoinEntry {
                name,
                joinable: watch::Sender::new(None),
            },
        );
        map.arrived.notify_waiters();
        Self { map: map.clone(), id }
    }
}

impl Drop for JoinSlot {
    fn drop(&mut self) {
        self.map.subscriptions.lock().remove(&self.id);
    }
}
