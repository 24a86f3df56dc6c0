//! The registry: the fleet as heartbeats describe it (soft state), and placement decisions
//! over it — viewer assignment, route lookup, origin choice. Pure: every method takes `now`,
//! nothing here does I/O or reads a clock, so the HTTP layer calls it under a short lock and
//! tests drive it on a virtual clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::api::{
    BroadcastLoad, BroadcastStatus, Heartbeat, HeartbeatResponse, ParentStatus, RelayEndpoint, RelayStatus,
    Status,
};
use crate::autoscale::{FleetView, RelayView};
use crate::rooms::Rooms;

/// The numbers placement follows (see [`crate::config`] for why each default is what it is);
/// part of [`ControlConfig`](crate::config::ControlConfig), where each is a flag.
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    /// How often relays send heartbeats (told to them in every heartbeat response).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub heartbeat_interval: Duration,

    /// A relay not heard from for this long is dropped.
    #[arg(long, value_name = "DURATION", default_value = "3500ms", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub heartbeat_expiry: Duration,

    /// How long a heartbeat may lag behind a placement: a chat room assignment, a route to a
    /// parent or a broadcast newly carried counts until a heartbeat this much later could show it.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub assignment_grace: Duration,

    /// How long a viewer assigned to a relay counts against it while it has not arrived (a
    /// relay's heartbeats count arrivals); after this the viewer is taken to have gone.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub join_timeout: Duration,

    /// Fraction of a relay's capacity above which it gets no new viewers while others have room.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.8)]
    pub high_water: f64,

    /// Most child relays one parent feeds for one namespace.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_children: u32,

    /// Most relay hops below a namespace's origin.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_depth: u32,

    /// How many parent URLs a route lookup returns (the first is preferred).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub route_alternatives: usize,

    /// Viewers per chat room.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub chat_room_size: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_expiry: Duration::from_millis(3500),
            assignment_grace: Duration::from_secs(3),
            join_timeout: Duration::from_secs(20),
            high_water: 0.8,
            max_children: 8,
            max_depth: 4,
            route_alternatives: 2,
            chat_room_size: 500,
        }
    }
}

/// Why a placement request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No live relay publishes the broadcast (and none was assigned as its origin).
    #[error("no live origin publishes {0}")]
    UnknownBroadcast(String),
    /// The relay id has not sent a heartbeat (or has expired).
    #[error("relay {0:?} is not registered (no recent heartbeat)")]
    UnknownRelay(String),
    /// Every suitable relay is full, or every parent is at its fan-out or depth limit.
    #[error("no relay has capacity for {0}")]
    NoCapacity(String),
    /// No relay is live at all.
    #[error("no relays are registered")]
    NoRelays,
}

/// A chosen relay, for a viewer or a publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The relay's id.
    pub relay_id: String,
    /// Its region.
    pub region: String,
    /// Its URLs and dev certificate hash.
    pub endpoint: RelayEndpoint,
    /// Chat room (viewers only).
    pub chat_room: String,
}

/// Viewer ranking, smaller is better: above high-water, is the origin, other region,
/// not a carrier, depth, load (parts per million of capacity).
type WatchRank = (bool, bool, bool, bool, u32, u64);

/// Parent ranking, smaller is better: other region, depth, children, id.
type RouteRank<'a> = (bool, u32, u32, &'a String);

#[derive(Debug)]
struct Relay {
    heartbeat: Heartbeat,
    last_seen: Instant,
    /// Viewers assigned here that have not arrived yet, by when (oldest first).
    assignments: VecDeque<Instant>,
    /// The relay's running count of accepted sessions, as of its last heartbeat.
    accepted: u64,
    /// When each broadcast was last assigned to or designated on this relay.
    recent: HashMap<String, Instant>,
}

impl Relay {
    /// Reported sessions plus viewers on their way: [`Relay::arrived`] keeps `assignments` to
    /// those.
    fn occupancy(&self) -> u32 {
        let pending = u32::try_from(self.assignments.len()).unwrap_or(u32::MAX);
        self.heartbeat.load.sessions.saturating_add(pending)
    }

