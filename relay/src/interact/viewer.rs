//! Admission of one publisher's `interact` track: every object is parsed, checked against
//! size, encoding and room rules, and then (only if valid, so each refusal names the real
//! fault) charged to the publisher's rate limits ([`Limit`], `governor`'s GCRA: a token
//! bucket refilling continuously).

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::moderation::{Action, Identity};
use super::payload::Up;
use super::{InteractConfig, Refusal};

/// governor's direct (unkeyed) limiter on clock `C`.
type DirectLimiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A rate limit on whole units (likes, messages): `rate` per second sustained, up to `burst` at
/// once, starting full. A `rate` of 0 or less, or a `burst` under 1, grants nothing.
#[derive(Debug)]
pub struct Limit<C: Clock = DefaultClock> {
    /// The quota and its limiter; None when nothing is ever granted.
    limiter: Option<(Quota, DirectLimiter<C>)>,
}

impl<C: Clock + Clone> Limit<C> {
    /// A full limit reading time from `clock`.
    pub fn new(rate: f64, burst: f64, clock: &C) -> Self {
        // `burst` is clamped into u32 first, so the cast only drops the fraction.
        let burst = NonZeroU32::new(burst.clamp(0.0, f64::from(u32::MAX)) as u32);
        let period = (rate > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / rate).ok())
            .flatten()
            .and_then(Quota::with_period);
        let limiter = match (period, burst) {
            (Some(quota), Some(burst)) => {
                let quota = quota.allow_burst(burst);
                Some((quota, RateLimiter::direct_with_clock(quota, clock.clone())))
            }
            _ => None,
        };
        Self { limiter }
    }

    /// Take up to `wanted` units now; returns how many were granted (as many as are available).
    pub fn take(&self, wanted: u64) -> u64 {
        let Some((quota, limiter)) = &self.limiter else {
            return 0;
        };
        // governor grants all of a batch or none of it: ask for as much as the burst allows,
        // and when refused, for what its wait says is available now.
        let period = quota.replenish_interval().as_nanos().max(1);
        let mut asked = quota.burst_size().get();
        if let Ok(wanted) = u32::try_from(wanted) {
            asked = asked.min(wanted);
        }
        while let Some(cells) = NonZeroU32::new(asked) {
            match limiter.check_n(cells) {
                Ok(Ok(())) => return u64::from(asked),
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(limiter.clock().now()).as_nanos();
                    let short = u32::try_from(wait.div_ceil(period)).unwrap_or(u32::MAX);
                    asked = asked.saturating_sub(short.max(1));
                }
                Err(governor::InsufficientCapacity(capacity)) => {
                    asked = capacity.min(asked.saturating_sub(1))
                }
            }
        }
        0
    }
}

/// What an admitted object asks the relay to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The publisher's accepted cumulative likes under `source` (likes refused by the rate
    /// limit are subtracted for good, so the total never runs ahead of the limit).
    Like {
        /// The publication's source id.
        source: u64,
        /// Accepted likes so far.
        total: u64,
        /// Likes in this object refused by the rate limit (counted as `rate_limited`).
        refused: u64,
    },
    /// A checked comment for a room.
    Comment {
        /// The room number.
        room: u64,
        /// The text.
        text: String,
        /// The author a child relay named (`None` from a viewer: its own token says).
        by: Option<String>,
    },
    /// A checked gift.
    Gift {
        /// The sender's id for this gift.
        client_id: Bytes,
        /// Gift kind.
        kind: u64,
        /// Amount, at least 1.
        amount: u64,
    },
    /// A child relay's viewer count (see [`super::viewers`]).
    Viewers {
        /// Viewers in the child's subtree.
        count: u64,
    },
    /// A moderation action: from this moderator (`by` None) or vouched for by a child relay.
    Moderate {
        /// The moderator a child relay named.
        by: Option<String>,
        /// The action.
        action: Action,
    },
}

/// What one publication of an `interact` track may still send: its rate limits, room and like
/// total (time read from `C`).
#[derive(Debug)]
pub struct Admission<C: Clock = DefaultClock> {
    config: InteractConfig,
    likes: Option<Limit<C>>,
    messages: Option<Limit<C>>,
    source: Option<u64>,
    /// The largest total the publisher claimed.
    claimed: u64,
    /// Likes refused by the rate limit so far.
    refused: u64,
    /// The only room this publisher may comment in (its token's `room` claim), if restricted.
    room: Option<u64>,
    /// A child relay's publication: it may report a viewer count and pass on moderation.
    relay: bool,
    /// The publisher's token has the `mod` claim for the broadcast.
    moderator: bool,
    /// Who the viewer is, for moderation (not for a child relay).
    who: Option<Identity>,
}

