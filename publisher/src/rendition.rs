//! `banyan-watch --rendition auto`: which rendition of a ladder the viewer plays, and the
//! make-before-break switch from one to the next.
//!
//! The rule is [`banyan_media::abr`]'s: the [`Estimator`] is fed every video object played
//! (its size, LOC capture time and arrival time) except while a switch is under way (both
//! renditions then share the link, and the one played would look slower than the link is), and the [`Chooser`] is asked at each group
//! boundary (a group's stream ended, or the next group's first object arrived). The viewer
//! counts as falling behind live when a group was skipped since the last boundary (the relay
//! reset it, the reorder rule gave it up, or it never came): the relay's newest-first order
//! under congestion shows as skipped groups before anything else.
//!
//! The viewer starts on the lowest rendition (the quickest first frame) and climbs as the rule
//! allows. A switch is made before the old rendition is broken:
//! 1. SUBSCRIBE the new rendition; the old one keeps playing.
//! 2. When the new rendition's first object arrives, the *switch group* is set: the first group
//!    it will deliver whole (from its keyframe, object 0) that the old one has not started (the
//!    renditions' objects of one group arrive nearly together, so waiting for a keyframe of the
//!    new one that beats the old one's could wait forever). Renditions are aligned (the
//!    same group IDs start at the same keyframe time), so the old rendition plays up to the
//!    group before it and the new one from it; the viewer's reorder rule
//!    ([`crate::watch::GroupOrder`]) holds the switch group until the old one's last group has
//!    ended, as it would any newer group.
//! 3. Once the stream of the old rendition's last group played has ended (cleanly or reset;
//!    the stream may end after the next group has started), or the old one sends an object a
//!    group past the switch group, the old subscription is dropped (its request stream is
//!    closed: UNSUBSCRIBE).
//!
//! The chooser is asked once per group ID, at the first sign that the group ended on either
//! rendition (its stream's end, or the next group's first object played), so a switch whose new
//! rendition does not arrive (a capped link) is still reconsidered. A decision taken while a
//! switch is under way overtakes it: if the new rendition has started playing, that switch is
//! completed at once (the old one dropped) and the next one starts from it; if not, the new
//! rendition is dropped.
//!
//! The timeline (once a second and at each switch) goes to stderr as `watch: abr ...` lines and
//! into the summary's `abr` object.

use std::collections::HashMap;

use banyan_media::abr::{Chooser, Estimator, Policy, Rendition};
use banyan_media::catalog::Catalog;
use banyan_media::MediaKind;
use serde::Serialize;
use tokio::time::Instant;

/// Subscriptions of renditions carry track numbers from here up in the viewer's messages
/// (below it: the index of a watched track).
pub const TAG_BASE: usize = 1 << 20;

/// At most this many timeline points are kept for the summary (later ones are only printed).
pub const MAX_TIMELINE: usize = 3_600;

/// The ladder `--rendition auto` chooses from: the catalog's video tracks in the first video
/// track's `altGroup` (every video track if it has none), each with its `bitrate`.
pub fn ladder(catalog: &Catalog) -> anyhow::Result<Vec<Rendition>> {
    let videos: Vec<&banyan_media::Track> = catalog
        .tracks()
        .iter()
        .filter(|t| t.media_kind() == Some(MediaKind::Video))
        .collect();
    let first = videos
        .first()
        .ok_or_else(|| anyhow::anyhow!("--rendition auto: the catalog has no video track"))?;
    let mut ladder = Vec::new();
    for track in videos.iter().filter(|t| t.alt_group == first.alt_group) {
        let bitrate = track.bitrate.ok_or_else(|| {
            anyhow::anyhow!(
                "--rendition auto: video track {} has no bitrate in the catalog",
                track.name
            )
        })?;
        ladder.push(Rendition {
            name: track.name.clone(),
            bitrate,
        });
    }
    Ok(ladder)
}

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Milliseconds since the viewer started.
    pub t_ms: u64,
    /// `tick` (once a second) or `switch` (a switch decided: `rendition` is the new one).
    pub event: &'static str,
    /// The estimate, kbit/s (none before the first group's sample).
    pub estimate_kbps: Option<u64>,
    /// The rendition playing (for a switch: the one switched to).
    pub rendition: String,
    /// Switches decided so far.
    pub switches: u64,
    /// The video's stalls so far (pauses over 500 ms between played objects).
    pub stalls: u64,
    /// How far behind live the latest video object played was, milliseconds.
    pub behind_live_ms: Option<f64>,
}

