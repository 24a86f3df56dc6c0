//! The flash-crowd autoscaler: pure policy on an explicit clock.
//!
//! Each [`Autoscaler::tick`] takes `now`, the joins per broadcast since the last tick and a
//! [`FleetView`], and returns [`Action`]s for the caller to carry out. It never sleeps, spawns
//! or reads a clock, so tests drive it on a virtual one.
//!
//! Per tick:
//! 1. **Join velocity** per broadcast: joins / elapsed, smoothed by an exponential moving
//!    average with a configurable half-life.
//! 2. **Replicate ahead**: when a broadcast's relays (non-origin, not draining) would reach
//!    high-water within `replicate_lead` at its join velocity, designate the non-carrier with
//!    the most headroom as another replica ([`Action::Replicate`]); viewers then spread over it.
//! 3. **Spawn ahead**: the fleet's time-to-full is its headroom below high-water (plus what
//!    spawned-but-unregistered relays will bring) divided by the total join velocity; when it
//!    is below `spawn_lead`, spawn enough relays to cover the shortfall ([`Action::Spawn`]),
//!    bounded per tick and in total.
//! 4. **Scale down**: a spawned relay with no sessions for `idle_cooldown`, when the fleet
//!    would still cover `spawn_lead` without it, is drained ([`Action::Drain`]); a draining
//!    spawned relay is stopped once empty, gone, or past `drain_timeout` ([`Action::Stop`]).
//!    A spawned relay that never registers within `spawn_timeout` is stopped too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The autoscaler's timing and limits (part of [`ControlConfig`](crate::config::ControlConfig),
/// which adds `high-water` and the spawner's settings to make an [`AutoscalePolicy`]).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoscaleSettings {
    /// Half-life of the smoothed join rate per broadcast.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub join_rate_halflife: Duration,

    /// Replicate a broadcast onto another relay when its relays would reach high-water within this.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub replicate_lead: Duration,

    /// Spawn relays when the fleet would be full within this.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub spawn_lead: Duration,

    /// A spawned relay that has not registered within this is written off (and stopped).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub spawn_timeout: Duration,

    /// Drain and stop a spawned relay after it has been idle this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub idle_cooldown: Duration,

    /// Stop a draining spawned relay after this even if sessions remain.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::layered::serde_duration")]
    pub drain_timeout: Duration,

    /// Most relays alive at once that this control plane spawned.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_spawned: u32,

    /// Most relays spawned in one tick.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_spawn_per_tick: u32,
}

/// The autoscaler's numbers (see [`crate::config`] for the reasoning behind each default).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalePolicy {
    /// Fraction of capacity counted as usable.
    pub high_water: f64,
    /// Half-life of the join-rate moving average.
    pub join_rate_halflife: Duration,
    /// Replicate when a broadcast's relays would reach high-water within this.
    pub replicate_lead: Duration,
    /// Spawn when the fleet would reach high-water within this.
    pub spawn_lead: Duration,
    /// A spawned relay that has not registered by then is stopped.
    pub spawn_timeout: Duration,
    /// Idle time before a spawned relay is drained.
    pub idle_cooldown: Duration,
    /// Longest drain before a spawned relay is stopped anyway.
    pub drain_timeout: Duration,
    /// Most spawned relays alive at once (0 disables spawning).
    pub max_spawned: u32,
    /// Most spawns per tick.
    pub max_spawn_per_tick: u32,
    /// Viewer capacity of a spawned relay.
    pub spawn_capacity: u32,
}

impl Default for AutoscalePolicy {
    fn default() -> Self {
        Self {
            high_water: 0.8,
            join_rate_halflife: Duration::from_secs(2),
            replicate_lead: Duration::from_secs(5),
            spawn_lead: Duration::from_secs(15),
            spawn_timeout: Duration::from_secs(20),
            idle_cooldown: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_spawned: 16,
            max_spawn_per_tick: 4,
            spawn_capacity: 100,
        }
    }
}

/// One relay as the autoscaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayView {
    /// Relay id.
    pub id: String,
    /// Viewer capacity.
    pub capacity: u32,
    /// Sessions now, including assignments not yet reported.
    pub occupancy: u32,
    /// Draining (ordered or self-reported).
    pub draining: bool,
    /// Origin of some broadcast (not used for viewers while others have room).
    pub origin: bool,
    /// Broadcasts it carries or was designated for (not counting ones it originates).
    pub broadcasts: Vec<String>,
}

impl RelayView {
    fn headroom(&self, high_water: f64) -> f64 {
        (high_water * f64::from(self.capacity) - f64::from(self.occupancy)).max(0.0)
    }

