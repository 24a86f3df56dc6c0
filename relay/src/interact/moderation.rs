//! Moderation without sockets or clocks: the actions a moderator sends ([`Action`]), the
//! state they build ([`State`]: bans, timeouts, deleted comments, slow mode, a gate), the
//! verdict on a viewer's comment ([`State::check_comment`]) and the `mod` track object the
//! origin publishes after each action ([`Update`]: the action and the whole state, so one
//! object brings a joining relay or viewer up to date).
//!
//! Identities are the token's `sub`. Times are milliseconds since the Unix epoch, passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};

use banyan_moq::coding::encode_varint;

use super::payload::{put_string, string, varint};
use super::Refusal;

/// Longest `sub` a moderation action may name, in bytes.
pub const MAX_SUB_BYTES: usize = 128;
/// Most viewers banned (or timed out) at once per broadcast; a ban beyond is refused as
/// [`Refusal::TooLarge`] (the whole state travels in every `mod` object).
pub const MAX_BANS: usize = 4096;
/// Deleted comments remembered per broadcast (older ones have left every cache).
pub const MAX_DELETED: usize = 1024;
/// Longest timeout or slow-mode interval, in seconds (one day).
pub const MAX_SECS: u64 = 86_400;

/// Who may comment while a gate is up (the viewer's token claims `fol` and `paid`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gate {
    /// Everybody.
    #[default]
    Open,
    /// Followers and subscribers.
    Followers,
    /// Subscribers only.
    Subscribers,
}

impl Gate {
    fn code(self) -> u64 {
        match self {
            Gate::Open => 0,
            Gate::Followers => 1,
            Gate::Subscribers => 2,
        }
    }

    fn from_code(code: u64) -> Result<Self, Refusal> {
        match code {
            0 => Ok(Gate::Open),
            1 => Ok(Gate::Followers),
            2 => Ok(Gate::Subscribers),
            _ => Err(Refusal::Malformed),
        }
    }

    /// The name used in logs, the action log and the page.
    pub fn name(self) -> &'static str {
        match self {
            Gate::Open => "open",
            Gate::Followers => "followers",
            Gate::Subscribers => "subscribers",
        }
    }
}

/// One moderation action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove comment `seq` of `room` (its origin sequence number).
    Delete {
        /// The room.
        room: u64,
        /// The comment's sequence number in the room.
        seq: u64,
    },
    /// Refuse `sub`'s comments for `secs` seconds (0 lifts a timeout).
    Timeout {
        /// The viewer (token `sub`).
        sub: String,
        /// How long.
        secs: u64,
    },
    /// Refuse `sub`'s comments and subscriptions until unbanned.
    Ban {
        /// The viewer.
        sub: String,
    },
    /// Lift a ban.
    Unban {
        /// The viewer.
        sub: String,
    },
    /// One comment per viewer per `secs` seconds (0 turns slow mode off).
    Slow {
        /// The interval.
        secs: u64,
    },
    /// Who may comment.
    Gate(Gate),
}

const DELETE: u64 = 0;
const TIMEOUT: u64 = 1;
const BAN: u64 = 2;
const UNBAN: u64 = 3;
const SLOW: u64 = 4;
const GATE: u64 = 5;

impl Action {
    /// Decode from `buf` (part of an object payload).
    pub fn decode(buf: &mut Bytes) -> Result<Self, Refusal> {
        let action = match varint(buf)? {
            DELETE => Action::Delete {
                room: varint(buf)?,
                seq: varint(buf)?,
            },
            TIMEOUT => Action::Timeout {
                sub: sub(buf)?,
                secs: varint(buf)?,
            },
            BAN => Action::Ban { sub: sub(buf)? },
            UNBAN => Action::Unban { sub: sub(buf)? },
            SLOW => Action::Slow { secs: varint(buf)? },
            GATE => Action::Gate(Gate::from_code(varint(buf)?)?),
            _ => return Err(Refusal::Malformed),
        };
        match &action {
            Action::Timeout { secs, .. } | Action::Slow { secs } if *secs > MAX_SECS => {
                Err(Refusal::TooLarge)
            }
            _ => Ok(action),
        }
    }