    /// Take in a heartbeat: each session accepted since the last one is an assigned viewer
    /// arriving (the oldest assignment first: viewers connect in roughly the order they were
    /// told to), and an assignment older than `join_timeout` is a viewer that never came.
    ///
    /// Sessions nobody assigned (a child relay, a publisher, a viewer with an old answer) also
    /// count as arrivals, so a relay can be under-counted by those for up to `join_timeout`;
    /// `high_water` leaves room for that. The other way, counting on time alone, let a crowd of
    /// slow joiners past a relay's capacity.
    fn arrived(&mut self, heartbeat: Heartbeat, now: Instant, join_timeout: Duration) {
        // A relay that restarted under the same id counts from zero again.
        let arrivals = heartbeat
            .load
            .accepted
            .checked_sub(self.accepted)
            .unwrap_or(heartbeat.load.accepted);
        self.accepted = heartbeat.load.accepted;
        self.heartbeat = heartbeat;
        self.last_seen = now;
        let arrivals = usize::try_from(arrivals).unwrap_or(usize::MAX);
        self.assignments.drain(..arrivals.min(self.assignments.len()));
        if let Some(cutoff) = now.checked_sub(join_timeout) {
            while self.assignments.front().is_some_and(|t| *t <= cutoff) {
                self.assignments.pop_front();
            }
        }
    }

    fn urls_match(&self, url: &str) -> bool {
        let url = url.trim_end_matches('/');
        [&self.heartbeat.urls.moqt, &self.heartbeat.urls.webtransport]
            .into_iter()
            .flatten()
            .any(|u| u.trim_end_matches('/') == url)
    }

    fn reports(&self, namespace: &str) -> bool {
        self.heartbeat.broadcasts.iter().any(|b| b.namespace == namespace)
            || self.heartbeat.parents.iter().any(|p| p.namespace == namespace)
    }

    fn publishes(&self, namespace: &str) -> bool {
        self.heartbeat
            .broadcasts
            .iter()
            .any(|b| b.local && b.namespace == namespace)
    }

    fn dial_url(&self) -> Option<&String> {
        self.heartbeat
            .urls
            .moqt
            .as_ref()
            .or(self.heartbeat.urls.webtransport.as_ref())
    }
}

/// The fleet and the placement state built on it.
#[derive(Debug, Default)]
pub struct Registry {
    policy: Policy,
    relays: HashMap<String, Relay>,
    /// Broadcast → origin relay chosen by `POST /v1/publish`.
    origins: HashMap<String, String>,
    /// Relays ordered to drain.
    drain_orders: HashSet<String>,
    /// Relays this control plane spawned.
    spawned: HashSet<String>,
    /// (namespace, child) → (parent, when) for route answers not yet seen in heartbeats.
    routes: HashMap<(String, String), (String, Instant)>,
    /// Viewer joins per broadcast since the autoscaler last took them.
    joins: HashMap<String, u64>,
    /// Chat room occupancy: what heartbeats report, and assignments not in them yet.
    rooms: Rooms,
    /// Smoothed join rates as last computed by the autoscaler (for status and metrics).
    join_rates: HashMap<String, f64>,
}

impl Registry {
    /// An empty registry.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Record a (validated) heartbeat; the response tells the relay when to send the next one
    /// and whether to drain.
    pub fn heartbeat(&mut self, heartbeat: Heartbeat, now: Instant) -> HeartbeatResponse {
        let id = heartbeat.relay_id.clone();
        let grace = self.policy.assignment_grace;
        match self.relays.get_mut(&id) {
            Some(relay) => {
                self.rooms
                    .report(&relay.heartbeat.broadcasts, &heartbeat.broadcasts);
                relay.arrived(heartbeat, now, self.policy.join_timeout);
                if let Some(cutoff) = now.checked_sub(grace) {
                    relay.recent.retain(|_, t| *t > cutoff);
                }
            }
            None => {
                tracing::info!(relay = %id, region = %heartbeat.region, "relay registered");
                self.rooms.report(&[], &heartbeat.broadcasts);
                self.relays.insert(
                    id.clone(),
                    Relay {
                        accepted: heartbeat.load.accepted,
                        heartbeat,
                        last_seen: now,
                        assignments: VecDeque::new(),
                        recent: HashMap::new(),
                    },
                );
            }
        }
        HeartbeatResponse {
            interval_ms: millis(self.policy.heartbeat_interval),
            expiry_ms: millis(self.policy.heartbeat_expiry),
            drain: self.drain_orders.contains(&id),
        }
    }