    fn usable(&self) -> bool {
        !self.draining && !self.origin
    }
}

/// The fleet as the autoscaler sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetView {
    /// Every live relay.
    pub relays: Vec<RelayView>,
}

/// What the autoscaler wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make `relay` a replica of `broadcast` (rank it as a carrier for new viewers).
    Replicate {
        /// The broadcast.
        broadcast: String,
        /// The relay.
        relay: String,
    },
    /// Start this many new relays; report each with [`Autoscaler::spawned`].
    Spawn {
        /// How many.
        count: u32,
    },
    /// Order a spawned relay to drain.
    Drain {
        /// The relay.
        relay: String,
    },
    /// Stop a spawned relay; report with [`Autoscaler::stopped`].
    Stop {
        /// The relay.
        relay: String,
    },
}

#[derive(Debug, Clone)]
struct Spawned {
    spawned_at: Instant,
    registered: bool,
    idle_since: Option<Instant>,
    draining_since: Option<Instant>,
    stop_sent: bool,
}

/// The autoscaler's state: smoothed join rates and the relays it spawned.
#[derive(Debug)]
pub struct Autoscaler {
    policy: AutoscalePolicy,
    rates: HashMap<String, f64>,
    last_tick: Option<Instant>,
    spawned: HashMap<String, Spawned>,
    time_to_full: Option<Duration>,
}

impl Autoscaler {
    /// A new autoscaler.
    pub fn new(policy: AutoscalePolicy) -> Self {
        Self {
            policy,
            rates: HashMap::new(),
            last_tick: None,
            spawned: HashMap::new(),
            time_to_full: None,
        }
    }

    /// One step at `now`: `joins` are viewer assignments per broadcast since the last tick.
    pub fn tick(&mut self, now: Instant, joins: &HashMap<String, u64>, fleet: &FleetView) -> Vec<Action> {
        self.update_rates(now, joins);
        let mut actions = Vec::new();
        let live: HashMap<&str, &RelayView> = fleet.relays.iter().map(|r| (r.id.as_str(), r)).collect();
        self.write_off(now, &live, &mut actions);
        self.replicate(fleet, &mut actions);
        let spare = self.spawn_ahead(fleet, &mut actions);
        self.scale_down(now, &live, spare, &mut actions);
        actions
    }

    /// Note which spawned relays registered; stop those that never did within the timeout.
    fn write_off(&mut self, now: Instant, live: &HashMap<&str, &RelayView>, actions: &mut Vec<Action>) {
        for (id, s) in &mut self.spawned {
            if live.contains_key(id.as_str()) {
                s.registered = true;
            } else if !s.registered
                && !s.stop_sent
                && now.saturating_duration_since(s.spawned_at) > self.policy.spawn_timeout
            {
                tracing::warn!(relay = %id, "spawned relay never registered; stopping it");
                s.stop_sent = true;
                actions.push(Action::Stop { relay: id.clone() });
            }
        }
    }

    /// Replicate ahead, per broadcast: a broadcast whose carriers lack the headroom for its
    /// join rate over `replicate_lead` gets one more relay carrying it.
    fn replicate(&self, fleet: &FleetView, actions: &mut Vec<Action>) {
        let hw = self.policy.high_water;
        let mut by_rate: Vec<(&String, f64)> = self.rates.iter().map(|(b, r)| (b, *r)).collect();
        by_rate.sort_by(|a, b| a.0.cmp(b.0));
        for (broadcast, rate) in &by_rate {
            if *rate <= 0.0 {
                continue;
            }
            let carriers = fleet
                .relays
                .iter()
                .filter(|r| r.usable() && r.broadcasts.iter().any(|b| b == *broadcast));
            let headroom: f64 = carriers.map(|r| r.headroom(hw)).sum();
            if headroom < rate * self.policy.replicate_lead.as_secs_f64() {
                let pick = fleet
                    .relays
                    .iter()
                    .filter(|r| r.usable() && !r.broadcasts.iter().any(|b| b == *broadcast))
                    .filter(|r| r.headroom(hw) >= 1.0)
                    .max_by(|a, b| a.headroom(hw).total_cmp(&b.headroom(hw)).then(b.id.cmp(&a.id)));
                if let Some(relay) = pick {
                    actions.push(Action::Replicate {
                        broadcast: (*broadcast).clone(),
                        relay: relay.id.clone(),
                    });
                }
            }
        }
    }