    /// Append to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Action::Delete { room, seq } => {
                encode_varint(DELETE, buf);
                encode_varint(*room, buf);
                encode_varint(*seq, buf);
            }
            Action::Timeout { sub, secs } => {
                encode_varint(TIMEOUT, buf);
                put_string(sub.as_bytes(), buf);
                encode_varint(*secs, buf);
            }
            Action::Ban { sub } => {
                encode_varint(BAN, buf);
                put_string(sub.as_bytes(), buf);
            }
            Action::Unban { sub } => {
                encode_varint(UNBAN, buf);
                put_string(sub.as_bytes(), buf);
            }
            Action::Slow { secs } => {
                encode_varint(SLOW, buf);
                encode_varint(*secs, buf);
            }
            Action::Gate(gate) => {
                encode_varint(GATE, buf);
                encode_varint(gate.code(), buf);
            }
        }
    }

    /// The action as one payload of its own (how the store keeps it).
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }

    /// One line for logs and the action log (`ban alice`, `delete 3#17`).
    pub fn describe(&self) -> String {
        match self {
            Action::Delete { room, seq } => format!("delete {room}#{seq}"),
            Action::Timeout { sub, secs } => format!("timeout {sub} {secs}s"),
            Action::Ban { sub } => format!("ban {sub}"),
            Action::Unban { sub } => format!("unban {sub}"),
            Action::Slow { secs } => format!("slow {secs}s"),
            Action::Gate(gate) => format!("gate {}", gate.name()),
        }
    }
}

/// Who sent a comment: what the edge knows from the viewer's token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub` (none without auth).
    pub sub: Option<String>,
    /// The token's `mod` claim covers the broadcast.
    pub moderator: bool,
    /// The `fol` claim.
    pub follower: bool,
    /// The `paid` claim.
    pub subscriber: bool,
}

/// A broadcast's moderation state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Banned viewers.
    pub bans: BTreeSet<String>,
    /// Timed-out viewers and when their timeout ends (ms).
    pub timeouts: BTreeMap<String, u64>,
    /// Deleted comments (room, seq), oldest first, at most [`MAX_DELETED`].
    pub deleted: VecDeque<(u64, u64)>,
    /// Slow mode interval in seconds (0: off).
    pub slow_secs: u64,
    /// Who may comment.
    pub gate: Gate,
}

impl State {
    /// Apply `action` taken at `now_ms`. Refused ([`Refusal::TooLarge`]) when it would hold
    /// more than [`MAX_BANS`] viewers.
    pub fn apply(&mut self, action: &Action, now_ms: u64) -> Result<(), Refusal> {
        self.expire(now_ms);
        match action {
            Action::Delete { room, seq } => {
                if !self.deleted.contains(&(*room, *seq)) {
                    if self.deleted.len() >= MAX_DELETED {
                        self.deleted.pop_front();
                    }
                    self.deleted.push_back((*room, *seq));
                }
            }
            Action::Timeout { sub, secs } => {
                if *secs == 0 {
                    self.timeouts.remove(sub);
                } else {
                    if !self.timeouts.contains_key(sub) && self.full() {
                        return Err(Refusal::TooLarge);
                    }
                    self.timeouts
                        .insert(sub.clone(), now_ms.saturating_add(secs * 1000));
                }
            }
            Action::Ban { sub } => {
                if !self.bans.contains(sub) && self.full() {
                    return Err(Refusal::TooLarge);
                }
                self.bans.insert(sub.clone());
            }
            Action::Unban { sub } => {
                self.bans.remove(sub);
            }
            Action::Slow { secs } => self.slow_secs = *secs,
            Action::Gate(gate) => self.gate = *gate,
        }
        Ok(())
    }

    /// Forget timeouts that ended by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        self.timeouts.retain(|_, until| *until > now_ms);
    }

    fn full(&self) -> bool {
        self.bans.len() + self.timeouts.len() >= MAX_BANS
    }

    /// Whether comment `seq` of `room` was deleted.
    pub fn is_deleted(&self, room: u64, seq: u64) -> bool {
        self.deleted.contains(&(room, seq))
    }

    /// Whether `sub` is banned.
    pub fn is_banned(&self, sub: &str) -> bool {
        self.bans.contains(sub)
    }

    /// May `who` comment at `now_ms`, having last commented at `last_ms`? Moderators pass
    /// everything; then bans, timeouts, the gate and slow mode, in that order.
    pub fn check_comment(&self, who: &Identity, now_ms: u64, last_ms: Option<u64>) -> Result<(), Refusal> {
        if who.moderator {
            return Ok(());
        }
        if let Some(sub) = &who.sub {
            if self.bans.contains(sub) {
                return Err(Refusal::Banned);
            }
            if self.timeouts.get(sub).is_some_and(|until| *until > now_ms) {
                return Err(Refusal::TimedOut);
            }
        }
        let passes = match self.gate {
            Gate::Open => true,
            Gate::Followers => who.follower || who.subscriber,
            Gate::Subscribers => who.subscriber,
        };
        if !passes {
            return Err(Refusal::Gated);
        }
        if self.slow_secs > 0
            && last_ms.is_some_and(|last| now_ms.saturating_sub(last) < self.slow_secs * 1000)
        {
            return Err(Refusal::SlowMode);
        }
        Ok(())
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode_varint(self.slow_secs, buf);
        encode_varint(self.gate.code(), buf);
        encode_varint(self.bans.len() as u64, buf);
        for sub in &self.bans {
            put_string(sub.as_bytes(), buf);
        }
        encode_varint(self.timeouts.len() as u64, buf);
        for (sub, until) in &self.timeouts {
            put_string(sub.as_bytes(), buf);
            encode_varint(*until, buf);
        }
        encode_varint(self.deleted.len() as u64, buf);
        for (room, seq) in &self.deleted {
            encode_varint(*room, buf);
            encode_varint(*seq, buf);
        }
    }

    fn decode(buf: &mut Bytes) -> Result<Self, Refusal> {
        let slow_secs = varint(buf)?;
        let gate = Gate::from_code(varint(buf)?)?;
        let mut state = State {
            slow_secs,
            gate,
            ..State::default()
        };
        for _ in 0..count(buf, MAX_BANS)? {
            state.bans.insert(sub(buf)?);
        }
        for _ in 0..count(buf, MAX_BANS)? {
            let sub = sub(buf)?;
            state.timeouts.insert(sub, varint(buf)?);
        }
        for _ in 0..count(buf, MAX_DELETED)? {
            state.deleted.push_back((varint(buf)?, varint(buf)?));
        }
        Ok(state)
    }
}