impl Admission {
    /// A viewer's publication, rate limited per `config`.
    pub fn viewer(config: &InteractConfig) -> Self {
        Self::viewer_with_clock(config, &DefaultClock::default())
    }

    /// A child relay's publication: it already enforced its viewers' rates, so only the size,
    /// encoding and room rules apply.
    pub fn relay(config: &InteractConfig) -> Self {
        Self {
            relay: true,
            ..Self::unlimited(config)
        }
    }
}

impl<C: Clock + Clone> Admission<C> {
    /// A viewer's publication whose limits read time from `clock` (tests pass a fake one).
    pub fn viewer_with_clock(config: &InteractConfig, clock: &C) -> Self {
        Self {
            likes: Some(Limit::new(config.like_rate, config.like_burst, clock)),
            messages: Some(Limit::new(config.comment_rate, config.comment_burst, clock)),
            ..Self::unlimited(config)
        }
    }

    fn unlimited(config: &InteractConfig) -> Self {
        Self {
            config: config.clone(),
            likes: None,
            messages: None,
            source: None,
            claimed: 0,
            refused: 0,
            room: None,
            relay: false,
            moderator: false,
            who: None,
        }
    }

    /// The viewer `who` publishes (moderation judges its comments; its `mod` claim allows
    /// moderation actions).
    #[must_use]
    pub fn viewer_is(mut self, who: Identity) -> Self {
        self.moderator = who.moderator;
        self.who = Some(who);
        self
    }

    /// The viewer, when [`Admission::viewer_is`] named one.
    pub fn who(&self) -> Option<&Identity> {
        self.who.as_ref()
    }

    /// Restrict comments to `room` (the room the control plane assigned the viewer).
    #[must_use]
    pub fn in_room(mut self, room: Option<u64>) -> Self {
        self.room = room;
        self
    }

    /// The source id this publication sends likes under, once it sent one.
    pub fn source(&self) -> Option<u64> {
        self.source
    }

    /// Parse and check one object payload, received now.
    pub fn admit(&mut self, payload: Bytes) -> Result<Admitted, Refusal> {
        match Up::decode(payload)? {
            Up::Like { source, total } => self.like(source, total),
            Up::Comment { room, text } => self.comment(&room, &text, None),
            // A relay names the author it admitted; a viewer could name anyone.
            Up::CommentBy { room, text, by } if self.relay => {
                if by.len() > super::moderation::MAX_SUB_BYTES {
                    return Err(Refusal::TooLarge);
                }
                let by = String::from_utf8(by.to_vec()).map_err(|_| Refusal::InvalidUtf8)?;
                self.comment(&room, &text, Some(by))
            }
            Up::CommentBy { .. } => Err(Refusal::Malformed),
            Up::Gift {
                client_id,
                kind,
                amount,
            } => {
                if client_id.len() > self.config.max_client_id_bytes {
                    return Err(Refusal::TooLarge);
                }
                if client_id.is_empty() || amount == 0 {
                    return Err(Refusal::Malformed);
                }
                self.charge()?;
                Ok(Admitted::Gift {
                    client_id,
                    kind,
                    amount,
                })
            }
            // A viewer's count would be its own say-so: only relays report counts.
            Up::Viewers { count } if self.relay => Ok(Admitted::Viewers { count }),
            Up::Viewers { .. } => Err(Refusal::Malformed),
            Up::Moderate(action) if self.moderator => {
                self.charge()?;
                Ok(Admitted::Moderate { by: None, action })
            }
            Up::Moderate(_) => Err(Refusal::NotModerator),
            // A relay vouches for the moderator it names; a viewer could name anyone.
            Up::Moderated { by, action } if self.relay => {
                if by.len() > super::moderation::MAX_SUB_BYTES {
                    return Err(Refusal::TooLarge);
                }
                let by = String::from_utf8(by.to_vec()).map_err(|_| Refusal::InvalidUtf8)?;
                Ok(Admitted::Moderate { by: Some(by), action })
            }
            Up::Moderated { .. } => Err(Refusal::NotModerator),
        }
    }

    fn comment(&mut self, room: &[u8], text: &[u8], by: Option<String>) -> Result<Admitted, Refusal> {
        if text.len() > self.config.max_comment_bytes {
            return Err(Refusal::TooLarge);
        }
        let text = String::from_utf8(text.to_vec()).map_err(|_| Refusal::InvalidUtf8)?;
        let room = parse_room(room, self.config.rooms)?;
        if self.room.is_some_and(|assigned| assigned != room) {
            return Err(Refusal::BadRoom);
        }
        self.charge()?;
        Ok(Admitted::Comment { room, text, by })
    }