/// The summary's `abr` object.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AbrSummary {
    /// The ladder, lowest bitrate first: (track name, bits per second).
    pub ladder: Vec<(String, u64)>,
    /// The rendition playing at the end.
    pub rendition: String,
    /// Switches decided.
    pub switches: u64,
    /// Switches completed (the old rendition unsubscribed).
    pub switches_done: u64,
    /// Switches given up before the new rendition played (the next decision went back).
    pub switches_given_up: u64,
    /// Rendition SUBSCRIBEs the relay accepted: one per session, one per switch.
    pub subscriptions: u64,
    /// Groups played per rendition.
    pub groups_played: HashMap<String, u64>,
    /// Video objects of a rendition received but not played: the new rendition's before its
    /// switch group, the old one's from it on.
    pub overlap_objects: u64,
    /// The timeline: a point a second and one per switch (the first [`MAX_TIMELINE`]).
    pub timeline: Vec<Point>,
}

/// A rendition subscribed: its name and the tag its messages carry.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    tag: usize,
}

/// A switch under way.
#[derive(Debug)]
struct Pending {
    to: Source,
    /// The switch group, once the new rendition has started one (see the module docs).
    switch_group: Option<u64>,
    /// Some of the new rendition has been played.
    started: bool,
}

/// What [`Auto::route`] makes of a message from a rendition's subscription.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Play it (as the video track's).
    Play,
    /// Drop it: the other rendition plays that group.
    Drop,
}

/// What the viewer must do after a message: subscribe a rendition, unsubscribe one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Subscribe this rendition's track, its messages tagged with the tag given.
    pub subscribe: Option<(String, usize)>,
    /// Drop the subscription with this tag.
    pub unsubscribe: Option<usize>,
    /// The chooser switched (a `switch` point is due).
    pub switched: bool,
}

/// The state of `--rendition auto` (see the module docs). Sans-IO: the viewer routes each
/// message of a rendition through it and carries out the [`Actions`] it returns.
#[derive(Debug)]
pub struct Auto {
    chooser: Chooser,
    estimator: Estimator,
    playing: Source,
    pending: Option<Pending>,
    next_tag: usize,
    /// The group the estimator is in (its samples end at group boundaries).
    group: Option<u64>,
    /// The newest group the playing rendition (not the one switched to) has passed on.
    newest_played: Option<u64>,
    /// The video's skipped groups at the last decision.
    skipped: u64,
    /// The newest group a decision was taken at (each group once, whichever rendition's).
    decided: Option<u64>,
    started: Instant,
    behind_live_us: Option<u64>,
    summary: AbrSummary,
}

impl Auto {
    /// Choose from `ladder` (see [`ladder`]), starting on its lowest rendition; `None` for an
    /// empty ladder.
    pub fn new(ladder: Vec<Rendition>, started: Instant) -> Option<Self> {
        let chooser = Chooser::new(ladder.clone(), 0, Policy::default())?;
        let mut by_bitrate: Vec<(String, u64)> = ladder.into_iter().map(|r| (r.name, r.bitrate)).collect();
        by_bitrate.sort_by_key(|(_, b)| *b);
        let playing = Source {
            name: chooser.current().name.clone(),
            tag: TAG_BASE,
        };
        Some(Self {
            chooser,
            estimator: Estimator::new(),
            summary: AbrSummary {
                ladder: by_bitrate,
                rendition: playing.name.clone(),
                ..AbrSummary::default()
            },
            playing,
            pending: None,
            next_tag: TAG_BASE + 1,
            group: None,
            newest_played: None,
            skipped: 0,
            decided: None,
            started,
            behind_live_us: None,
        })
    }