/// One object on the origin's `mod` track: an action as recorded and the state after it
/// (the first object of a broadcast carries no action: the state as the store left it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The action's sequence number in the store (0 for the first object).
    pub seq: u64,
    /// When the origin recorded it (ms since the Unix epoch).
    pub at_ms: u64,
    /// The moderator (their token's `sub`).
    pub by: String,
    /// The action, if this object follows one.
    pub action: Option<Action>,
    /// The state after it.
    pub state: State,
}

impl Update {
    /// Encode as one object payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        encode_varint(self.seq, &mut buf);
        encode_varint(self.at_ms, &mut buf);
        put_string(self.by.as_bytes(), &mut buf);
        match &self.action {
            Some(action) => {
                encode_varint(1, &mut buf);
                action.encode(&mut buf);
            }
            None => encode_varint(0, &mut buf),
        }
        self.state.encode(&mut buf);
        buf.freeze()
    }

    /// Decode one whole object payload.
    pub fn decode(mut payload: Bytes) -> Result<Self, Refusal> {
        let buf = &mut payload;
        let seq = varint(buf)?;
        let at_ms = varint(buf)?;
        let by = utf8(string(buf)?)?;
        let action = match varint(buf)? {
            0 => None,
            1 => Some(Action::decode(buf)?),
            _ => return Err(Refusal::Malformed),
        };
        let state = State::decode(buf)?;
        if buf.has_remaining() {
            return Err(Refusal::Malformed);
        }
        Ok(Self {
            seq,
            at_ms,
            by,
            action,
            state,
        })
    }
}

/// When each viewer last commented (for slow mode), pruned as it grows.
#[derive(Debug, Default)]
pub struct LastComments {
    last: HashMap<String, u64>,
}

/// Viewers whose last comment time is kept before old entries are pruned.
const MAX_LAST: usize = 100_000;

impl LastComments {
    /// When `sub` last commented.
    pub fn get(&self, sub: &str) -> Option<u64> {
        self.last.get(sub).copied()
    }

    /// `sub` commented at `now_ms`; entries older than `keep_ms` go when the map is full.
    pub fn note(&mut self, sub: &str, now_ms: u64, keep_ms: u64) {
        if self.last.len() >= MAX_LAST {
            self.last.retain(|_, at| now_ms.saturating_sub(*at) < keep_ms);
            if self.last.len() >= MAX_LAST {
                return;
            }
        }
        self.last.insert(sub.to_owned(), now_ms);
    }
}

fn sub(buf: &mut Bytes) -> Result<String, Refusal> {
    let raw = string(buf)?;
    if raw.len() > MAX_SUB_BYTES {
        return Err(Refusal::TooLarge);
    }
    if raw.is_empty() {
        return Err(Refusal::Malformed);
    }
    utf8(raw)
}

fn utf8(raw: Bytes) -> Result<String, Refusal> {
    String::from_utf8(raw.to_vec()).map_err(|_| Refusal::InvalidUtf8)
}

fn count(buf: &mut Bytes, max: usize) -> Result<usize, Refusal> {
    let n = varint(buf)?;
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= max)
        .ok_or(Refusal::Malformed)
}

#[cfg(test)]
mod tests {
    use super::super::payload::Up;
    use super::*;

    fn viewer(sub: &str) -> Identity {
        Identity {
            sub: Some(sub.into()),
            ..Identity::default()
        }
    }