    fn like(&mut self, source: u64, total: u64) -> Result<Admitted, Refusal> {
        match self.source {
            Some(bound) if bound != source => return Err(Refusal::Malformed),
            _ => self.source = Some(source),
        }
        let mut refused = 0;
        if total > self.claimed {
            let added = total - self.claimed;
            let granted = match &mut self.likes {
                Some(limit) => limit.take(added),
                None => added,
            };
            refused = added - granted;
            self.refused += refused;
            self.claimed = total;
        }
        Ok(Admitted::Like {
            source,
            total: self.claimed - self.refused,
            refused,
        })
    }

    fn charge(&mut self) -> Result<(), Refusal> {
        let granted = self.messages.as_ref().map_or(1, |limit| limit.take(1));
        if granted == 0 {
            return Err(Refusal::RateLimited);
        }
        Ok(())
    }
}

/// A room is a decimal number without leading zeros below `rooms`, as the control plane
/// assigns them (`chat_room`); anything else names a room nobody could have been given.
pub fn parse_room(room: &[u8], rooms: u64) -> Result<u64, Refusal> {
    let text = std::str::from_utf8(room).map_err(|_| Refusal::InvalidUtf8)?;
    let canonical = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(number) if canonical && number < rooms && number.to_string() == text => Ok(number),
        _ => Err(Refusal::BadRoom),
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn config() -> InteractConfig {
        InteractConfig {
            like_rate: 10.0,
            like_burst: 20.0,
            comment_rate: 1.0,
            comment_burst: 2.0,
            max_comment_bytes: 16,
            rooms: 10,
            ..InteractConfig::default()
        }
    }

    fn like(source: u64, total: u64) -> Bytes {
        Up::Like { source, total }.encode()
    }

    fn comment(room: &[u8], text: &[u8]) -> Bytes {
        Up::Comment {
            room: Bytes::copy_from_slice(room),
            text: Bytes::copy_from_slice(text),
        }
        .encode()
    }

    #[test]
    fn a_like_flood_is_cut_to_the_bucket_and_stays_cut() {
        let clock = FakeRelativeClock::default();
        let mut viewer = Admission::viewer_with_clock(&config(), &clock);
        // Claims 1000 likes at once: the burst of 20 passes, 980 are refused for good.
        assert_eq!(
            viewer.admit(like(5, 1000)),
            Ok(Admitted::Like {
                source: 5,
                total: 20,
                refused: 980
            })
        );
        // One second later 10 more tokens: the next 10 claimed likes pass.
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            viewer.admit(like(5, 1010)),
            Ok(Admitted::Like {
                source: 5,
                total: 30,
                refused: 0
            })
        );
        // Old totals (lost and late datagrams) change nothing.
        assert_eq!(
            viewer.admit(like(5, 400)),
            Ok(Admitted::Like {
                source: 5,
                total: 30,
                refused: 0
            })
        );
    }

    #[test]
    fn likes_within_the_rate_all_count() {
        let clock = FakeRelativeClock::default();
        let mut viewer = Admission::viewer_with_clock(&config(), &clock);
        let mut last = None;
        for i in 1..=100u64 {
            // 10 likes/s, one every 100 ms.
            clock.advance(Duration::from_millis(100));
            last = Some(viewer.admit(like(1, i)));
        }
        assert_eq!(
            last,
            Some(Ok(Admitted::Like {
                source: 1,
                total: 100,
                refused: 0
            }))
        );
    }

    #[test]
    fn a_publication_cannot_switch_source() {
        let mut viewer = Admission::viewer(&config());
        viewer.admit(like(1, 1)).unwrap();
        assert_eq!(viewer.admit(like(2, 1)), Err(Refusal::Malformed));
    }

    #[test]
    fn comments_are_checked_in_order_size_encoding_room_rate() {
        let mut relay = Admission::relay(&config());
        assert_eq!(
            relay.admit(comment(b"3", "ok ✓".as_bytes())),
            Ok(Admitted::Comment {
                room: 3,
                text: "ok ✓".into(),
                by: None
            })
        );
        assert_eq!(relay.admit(comment(b"3", &[b'a'; 17])), Err(Refusal::TooLarge));
        assert_eq!(
            relay.admit(comment(b"3", &[0xc3, 0x28])),
            Err(Refusal::InvalidUtf8)
        );
        for forged in [
            &b"10"[..],
            b"03",
            b"",
            b"-1",
            b"1 ",
            b"room",
            b"99999999999999999999999",
            &[0xff],
        ] {
            assert!(
                matches!(
                    relay.admit(comment(forged, b"x")),
                    Err(Refusal::BadRoom | Refusal::InvalidUtf8)
                ),
                "room {forged:?}"
            );
        }
        assert_eq!(
            relay.admit(Bytes::from_static(&[0x02, 0x05])),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn only_a_relay_may_report_a_viewer_count() {
        let clock = FakeRelativeClock::default();
        let count = Up::Viewers { count: 40 }.encode();
        let mut viewer = Admission::viewer_with_clock(&config(), &clock);
        assert_eq!(viewer.admit(count.clone()), Err(Refusal::Malformed));
        let mut relay = Admission::relay(&config());
        assert_eq!(relay.admit(count), Ok(Admitted::Viewers { count: 40 }));
    }

    #[test]
    fn only_moderators_and_relays_may_moderate() {
        let ban = Up::Moderate(Action::Ban { sub: "eve".into() }).encode();
        let vouched = Up::Moderated {
            by: Bytes::from_static(b"alice"),
            action: Action::Ban { sub: "eve".into() },
        }
        .encode();
        let mut viewer = Admission::viewer(&config());
        assert_eq!(viewer.admit(ban.clone()), Err(Refusal::NotModerator));
        assert_eq!(viewer.admit(vouched.clone()), Err(Refusal::NotModerator));
        let mut moderator = Admission::viewer(&config()).viewer_is(Identity {
            moderator: true,
            ..Identity::default()
        });
        assert_eq!(
            moderator.admit(ban),
            Ok(Admitted::Moderate {
                by: None,
                action: Action::Ban { sub: "eve".into() }
            })
        );
        let mut relay = Admission::relay(&config());
        assert_eq!(
            relay.admit(vouched),
            Ok(Admitted::Moderate {
                by: Some("alice".into()),
                action: Action::Ban { sub: "eve".into() }
            })
        );
    }

    #[test]
    fn a_viewer_assigned_a_room_comments_only_there() {
        let mut viewer = Admission::viewer(&config()).in_room(Some(2));
        assert_eq!(viewer.admit(comment(b"3", b"x")), Err(Refusal::BadRoom));
        assert!(matches!(
            viewer.admit(comment(b"2", b"x")),
            Ok(Admitted::Comment { room: 2, .. })
        ));
        // Unrestricted (no claim): any valid room.
        let mut anyone = Admission::viewer(&config());
        assert!(anyone.admit(comment(b"3", b"x")).is_ok());
    }

    #[test]
    fn a_comment_flood_is_refused_after_the_burst() {
        let clock = FakeRelativeClock::default();
        let mut viewer = Admission::viewer_with_clock(&config(), &clock);
        let results: Vec<_> = (0..5)
            .map(|_| viewer.admit(comment(b"0", b"spam")).is_ok())
            .collect();
        assert_eq!(results, [true, true, false, false, false]);
        assert_eq!(viewer.admit(comment(b"0", b"spam")), Err(Refusal::RateLimited));
        clock.advance(Duration::from_secs(1));
        assert!(viewer.admit(comment(b"0", b"back")).is_ok());
    }

    #[test]
    fn gifts_need_an_id_and_an_amount() {
        let mut relay = Admission::relay(&config());
        let gift = |id: &[u8], amount| {
            Up::Gift {
                client_id: Bytes::copy_from_slice(id),
                kind: 1,
                amount,
            }
            .encode()
        };
        assert!(relay.admit(gift(b"g1", 5)).is_ok());
        assert_eq!(relay.admit(gift(b"", 5)), Err(Refusal::Malformed));
        assert_eq!(relay.admit(gift(b"g1", 0)), Err(Refusal::Malformed));
        assert_eq!(relay.admit(gift(&[b'x'; 65], 1)), Err(Refusal::TooLarge));
    }

    #[test]
    fn a_limit_grants_what_has_refilled_of_a_larger_ask() {
        let clock = FakeRelativeClock::default();
        let limit = Limit::new(10.0, 20.0, &clock);
        assert_eq!(limit.take(15), 15);
        assert_eq!(limit.take(15), 5);
        assert_eq!(limit.take(1), 0);
        // 350 ms refill 3.5 units: 3 are granted, the half carries over.
        clock.advance(Duration::from_millis(350));
        assert_eq!(limit.take(10), 3);
        clock.advance(Duration::from_millis(50));
        assert_eq!(limit.take(10), 1);
        // Never more than the burst, however long it rested.
        clock.advance(Duration::from_secs(60));
        assert_eq!(limit.take(u64::MAX), 20);
        // No rate, or a burst under one: nothing.
        assert_eq!(Limit::new(0.0, 20.0, &clock).take(1), 0);
        assert_eq!(Limit::new(10.0, 0.5, &clock).take(1), 0);
    }
}