    /// Spawn ahead of the fleet's time-to-full; returns the capacity to spare beyond what the
    /// join rate needs over `spawn_lead` (negative when short).
    fn spawn_ahead(&mut self, fleet: &FleetView, actions: &mut Vec<Action>) -> f64 {
        let hw = self.policy.high_water;
        let velocity: f64 = self.rates.values().sum();
        let pending = self
            .spawned
            .values()
            .filter(|s| !s.registered && !s.stop_sent)
            .count() as f64;
        let per_spawn = hw * f64::from(self.policy.spawn_capacity);
        let headroom: f64 = fleet
            .relays
            .iter()
            .filter(|r| r.usable())
            .map(|r| r.headroom(hw))
            .sum::<f64>()
            + pending * per_spawn;
        self.time_to_full = (velocity > 0.0).then(|| Duration::from_secs_f64((headroom / velocity).min(1e9)));
        let need = velocity * self.policy.spawn_lead.as_secs_f64();
        if headroom < need && per_spawn > 0.0 {
            let alive = self.spawned.values().filter(|s| !s.stop_sent).count() as u32;
            let room = self.policy.max_spawned.saturating_sub(alive);
            let wanted = ((need - headroom) / per_spawn).ceil() as u32;
            let count = wanted.min(room).min(self.policy.max_spawn_per_tick);
            if count > 0 {
                tracing::info!(
                    velocity,
                    headroom,
                    need,
                    count,
                    "fleet short of capacity: spawning"
                );
                actions.push(Action::Spawn { count });
            }
        }
        headroom - need
    }

    /// Scale down: drain idle spawned relays past their cooldown while `spare` allows, and
    /// stop drained ones once empty (or past the drain timeout).
    fn scale_down(
        &mut self,
        now: Instant,
        live: &HashMap<&str, &RelayView>,
        spare: f64,
        actions: &mut Vec<Action>,
    ) {
        let hw = self.policy.high_water;
        let mut ids: Vec<&String> = self.spawned.keys().collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        let mut released = 0.0;
        for id in ids {
            let Some(s) = self.spawned.get_mut(&id) else {
                continue;
            };
            if s.stop_sent {
                continue;
            }
            let view = live.get(id.as_str());
            if let Some(since) = s.draining_since {
                let empty = view.is_none_or(|r| r.occupancy == 0);
                if empty || now.saturating_duration_since(since) >= self.policy.drain_timeout {
                    s.stop_sent = true;
                    actions.push(Action::Stop { relay: id });
                }
                continue;
            }
            let Some(view) = view else { continue };
            if view.occupancy > 0 || view.draining {
                s.idle_since = None;
                continue;
            }
            let idle_since = *s.idle_since.get_or_insert(now);
            let its = view.headroom(hw);
            if now.saturating_duration_since(idle_since) >= self.policy.idle_cooldown
                && spare - released - its >= 0.0
            {
                released += its;
                s.draining_since = Some(now);
                actions.push(Action::Drain { relay: id });
            }
        }
    }

    /// A relay was spawned at `now` (after [`Action::Spawn`]).
    pub fn spawned(&mut self, id: &str, now: Instant) {
        self.spawned.insert(
            id.to_owned(),
            Spawned {
                spawned_at: now,
                registered: false,
                idle_since: None,
                draining_since: None,
                stop_sent: false,
            },
        );
    }

    /// A spawned relay was stopped (after [`Action::Stop`]) and is forgotten.
    pub fn stopped(&mut self, id: &str) {
        self.spawned.remove(id);
    }

    /// The smoothed join rate of every broadcast with recent joins, viewers per second.
    pub fn join_rates(&self) -> &HashMap<String, f64> {
        &self.rates
    }

    /// The fleet's estimated time until it is at high-water, when viewers are arriving.
    pub fn time_to_full(&self) -> Option<Duration> {
        self.time_to_full
    }

    /// Relays spawned and not yet stopped.
    pub fn spawned_count(&self) -> usize {
        self.spawned.len()
    }

    fn update_rates(&mut self, now: Instant, joins: &HashMap<String, u64>) {
        let Some(last) = self.last_tick.replace(now) else {
            return;
        };
        let dt = now.saturating_duration_since(last).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let alpha = 1.0 - 0.5f64.powf(dt / self.policy.join_rate_halflife.as_secs_f64());
        for broadcast in joins.keys() {
            self.rates.entry(broadcast.clone()).or_insert(0.0);
        }
        self.rates.retain(|broadcast, rate| {
            let instant = joins.get(broadcast).copied().unwrap_or(0) as f64 / dt;
            *rate += alpha * (instant - *rate);
            *rate >= 0.01 || instant > 0.0
        });
    }
}