    #[test]
    fn every_action_and_update_round_trips() {
        let actions = [
            Action::Delete { room: 3, seq: 17 },
            Action::Timeout {
                sub: "bob".into(),
                secs: 30,
            },
            Action::Ban {
                sub: "eve ✓".into()
            },
            Action::Unban { sub: "eve".into() },
            Action::Slow { secs: 10 },
            Action::Gate(Gate::Subscribers),
        ];
        let mut state = State::default();
        for (i, action) in actions.iter().enumerate() {
            assert_eq!(Action::decode(&mut action.to_bytes()).as_ref(), Ok(action));
            state.apply(action, 1_000).unwrap();
            let update = Update {
                seq: i as u64 + 1,
                at_ms: 1_000,
                by: "mod".into(),
                action: Some(action.clone()),
                state: state.clone(),
            };
            assert_eq!(Update::decode(update.encode()), Ok(update.clone()));
            // Every truncated prefix is refused, never a panic.
            let bytes = update.encode();
            for n in 0..bytes.len() {
                assert!(Update::decode(bytes.slice(..n)).is_err(), "prefix {n}");
            }
        }
        assert_eq!(
            Action::decode(
                &mut Action::Timeout {
                    sub: "a".into(),
                    secs: MAX_SECS + 1
                }
                .to_bytes()
            ),
            Err(Refusal::TooLarge),
            "a timeout over a day"
        );
    }

    /// The bytes client-web's tests decode (`MOD_UPDATE` in client-web/tests/interact.test.ts).
    #[test]
    fn the_update_the_browser_decodes_is_these_bytes() {
        let update = Update {
            seq: 7,
            at_ms: 1,
            by: "m".into(),
            action: Some(Action::Slow { secs: 5 }),
            state: State {
                slow_secs: 5,
                gate: Gate::Followers,
                bans: ["eve".to_owned()].into(),
                deleted: [(0, 3)].into(),
                ..State::default()
            },
        };
        let hex: String = update.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0701016d0104050501010365766500010003");
        assert_eq!(
            Up::Moderate(Action::Ban { sub: "eve".into() }).encode().as_ref(),
            [0x05, 0x02, 0x03, b'e', b'v', b'e']
        );
    }

    #[test]
    fn bans_timeouts_gates_and_slow_mode_decide_in_order() {
        let mut state = State::default();
        let bob = viewer("bob");
        assert_eq!(state.check_comment(&bob, 0, None), Ok(()));
        state.apply(&Action::Slow { secs: 5 }, 0).unwrap();
        assert_eq!(state.check_comment(&bob, 4_999, Some(0)), Err(Refusal::SlowMode));
        assert_eq!(state.check_comment(&bob, 5_000, Some(0)), Ok(()));
        state.apply(&Action::Gate(Gate::Followers), 0).unwrap();
        assert_eq!(state.check_comment(&bob, 10_000, None), Err(Refusal::Gated));
        let fan = Identity {
            follower: true,
            ..viewer("fan")
        };
        assert_eq!(state.check_comment(&fan, 10_000, None), Ok(()));
        state.apply(&Action::Gate(Gate::Subscribers), 0).unwrap();
        assert_eq!(state.check_comment(&fan, 10_000, None), Err(Refusal::Gated));
        state.apply(&Action::Gate(Gate::Open), 0).unwrap();
        state
            .apply(
                &Action::Timeout {
                    sub: "bob".into(),
                    secs: 2,
                },
                10_000,
            )
            .unwrap();
        assert_eq!(state.check_comment(&bob, 11_999, None), Err(Refusal::TimedOut));
        assert_eq!(state.check_comment(&bob, 12_000, None), Ok(()));
        state.apply(&Action::Ban { sub: "bob".into() }, 12_000).unwrap();
        assert_eq!(state.check_comment(&bob, 20_000, None), Err(Refusal::Banned));
        let moderator = Identity {
            moderator: true,
            ..viewer("bob")
        };
        assert_eq!(state.check_comment(&moderator, 20_000, None), Ok(()));
        state.apply(&Action::Unban { sub: "bob".into() }, 12_000).unwrap();
        assert_eq!(state.check_comment(&bob, 20_000, None), Ok(()));
    }

    #[test]
    fn bans_and_deletions_are_bounded() {
        let mut state = State::default();
        for i in 0..MAX_BANS {
            state.apply(&Action::Ban { sub: format!("v{i}") }, 0).unwrap();
        }
        assert_eq!(
            state.apply(
                &Action::Ban {
                    sub: "one more".into()
                },
                0
            ),
            Err(Refusal::TooLarge)
        );
        for seq in 0..MAX_DELETED as u64 + 10 {
            state.apply(&Action::Delete { room: 0, seq }, 0).unwrap();
        }
        assert_eq!(state.deleted.len(), MAX_DELETED);
        assert!(!state.is_deleted(0, 0) && state.is_deleted(0, MAX_DELETED as u64 + 9));
    }
}