    /// A new session: any switch under way is forgotten (its subscription went with the old
    /// session) and the rendition playing is subscribed again, with a fresh tag. Returns the
    /// track to subscribe and its tag.
    pub fn resubscribe(&mut self) -> (String, usize) {
        if let Some(p) = self.pending.take() {
            // The switch was decided: finish it on the new session rather than go back.
            self.playing.name = p.to.name;
        }
        self.playing.tag = self.take_tag();
        self.newest_played = None;
        (self.playing.name.clone(), self.playing.tag)
    }

    /// The rendition playing.
    pub fn playing(&self) -> &str {
        &self.playing.name
    }

    /// A video object (`object_id` of `group`, `bytes` long, captured at `capture_us`, arrived
    /// at `arrival_us`) from the subscription tagged `tag`; `skipped`: the video's skipped groups
    /// so far. Whether to play it, and what to subscribe or unsubscribe.
    #[allow(clippy::too_many_arguments)]
    pub fn object(
        &mut self,
        tag: usize,
        group: u64,
        object_id: u64,
        bytes: usize,
        capture_us: Option<u64>,
        arrival_us: u64,
        skipped: u64,
    ) -> (Route, Actions) {
        let mut actions = Actions::default();
        let route = self.route(tag, group, object_id, &mut actions);
        // An older group's tail (the old rendition's, around a switch) is played but not
        // measured: the estimator's samples end at group boundaries.
        if route == Route::Play && self.group.is_none_or(|g| group >= g) {
            let ended = self.group.filter(|&g| g != group);
            // While a switch is under way both renditions share the link: an object's busy
            // time then includes the other rendition's bytes, which would read as a slower link.
            if let Some(capture) = capture_us.filter(|_| self.pending.is_none()) {
                self.estimator.object(group, bytes, capture, arrival_us);
            }
            self.group = Some(group);
            if let Some(ended) = ended {
                // The next group started: the previous one's sample is in.
                self.boundary(ended, skipped, &mut actions);
            }
        }
        if route == Route::Play {
            if tag == self.playing.tag && self.newest_played.is_none_or(|n| group > n) {
                self.newest_played = Some(group);
            }
            if let Some(p) = self.pending.as_mut().filter(|p| p.to.tag == tag) {
                p.started = true;
            }
            if object_id == 0 {
                let name = self.source_name(tag).to_string();
                *self.summary.groups_played.entry(name).or_default() += 1;
            }
        } else {
            self.summary.overlap_objects += 1;
        }
        (route, actions)
    }

    /// The stream of `group` ended on the subscription tagged `tag`. Whether to pass the end
    /// on, and what to subscribe or unsubscribe.
    pub fn group_end(&mut self, tag: usize, group: u64, skipped: u64) -> (Route, Actions) {
        let mut actions = Actions::default();
        let switch_group = self.pending.as_ref().and_then(|p| p.switch_group);
        let route = if tag == self.playing.tag {
            match switch_group {
                Some(s) if group >= s => Route::Drop,
                Some(_) => {
                    if self.newest_played.is_none_or(|n| group >= n) {
                        // The old rendition's last group played is done: break.
                        self.complete_switch(&mut actions);
                    }
                    Route::Play
                }
                None => Route::Play,
            }
        } else if self.pending.as_ref().is_some_and(|p| p.to.tag == tag) {
            match switch_group {
                Some(s) if group >= s => Route::Play,
                _ => Route::Drop,
            }
        } else {
            return (Route::Drop, actions);
        };
        if route == Route::Play && self.group == Some(group) {
            self.estimator.end_group();
            self.group = None;
        }
        // A group's end on either rendition is a boundary, played or not: a switch whose new
        // rendition does not arrive is reconsidered.
        self.boundary(group, skipped, &mut actions);
        (route, actions)
    }