    /// Drop relays not heard from within the expiry; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expiry = self.policy.heartbeat_expiry;
        let gone: Vec<String> = self
            .relays
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_seen) > expiry)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            tracing::info!(relay = %id, "relay expired (missed heartbeats)");
            if let Some(relay) = self.relays.remove(id) {
                self.rooms.report(&relay.heartbeat.broadcasts, &[]);
            }
            self.drain_orders.remove(id);
        }
        let grace = self.policy.assignment_grace;
        self.routes.retain(|(_, child), (parent, t)| {
            !gone.contains(child) && !gone.contains(parent) && now.saturating_duration_since(*t) <= grace
        });
        self.origins.retain(|_, relay| !gone.contains(relay));
        self.rooms.expire(grace, now);
        gone
    }

    /// Number of live relays.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// True when no relay is live.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// True when `id` is live.
    pub fn contains(&self, id: &str) -> bool {
        self.relays.contains_key(id)
    }

    /// Order a relay to drain; `false` when it is not registered.
    pub fn order_drain(&mut self, id: &str) -> bool {
        if self.relays.contains_key(id) {
            tracing::info!(relay = %id, "drain ordered");
            self.drain_orders.insert(id.to_owned());
            true
        } else {
            false
        }
    }

    /// Mark a relay as spawned by this control plane (status only).
    pub fn mark_spawned(&mut self, id: &str) {
        self.spawned.insert(id.to_owned());
    }

    /// Forget a relay that was stopped.
    pub fn forget(&mut self, id: &str) {
        if let Some(relay) = self.relays.remove(id) {
            self.rooms.report(&relay.heartbeat.broadcasts, &[]);
        }
        self.drain_orders.remove(id);
        self.spawned.remove(id);
    }

    /// Mark `relay` as a replica of `broadcast`: it ranks as a carrier for viewers until
    /// the assignment grace passes without viewers.
    pub fn designate(&mut self, broadcast: &str, relay: &str, now: Instant) {
        if let Some(r) = self.relays.get_mut(relay) {
            r.recent.insert(broadcast.to_owned(), now);
        }
    }

    /// The origin relay of a namespace: the live relay publishing it locally, else the one
    /// assigned by `POST /v1/publish`.
    pub fn origin(&self, namespace: &str) -> Option<&str> {
        let mut publishing: Vec<&String> = self
            .relays
            .iter()
            .filter(|(_, r)| r.publishes(namespace))
            .map(|(id, _)| id)
            .collect();
        publishing.sort();
        publishing
            .first()
            .map(|id| id.as_str())
            .or_else(|| self.origins.get(namespace).map(String::as_str))
    }

    /// Assign a viewer of `broadcast` in `region` to a relay (see the README for the order)
    /// and to a chat room ([`crate::rooms`]; `room`: the one it was in before, if any).
    pub fn watch(
        &mut self,
        broadcast: &str,
        region: &str,
        room: Option<u64>,
        now: Instant,
    ) -> Result<Placement, PlaceError> {
        let origin = self
            .origin(broadcast)
            .ok_or_else(|| PlaceError::UnknownBroadcast(broadcast.to_owned()))?
            .to_owned();
        let depths = self.depths(broadcast, &origin);
        let high_water = self.policy.high_water;
        let mut best: Option<(WatchRank, &String)> = None;
        for (id, relay) in &self.relays {
            if self.draining(id, relay) {
                continue;
            }
            let capacity = relay.heartbeat.capacity.max_viewers;
            let occupancy = relay.occupancy();
            if occupancy >= capacity {
                continue;
            }
            let above_high_water = f64::from(occupancy.saturating_add(1)) > high_water * f64::from(capacity);
            let carrier = relay.reports(broadcast) || relay.recent.contains_key(broadcast);
            let depth = depths
                .get(id.as_str())
                .copied()
                .unwrap_or(self.policy.max_depth + 1);
            // Load as parts per million of capacity, so the key is totally ordered.
            let load = u64::from(occupancy) * 1_000_000 / u64::from(capacity.max(1));
            let key = (
                above_high_water,
                *id == origin,
                !region.is_empty() && relay.heartbeat.region != region,
                !carrier,
                depth,
                load,
            );
            if best.as_ref().is_none_or(|(k, bid)| (&key, id) < (k, *bid)) {
                best = Some((key, id));
            }
        }
        let id = best
            .map(|(_, id)| id.clone())
            .ok_or_else(|| PlaceError::NoCapacity(broadcast.to_owned()))?;
        *self.joins.entry(broadcast.to_owned()).or_default() += 1;
        let room = self
            .rooms
            .assign(
                broadcast,
                room,
                self.policy.chat_room_size,
                self.policy.assignment_grace,
                now,
            )
            .to_string();
        let relay = self
            .relays
            .get_mut(&id)
            .ok_or_else(|| PlaceError::NoCapacity(broadcast.to_owned()))?;
        relay.assignments.push_back(now);
        relay.recent.insert(broadcast.to_owned(), now);
        Ok(placement(&id, relay, room))
    }

    /// The origin for a publisher of `broadcast`: the relay already publishing it, the one
    /// assigned before, or a new choice (same region first, least loaded, not spawned).
    pub fn publish(&mut self, broadcast: &str, region: &str) -> Result<Placement, PlaceError> {
        let current = self
            .origin(broadcast)
            .filter(|id| self.relays.get(*id).is_some_and(|r| !self.draining(id, r)))
            .map(str::to_owned);
        let id = match current {
            Some(id) => id,
            None => {
                let id = self
                    .relays
                    .iter()
                    .filter(|(id, r)| !self.draining(id, r))
                    .min_by_key(|(id, r)| {
                        let load = u64::from(r.occupancy()) * 1_000_000
                            / u64::from(r.heartbeat.capacity.max_viewers.max(1));
                        (
                            !region.is_empty() && r.heartbeat.region != region,
                            self.spawned.contains(*id),
                            load,
                            (*id).clone(),
                        )
                    })
                    .map(|(id, _)| id.clone())
                    .ok_or(PlaceError::NoRelays)?;
                self.origins.insert(broadcast.to_owned(), id.clone());
                id
            }
        };
        let relay = self.relays.get(&id).ok_or(PlaceError::NoRelays)?;
        Ok(placement(&id, relay, String::new()))
    }

    /// Parent URLs for relay `relay_id` pulling `namespace`, best first (empty for its origin).
    pub fn route(
        &mut self,
        namespace: &str,
        relay_id: &str,
        now: Instant,
    ) -> Result<Vec<String>, PlaceError> {
        let asker = self
            .relays
            .get(relay_id)
            .ok_or_else(|| PlaceError::UnknownRelay(relay_id.to_owned()))?;
        let origin = self
            .origin(namespace)
            .ok_or_else(|| PlaceError::UnknownBroadcast(namespace.to_owned()))?
            .to_owned();
        if origin == relay_id {
            return Ok(Vec::new());
        }
        let parents = self.parents(namespace);
        let depths = self.depths(namespace, &origin);
        let mut children: HashMap<&str, u32> = HashMap::new();
        for (child, parent) in &parents {
            if *child != relay_id {
                *children.entry(parent.as_str()).or_default() += 1;
            }
        }
        let mut candidates: Vec<(RouteRank<'_>, &Relay)> = Vec::new();
        for (id, relay) in &self.relays {
            if id == relay_id || self.draining(id, relay) {
                continue;
            }
            let Some(depth) = depths.get(id.as_str()).copied() else {
                continue; // not in the namespace's tree (yet)
            };
            if depth + 1 > self.policy.max_depth {
                continue;
            }
            let fanout = children.get(id.as_str()).copied().unwrap_or(0);
            if fanout >= self.policy.max_children {
                continue;
            }
            if has_ancestor(&parents, id, relay_id, self.policy.max_depth) {
                continue; // it pulls through the asker: a loop
            }
            if relay.dial_url().is_none() {
                continue;
            }
            let key = (
                relay.heartbeat.region != asker.heartbeat.region,
                depth,
                fanout,
                id,
            );
            candidates.push((key, relay));
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let chosen: Vec<(String, String)> = candidates
            .iter()
            .take(self.policy.route_alternatives.max(1))
            .filter_map(|((_, _, _, id), r)| r.dial_url().map(|u| ((*id).clone(), u.clone())))
            .collect();
        let Some((first, _)) = chosen.first() else {
            return Err(PlaceError::NoCapacity(namespace.to_owned()));
        };
        self.routes
            .insert((namespace.to_owned(), relay_id.to_owned()), (first.clone(), now));
        Ok(chosen.into_iter().map(|(_, url)| url).collect())
    }

    /// Viewer joins per broadcast since the last call (the autoscaler's input).
    pub fn take_joins(&mut self) -> HashMap<String, u64> {
        std::mem::take(&mut self.joins)
    }

    /// Store the autoscaler's smoothed join rates (status and metrics).
    pub fn set_join_rates(&mut self, rates: HashMap<String, f64>) {
        self.join_rates = rates;
    }

    /// The fleet as the autoscaler sees it.
    pub fn fleet(&self) -> FleetView {
        let mut relays: Vec<RelayView> = self
            .relays
            .iter()
            .map(|(id, r)| {
                let mut broadcasts: Vec<String> = r
                    .heartbeat
                    .broadcasts
                    .iter()
                    .filter(|b| !b.local)
                    .map(|b| b.namespace.clone())
                    .chain(r.recent.keys().cloned())
                    .collect();
                broadcasts.sort();
                broadcasts.dedup();
                RelayView {
                    id: id.clone(),
                    capacity: r.heartbeat.capacity.max_viewers,
                    occupancy: r.occupancy(),
                    draining: self.draining(id, r),
                    origin: r.heartbeat.broadcasts.iter().any(|b| b.local)
                        || self.origins.values().any(|o| o == id),
                    broadcasts,
                }
            })
            .collect();
        relays.sort_by(|a, b| a.id.cmp(&b.id));
        FleetView { relays }
    }

    /// The live view for `/v1/status`.
    pub fn status(&self, now: Instant) -> Status {
        let mut relays: Vec<RelayStatus> = self
            .relays
            .iter()
            .map(|(id, r)| RelayStatus {
                relay_id: id.clone(),
                region: r.heartbeat.region.clone(),
                urls: r.heartbeat.urls.clone(),
                capacity: r.heartbeat.capacity,
                load: r.heartbeat.load,
                viewers: r.occupancy(),
                broadcasts: r.heartbeat.broadcasts.clone(),
                parents: r
                    .heartbeat
                    .parents
                    .iter()
                    .map(|p| ParentStatus {
                        namespace: p.namespace.clone(),
                        upstream: p.upstream.clone(),
                        relay_id: self.relay_by_url(&p.upstream).cloned(),
                    })
                    .collect(),
                draining: self.draining(id, r),
                spawned: self.spawned.contains(id),
                last_seen_ms: millis(now.saturating_duration_since(r.last_seen)),
            })
            .collect();
        relays.sort_by(|a, b| a.relay_id.cmp(&b.relay_id));
        let mut names: Vec<&String> = self
            .relays
            .values()
            .flat_map(|r| r.heartbeat.broadcasts.iter().map(|b| &b.namespace))
            .chain(self.origins.keys())
            .collect();
        names.sort();
        names.dedup();
        let broadcasts = names
            .into_iter()
            .map(|name| {
                let mut carriers: Vec<(&String, &BroadcastLoad)> = self
                    .relays
                    .iter()
                    .filter_map(|(id, r)| {
                        r.heartbeat
                            .broadcasts
                            .iter()
                            .find(|b| &b.namespace == name)
                            .map(|b| (id, b))
                    })
                    .collect();
                carriers.sort_by(|a, b| a.0.cmp(b.0));
                BroadcastStatus {
                    broadcast: name.clone(),
                    origin: self.origin(name).map(str::to_owned),
                    viewers: carriers.iter().map(|(_, b)| u64::from(b.viewers)).sum(),
                    join_rate: self.join_rates.get(name).copied().unwrap_or(0.0),
                    relays: carriers.into_iter().map(|(id, _)| id.clone()).collect(),
                }
            })
            .collect();
        Status { relays, broadcasts }
    }

    fn draining(&self, id: &str, relay: &Relay) -> bool {
        relay.heartbeat.draining || self.drain_orders.contains(id)
    }

    fn relay_by_url(&self, url: &str) -> Option<&String> {
        self.relays
            .iter()
            .find(|(_, r)| r.urls_match(url))
            .map(|(id, _)| id)
    }

    /// child → parent for a namespace: reported links, then route answers not yet reported.
    fn parents(&self, namespace: &str) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = HashMap::new();
        for ((ns, child), (parent, _)) in &self.routes {
            if ns == namespace {
                map.insert(child.clone(), parent.clone());
            }
        }
        for (id, relay) in &self.relays {
            for link in relay
                .heartbeat
                .parents
                .iter()
                .filter(|p| p.namespace == namespace)
            {
                if let Some(parent) = self.relay_by_url(&link.upstream) {
                    map.insert(id.clone(), parent.clone());
                }
            }
        }
        map
    }

    /// Hops below the origin of every relay in the namespace's tree.
    fn depths(&self, namespace: &str, origin: &str) -> HashMap<String, u32> {
        let parents = self.parents(namespace);
        let mut depths = HashMap::new();
        depths.insert(origin.to_owned(), 0);
        for start in parents.keys() {
            let mut chain = vec![start.as_str()];
            let mut at = start.as_str();
            let limit = self.policy.max_depth as usize + 2;
            let base = loop {
                if let Some(d) = depths.get(at) {
                    break Some(*d);
                }
                match parents.get(at) {
                    Some(p) if chain.len() <= limit && !chain.contains(&p.as_str()) => {
                        at = p.as_str();
                        chain.push(at);
                    }
                    _ => break None,
                }
            };
            if let Some(base) = base {
                // chain = [start, …, at]; `at` has depth `base`.
                let n = chain.len();
                for (i, id) in chain.into_iter().enumerate() {
                    let d = base + u32::try_from(n - 1 - i).unwrap_or(u32::MAX);
                    depths.entry(id.to_owned()).or_insert(d);
                }
            }
        }
        depths
    }
}

