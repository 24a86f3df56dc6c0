//! What a heartbeat says about the relay's URLs and the broadcasts it carries, as pure
//! functions of the tracks and namespaces at the relay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use banyan_control::api::{BroadcastLoad, ParentLink, RelayUrls, MAX_HEARTBEAT_ITEMS, MAX_NAME_LEN};

/// The relay's public URLs: `moqt://HOST:PORT` and `https://HOST:PORT/` on the bound UDP port,
/// and `http://` the HTTP listener's bound address (`HOST` when it is bound to every
/// interface). `public_host` is a name or an IP address, IPv6 in brackets.
pub fn relay_urls(
    public_host: &str,
    udp: SocketAddr,
    ws: Option<(&str, SocketAddr)>,
    http: SocketAddr,
) -> RelayUrls {
    let port = udp.port();
    let http = if http.ip().is_unspecified() {
        format!("http://{public_host}:{}", http.port())
    } else {
        format!("http://{http}")
    };
    RelayUrls {
        moqt: Some(format!("moqt://{public_host}:{port}")),
        webtransport: Some(format!("https://{public_host}:{port}/")),
        websocket: ws.map(|(scheme, addr)| format!("{scheme}://{public_host}:{}/", addr.port())),
        http: Some(http),
    }
}

/// One track as a heartbeat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSummary {
    /// Its namespace, `/`-separated.
    pub namespace: String,
    /// Downstream subscriptions reading it.
    pub subscribers: usize,
    /// The parent URL feeding it, when a parent does.
    pub parent: Option<String>,
    /// Whether objects flow (pending and ended tracks are not carried).
    pub live: bool,
    /// Of `subscribers`, those that are viewers, not child relays.
    pub viewers: usize,
    /// The viewers' sessions (ids at this relay; see [`crate::track::Track::viewer_sessions`]).
    pub viewer_sessions: Vec<u64>,
    /// The room, when it is a chat room's track (`chat/<room>`).
    pub chat_room: Option<u64>,
}

/// The broadcasts and parent links a heartbeat lists, from the tracks at the relay and the
/// namespaces published on it, sorted by namespace and bounded by [`MAX_HEARTBEAT_ITEMS`].
///
/// - A namespace is carried when one of its tracks is live or it is published here.
/// - `viewers` is the number of distinct viewer sessions (subscribers that are not child
///   relays) reading any of its live tracks: a viewer of audio and video counts once, and
///   viewers split over a ladder's renditions each count once (a viewer switching renditions
///   still once); a child relay pulling the broadcast is not a viewer (its own heartbeat counts
///   the viewers behind it), so the control plane's sum over relays counts each viewer once.
/// - `local` is true when it is published here or a live track of it comes from a publisher on
///   this relay (not from a parent).
/// - Each distinct (namespace, parent URL) of a live track is a parent link.
/// - `rooms` has the viewers (child relays left out) of each live `chat/<room>` track that has
///   any (at most [`MAX_HEARTBEAT_ITEMS`] rooms over all broadcasts).
///
/// Names the control plane would refuse (empty, too long, control characters) are left out,
/// so one odd namespace never costs the whole heartbeat.
pub fn broadcasts(
    tracks: impl IntoIterator<Item = TrackSummary>,
    published: impl IntoIterator<Item = String>,
) -> (Vec<BroadcastLoad>, Vec<ParentLink>) {
    let mut carried: BTreeMap<String, BroadcastLoad> = BTreeMap::new();
    let mut links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut rooms = 0;
    let mut sessions: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for namespace in published.into_iter().filter(|n| reportable(n)) {
        carried
            .entry(namespace.clone())
            .or_insert_with(|| empty_load(namespace))
            .local = true;
    }
    for track in tracks {
        if !track.live || !reportable(&track.namespace) {
            continue;
        }
        let entry = carried
            .entry(track.namespace.clone())
            .or_insert_with(|| empty_load(track.namespace.clone()));
        sessions
            .entry(track.namespace.clone())
            .or_default()
            .extend(track.viewer_sessions.iter().copied());
        if let Some(room) = track.chat_room.filter(|_| track.viewers > 0) {
            let viewers = u32::try_from(track.viewers).unwrap_or(u32::MAX);
            if rooms < MAX_HEARTBEAT_ITEMS && entry.rooms.insert(room, viewers).is_none() {
                rooms += 1;
            }
        }
        match track.parent {
            Some(parent) if reportable(&parent) => {
                links.insert((track.namespace, parent));
            }
            Some(_) => {}
            None => entry.local = true,
        }
    }
    for (namespace, viewers) in sessions {
        if let Some(entry) = carried.get_mut(&namespace) {
            entry.viewers = u32::try_from(viewers.len()).unwrap_or(u32::MAX);
        }
    }
    let broadcasts = carried.into_values().take(MAX_HEARTBEAT_ITEMS).collect();
    let parents = links
        .into_iter()
        .take(MAX_HEARTBEAT_ITEMS)
        .map(|(namespace, upstream)| ParentLink { namespace, upstream })
        .collect();
    (broadcasts, parents)
}

fn empty_load(namespace: String) -> BroadcastLoad {
    BroadcastLoad {
        namespace,
        viewers: 0,
        local: false,
        rooms: BTreeMap::new(),
    }
}

/// A name [`Heartbeat::validate`] accepts.
fn reportable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}