    /// The latest video object played was `behind_us` behind live.
    pub fn played(&mut self, behind_us: u64) {
        self.behind_live_us = Some(behind_us);
    }

    /// A timeline point at `now` (`event`: `tick` or `switch`), printed and kept.
    pub fn point(&mut self, event: &'static str, stalls: u64, now: Instant) -> Point {
        let point = Point {
            t_ms: u64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX),
            event,
            estimate_kbps: self.estimator.estimate().map(|e| e / 1000),
            rendition: self
                .pending
                .as_ref()
                .map_or(&self.playing.name, |p| &p.to.name)
                .clone(),
            switches: self.chooser.switches(),
            stalls,
            behind_live_ms: self.behind_live_us.map(|us| us as f64 / 1000.0),
        };
        if self.summary.timeline.len() < MAX_TIMELINE {
            self.summary.timeline.push(point.clone());
        }
        point
    }

    /// The summary's `abr` object.
    pub fn summary(&self) -> AbrSummary {
        let mut summary = self.summary.clone();
        summary.rendition = self.playing.name.clone();
        summary.switches = self.chooser.switches();
        summary
    }

    fn route(&mut self, tag: usize, group: u64, object_id: u64, actions: &mut Actions) -> Route {
        let newest_played = self.newest_played;
        let Some(pending) = self.pending.as_mut() else {
            return if tag == self.playing.tag {
                Route::Play
            } else {
                Route::Drop
            };
        };
        if tag == pending.to.tag {
            tracing::trace!(group, object_id, ?newest_played, "new rendition's object");
            if pending.switch_group.is_none() {
                // The first group the new rendition will deliver whole, and that the old one
                // has not started.
                let whole = if object_id == 0 {
                    group
                } else {
                    group.saturating_add(1)
                };
                let after_old = newest_played.map_or(whole, |n| n.saturating_add(1));
                let switch = whole.max(after_old);
                pending.switch_group = Some(switch);
                tracing::debug!(group = switch, to = %pending.to.name, "switch group");
            }
            return match pending.switch_group {
                Some(s) if group >= s => Route::Play,
                _ => Route::Drop,
            };
        }
        if tag != self.playing.tag {
            return Route::Drop;
        }
        match pending.switch_group {
            Some(s) if group >= s => {
                // The old rendition is past the switch; its last group's end is still due
                // (its stream may end after the next group has started). A whole group later
                // it is not coming: break anyway.
                if group > s {
                    self.complete_switch(actions);
                }
                Route::Drop
            }
            _ => Route::Play,
        }
    }

    fn complete_switch(&mut self, actions: &mut Actions) {
        if let Some(p) = self.pending.take() {
            self.newest_played = p.switch_group;
            tracing::debug!(from = %self.playing.name, to = %p.to.name, "switch done");
            actions.unsubscribe = Some(self.playing.tag);
            self.playing = p.to;
            self.summary.switches_done += 1;
        }
    }

    /// `group` has ended (its stream, or the next group began): ask the chooser, once a group.
    fn boundary(&mut self, group: u64, skipped: u64, actions: &mut Actions) {
        if self.decided.is_some_and(|d| group <= d) {
            return;
        }
        self.decided = Some(group);
        let behind = skipped > self.skipped;
        if behind {
            tracing::debug!(
                skipped,
                before = self.skipped,
                group,
                "groups skipped since the last boundary"
            );
        }
        self.skipped = skipped;
        let Some(to) = self.chooser.on_group(self.estimator.estimate(), behind) else {
            return;
        };
        let to = to.name.clone();
        actions.switched = true;
        // A switch under way is overtaken: if the new rendition already plays, it is the one
        // playing now (the old one goes); if not, it is given up.
        if let Some(p) = self.pending.take() {
            if p.started {
                self.pending = Some(p);
                self.complete_switch(actions);
            } else {
                tracing::debug!(to = %p.to.name, "switch given up");
                actions.unsubscribe = Some(p.to.tag);
                self.summary.switches_given_up += 1;
            }
        }
        if to == self.playing.name {
            return;
        }
        let tag = self.take_tag();
        actions.subscribe = Some((to.clone(), tag));
        self.pending = Some(Pending {
            to: Source { name: to, tag },
            switch_group: None,
            started: false,
        });
    }

    fn source_name(&self, tag: usize) -> &str {
        match &self.pending {
            Some(p) if p.to.tag == tag => &p.to.name,
            _ => &self.playing.name,
        }
    }

    fn take_tag(&mut self) -> usize {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn auto() -> Auto {
        let ladder = vec![
            Rendition {
                name: "video/high".into(),
                bitrate: 1_000_000,
            },
            Rendition {
                name: "video/low".into(),
                bitrate: 200_000,
            },
        ];
        Auto::new(ladder, Instant::now()).unwrap()
    }

    /// Ten objects of `group` from `tag` captured 33 ms apart from `at_us` (a 40 kB keyframe,
    /// then 5 kB frames), over a 1 ms path at `bytes_per_us`; the actions, and how many
    /// messages were played.
    fn group(a: &mut Auto, tag: usize, group: u64, at_us: u64, bytes_per_us: u64) -> (Vec<Actions>, u64) {
        let mut actions = Vec::new();
        let mut played = 0;
        for o in 0..10 {
            let size: u64 = if o == 0 { 40_000 } else { 5_000 };
            let capture = at_us + o * 33_000;
            let arrival = capture + 1_000 + size / bytes_per_us;
            let (route, act) = a.object(tag, group, o, size as usize, Some(capture), arrival, 0);
            played += u64::from(route == Route::Play);
            actions.push(act);
        }
        let (route, act) = a.group_end(tag, group, 0);
        if route == Route::Play {
            played += 1;
        }
        actions.push(act);
        (actions, played)
    }

    /// Groups on `tag` at 8 Mbit/s until the chooser climbs: the group it decided at and the
    /// new rendition's tag.
    fn climb(a: &mut Auto, tag: usize) -> (u64, usize) {
        for g in 1..=6 {
            let (actions, _) = group(a, tag, g, g * 1_000_000, 1);
            if let Some(s) = actions.into_iter().find_map(|a| a.subscribe) {
                return (g, s.1);
            }
        }
        panic!("no climb in 6 groups at 8 Mbit/s");
    }

    #[test]
    fn starts_low_climbs_make_before_break_and_drops_the_old_rendition() {
        let mut a = auto();
        let (name, low) = a.resubscribe();
        assert_eq!(name, "video/low");
        // 1 byte/µs: 8 Mbit/s, far above 1.4 x 1 Mbit/s.
        let mut subscribe = None;
        for g in 1..=5 {
            let (actions, played) = group(&mut a, low, g, g * 1_000_000, 1);
            assert_eq!(played, 11);
            if let Some(act) = actions.into_iter().find(|a| a.subscribe.is_some()) {
                subscribe = act.subscribe.map(|s| (g, s));
                break;
            }
        }
        let (decided_at, (to, high)) = subscribe.expect("climbed");
        assert_eq!(to, "video/high");
        assert!(decided_at >= 3, "after up_hold groups: at {decided_at}");
        // The old rendition has started group g when the new one's first object (its cached
        // group g, from the keyframe) arrives: the new one plays from group g + 1.
        let g = decided_at + 1;
        let (route, _) = a.object(low, g, 0, 10_000, None, 0, 0);
        assert_eq!(route, Route::Play, "the old rendition plays on");
        let (route, _) = a.object(high, g, 0, 10_000, None, 0, 0);
        assert_eq!(route, Route::Drop, "a group the old rendition has started");
        let (route, _) = a.object(high, g + 1, 0, 10_000, None, 0, 0);
        assert_eq!(route, Route::Play, "the switch group");
        let (route, act) = a.object(low, g, 1, 10_000, None, 0, 0);
        assert_eq!((route, act.unsubscribe), (Route::Play, None));
        // The old rendition's next group starts before its current group's stream has ended.
        let (route, act) = a.object(low, g + 1, 0, 10_000, None, 0, 0);
        assert_eq!(
            (route, act.unsubscribe),
            (Route::Drop, None),
            "its end is still due"
        );
        let (route, act) = a.group_end(low, g, 0);
        assert_eq!(route, Route::Play);
        assert_eq!(
            act.unsubscribe,
            Some(low),
            "the old one's last group ended: break"
        );
        assert_eq!(a.playing(), "video/high");
        let (route, _) = a.object(low, g + 1, 0, 10_000, None, 0, 0);
        assert_eq!(route, Route::Drop, "the old subscription's stragglers");
        let s = a.summary();
        assert_eq!((s.switches, s.switches_done), (1, 1));
    }

    #[test]
    fn a_skipped_group_switches_down() {
        let mut a = auto();
        let (_, tag) = a.resubscribe();
        // Climb first.
        let (g, high) = climb(&mut a, tag);
        a.object(high, g + 1, 0, 10_000, None, 0, 0);
        let (_, act) = a.object(tag, g + 1, 0, 10_000, None, 0, 0);
        assert_eq!(act.unsubscribe, None);
        // A whole group past the switch: the old one's end of group g is not coming.
        let (_, act) = a.object(tag, g + 2, 0, 10_000, None, 0, 0);
        assert_eq!(act.unsubscribe, Some(tag));
        // On the high rendition, a group is skipped: down at the next boundary.
        let (_, act) = a.group_end(high, g + 1, 1);
        assert_eq!(act.subscribe.map(|s| s.0).as_deref(), Some("video/low"));
        assert_eq!(a.summary().switches, 2);
    }

    #[test]
    fn a_switch_whose_new_rendition_never_arrives_is_given_up() {
        let mut a = auto();
        let (_, low) = a.resubscribe();
        let (g, high) = climb(&mut a, low);
        // The link is capped: nothing of high comes, and low's next group is reset after a
        // part of it (a group skipped). At its end the switch is given up: low plays on.
        let (route, _) = a.object(low, g + 1, 0, 40_000, None, 0, 0);
        assert_eq!(route, Route::Play);
        let (_, act) = a.group_end(low, g + 1, 1);
        assert!(act.switched, "the chooser went back down");
        assert_eq!(act.unsubscribe, Some(high), "the new rendition is dropped");
        assert_eq!(act.subscribe, None, "low is playing already");
        assert_eq!(a.playing(), "video/low");
        let (route, _) = a.object(low, g + 2, 0, 40_000, None, 0, 0);
        assert_eq!(route, Route::Play);
        let s = a.summary();
        assert_eq!((s.switches, s.switches_done, s.switches_given_up), (2, 0, 1));
    }

    #[test]
    fn the_ladder_is_the_first_videos_alt_group_with_bitrates() {
        let video = |name: &str, alt: Option<u64>, bitrate: Option<u64>| banyan_media::Track {
            name: name.into(),
            packaging: Some("loc".into()),
            role: Some("video".into()),
            alt_group: alt,
            bitrate,
            ..Default::default()
        };
        let catalog = Catalog::live(vec![
            video("video/720p", Some(1), Some(2_000_000)),
            video("video/360p", Some(1), Some(600_000)),
            video("screen", Some(2), Some(100_000)),
        ]);
        let names: Vec<String> = ladder(&catalog).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["video/720p", "video/360p"]);
        let catalog = Catalog::live(vec![video("video", None, None)]);
        let err = ladder(&catalog).unwrap_err().to_string();
        assert!(err.contains("video track video has no bitrate"), "{err}");
        assert!(ladder(&Catalog::live(vec![])).is_err());
    }
}
