//! Chat rooms: which room of a broadcast a new viewer joins.
//!
//! A room holds at most `size` viewers (DESIGN.md, "Interactions": a room small enough that its
//! chat stays readable). Relays report the viewers of each `chat/<room>` track in their
//! heartbeats; a room's occupancy is the sum over the fleet plus the viewers assigned to it
//! within the assignment grace (not yet in any heartbeat: the viewer is still connecting, or
//! the next heartbeat has not come). Counting a viewer twice during its grace only fills rooms
//! a little early; counting it never would overfill them.
//!
//! A viewer joins the lowest-numbered room with space, so rooms that viewers left are filled
//! again before new ones open, and a returning viewer asking for its old room gets it back
//! while that room has space (and still has someone in it: an empty room is no reunion, and a
//! client cannot open rooms of its own choosing).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::api::BroadcastLoad;

/// Room occupancy per broadcast: reported by heartbeats, and pending.
#[derive(Debug, Default)]
pub struct Rooms {
    /// broadcast → room → viewers summed over the fleet's last heartbeats (kept up to date
    /// as each heartbeat replaces its relay's previous one, so an assignment reads one map).
    reported: HashMap<String, BTreeMap<u64, u64>>,
    /// broadcast → room → when viewers were assigned to it, oldest first, within the grace.
    pending: HashMap<String, BTreeMap<u64, VecDeque<Instant>>>,
}

impl Rooms {
    /// One relay's report changes from `before` to `after` (empty when it registers, or
    /// expires).
    pub fn report(&mut self, before: &[BroadcastLoad], after: &[BroadcastLoad]) {
        for load in before {
            if let Some(rooms) = self.reported.get_mut(&load.namespace) {
                for (room, n) in &load.rooms {
                    if let Some(sum) = rooms.get_mut(room) {
                        *sum = sum.saturating_sub(u64::from(*n));
                        if *sum == 0 {
                            rooms.remove(room);
                        }
                    }
                }
                if rooms.is_empty() {
                    self.reported.remove(&load.namespace);
                }
            }
        }
        for load in after.iter().filter(|l| !l.rooms.is_empty()) {
            let rooms = self.reported.entry(load.namespace.clone()).or_default();
            for (room, n) in &load.rooms {
                let sum = rooms.entry(*room).or_default();
                *sum = sum.saturating_add(u64::from(*n));
            }
        }
    }

    /// The room for a new viewer of `broadcast`; `wanted` is the room the viewer was in
    /// before, if it says so. The assignment counts toward the room's occupancy for `grace`.
    pub fn assign(
        &mut self,
        broadcast: &str,
        wanted: Option<u64>,
        size: u64,
        grace: Duration,
        now: Instant,
    ) -> u64 {
        let reported = self.reported.get(broadcast);
        let pending = self.pending.entry(broadcast.to_owned()).or_default();
        prune(pending, grace, now);
        let occupancy = |room: u64| {
            let seen = reported.and_then(|r| r.get(&room)).copied().unwrap_or(0);
            let coming = pending.get(&room).map_or(0, |t| t.len() as u64);
            seen.saturating_add(coming)
        };
        let room = match wanted {
            Some(room) if (1..size).contains(&occupancy(room)) => room,
            // Rooms at or beyond the number of occupied ones cannot all be full.
            _ => (0..)
                .find(|&room| occupancy(room) < size.max(1))
                .unwrap_or_default(),
        };
        pending.entry(room).or_default().push_back(now);
        room
    }

    /// Drop assignments older than `grace` everywhere, and broadcasts left with none.
    pub fn expire(&mut self, grace: Duration, now: Instant) {
        self.pending.retain(|_, rooms| {
            prune(rooms, grace, now);
            !rooms.is_empty()
        });
    }
}

fn prune(rooms: &mut BTreeMap<u64, VecDeque<Instant>>, grace: Duration, now: Instant) {
    let Some(cutoff) = now.checked_sub(grace) else {
        return;
    };
    rooms.retain(|_, times| {
        while times.front().is_some_and(|t| *t <= cutoff) {
            times.pop_front();
        }
        !times.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn assign(rooms: &mut Rooms, wanted: Option<u64>, now: Instant) -> u64 {
        rooms.assign("live/a", wanted, 2, GRACE, now)
    }

    fn load(namespace: &str, rooms: &[(u64, u32)]) -> BroadcastLoad {
        BroadcastLoad {
            namespace: namespace.into(),
            viewers: 0,
            local: false,
            rooms: rooms.iter().copied().collect(),
        }
    }

    #[test]
    fn rooms_fill_in_turn_while_assignments_are_pending() {
        let now = Instant::now();
        let mut rooms = Rooms::default();
        let got: Vec<u64> = (0..5).map(|_| assign(&mut rooms, None, now)).collect();
        assert_eq!(got, [0, 0, 1, 1, 2]);
        // Another broadcast has rooms of its own.
        assert_eq!(rooms.assign("live/b", None, 2, GRACE, now), 0);
    }

    #[test]
    fn rooms_viewers_left_are_filled_before_new_ones_open() {
        let t0 = Instant::now();
        let mut rooms = Rooms::default();
        for _ in 0..6 {
            assign(&mut rooms, None, t0);
        }
        // After the grace, heartbeats of two relays show who stayed: room 1 lost one viewer,
        // room 0 both; room 2 is full over the two relays.
        rooms.report(&[], &[load("live/a", &[(1, 1), (2, 1)])]);
        rooms.report(&[], &[load("live/a", &[(2, 1)]), load("live/b", &[(0, 9)])]);
        let later = t0 + GRACE + Duration::from_millis(1);
        let got: Vec<u64> = (0..4).map(|_| assign(&mut rooms, None, later)).collect();
        assert_eq!(got, [0, 0, 1, 3]);
    }

    #[test]
    fn a_returning_viewer_gets_its_room_back_while_it_has_space() {
        let now = Instant::now();
        let mut rooms = Rooms::default();
        rooms.report(&[], &[load("live/a", &[(0, 1), (4, 1), (5, 2)])]);
        assert_eq!(assign(&mut rooms, Some(4), now), 4);
        // Room 4 is now full (1 reported + 1 pending): the next one asking for it gets room 0.
        assert_eq!(assign(&mut rooms, Some(4), now), 0);
        // A full room, and an empty one (no reunion, and no opening rooms at will), are refused.
        assert_eq!(assign(&mut rooms, Some(5), now), 1);
        assert_eq!(assign(&mut rooms, Some(900), now), 1);
    }

    #[test]
    fn a_relays_new_report_replaces_its_old_one() {
        let now = Instant::now();
        let mut rooms = Rooms::default();
        let full = [load("live/a", &[(0, 2)])];
        rooms.report(&[], &full);
        assert_eq!(assign(&mut rooms, None, now), 1);
        // The relay's viewers of room 0 left (its next heartbeat), then the relay expired.
        let emptier = [load("live/a", &[(0, 1)])];
        rooms.report(&full, &emptier);
        assert_eq!(rooms.reported["live/a"][&0], 1);
        rooms.report(&emptier, &[]);
        assert!(rooms.reported.is_empty());
        assert_eq!(assign(&mut rooms, None, now), 0);
    }

    #[test]
    fn expired_assignments_leave_no_state_behind() {
        let now = Instant::now();
        let mut rooms = Rooms::default();
        assign(&mut rooms, None, now);
        rooms.expire(GRACE, now + GRACE / 2);
        assert_eq!(rooms.pending.len(), 1);
        rooms.expire(GRACE, now + GRACE);
        assert!(rooms.pending.is_empty());
    }
}