fn has_ancestor(parents: &HashMap<String, String>, start: &str, ancestor: &str, max_depth: u32) -> bool {
    let mut at = start;
    for _ in 0..=max_depth + 1 {
        match parents.get(at) {
            Some(p) if p == ancestor => return true,
            Some(p) => at = p,
            None => return false,
        }
    }
    true // a chain longer than any legal tree: treat as a loop
}

fn placement(id: &str, relay: &Relay, chat_room: String) -> Placement {
    Placement {
        relay_id: id.to_owned(),
        region: relay.heartbeat.region.clone(),
        endpoint: RelayEndpoint {
            moqt: relay.heartbeat.urls.moqt.clone(),
            webtransport: relay.heartbeat.urls.webtransport.clone(),
            websocket: relay.heartbeat.urls.websocket.clone(),
            cert_sha256: relay.heartbeat.cert_sha256.clone(),
        },
        chat_room,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::{Capacity, Load, ParentLink, RelayUrls};

    pub(crate) fn hb(id: &str, region: &str, cap: u32, sessions: u32) -> Heartbeat {
        Heartbeat {
            relay_id: id.into(),
            urls: RelayUrls {
                moqt: Some(format!("moqt://{id}:1")),
                webtransport: None,
                websocket: None,
                http: None,
            },
            cert_sha256: None,
            region: region.into(),
            capacity: Capacity {
                max_viewers: cap,
                egress_bps: 0,
            },
            load: Load {
                sessions,
                ..Load::default()
            },
            broadcasts: vec![],
            parents: vec![],
            draining: false,
        }
    }

    fn origin_hb(id: &str) -> Heartbeat {
        let mut h = hb(id, "eu", 1000, 0);
        h.broadcasts.push(BroadcastLoad {
            namespace: "live/a".into(),
            viewers: 0,
            local: true,
            rooms: Default::default(),
        });
        h
    }

    #[test]
    fn a_broadcast_counts_each_viewer_once_over_a_tree() {
        // origin ← edge, one browser on the edge (issue 21): relays report their own viewers,
        // child relays left out, so the origin reports 0 and the broadcast has 1 viewer.
        let now = Instant::now();
        let mut reg = Registry::new(Policy::default());
        reg.heartbeat(origin_hb("o"), now);
        let mut edge = hb("e", "eu", 100, 1);
        edge.broadcasts.push(BroadcastLoad {
            namespace: "live/a".into(),
            viewers: 1,
            local: false,
            rooms: Default::default(),
        });
        edge.parents.push(ParentLink {
            namespace: "live/a".into(),
            upstream: "moqt://o:1".into(),
        });
        reg.heartbeat(edge, now);
        let status = reg.status(now);
        let show = status
            .broadcasts
            .iter()
            .find(|b| b.broadcast == "live/a")
            .unwrap();
        assert_eq!(show.viewers, 1, "{status:?}");
        assert_eq!(show.relays, ["e", "o"]);
        assert_eq!(show.origin.as_deref(), Some("o"));
        let per_relay: Vec<(String, u32)> = status
            .relays
            .iter()
            .map(|r| (r.relay_id.clone(), r.broadcasts[0].viewers))
            .collect();
        assert_eq!(per_relay, [("e".to_string(), 1), ("o".to_string(), 0)]);
        assert_eq!(status.relays[0].parents[0].relay_id.as_deref(), Some("o"));
    }

    #[test]
    fn chat_rooms_fill_up_to_their_size_in_turn_per_broadcast() {
        let now = Instant::now();
        let mut reg = Registry::new(Policy {
            chat_room_size: 2,
            ..Policy::default()
        });
        reg.heartbeat(origin_hb("o"), now);
        reg.heartbeat(hb("e", "eu", 100, 0), now);
        let rooms: Vec<String> = (0..5)
            .map(|_| reg.watch("live/a", "eu", None, now).unwrap().chat_room)
            .collect();
        assert_eq!(rooms, ["0", "0", "1", "1", "2"]);
    }

    #[test]
    fn chat_rooms_follow_the_occupancy_heartbeats_report() {
        let t0 = Instant::now();
        let mut reg = Registry::new(Policy {
            chat_room_size: 2,
            ..Policy::default()
        });
        reg.heartbeat(origin_hb("o"), t0);
        let edge = |room0: u32| {
            let mut h = hb("e", "eu", 100, room0);
            h.broadcasts.push(BroadcastLoad {
                namespace: "live/a".into(),
                viewers: room0,
                local: false,
                rooms: [(0, room0)].into(),
            });
            h
        };
        reg.heartbeat(edge(2), t0);
        assert_eq!(reg.watch("live/a", "eu", None, t0).unwrap().chat_room, "1");
        // One viewer of room 0 left: once the pending assignment to room 1 is past its grace,
        // the next two viewers fill room 0 and room 1 again.
        let later = t0 + reg.policy().assignment_grace + Duration::from_millis(1);
        reg.heartbeat(edge(1), later);
        reg.heartbeat(origin_hb("o"), later);
        let rooms: Vec<String> = (0..2)
            .map(|_| reg.watch("live/a", "eu", None, later).unwrap().chat_room)
            .collect();
        assert_eq!(rooms, ["0", "1"]);
        // A returning viewer asking for room 0, now full, goes to the first room with space.
        assert_eq!(reg.watch("live/a", "eu", Some(0), later).unwrap().chat_room, "1");
    }

    #[test]
    fn a_loop_in_reported_links_is_not_followed_forever() {
        let now = Instant::now();
        let mut reg = Registry::new(Policy::default());
        reg.heartbeat(origin_hb("o"), now);
        for (me, parent) in [("a", "b"), ("b", "a")] {
            let mut h = hb(me, "eu", 10, 0);
            h.parents.push(ParentLink {
                namespace: "live/a".into(),
                upstream: format!("moqt://{parent}:1"),
            });
            reg.heartbeat(h, now);
        }
        reg.heartbeat(hb("c", "eu", 10, 0), now);
        // a and b are in a loop with no depth: only the origin is a valid parent for c.
        assert_eq!(
            reg.route("live/a", "c", now).unwrap(),
            vec!["moqt://o:1".to_owned()]
        );
    }

    #[test]
    fn route_never_offers_a_descendant() {
        let now = Instant::now();
        let mut reg = Registry::new(Policy::default());
        reg.heartbeat(origin_hb("o"), now);
        let mut a = hb("a", "eu", 10, 0);
        a.parents.push(ParentLink {
            namespace: "live/a".into(),
            upstream: "moqt://o:1".into(),
        });
        reg.heartbeat(a, now);
        let mut b = hb("b", "eu", 10, 0);
        b.parents.push(ParentLink {
            namespace: "live/a".into(),
            upstream: "moqt://a:1/".into(),
        });
        reg.heartbeat(b, now);
        // a re-resolving must not be offered b (its own child).
        let up = reg.route("live/a", "a", now).unwrap();
        assert!(!up.contains(&"moqt://b:1".to_owned()), "{up:?}");
        assert_eq!(up.first().map(String::as_str), Some("moqt://o:1"));
    }

    /// `e`'s heartbeat at `at`: `sessions` open, `accepted` in all since it started.
    fn arrivals(reg: &mut Registry, sessions: u32, accepted: u64, at: Instant) {
        let mut h = hb("e", "eu", 10, sessions);
        h.load.accepted = accepted;
        reg.heartbeat(h, at);
    }

    fn occupancy(reg: &Registry, id: &str) -> u32 {
        reg.fleet().relays.iter().find(|r| r.id == id).unwrap().occupancy
    }

    #[test]
    fn an_assigned_viewer_counts_until_it_arrives_or_its_join_timeout_passes() {
        let t0 = Instant::now();
        let mut reg = Registry::new(Policy::default());
        reg.heartbeat(origin_hb("o"), t0);
        arrivals(&mut reg, 0, 40, t0);
        for _ in 0..8 {
            assert_eq!(reg.watch("live/a", "eu", None, t0).unwrap().relay_id, "e");
        }
        // e is at high-water (8 of 10): the 9th viewer spills to the origin as a last resort.
        assert_eq!(reg.watch("live/a", "eu", None, t0).unwrap().relay_id, "o");
        // Five arrived (the running count goes 40 → 45): they are sessions now, three are
        // still on their way.
        arrivals(&mut reg, 5, 45, t0 + Duration::from_secs(1));
        assert_eq!(occupancy(&reg, "e"), 8);
        // Two of the five left and one more arrived: 4 sessions, 2 on their way.
        arrivals(&mut reg, 4, 46, t0 + Duration::from_secs(2));
        assert_eq!(occupancy(&reg, "e"), 6);
        // The last two never come: they stop counting once the join timeout has passed.
        let timeout = reg.policy().join_timeout;
        arrivals(&mut reg, 4, 46, t0 + timeout - Duration::from_millis(1));
        assert_eq!(occupancy(&reg, "e"), 6);
        arrivals(&mut reg, 4, 46, t0 + timeout);
        assert_eq!(occupancy(&reg, "e"), 4);
        // A relay restarted under the same id counts from zero: 3 accepted are 3 arrivals.
        for _ in 0..3 {
            reg.watch("live/a", "eu", None, t0 + timeout).unwrap();
        }
        arrivals(&mut reg, 3, 3, t0 + timeout + Duration::from_secs(1));
        assert_eq!(occupancy(&reg, "e"), 3);
    }

    /// A crowd on slow phones: viewers take longer to connect than `assignment_grace`.
    /// Counting assignments on time alone forgot them after the grace and filled the relay a
    /// second time (613 sessions on a relay of 500 in a flash crowd run).
    #[test]
    fn slow_joiners_do_not_let_a_relay_be_filled_twice() {
        let t0 = Instant::now();
        let mut reg = Registry::new(Policy::default());
        let mut origin = origin_hb("o");
        origin.load.sessions = origin.capacity.max_viewers;
        reg.heartbeat(origin, t0);
        arrivals(&mut reg, 0, 0, t0);
        for _ in 0..10 {
            assert_eq!(reg.watch("live/a", "eu", None, t0).unwrap().relay_id, "e");
        }
        let full = Err(PlaceError::NoCapacity("live/a".into()));
        assert_eq!(reg.watch("live/a", "eu", None, t0), full);
        // Heartbeats keep coming, well past the grace, before any of them has connected.
        let late = t0 + reg.policy().assignment_grace * 2;
        arrivals(&mut reg, 0, 0, late);
        assert_eq!(occupancy(&reg, "e"), 10);
        assert_eq!(reg.watch("live/a", "eu", None, late), full);
        // Now they arrive: the relay is exactly full, once.
        let later = late + Duration::from_secs(1);
        arrivals(&mut reg, 10, 10, later);
        assert_eq!(occupancy(&reg, "e"), 10);
        assert_eq!(reg.watch("live/a", "eu", None, later), full);
    }
}
