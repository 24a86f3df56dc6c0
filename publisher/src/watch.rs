//! `banyan-watch`: subscribe to a broadcast's catalog, then its first video and first audio
//! track; put each track's objects back in (group, object) order; measure latency from the
//! LOC capture timestamps; write fragmented MP4; print a JSON summary.
//!
//! When the relay goes away the viewer reconnects with backoff and resubscribes; groups it
//! never received are counted as gaps. A refused or failed media SUBSCRIBE (a request lost on a
//! bad link) is tried again on the same session a few times; a session on which no media
//! track could be subscribed counts as lost, so the viewer reconnects rather than watch nothing.
//!
//! Its SUBSCRIBEs for the catalog and the media tracks carry RENDEZVOUS_TIMEOUT (`--rendezvous`,
//! default 5 s), so a viewer started before the broadcaster waits for it (a draft-18 relay
//! refuses a SUBSCRIBE without it at once when nobody publishes the track).
//!
//! Live stays live: the SUBSCRIBEs leave GROUP_ORDER out, so the relay uses the publisher's
//! (descending for media: under congestion the newest group goes first, and older group
//! streams the relay cannot deliver in time are reset). The viewer never plays a group late:
//! [`GroupOrder`] holds a newer group while the current one streams, and gives the current one
//! up once the newer group has waited [`REORDER_WAIT`] (or at once when its stream is reset);
//! an older group's object never plays after a newer group's. The summary says what that cost:
//! `groups_skipped` (groups of the primary track not played in full: reset, given up, or never
//! received; a publisher switch is not counted), `behind_live_ms` (at each object played, the
//! wall clock less its capture timestamp: `latency_ms` is measured at receipt, this at
//! play-out, after reordering) and `stalls` / `stall_ms_total` (pauses over 500 ms between
//! played objects of the primary track).
//!
//! What a viewer of a publisher switch sees (a restarted broadcaster taking its broadcast over)
//! is in the summary: `sessions` and `resubscribes` (1 and 0 when the switch cost no
//! reconnect), per track `group_runs` (runs of consecutive group IDs: a restarted publisher
//! numbers its groups from its start time, so each publisher is one run and a group lost
//! inside a run splits it), `incomplete_groups` (groups that arrived only in part) and
//! `longest_stall_ms` (the longest time without an object).
//!
//! It also subscribes to the broadcast's `likes` and `viewers` tracks (docs/interactions.md: a
//! group per new value, its object the cumulative like total or the live viewer count) and
//! reports the latest as `likes` and `viewers` in the progress line and the summary; a relay
//! without interactions just leaves them out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use banyan_media::catalog::{Catalog, CATALOG_TRACK};
use banyan_media::fmp4::{Muxer, Sample};
use banyan_media::loc::unix_micros;
use banyan_media::stats::{percentile, Distribution};
use banyan_media::{LocFrame, MediaKind, TrackConfig};
use banyan_moq::coding::{SessionErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::SubgroupObject;
use banyan_moq::message::{Parameters, Subscribe};
use banyan_moq::session::{Session, Subscription, TrackEvent};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::WatchArgs;
use crate::connect::Backoff;
use crate::rendition::{AbrSummary, Actions, Auto, Route, TAG_BASE};

/// How long a newer group is held back waiting for an older one still streaming; after that
/// the older group would play late and is given up (see [`GroupOrder`]).
const REORDER_WAIT: Duration = Duration::from_millis(200);

/// A pause longer than this between two played objects of a track is a stall.
const STALL: Duration = Duration::from_millis(500);

/// A jump in group IDs is a publisher switch rather than lost groups when the IDs advanced
/// by more than one per this many milliseconds of capture time: a publisher numbers its groups
/// one by one from its start time in milliseconds (publisher/src/broadcast.rs), so a newer
/// publisher's IDs run ahead by about the milliseconds between the two starts, while one
/// publisher's groups (GOPs) each last far longer than this.
const MIN_GROUP_MS: u64 = 2;

/// At most this many runs of consecutive group IDs are listed per track (later ones are only
/// counted in `gaps`).
pub const MAX_GROUP_RUNS: usize = 64;

/// How many times a failed media SUBSCRIBE is tried again on the same session.
const SUBSCRIBE_RETRIES: u32 = 3;

/// How long the catalog may take to arrive once its SUBSCRIBE is answered.
const CATALOG_WAIT: Duration = Duration::from_secs(10);

/// `--rendition auto`: choose the rendition by measured bandwidth (see [`crate::rendition`]).
pub const AUTO: &str = "auto";

/// The JSON summary (the last line of stdout unless stdout carries media).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Media objects received.
    pub objects: u64,
    /// Distinct (track, group) pairs received.
    pub groups: u64,
    /// Media payload bytes received.
    pub bytes: u64,
    /// Discontinuities in the group sequence of the primary track (video if any): each run
    /// of one or more missing groups counts once. A restarted publisher numbers its groups
    /// from its start time, so a publisher switch counts as one gap too.
    pub gaps: u64,
    /// Group IDs missing in the primary track's sequence between its first and last group, in
    /// total. Meaningful only while one publisher serves the broadcast: across a publisher
    /// switch the IDs jump by about the milliseconds between the two publishers' starts.
    pub missing_groups: u64,
    /// Groups of the primary track that arrived only in part (see [`TrackSummary`]).
    pub incomplete_groups: u64,
    /// The primary track's longest time without an object, milliseconds (see [`TrackSummary`]).
    pub longest_stall_ms: f64,
    /// Groups of the primary track not played in full (see [`TrackSummary`]).
    pub groups_skipped: u64,
    /// The primary track's stalls: pauses over 500 ms between played objects (see
    /// [`TrackSummary`]).
    pub stalls: u64,
    /// Their total length, milliseconds.
    pub stall_ms_total: f64,
    /// Capture-to-receipt latency of live objects (not those the relay had cached before we
    /// subscribed), milliseconds. Measured as each object arrives, before reordering.
    pub latency_ms: Distribution,
    /// How far behind live the played position was, milliseconds: at each object played (every
    /// track, after reordering), the wall clock then less its capture timestamp. Unlike
    /// `latency_ms` it includes the time an object was held for reordering, leaves out objects
    /// never played (late or given up), and includes objects the relay had cached before we
    /// subscribed (they play behind live too).
    pub behind_live_ms: Distribution,
    /// Milliseconds from start to the first media object.
    pub ttff_ms: Option<f64>,
    /// Sessions opened with the relay (1 when the viewer never had to reconnect).
    pub sessions: u64,
    /// Sessions re-established after the first.
    pub reconnects: u64,
    /// Media-track SUBSCRIBEs the relay accepted, over every session.
    pub subscriptions: u64,
    /// Of those, the ones beyond each track's first (0 when every track kept the subscription
    /// it started with).
    pub resubscribes: u64,
    /// Objects received but never played: they arrived after their group had been given up on
    /// (or after a newer group had played), or were held for a group given up on.
    pub late_objects: u64,
    /// Objects without a valid LOC capture timestamp.
    pub invalid_objects: u64,
    /// Per track: objects and gaps.
    pub tracks: BTreeMap<String, TrackSummary>,
    /// The broadcast's like total, as last read from its `likes` track (absent until one arrives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likes: Option<u64>,
    /// The broadcast's live viewer count, as last read from its `viewers` track (absent until
    /// one arrives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewers: Option<u64>,
    /// `--rendition auto`: the ladder, the switches and the timeline (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abr: Option<AbrSummary>,
}

/// Per-track figures.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TrackSummary {
    /// Objects received.
    pub objects: u64,
    /// Groups received.
    pub groups: u64,
    /// Discontinuities in the group sequence.
    pub gaps: u64,
    /// SUBSCRIBEs for this track the relay accepted (1 when the first one lasted the run).
    pub subscriptions: u64,
    /// Groups of which some objects arrived but not all: the group's stream was reset or
    /// failed before its end, an object ID was skipped (Banyan numbers a group's objects
    /// 0, 1, 2, ...), or a later group was played while it was still streaming. A group cut
    /// short by a clean end of its stream cannot be told from a short group and is not
    /// counted; a group of which nothing arrived shows in `gaps` instead.
    pub incomplete_groups: u64,
    /// The longest time between two consecutive objects arriving on the track, milliseconds:
    /// the longest the picture (or sound) had nothing new, e.g. across a publisher switch.
    pub longest_stall_ms: f64,
    /// Groups not played in full, each counted once: groups whose stream the relay reset (or
    /// that failed) before its end, groups given up by the reorder rule ([`GroupOrder`]: a newer
    /// group waited too long for them), and groups never received (IDs missing between two
    /// groups played). A publisher switch is not counted: the new publisher's IDs jump ahead
    /// by about the milliseconds between the two publishers' starts (the jump between two
    /// `group_runs`), which is told from lost groups by the IDs advancing faster than one per
    /// 2 ms of capture time.
    pub groups_skipped: u64,
    /// Pauses longer than 500 ms between two objects played (after reordering), once playing
    /// started: the picture (or sound) froze.
    pub stalls: u64,
    /// Their total length, milliseconds.
    pub stall_ms_total: f64,
    /// The longest pause between two objects played (after reordering), milliseconds: the
    /// longest the picture (or sound) froze, stall or not.
    pub longest_pause_ms: f64,
    /// Runs of consecutive group IDs in the order played, the first [`MAX_GROUP_RUNS`].
    pub group_runs: Vec<GroupRun>,
}

/// Consecutive group IDs received without a hole (one publisher's groups, unless some were
/// lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRun {
    /// The run's first group ID.
    pub first_group: u64,
    /// Its last group ID.
    pub last_group: u64,
    /// When the first object of its first group arrived, milliseconds since the Unix epoch.
    pub first_received_unix_ms: u64,
}

/// What the subscription tasks report.
#[derive(Debug)]
pub(crate) enum Msg {
    Object {
        track: usize,
        group: u64,
        object: SubgroupObject,
        received_us: u64,
    },
    /// A group's stream ended after `objects` objects (only whether any arrived matters);
    /// `clean` unless it was reset or failed.
    GroupEnd {
        track: usize,
        group: u64,
        objects: u64,
        clean: bool,
    },
    TrackEnd {
        track: usize,
    },
    /// A new value on the `likes` or `viewers` track.
    Counter {
        counter: Counter,
        group: u64,
        value: u64,
    },
}

/// One watched track.
#[derive(Debug)]
struct Watched {
    name: String,
    kind: MediaKind,
    order: GroupOrder,
    seen_groups: BTreeSet<u64>,
    last_group: Option<u64>,
    /// Groups counted in `incomplete_groups`.
    incomplete: BTreeSet<u64>,
    /// Groups reset, failed or given up on (part of `groups_skipped`).
    given_up: BTreeSet<u64>,
    /// Runs of group IDs never received between two played groups, first to last (part of
    /// `groups_skipped`).
    holes: BTreeMap<u64, u64>,
    /// When the latest group played began: its first object's capture timestamp, or its
    /// receipt time when it has none (µs since the Unix epoch).
    last_group_start_us: Option<u64>,
    /// When the latest object was played (µs since the Unix epoch).
    last_played_us: Option<u64>,
    stalls: u64,
    stall_us_total: u64,
    /// The longest pause between two objects played (µs).
    longest_pause_us: u64,
    /// The (group, object ID) the next object played should have.
    next_object: Option<(u64, u64)>,
    /// When the latest object arrived (µs since the Unix epoch).
    last_arrival_us: Option<u64>,
    longest_stall_us: u64,
    summary: TrackSummary,
    ended: bool,
    /// The frame waiting for its successor (which gives its duration).
    pending: Option<Sample>,
    last_duration: u32,
    last_dts: Option<u64>,
}

impl Watched {
    /// A track about to be subscribed: nothing received yet.
    fn new(name: String, kind: MediaKind) -> Self {
        Self {
            name,
            kind,
            order: GroupOrder::default(),
            seen_groups: BTreeSet::new(),
            last_group: None,
            incomplete: BTreeSet::new(),
            given_up: BTreeSet::new(),
            holes: BTreeMap::new(),
            last_group_start_us: None,
            last_played_us: None,
            stalls: 0,
            stall_us_total: 0,
            longest_pause_us: 0,
            next_object: None,
            last_arrival_us: None,
            longest_stall_us: 0,
            summary: TrackSummary::default(),
            ended: false,
            pending: None,
            last_duration: 0,
            last_dts: None,
        }
    }

    /// Groups not played in full so far (see [`TrackSummary::groups_skipped`]): the holes,
    /// and the groups given up on that are not inside one.
    fn groups_skipped(&self) -> u64 {
        let in_hole = |g: u64| {
            self.holes
                .range(..=g)
                .next_back()
                .is_some_and(|(_, &last)| g <= last)
        };
        let holes: u64 = self.holes.iter().map(|(first, last)| last - first + 1).sum();
        holes + self.given_up.iter().filter(|&&g| !in_hole(g)).count() as u64
    }
}

/// Run the viewer with `args`.
pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let connector = args.connect.connector()?;
    let namespace = TrackNamespace::from_path(&args.broadcast).context("--broadcast")?;
    let rendezvous = rendezvous_ms(args.rendezvous);
    let mut player = Player::new(open_output(&args.output).await?);
    player.rendition = args.rendition.clone();
    let deadline = args.duration.map(|d| player.started + d);
    let mut tracks: Vec<Watched> = Vec::new();
    let mut backoff = Backoff::default();
    let mut first = true;
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));

    // Ctrl-C or SIGTERM: stop watching and write the summary (one listener for the whole run).
    let shutdown = banyan_control::binary::shutdown_signal()?;
    tokio::pin!(shutdown);
    args.connect.announce_token_expiry("watch");
    // Set when the relay ends the session because the token expired: the summary is still
    // written, then the viewer exits with this error.
    let mut expired = None;
    'sessions: loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let connected = connector.connect(None).await;
        let (session, driver) = match connected {
            Ok(pair) => pair,
            Err(e) if first => return Err(connector.token_expired("watch", &e).unwrap_or(e)),
            Err(e) => {
                if let Some(e) = connector.token_expired("watch", &e) {
                    expired = Some(e);
                    break;
                }
                tracing::info!(error = %format!("{e:#}"), "reconnect failed");
                if sleep_or_deadline(backoff.next_delay(), deadline).await {
                    break;
                }
                continue;
            }
        };
        let driver = tokio::spawn(driver.run());
        player.summary.sessions += 1;
        if !first {
            player.summary.reconnects += 1;
        }
        let session_start = Instant::now();
        let catalog = match read_catalog(&session, &namespace, rendezvous).await {
            Ok(c) => c,
            Err(e) if first => {
                session.close(SessionErrorCode::NoError, "no catalog");
                driver.abort();
                return Err(e);
            }
            Err(e) => {
                tracing::info!(error = %format!("{e:#}"), "catalog after reconnect");
                session.close(SessionErrorCode::NoError, "no catalog");
                driver.abort();
                if sleep_or_deadline(backoff.next_delay(), deadline).await {
                    break;
                }
                continue;
            }
        };
        if first {
            tracks = player.start(&catalog).await?;
        }
        first = false;
        if catalog.is_complete == Some(true) || tracks.iter().all(|t| t.ended) {
            session.close(SessionErrorCode::NoError, "broadcast complete");
            driver.abort();
            break;
        }

        player.subscribed_at = unix_micros();
        let (mut subs, rx) = player
            .subscribe(&session, &namespace, rendezvous, &mut tracks)
            .await;
        let ending = Ending {
            session: &session,
            deadline,
            shutdown: shutdown.as_mut(),
        };
        if player.play(rx, &mut tracks, &mut stats_tick, ending).await? {
            break 'sessions;
        }
        subs.abort_all();
        player.session_lost(&mut tracks, unix_micros()).await?;
        if session.is_closed() {
            let closed = anyhow::Error::new(session.closed().await);
            if let Some(e) = connector.token_expired("watch", &closed) {
                driver.abort();
                expired = Some(e);
                break;
            }
        }
        session.close(SessionErrorCode::NoError, "reconnecting");
        driver.abort();
        eprintln!("watch: lost the relay; reconnecting");
        if session_start.elapsed() > Duration::from_secs(5) {
            backoff.reset();
        }
        if sleep_or_deadline(backoff.next_delay(), deadline).await {
            break;
        }
    }

    let json = player.finish(tracks).await?;
    if let Some(path) = &args.summary {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.output != "-" {
        println!("{json}");
    }
    expired.map_or(Ok(()), Err)
}

/// Where the fMP4 goes: `none`, `-` (stdout) or a file.
async fn open_output(output: &str) -> anyhow::Result<Option<Output>> {
    Ok(match output {
        "none" => None,
        "-" => Some(Box::new(tokio::io::stdout())),
        path => Some(Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {path}"))?,
        )),
    })
}

pub(crate) async fn sleep_or_deadline(delay: Duration, deadline: Option<Instant>) -> bool {
    let wake = Instant::now() + delay;
    match deadline {
        Some(d) if d <= wake => {
            tokio::time::sleep_until(d).await;
            true
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            false
        }
    }
}

/// `wait` as RENDEZVOUS_TIMEOUT milliseconds; `None` (the parameter left out, which means 0)
/// for no wait.
pub(crate) fn rendezvous_ms(wait: Duration) -> Option<u64> {
    // A draft-18 varint carries any u64.
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    (ms > 0).then_some(ms)
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A SUBSCRIBE for `name` in `namespace` that asks the relay to wait up to `rendezvous` ms
/// for a publisher. It leaves GROUP_ORDER out: the relay then follows the publisher's order
/// (descending for media, newest group first), never ascending, which would have a congested
/// relay send old groups before the live one.
fn subscribe_message(namespace: &TrackNamespace, name: &str, rendezvous: Option<u64>) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: namespace.clone(),
        track_name: TrackName::from(name),
        parameters: Parameters {
            rendezvous_timeout: rendezvous,
            ..Parameters::default()
        },
    }
}

pub(crate) async fn subscribe(
    session: &Session,
    namespace: &TrackNamespace,
    name: &str,
    rendezvous: Option<u64>,
) -> anyhow::Result<Subscription> {
    let subscribe = subscribe_message(namespace, name, rendezvous);
    session
        .subscribe(subscribe)
        .await
        .with_context(|| format!("SUBSCRIBE {name}"))
}

/// [`subscribe`], tried again [`SUBSCRIBE_RETRIES`] times with a growing pause while the
/// session lives (a lossy link can fail a request that the next attempt gets through).
pub(crate) async fn subscribe_retrying(
    session: &Session,
    namespace: &TrackNamespace,
    name: &str,
    rendezvous: Option<u64>,
) -> Option<Subscription> {
    let mut pause = Duration::from_millis(250);
    for attempt in 0..=SUBSCRIBE_RETRIES {
        match subscribe(session, namespace, name, rendezvous).await {
            Ok(sub) => return Some(sub),
            Err(e) if attempt < SUBSCRIBE_RETRIES && !session.is_closed() => {
                tracing::warn!(track = name, error = %format!("{e:#}"), ?pause, "subscribe failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                tracing::warn!(track = name, error = %format!("{e:#}"), "subscribe failed");
                return None;
            }
        }
    }
    None
}

/// Subscribe to the catalog (waiting up to `rendezvous` ms for a publisher) and read its first
/// object (the current independent catalog).
pub(crate) async fn read_catalog(
    session: &Session,
    namespace: &TrackNamespace,
    rendezvous: Option<u64>,
) -> anyhow::Result<Catalog> {
    let mut sub = subscribe(session, namespace, CATALOG_TRACK, rendezvous).await?;
    let read = async {
        loop {
            match sub.next().await? {
                Some(TrackEvent::Subgroup(mut reader)) => {
                    if let Some(object) = reader.next().await? {
                        return Ok::<_, anyhow::Error>(Catalog::parse(&object.payload)?);
                    }
                }
                Some(_) => continue,
                None => anyhow::bail!("the catalog track ended before a catalog arrived"),
            }
        }
    };
    tokio::time::timeout(CATALOG_WAIT, read)
        .await
        .map_err(|_| anyhow::anyhow!("no catalog within {CATALOG_WAIT:?} of its SUBSCRIBE_OK"))?
}

/// The first video (or the rendition named `rendition`: see [`find_rendition`]) and first
/// audio track; their mux configurations when output is wanted.
fn select_tracks(
    catalog: &Catalog,
    mux: bool,
    rendition: Option<&str>,
) -> anyhow::Result<(Vec<Watched>, Option<Vec<TrackConfig>>)> {
    let mut selected = Vec::new();
    let mut configs = Vec::new();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let track = match (kind, rendition) {
            (MediaKind::Video, Some(name)) if name != AUTO => Some(find_rendition(catalog, name)?),
            _ => catalog.tracks().iter().find(|t| t.media_kind() == Some(kind)),
        };
        let Some(track) = track else {
            continue;
        };
        if kind == MediaKind::Video && rendition == Some(AUTO) {
            anyhow::ensure!(
                !mux,
                "--rendition auto switches between renditions of different sizes, which one MP4 \
                 track cannot hold: use --output none"
            );
            // The rendition playing changes: the track is named for the choice.
            selected.push(Watched::new(AUTO.into(), kind));
            continue;
        }
        if mux {
            anyhow::ensure!(
                !track.is_synthetic(),
                "track {} is synthetic (filler payload): use --output none",
                track.name
            );
            configs.push(
                TrackConfig::from_catalog(catalog, track).with_context(|| format!("track {}", track.name))?,
            );
        }
        selected.push(Watched::new(track.name.clone(), kind));
    }
    anyhow::ensure!(
        !selected.is_empty(),
        "the catalog has no LOC video or audio track"
    );
    Ok((selected, mux.then_some(configs)))
}

/// The video track of rendition `name`: the track named `name`, or `video/<name>` (as
/// `banyan-publish --ladder` names them), or the video track whose `label` is `name`.
fn find_rendition<'c>(catalog: &'c Catalog, name: &str) -> anyhow::Result<&'c banyan_media::Track> {
    let videos = || {
        catalog
            .tracks()
            .iter()
            .filter(|t| t.media_kind() == Some(MediaKind::Video))
    };
    let prefixed = format!("video/{name}");
    videos()
        .find(|t| t.name == name || t.name == prefixed)
        .or_else(|| videos().find(|t| t.label.as_deref() == Some(name)))
        .ok_or_else(|| {
            let names: Vec<&str> = videos().map(|t| t.name.as_str()).collect();
            anyhow::anyhow!(
                "--rendition {name}: no such video track (the catalog has: {})",
                names.join(", ")
            )
        })
}

/// Forward a subscription's objects (every subgroup read concurrently) to the main loop.
pub(crate) async fn read_subscription(track: usize, mut sub: Subscription, tx: mpsc::Sender<Msg>) {
    let mut readers = tokio::task::JoinSet::new();
    let mut ended = false;
    loop {
        match sub.next().await {
            Ok(Some(TrackEvent::Subgroup(mut reader))) => {
                let tx = tx.clone();
                readers.spawn(async move {
                    let group = reader.group_id();
                    let mut objects = 0;
                    let clean = loop {
                        match reader.next().await {
                            Ok(Some(object)) => {
                                objects += 1;
                                let received_us = unix_micros();
                                let msg = Msg::Object {
                                    track,
                                    group,
                                    object,
                                    received_us,
                                };
                                if tx.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break true,
                            Err(e) => {
                                tracing::debug!(group, error = %e, "group stream failed");
                                break false;
                            }
                        }
                    };
                    let _ = tx
                        .send(Msg::GroupEnd {
                            track,
                            group,
                            objects,
                            clean,
                        })
                        .await;
                });
            }
            // Only Track Ended means the broadcast is over; anything else (the relay going
            // away, an upstream failure) is worth a reconnect.
            Ok(Some(TrackEvent::Done(done))) => {
                ended = done.status_code == banyan_moq::coding::PublishDoneCode::TrackEnded;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    while readers.join_next().await.is_some() {}
    if ended {
        let _ = tx.send(Msg::TrackEnd { track }).await;
    }
}

/// The origin's tracks of one number each that the watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// `likes`: the cumulative like total.
    Likes,
    /// `viewers`: the live viewer count.
    Viewers,
}

impl Counter {
    fn track(self) -> &'static str {
        match self {
            Counter::Likes => "likes",
            Counter::Viewers => "viewers",
        }
    }
}

/// Follow the broadcast's `likes` or `viewers` track (each object one number). A relay without
/// interactions refuses the SUBSCRIBE: then there is nothing to report. It asks for no
/// rendezvous: it is sent once the catalog has arrived, so the broadcast is there, and an origin
/// relay serves these tracks itself; a wait would only delay the answer of a relay without them.
async fn read_counter(session: Session, namespace: TrackNamespace, counter: Counter, tx: mpsc::Sender<Msg>) {
    let track = counter.track();
    let mut sub = match subscribe(&session, &namespace, track, None).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), track, "no counter track");
            return;
        }
    };
    let mut readers = tokio::task::JoinSet::new();
    while let Ok(Some(event)) = sub.next().await {
        let TrackEvent::Subgroup(mut reader) = event else {
            continue;
        };
        let tx = tx.clone();
        readers.spawn(async move {
            let group = reader.group_id();
            while let Ok(Some(object)) = reader.next().await {
                match decode_total(&object.payload) {
                    Some(value) => {
                        if tx
                            .send(Msg::Counter {
                                counter,
                                group,
                                value,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    None => tracing::debug!(group, track, "malformed counter object"),
                }
            }
        });
    }
    while readers.join_next().await.is_some() {}
}

/// A `likes` object: exactly one varint, the total.
pub(crate) fn decode_total(payload: &[u8]) -> Option<u64> {
    let mut buf = payload;
    let total = banyan_moq::coding::decode_varint(&mut buf).ok()?;
    buf.is_empty().then_some(total)
}

/// Where the viewer's output goes: a file, stdout, or nowhere (`None`).
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// What ends a session's playing besides the stream of objects.
struct Ending<'a, S> {
    /// The session (lost when it closes).
    session: &'a Session,
    /// The end of `--duration`.
    deadline: Option<Instant>,
    /// Ctrl-C or SIGTERM.
    shutdown: std::pin::Pin<&'a mut S>,
}

/// What the viewer makes of the objects it plays, in order: the summary's counts and
/// latencies, and the MP4 it writes.
struct Player {
    summary: Summary,
    /// `--rendition`: the video track to watch, by rendition name (`None`: the first).
    rendition: Option<String>,
    /// Receive latency of each object sent after the subscription (µs).
    latencies: Vec<u64>,
    /// How far behind live each played object was (µs).
    behind_live: Vec<u64>,
    /// When the current session's subscriptions were sent (µs since the Unix epoch): objects
    /// captured earlier were cached by the relay and have no receive latency.
    subscribed_at: u64,
    /// When the viewer started (time to first frame counts from here).
    started: Instant,
    /// The first timestamp seen, less half a second: presentation time zero.
    base_us: Option<u64>,
    muxer: Option<Muxer>,
    output: Option<Output>,
    /// `--rendition auto`: the choice and its subscriptions.
    auto: Option<AutoPlay>,
}

/// `--rendition auto` in the viewer: the rule ([`Auto`]) and the subscriptions it asks for.
struct AutoPlay {
    auto: Auto,
    /// The index of the video track among the watched ones.
    slot: usize,
    /// The current session's, to subscribe renditions on (none between sessions).
    link: Option<Link>,
    /// Rendition SUBSCRIBEs the relay accepted (the first of each session and each switch's).
    subscriptions: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// One session's means to subscribe a rendition, and the rendition subscriptions on it.
struct Link {
    session: Session,
    namespace: TrackNamespace,
    rendezvous: Option<u64>,
    /// Weak: the channel still closes when every subscription has ended (a lost session).
    tx: mpsc::WeakSender<Msg>,
    /// Each rendition subscription's reading task, by tag.
    tasks: HashMap<usize, tokio::task::AbortHandle>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl AutoPlay {
    /// Carry out what the rule asked for: subscribe a rendition (in the background: the old
    /// one plays on meanwhile) or drop one. Returns whether a switch was decided.
    fn act(&mut self, actions: Actions) -> bool {
        let switched = actions.switched;
        let Some(link) = self.link.as_mut() else {
            return switched;
        };
        if let Some(tag) = actions.unsubscribe {
            if let Some(task) = link.tasks.remove(&tag) {
                task.abort();
            }
        }
        let Some((name, tag)) = actions.subscribe else {
            return switched;
        };
        let Some(tx) = link.tx.upgrade() else {
            return switched;
        };
        let (session, namespace, rendezvous) =
            (link.session.clone(), link.namespace.clone(), link.rendezvous);
        let accepted = self.subscriptions.clone();
        let task = tokio::spawn(async move {
            if let Some(sub) = subscribe_retrying(&session, &namespace, &name, rendezvous).await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                read_subscription(tag, sub, tx).await;
            }
        });
        link.tasks.insert(tag, task.abort_handle());
        switched
    }
}

impl Player {
    fn new(output: Option<Output>) -> Self {
        Self {
            auto: None,
            rendition: None,
            summary: Summary::default(),
            latencies: Vec::new(),
            behind_live: Vec::new(),
            subscribed_at: 0,
            started: Instant::now(),
            base_us: None,
            muxer: None,
            output,
        }
    }

    /// Subscribe to every track not yet ended, and to the likes and viewer count; their objects
    /// arrive on the returned channel.
    async fn subscribe(
        &mut self,
        session: &Session,
        namespace: &TrackNamespace,
        rendezvous: Option<u64>,
        tracks: &mut [Watched],
    ) -> (tokio::task::JoinSet<()>, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel::<Msg>(1024);
        let mut subs = tokio::task::JoinSet::new();
        if let Some(auto) = self.auto.as_mut() {
            auto.link = Some(Link {
                session: session.clone(),
                namespace: namespace.clone(),
                rendezvous,
                tx: tx.downgrade(),
                tasks: HashMap::new(),
            });
        }
        for (i, t) in tracks.iter_mut().enumerate() {
            if t.ended {
                continue;
            }
            // The video under `--rendition auto`: the rendition playing, its messages tagged.
            let (name, tag) = match self.auto.as_mut().filter(|a| a.slot == i) {
                Some(auto) => auto.auto.resubscribe(),
                None => (t.name.clone(), i),
            };
            if let Some(sub) = subscribe_retrying(session, namespace, &name, rendezvous).await {
                self.summary.subscriptions += 1;
                t.summary.subscriptions += 1;
                let task = subs.spawn(read_subscription(tag, sub, tx.clone()));
                if let Some(auto) = self.auto.as_mut().filter(|a| a.slot == i) {
                    auto.subscriptions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(link) = auto.link.as_mut() {
                        link.tasks.insert(tag, task);
                    }
                }
            }
        }
        // With no media subscription the channel closes at once, which `play` takes for a
        // lost session: the viewer reconnects rather than watch nothing.
        if !subs.is_empty() {
            for counter in [Counter::Likes, Counter::Viewers] {
                subs.spawn(read_counter(
                    session.clone(),
                    namespace.clone(),
                    counter,
                    tx.clone(),
                ));
            }
        }
        (subs, rx)
    }

    /// Play one session's objects until it is lost (false: reconnect) or the watch is over
    /// (true: every track ended, the deadline passed, or a signal came).
    async fn play(
        &mut self,
        mut rx: mpsc::Receiver<Msg>,
        tracks: &mut [Watched],
        stats_tick: &mut tokio::time::Interval,
        mut ending: Ending<'_, impl std::future::Future<Output = ()>>,
    ) -> anyhow::Result<bool> {
        let (mut likes_group, mut viewers_group) = (None, None);
        loop {
            let deadline_sleep = async {
                match ending.deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // A held group's wait runs out: give up the group it waits for at once, not late.
            let reorder_deadline = tracks.iter().filter_map(|t| t.order.deadline_us()).min();
            let reorder_sleep = async {
                match reorder_deadline {
                    Some(d) => {
                        tokio::time::sleep(Duration::from_micros(d.saturating_sub(unix_micros()))).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Counter { counter, group, value }) => {
                        let (newest, latest) = match counter {
                            Counter::Likes => (&mut likes_group, &mut self.summary.likes),
                            Counter::Viewers => (&mut viewers_group, &mut self.summary.viewers),
                        };
                        // Groups may overlap on their streams: a value from an older group is stale.
                        if newest.is_none_or(|g| group >= g) {
                            *newest = Some(group);
                            *latest = Some(value);
                        }
                    }
                    Some(msg) => {
                        self.handle(msg, tracks, unix_micros()).await?;
                        if tracks.iter().all(|t| t.ended) {
                            return Ok(true);
                        }
                    }
                    // Every subscription ended without the tracks ending: the session is gone.
                    None => return Ok(false),
                },
                () = reorder_sleep => self.release_stalled(tracks, unix_micros()).await?,
                _ = stats_tick.tick() => {
                    eprintln!("{}", self.progress(tracks));
                    self.abr_point("tick", tracks);
                }
                _ = ending.session.closed() => return Ok(false),
                _ = deadline_sleep => return Ok(true),
                () = ending.shutdown.as_mut() => return Ok(true),
            }
        }
    }

    /// The first catalog: pick the tracks to watch and, when writing fMP4, write its init
    /// segment.
    async fn start(&mut self, catalog: &Catalog) -> anyhow::Result<Vec<Watched>> {
        let (tracks, configs) = select_tracks(catalog, self.output.is_some(), self.rendition.as_deref())?;
        if let (Some(out), Some(configs)) = (self.output.as_mut(), configs) {
            let m = Muxer::new(configs);
            out.write_all(&m.init_segment().context("writing the MP4 init segment")?)
                .await
                .context("writing output")?;
            self.muxer = Some(m);
        }
        if self.rendition.as_deref() == Some(AUTO) {
            let ladder = crate::rendition::ladder(catalog)?;
            let names: Vec<String> = ladder
                .iter()
                .map(|r| format!("{} ({} kbit/s)", r.name, r.bitrate / 1000))
                .collect();
            eprintln!("watch: abr ladder {}", names.join(", "));
            let slot = tracks.iter().position(|t| t.kind == MediaKind::Video);
            if let (Some(auto), Some(slot)) = (Auto::new(ladder, self.started), slot) {
                self.auto = Some(AutoPlay {
                    auto,
                    slot,
                    link: None,
                    subscriptions: Default::default(),
                });
            }
        }
        let names: Vec<&str> = tracks.iter().map(|t| t.name.as_str()).collect();
        eprintln!("watch: {} tracks: {}", tracks.len(), names.join(", "));
        Ok(tracks)
    }

    /// The once-a-second progress line.
    fn progress(&self, tracks: &[Watched]) -> String {
        let p50 = |samples: &[u64]| {
            let mut sorted = samples.to_vec();
            sorted.sort_unstable();
            percentile(&sorted, 50.0).map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0))
        };
        let primary = tracks.first();
        format!(
            "watch: objects {} groups {} gaps {} skipped {} stalls {} latency p50 {} ms behind live p50 {} ms{}{}",
            self.summary.objects,
            self.summary.groups,
            primary.map_or(0, |t| t.summary.gaps),
            primary.map_or(0, Watched::groups_skipped),
            primary.map_or(0, |t| t.stalls),
            p50(&self.latencies),
            p50(&self.behind_live),
            self.summary
                .likes
                .map_or(String::new(), |n| format!(" likes {n}")),
            self.summary
                .viewers
                .map_or(String::new(), |n| format!(" viewers {n}")),
        )
    }

    /// The end: play what is still buffered, flush the output and return the JSON summary.
    async fn finish(mut self, mut tracks: Vec<Watched>) -> anyhow::Result<String> {
        // Flush what is buffered.
        for i in 0..tracks.len() {
            let frames = tracks.get_mut(i).map(|t| t.order.drain()).unwrap_or_default();
            self.deliver_all(i, frames, &mut tracks, unix_micros()).await?;
            self.flush_pending(i, &mut tracks).await?;
        }
        let Player {
            mut summary,
            latencies,
            behind_live,
            mut output,
            auto,
            ..
        } = self;
        summary.abr = auto.map(|a| {
            let mut abr = a.auto.summary();
            abr.subscriptions = a.subscriptions.load(std::sync::atomic::Ordering::Relaxed);
            abr
        });
        if let Some(out) = output.as_mut() {
            out.flush().await.context("writing output")?;
        }
        for t in &mut tracks {
            t.summary.incomplete_groups = t.incomplete.len() as u64;
            t.summary.longest_stall_ms = micros_to_ms(t.longest_stall_us);
            t.summary.groups_skipped = t.groups_skipped();
            t.summary.stalls = t.stalls;
            t.summary.stall_ms_total = micros_to_ms(t.stall_us_total);
            t.summary.longest_pause_ms = micros_to_ms(t.longest_pause_us);
            summary.resubscribes += t.summary.subscriptions.saturating_sub(1);
        }
        if let Some(primary) = tracks.first() {
            summary.gaps = primary.summary.gaps;
            summary.missing_groups = missing(&primary.seen_groups);
            summary.incomplete_groups = primary.summary.incomplete_groups;
            summary.longest_stall_ms = primary.summary.longest_stall_ms;
            summary.groups_skipped = primary.summary.groups_skipped;
            summary.stalls = primary.summary.stalls;
            summary.stall_ms_total = primary.summary.stall_ms_total;
        }
        summary.latency_ms = Distribution::from_micros(latencies);
        summary.behind_live_ms = Distribution::from_micros(behind_live);
        for t in &tracks {
            summary.tracks.insert(t.name.clone(), t.summary.clone());
        }
        serde_json::to_string(&summary).context("summary")
    }

    /// One message from a subscription at `now_us` (µs since the Unix epoch): give up what is
    /// late by now, reorder the message, then play what is ready.
    async fn handle(&mut self, msg: Msg, tracks: &mut [Watched], now_us: u64) -> anyhow::Result<()> {
        let Some(msg) = self.route_rendition(msg, tracks) else {
            return Ok(());
        };
        let track = match &msg {
            Msg::Object { track, .. } | Msg::GroupEnd { track, .. } | Msg::TrackEnd { track } => *track,
            Msg::Counter { .. } => return Ok(()),
        };
        self.release_stalled(tracks, now_us).await?;
        let Some(t) = tracks.get_mut(track) else {
            return Ok(());
        };
        let ready = match msg {
            Msg::Object {
                group,
                object,
                received_us,
                ..
            } => {
                if let Some(last) = t.last_arrival_us {
                    t.longest_stall_us = t.longest_stall_us.max(received_us.saturating_sub(last));
                }
                t.last_arrival_us = Some(t.last_arrival_us.map_or(received_us, |l| l.max(received_us)));
                let ready = t.order.object(group, object, received_us);
                if ready.is_none() {
                    self.summary.late_objects += 1;
                }
                ready.unwrap_or_default()
            }
            Msg::GroupEnd {
                group,
                objects,
                clean,
                ..
            } => {
                if !clean {
                    tracing::debug!(group, objects, "group stream reset");
                    t.given_up.insert(group);
                    if objects > 0 {
                        t.incomplete.insert(group);
                    }
                }
                t.order.group_end(group)
            }
            Msg::TrackEnd { .. } => {
                t.ended = true;
                t.order.drain()
            }
            Msg::Counter { .. } => return Ok(()),
        };
        self.deliver_all(track, ready, tracks, now_us).await?;
        if tracks.get(track).is_some_and(|t| t.ended) {
            self.flush_pending(track, tracks).await?;
        }
        Ok(())
    }

    /// A message of a rendition subscription (`--rendition auto`): the video track's message if
    /// it is to be played, after doing what the rule asks (see [`crate::rendition`]). Any other
    /// message as it is.
    fn route_rendition(&mut self, msg: Msg, tracks: &[Watched]) -> Option<Msg> {
        let tag = match &msg {
            Msg::Object { track, .. } | Msg::GroupEnd { track, .. } | Msg::TrackEnd { track } => *track,
            Msg::Counter { .. } => return Some(msg),
        };
        if tag < TAG_BASE {
            return Some(msg);
        }
        let auto = self.auto.as_mut()?;
        let slot = auto.slot;
        let skipped = tracks.get(slot).map_or(0, Watched::groups_skipped);
        let (route, actions, msg) = match msg {
            Msg::Object {
                group,
                object,
                received_us,
                ..
            } => {
                let capture = tracks
                    .get(slot)
                    .and_then(|t| LocFrame::from_object(t.kind, &object).ok())
                    .map(|f| f.timestamp_us);
                let (route, actions) = auto.auto.object(
                    tag,
                    group,
                    object.object_id,
                    object.payload.len(),
                    capture,
                    received_us,
                    skipped,
                );
                let msg = Msg::Object {
                    track: slot,
                    group,
                    object,
                    received_us,
                };
                (route, actions, msg)
            }
            Msg::GroupEnd {
                group,
                objects,
                clean,
                ..
            } => {
                let (route, actions) = auto.auto.group_end(tag, group, skipped);
                let msg = Msg::GroupEnd {
                    track: slot,
                    group,
                    objects,
                    clean,
                };
                (route, actions, msg)
            }
            Msg::TrackEnd { .. } | Msg::Counter { .. } => {
                // The broadcast ended (every rendition ends with it).
                (Route::Play, Actions::default(), Msg::TrackEnd { track: slot })
            }
        };
        if auto.act(actions) {
            self.abr_point("switch", tracks);
        }
        (route == Route::Play).then_some(msg)
    }

    /// Under `--rendition auto`, a timeline point (`tick` or `switch`) to stderr and the summary.
    fn abr_point(&mut self, event: &'static str, tracks: &[Watched]) {
        let Some(auto) = self.auto.as_mut() else {
            return;
        };
        let stalls = tracks.get(auto.slot).map_or(0, |t| t.stalls);
        let p = auto.auto.point(event, stalls, Instant::now());
        eprintln!(
            "watch: abr t {:.1} s {} estimate {} kbit/s rendition {} switches {} stalls {} behind live {} ms",
            p.t_ms as f64 / 1000.0,
            p.event,
            p.estimate_kbps.map_or("-".into(), |e| e.to_string()),
            p.rendition,
            p.switches,
            p.stalls,
            p.behind_live_ms.map_or("-".into(), |b| format!("{b:.0}")),
        );
    }

    /// The session is gone (at `now_us`), and with it every group stream still open: end them
    /// unclean, as a reset would, so what was held plays now and the next session's groups wait
    /// for nothing.
    async fn session_lost(&mut self, tracks: &mut [Watched], now_us: u64) -> anyhow::Result<()> {
        if let Some(auto) = self.auto.as_mut() {
            auto.link = None;
        }
        for track in 0..tracks.len() {
            let open = tracks
                .get(track)
                .map(|t| t.order.open_groups())
                .unwrap_or_default();
            for group in open {
                // Some of each arrived: the current group's first object, a held group's.
                let end = Msg::GroupEnd {
                    track,
                    group,
                    objects: 1,
                    clean: false,
                };
                self.handle(end, tracks, now_us).await?;
            }
        }
        Ok(())
    }

    /// At `now_us`, give up the groups a newer group has waited for too long, and play on.
    async fn release_stalled(&mut self, tracks: &mut [Watched], now_us: u64) -> anyhow::Result<()> {
        for i in 0..tracks.len() {
            let ready = match tracks.get_mut(i) {
                Some(t) => {
                    let give_up = t.order.tick(now_us);
                    self.summary.late_objects += give_up.dropped;
                    for group in give_up.groups {
                        tracing::debug!(group, "given up: a newer group waited too long");
                        t.given_up.insert(group);
                        // Played on without the rest of it (if any of it played).
                        if t.seen_groups.contains(&group) {
                            t.incomplete.insert(group);
                        }
                    }
                    give_up.ready
                }
                None => Vec::new(),
            };
            self.deliver_all(i, ready, tracks, now_us).await?;
        }
        Ok(())
    }

    /// [`deliver`](Self::deliver) each of `ready`, in order.
    async fn deliver_all(
        &mut self,
        track: usize,
        ready: Ready,
        tracks: &mut [Watched],
        now_us: u64,
    ) -> anyhow::Result<()> {
        for (group, object, received_us) in ready {
            self.deliver(track, group, object, received_us, tracks, now_us)
                .await?;
        }
        Ok(())
    }

    /// One object, in order, played at `now_us`: count it, measure it, mux it.
    async fn deliver(
        &mut self,
        track: usize,
        group: u64,
        object: SubgroupObject,
        received_us: u64,
        tracks: &mut [Watched],
        now_us: u64,
    ) -> anyhow::Result<()> {
        let Some(t) = tracks.get_mut(track) else {
            return Ok(());
        };
        let frame = LocFrame::from_object(t.kind, &object);
        if let Some(last) = t.last_played_us.replace(now_us) {
            let pause = now_us.saturating_sub(last);
            t.longest_pause_us = t.longest_pause_us.max(pause);
            if pause > u64::try_from(STALL.as_micros()).unwrap_or(u64::MAX) {
                t.stalls += 1;
                t.stall_us_total += pause;
            }
        }
        self.summary.objects += 1;
        self.summary.bytes += object.payload.len() as u64;
        t.summary.objects += 1;
        if self.summary.ttff_ms.is_none() {
            self.summary.ttff_ms = Some((self.started.elapsed().as_secs_f64() * 1e6).round() / 1000.0);
        }
        if t.seen_groups.insert(group) {
            self.summary.groups += 1;
            t.summary.groups += 1;
            let start_us = frame.as_ref().map_or(received_us, |f| f.timestamp_us);
            if let (Some(last), Some(last_start_us)) = (t.last_group, t.last_group_start_us) {
                // Groups between the last one played and this one never played; unless the
                // IDs jumped too fast for one publisher's groups: a publisher switch.
                let ms = start_us.saturating_sub(last_start_us) / 1000;
                if group > last + 1 && (group - last).saturating_mul(MIN_GROUP_MS) <= ms {
                    tracing::debug!(last, group, "groups never received");
                    t.holes.insert(last + 1, group - 1);
                }
            }
            t.last_group_start_us = Some(start_us);
            match t.last_group {
                Some(last) if group == last + 1 => {
                    // (Unless the run was not listed: past MAX_GROUP_RUNS.)
                    if let Some(run) = t.summary.group_runs.last_mut().filter(|r| r.last_group == last) {
                        run.last_group = group;
                    }
                }
                last => {
                    if last.is_some_and(|last| group > last + 1) {
                        t.summary.gaps += 1;
                    }
                    if t.summary.group_runs.len() < MAX_GROUP_RUNS {
                        t.summary.group_runs.push(GroupRun {
                            first_group: group,
                            last_group: group,
                            first_received_unix_ms: received_us / 1000,
                        });
                    }
                }
            }
            t.last_group = Some(t.last_group.map_or(group, |l| l.max(group)));
        }
        // Objects of a group are played in the order they came on its stream: 0, 1, 2, ...
        let expected = match t.next_object {
            Some((g, next)) if g == group => next,
            _ => 0,
        };
        if object.object_id != expected {
            t.incomplete.insert(group);
        }
        t.next_object = Some((group, object.object_id.saturating_add(1)));
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "invalid LOC object");
                self.summary.invalid_objects += 1;
                return Ok(());
            }
        };
        if frame.timestamp_us >= self.subscribed_at {
            self.latencies
                .push(received_us.saturating_sub(frame.timestamp_us));
        }
        self.behind_live.push(now_us.saturating_sub(frame.timestamp_us));
        if let Some(auto) = self.auto.as_mut().filter(|a| a.slot == track) {
            auto.auto.played(now_us.saturating_sub(frame.timestamp_us));
        }
        let Some(muxer) = self.muxer.as_mut() else {
            return Ok(());
        };
        // Presentation times start half a second after the first timestamp seen, so a track whose
        // first frame is slightly earlier than another's still lands at or after zero.
        let base = *self
            .base_us
            .get_or_insert(frame.timestamp_us.saturating_sub(500_000));
        let sample = frame_sample(
            frame,
            base,
            &mut t.last_dts,
            u32::try_from(track + 1).unwrap_or(1),
            object.object_id == 0,
        );
        let dts = sample.decode_time;
        if let Some(mut previous) = t.pending.replace(sample) {
            let delta = u32::try_from(dts.saturating_sub(previous.decode_time)).unwrap_or(u32::MAX);
            // Across a gap the delta is the outage, not a frame: keep the usual duration.
            previous.duration = if t.last_duration == 0 || delta <= t.last_duration.saturating_mul(4) {
                delta.max(1)
            } else {
                t.last_duration
            };
            t.last_duration = previous.duration;
            let bytes = muxer.fragment(previous.track_id, std::slice::from_ref(&previous))?;
            if let Some(out) = self.output.as_mut() {
                out.write_all(&bytes).await.context("writing output")?;
            }
        }
        Ok(())
    }

    /// Write a track's last sample, held back for its duration.
    async fn flush_pending(&mut self, track: usize, tracks: &mut [Watched]) -> anyhow::Result<()> {
        let Some(t) = tracks.get_mut(track) else {
            return Ok(());
        };
        let (Some(muxer), Some(mut last)) = (self.muxer.as_mut(), t.pending.take()) else {
            return Ok(());
        };
        last.duration = t.last_duration.max(1);
        let bytes = muxer.fragment(last.track_id, std::slice::from_ref(&last))?;
        if let Some(out) = self.output.as_mut() {
            out.write_all(&bytes).await.context("writing output")?;
        }
        Ok(())
    }
}

/// Groups missing between the first and last group seen.
fn missing(groups: &BTreeSet<u64>) -> u64 {
    match (groups.first(), groups.last()) {
        (Some(&a), Some(&b)) => (b - a + 1).saturating_sub(groups.len() as u64),
        _ => 0,
    }
}

/// Objects ready to play, in order: (group, object, received µs since the Unix epoch).
type Ready = Vec<(u64, SubgroupObject, u64)>;

/// Puts one track's objects back in group order and decides when a group would play too late.
///
/// The relay sends a congested subscriber the newest group first and resets older group
/// streams it cannot deliver in time, so a newer group's objects can arrive while an older one
/// is still streaming, and an older group may be cut short or never come. The rule, the same
/// as the browser player's jitter buffer (client-web/src/player/jitter.ts: a late oldest frame
/// with a newer group buffered skips to the newest group):
///
/// - Objects of the current group play at once.
/// - A newer group is held while the current group's stream is open. When that stream ends
///   (cleanly, or reset: the rest of the group will not come) the held groups play in order:
///   each one whose stream has ended in full, then the first still open becomes current.
/// - Once a held group has waited [`REORDER_WAIT`] since its first object arrived, the current
///   group's next object would be late: the current group is given up, and so is every held
///   group but the newest, which becomes current (the live edge, with its keyframe).
/// - An object of a group older than the current one is never played (it would go out after
///   a newer group's objects): it is late and dropped.
#[derive(Debug, Default)]
pub struct GroupOrder {
    current: Option<u64>,
    /// The current group's stream has ended: the next group may pass at once.
    current_ended: bool,
    held: BTreeMap<u64, Held>,
}

/// A group held back until the current one is done.
#[derive(Debug)]
struct Held {
    /// When its first object arrived (µs since the Unix epoch).
    since_us: u64,
    objects: Ready,
    /// Its stream has ended (cleanly or not).
    ended: bool,
}

/// What giving up on late groups released: see [`GroupOrder::tick`].
#[derive(Debug, Default)]
struct GiveUp {
    /// The newest group's held objects, to play now.
    ready: Ready,
    /// The groups given up on, oldest first.
    groups: Vec<u64>,
    /// Objects held for those groups, dropped unplayed.
    dropped: u64,
}

impl GroupOrder {
    /// An object arrived; what can be delivered now (`None`: it is late and dropped).
    fn object(&mut self, group: u64, object: SubgroupObject, received_us: u64) -> Option<Ready> {
        match self.current {
            Some(c) if c == group => Some(vec![(group, object, received_us)]),
            Some(c) if group < c => None,
            // The first group, or a newer one after a finished group with none waiting.
            current if current.is_none() || (self.current_ended && self.held.is_empty()) => {
                self.current = Some(group);
                self.current_ended = false;
                Some(vec![(group, object, received_us)])
            }
            _ => {
                let held = self.held.entry(group).or_insert_with(|| Held {
                    since_us: received_us,
                    objects: Vec::new(),
                    ended: false,
                });
                held.objects.push((group, object, received_us));
                Some(Vec::new())
            }
        }
    }

    /// A group's stream ended (cleanly or reset): if it was the current one, move on to the
    /// held groups in order.
    fn group_end(&mut self, group: u64) -> Ready {
        if let Some(held) = self.held.get_mut(&group) {
            held.ended = true;
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.current == Some(group) {
            self.current_ended = true;
            while let Some((group, held)) = self.held.pop_first() {
                self.current = Some(group);
                self.current_ended = held.ended;
                out.extend(held.objects);
                if !held.ended {
                    break;
                }
            }
        }
        out
    }

    /// When a held group will have waited [`REORDER_WAIT`] (µs since the Unix epoch): the
    /// latest time to call [`tick`](Self::tick).
    fn deadline_us(&self) -> Option<u64> {
        let wait = u64::try_from(REORDER_WAIT.as_micros()).unwrap_or(u64::MAX);
        self.held.values().map(|h| h.since_us.saturating_add(wait)).min()
    }

    /// At `now_us`: if a held group has waited [`REORDER_WAIT`], give up the current group and
    /// every held group but the newest, which becomes current.
    fn tick(&mut self, now_us: u64) -> GiveUp {
        if self.deadline_us().is_none_or(|d| now_us < d) {
            return GiveUp::default();
        }
        let mut give_up = GiveUp::default();
        if let Some(current) = self.current.filter(|_| !self.current_ended) {
            give_up.groups.push(current);
        }
        let Some((newest, held)) = self.held.pop_last() else {
            return give_up;
        };
        for (group, older) in std::mem::take(&mut self.held) {
            give_up.groups.push(group);
            give_up.dropped += older.objects.len() as u64;
        }
        self.current = Some(newest);
        self.current_ended = held.ended;
        give_up.ready = held.objects;
        give_up
    }

    /// The groups whose streams are still open, oldest first: the current one and those held.
    fn open_groups(&self) -> Vec<u64> {
        let current = self.current.filter(|_| !self.current_ended);
        let held = self.held.iter().filter(|(_, h)| !h.ended).map(|(&g, _)| g);
        current.into_iter().chain(held).collect()
    }

    /// Everything held, in order (end of track or of the run).
    fn drain(&mut self) -> Ready {
        let mut out = Vec::new();
        while let Some((group, held)) = self.held.pop_first() {
            self.current = Some(group);
            self.current_ended = held.ended;
            out.extend(held.objects);
        }
        out
    }
}

/// A LOC frame as an MP4 sample of `track_id` (µs timescale, duration left 0 for the caller):
/// presentation time from `base`, decode time from the frame's decode offset, kept strictly
/// increasing after `last_dts` (which it updates), as a fragment's decode times must be.
pub(crate) fn frame_sample(
    frame: LocFrame,
    base: u64,
    last_dts: &mut Option<u64>,
    track_id: u32,
    keyframe: bool,
) -> Sample {
    let pts = frame.timestamp_us.saturating_sub(base);
    let mut dts = pts.saturating_sub(frame.decode_offset_us);
    if let Some(last) = *last_dts {
        dts = dts.max(last + 1);
    }
    *last_dts = Some(dts);
    Sample {
        track_id,
        timescale: 1_000_000,
        decode_time: dts,
        composition_offset: i64::try_from(pts).unwrap_or(0) - i64::try_from(dts).unwrap_or(0),
        duration: 0,
        keyframe,
        data: frame.payload,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;

    /// A subscriber's session whose publisher refuses the first `refusals` SUBSCRIBEs, then
    /// accepts; the count of SUBSCRIBEs it saw.
    async fn refusing_publisher(refusals: usize) -> (Session, tokio::task::JoinHandle<usize>) {
        use banyan_moq::coding::RequestErrorCode;
        use banyan_moq::message::SubscribeOk;
        use banyan_moq::session::{Request, SessionConfig};
        let url = "moqt://mem.test/live".parse().unwrap();
        let config = banyan_tests::mem::Config::default();
        let pair = banyan_tests::mem::session_pair(&config, &url, SessionConfig::default())
            .await
            .unwrap();
        let (client, server) = (pair.client.0.clone(), pair.server.0.clone());
        tokio::spawn(pair.client.1.run());
        tokio::spawn(pair.server.1.run());
        let publisher = tokio::spawn(async move {
            let mut seen = 0;
            let mut writers = Vec::new();
            while let Some(Request::Subscribe(request)) = server.accept().await {
                seen += 1;
                if seen <= refusals {
                    let _ = request.reject(RequestErrorCode::InternalError, "not yet").await;
                } else {
                    writers.push(request.accept(SubscribeOk::default()).await.unwrap());
                    return seen;
                }
            }
            seen
        });
        (client, publisher)
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_media_subscribe_is_tried_again() {
        let (session, publisher) = refusing_publisher(2).await;
        let ns = TrackNamespace::from_path("live").unwrap();
        let sub = subscribe_retrying(&session, &ns, "video", None).await;
        assert!(sub.is_some(), "the third SUBSCRIBE is accepted");
        assert_eq!(publisher.await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscribe_refused_every_time_gives_up() {
        let (session, publisher) = refusing_publisher(usize::MAX).await;
        let ns = TrackNamespace::from_path("live").unwrap();
        assert!(subscribe_retrying(&session, &ns, "video", None).await.is_none());
        session.close(SessionErrorCode::NoError, "done");
        drop(session);
        let seen = tokio::time::timeout(Duration::from_secs(5), publisher).await;
        assert_eq!(seen.unwrap().unwrap(), 1 + SUBSCRIBE_RETRIES as usize);
    }

    fn obj(id: u64) -> SubgroupObject {
        SubgroupObject::new(id, Bytes::new())
    }

    fn ids(r: &Ready) -> Vec<(u64, u64)> {
        r.iter().map(|(g, o, _)| (*g, o.object_id)).collect()
    }

    const WAIT_US: u64 = REORDER_WAIT.as_micros() as u64;

    #[test]
    fn overlapping_groups_come_out_in_order() {
        let mut order = GroupOrder::default();
        assert_eq!(ids(&order.object(5, obj(0), 0).unwrap()), [(5, 0)]);
        // Group 6 starts before group 5's stream has finished: held.
        assert!(order.object(6, obj(0), 0).unwrap().is_empty());
        assert_eq!(order.deadline_us(), Some(WAIT_US));
        assert_eq!(ids(&order.object(5, obj(1), 0).unwrap()), [(5, 1)]);
        assert_eq!(ids(&order.group_end(5)), [(6, 0)]);
        assert_eq!(order.deadline_us(), None, "nothing held");
        assert_eq!(ids(&order.object(6, obj(1), 0).unwrap()), [(6, 1)]);
        assert!(order.object(5, obj(2), 0).is_none(), "late");
        // A stalled group is given up once a newer one has waited the reorder wait.
        assert!(order.object(8, obj(0), 10).unwrap().is_empty());
        assert!(order.tick(10 + WAIT_US - 1).groups.is_empty());
        let give_up = order.tick(10 + WAIT_US);
        assert_eq!(ids(&give_up.ready), [(8, 0)]);
        assert_eq!(give_up.groups, [6], "group 6 never ended: given up");
        assert!(order.object(6, obj(2), 0).is_none(), "late");
    }

    #[test]
    fn the_next_group_passes_at_once_after_the_current_one_ended() {
        let mut order = GroupOrder::default();
        assert_eq!(ids(&order.object(5, obj(0), 0).unwrap()), [(5, 0)]);
        assert!(order.group_end(5).is_empty());
        // Nothing to wait for: group 6 (or a later one, after a switch) is not held.
        assert_eq!(ids(&order.object(9, obj(0), 0).unwrap()), [(9, 0)]);
        assert!(order.object(8, obj(0), 0).is_none(), "late");
        assert!(order.tick(WAIT_US).groups.is_empty(), "nothing given up");
    }

    #[test]
    fn giving_up_skips_to_the_newest_group() {
        let mut order = GroupOrder::default();
        assert_eq!(ids(&order.object(5, obj(0), 0).unwrap()), [(5, 0)]);
        // Groups 6 (complete), 7 (still open) and 8 wait for group 5.
        for (g, at) in [(6, 100), (7, 150), (8, 180)] {
            assert!(order.object(g, obj(0), at).unwrap().is_empty());
        }
        assert!(order.group_end(6).is_empty());
        assert!(order.tick(100 + WAIT_US - 1).groups.is_empty());
        let give_up = order.tick(100 + WAIT_US);
        assert_eq!(give_up.groups, [5, 6, 7]);
        assert_eq!(give_up.dropped, 2, "the objects held for groups 6 and 7");
        assert_eq!(ids(&give_up.ready), [(8, 0)]);
        assert!(order.object(7, obj(1), 0).is_none(), "never after group 8");
    }

    #[test]
    fn a_reset_current_group_lets_the_held_ones_play_in_order() {
        let mut order = GroupOrder::default();
        assert_eq!(ids(&order.object(5, obj(0), 0).unwrap()), [(5, 0)]);
        assert!(order.object(6, obj(0), 1).unwrap().is_empty());
        assert!(order.group_end(6).is_empty());
        assert!(order.object(7, obj(0), 2).unwrap().is_empty());
        // Group 5's stream is reset: its rest will not come, so nothing waits for it.
        assert_eq!(ids(&order.group_end(5)), [(6, 0), (7, 0)]);
        assert_eq!(ids(&order.object(7, obj(1), 3).unwrap()), [(7, 1)]);
    }

    #[test]
    fn likes_objects_are_one_varint() {
        assert_eq!(decode_total(&[0x25]), Some(37));
        assert_eq!(decode_total(&[0xbb, 0xbd]), Some(15_293));
        assert_eq!(decode_total(&[0x25, 0x00]), None, "trailing bytes");
        assert_eq!(decode_total(&[0xbb]), None, "truncated");
        assert_eq!(decode_total(&[]), None);
    }

    #[test]
    fn media_subscribes_ask_for_a_rendezvous_on_the_wire() {
        assert_eq!(rendezvous_ms(Duration::from_secs(5)), Some(5000));
        assert_eq!(rendezvous_ms(Duration::from_micros(1500)), Some(1));
        assert_eq!(
            rendezvous_ms(Duration::ZERO),
            None,
            "0: the parameter is left out"
        );
        assert_eq!(rendezvous_ms(Duration::MAX), Some(u64::MAX));
        let namespace = TrackNamespace::from_path("t").unwrap();
        let frame =
            banyan_moq::message::Message::Subscribe(subscribe_message(&namespace, "video", Some(5000)))
                .to_frame(banyan_moq::Version::Draft18)
                .unwrap();
        // SUBSCRIBE (0x03), length 14, request 0, namespace ("t"), name "video", one
        // parameter: type 0x04 (RENDEZVOUS_TIMEOUT), varint 5000 (two bytes, prefix 10: 0x9388).
        let expected = [
            0x03, 0x00, 0x0e, 0x00, 0x01, 0x01, b't', 0x05, b'v', b'i', b'd', b'e', b'o', 0x01, 0x04, 0x93,
            0x88,
        ];
        assert_eq!(frame.as_ref(), expected);
        assert_eq!(
            subscribe_message(&namespace, "video", None)
                .parameters
                .group_order,
            None,
            "no GROUP_ORDER: the publisher's (newest first) applies"
        );
        let frame = banyan_moq::message::Message::Subscribe(subscribe_message(&namespace, "likes", None))
            .to_frame(banyan_moq::Version::Draft18)
            .unwrap();
        assert_eq!(frame.last(), Some(&0x00), "no parameters: no wait asked for");
    }

    fn watched(name: &str) -> Watched {
        Watched::new(name.into(), MediaKind::Video)
    }

    /// Feed `msgs` through the viewer's handling, as the main loop does, each handled as it
    /// arrives: the clock is the latest object's receipt time.
    async fn play(tracks: &mut [Watched], msgs: Vec<Msg>) -> Summary {
        played(tracks, msgs).await.summary
    }

    /// [`play`], keeping the player.
    async fn played(tracks: &mut [Watched], msgs: Vec<Msg>) -> Player {
        let mut player = Player::new(None);
        let mut now = 0;
        for msg in msgs {
            if let Msg::Object { received_us, .. } = &msg {
                now = now.max(*received_us);
            }
            player.handle(msg, tracks, now).await.unwrap();
        }
        player
    }

    fn object(group: u64, id: u64, received_ms: u64) -> Msg {
        Msg::Object {
            track: 0,
            group,
            object: obj(id),
            received_us: received_ms * 1000,
        }
    }

    fn end(group: u64, objects: u64, clean: bool) -> Msg {
        Msg::GroupEnd {
            track: 0,
            group,
            objects,
            clean,
        }
    }

    #[tokio::test]
    async fn a_publisher_switch_is_two_runs_one_incomplete_group_and_a_stall() {
        let mut tracks = vec![watched("video")];
        // The old publisher's groups 100 and 101 (3 objects each, 100 ms apart); it dies in
        // group 101 after 2 objects (the stream is reset), and the new publisher's groups start
        // at 7000 (its start time in ms) 450 ms after the last object.
        let mut msgs = Vec::new();
        for (i, g) in [100u64, 101].into_iter().enumerate() {
            let n = if g == 101 { 2 } else { 3 };
            for o in 0..n {
                msgs.push(object(g, o, 1_000 + (i as u64 * 3 + o) * 100));
            }
            msgs.push(end(g, n, g != 101));
        }
        for (i, g) in [7000u64, 7001].into_iter().enumerate() {
            for o in 0..3 {
                msgs.push(object(g, o, 1_850 + (i as u64 * 3 + o) * 100));
            }
            msgs.push(end(g, 3, true));
        }
        play(&mut tracks, msgs).await;
        let t = &tracks[0];
        assert_eq!(t.summary.objects, 11);
        assert_eq!(
            t.summary.group_runs,
            [
                GroupRun {
                    first_group: 100,
                    last_group: 101,
                    first_received_unix_ms: 1_000
                },
                GroupRun {
                    first_group: 7000,
                    last_group: 7001,
                    first_received_unix_ms: 1_850
                },
            ]
        );
        assert_eq!(t.incomplete, BTreeSet::from([101]), "the group cut by the reset");
        assert_eq!(t.longest_stall_us, 450_000);
        assert_eq!(t.summary.gaps, 1);
        assert_eq!(t.groups_skipped(), 1, "only the reset group 101, not the switch");
    }

    #[tokio::test]
    async fn skipped_objects_and_abandoned_groups_are_incomplete() {
        let mut tracks = vec![watched("video")];
        // Group 1 skips object 1; group 2 starts mid-group (object 2); group 3 never ends and
        // group 4 is played after the reorder wait.
        play(
            &mut tracks,
            vec![
                object(1, 0, 0),
                object(1, 2, 1),
                end(1, 2, true),
                object(2, 2, 2),
                end(2, 1, true),
                object(3, 0, 3),
                object(4, 0, 4),
                object(4, 1, 204),
            ],
        )
        .await;
        let t = &tracks[0];
        assert_eq!(t.incomplete, BTreeSet::from([1, 2, 3]));
        assert_eq!(t.given_up, BTreeSet::from([3]));
        assert_eq!(t.summary.objects, 6);
        // A clean group with every object is not incomplete; a reset one with none is a gap,
        // not an incomplete group.
        let mut tracks = vec![watched("video")];
        play(
            &mut tracks,
            vec![
                object(1, 0, 0),
                object(1, 1, 1),
                end(1, 2, true),
                end(2, 0, false),
            ],
        )
        .await;
        assert!(tracks[0].incomplete.is_empty());
    }

    #[tokio::test]
    async fn a_lost_session_ends_the_open_groups() {
        let mut tracks = vec![watched("video")];
        let mut player = played(
            &mut tracks,
            vec![
                object(5, 0, 0),
                object(6, 0, 10),
                object(7, 0, 20),
                end(7, 1, true),
                object(8, 0, 30),
            ],
        )
        .await;
        player.session_lost(&mut tracks, 30_000).await.unwrap();
        let t = &tracks[0];
        assert!(t.order.open_groups().is_empty());
        assert_eq!(
            t.seen_groups,
            BTreeSet::from([5, 6, 7, 8]),
            "what was held played"
        );
        assert_eq!(
            t.given_up,
            BTreeSet::from([5, 6, 8]),
            "cut short with the session"
        );
        // The next session's newest group plays at once.
        assert_eq!(ids(&tracks[0].order.object(20, obj(0), 40).unwrap()), [(20, 0)]);
    }

    /// Three objects of `group` from `first_ms`, 33 ms apart, and the clean end of its stream.
    fn group(group: u64, first_ms: u64) -> Vec<Msg> {
        let mut msgs: Vec<Msg> = (0..3).map(|o| object(group, o, first_ms + o * 33)).collect();
        msgs.push(end(group, 3, true));
        msgs
    }

    #[tokio::test]
    async fn a_newer_group_that_overlaps_in_time_plays_after_the_older() {
        let mut tracks = vec![watched("video")];
        // The relay sends group 11 (newest first) while group 10's tail is still coming; the
        // tail comes within the reorder wait.
        let summary = play(
            &mut tracks,
            vec![
                object(10, 0, 0),
                object(10, 1, 33),
                object(11, 0, 40),
                object(11, 1, 73),
                object(10, 2, 200),
                end(10, 3, true),
                object(11, 2, 210),
                end(11, 3, true),
            ],
        )
        .await;
        let t = &tracks[0];
        assert_eq!((summary.objects, summary.late_objects), (6, 0));
        assert_eq!(t.seen_groups, BTreeSet::from([10, 11]));
        assert_eq!(t.groups_skipped(), 0);
        assert!(t.incomplete.is_empty());
        assert_eq!(t.stalls, 0);
    }

    #[tokio::test]
    async fn an_older_group_too_late_is_given_up_once() {
        let mut tracks = vec![watched("video")];
        // Group 11 has waited 200 ms when group 10's last object arrives: group 10 is given
        // up (11 plays), its last object is dropped, and the relay's later reset of its stream
        // does not count it again.
        let summary = play(
            &mut tracks,
            vec![
                object(10, 0, 0),
                object(10, 1, 33),
                object(11, 0, 40),
                object(11, 1, 73),
                object(10, 2, 240),
                end(10, 3, false),
                object(11, 2, 250),
                end(11, 3, true),
            ],
        )
        .await;
        let t = &tracks[0];
        assert_eq!((summary.objects, summary.late_objects), (5, 1));
        assert_eq!(t.given_up, BTreeSet::from([10]));
        assert_eq!(t.incomplete, BTreeSet::from([10]));
        assert_eq!(t.groups_skipped(), 1);
    }

    #[tokio::test]
    async fn reset_groups_are_skipped_once_whether_or_not_any_of_them_played() {
        let mut tracks = vec![watched("video")];
        // Group 10 is reset after one object; group 12 is reset before any object came (a hole
        // between 11 and 13 too, counted once).
        let mut msgs = vec![object(10, 0, 0), end(10, 1, false)];
        msgs.extend(group(11, 1_000));
        msgs.push(end(12, 0, false));
        msgs.extend(group(13, 3_000));
        play(&mut tracks, msgs).await;
        let t = &tracks[0];
        assert_eq!(t.given_up, BTreeSet::from([10, 12]));
        assert_eq!(t.holes, BTreeMap::from([(12, 12)]));
        assert_eq!(t.groups_skipped(), 2);
    }

    #[tokio::test]
    async fn groups_never_received_are_skipped_and_the_pauses_are_stalls() {
        let mut tracks = vec![watched("video")];
        // Groups 12 and 13 never come: the picture freezes between 11 and 14 (1 s GOPs).
        let mut msgs = group(10, 0);
        msgs.extend(group(11, 1_000));
        msgs.extend(group(14, 4_000));
        play(&mut tracks, msgs).await;
        let t = &tracks[0];
        assert_eq!(t.groups_skipped(), 2);
        assert_eq!(missing(&t.seen_groups), 2);
        // 934 ms (10 to 11) and 2,934 ms (11 to 14) without a new picture.
        assert_eq!((t.stalls, t.stall_us_total), (2, 3_868_000));
    }

    #[tokio::test]
    async fn a_publisher_switch_is_not_skipped_groups() {
        let mut tracks = vec![watched("video")];
        // Publisher A's groups 100 and 101, then publisher B (started 6,900 ms after A) from
        // its group 7000, 300 ms later: the jump between the two runs is no lost group.
        let mut msgs = group(100, 1_000);
        msgs.extend(group(101, 1_100));
        msgs.extend(group(7000, 1_466));
        play(&mut tracks, msgs).await;
        let t = &tracks[0];
        assert_eq!(t.summary.group_runs.len(), 2);
        assert_eq!(t.summary.gaps, 1);
        assert!(t.holes.is_empty());
        assert_eq!(t.groups_skipped(), 0);
    }

    #[tokio::test]
    async fn behind_live_is_measured_at_play_out_latency_at_receipt() {
        let mut tracks = vec![watched("video")];
        let loc = |group, id, captured_ms: u64, received_ms: u64| Msg::Object {
            track: 0,
            group,
            object: LocFrame::new(captured_ms * 1000, Bytes::from_static(b"x"))
                .to_object(MediaKind::Video, id),
            received_us: received_ms * 1000,
        };
        // Group 2's first object (captured at 1,000 ms) arrives at 1,100 ms but waits for
        // group 1 to end at 1,250 ms.
        let player = played(
            &mut tracks,
            vec![
                loc(1, 0, 900, 1_000),
                loc(2, 0, 1_000, 1_100),
                loc(1, 1, 933, 1_250),
                end(1, 2, true),
            ],
        )
        .await;
        let mut latencies = player.latencies.clone();
        latencies.sort_unstable();
        assert_eq!(latencies, [100_000, 100_000, 317_000]);
        assert_eq!(player.behind_live, [100_000, 317_000, 250_000]);
    }

    #[test]
    fn missing_groups_are_counted() {
        assert_eq!(missing(&BTreeSet::from([1, 2, 3])), 0);
        assert_eq!(missing(&BTreeSet::from([1, 2, 6, 7])), 3);
        assert_eq!(missing(&BTreeSet::new()), 0);
    }

    #[test]
    fn rendition_picks_a_video_track_by_name() {
        let video = |name: &str, label: Option<&str>| banyan_media::Track {
            name: name.into(),
            packaging: Some("loc".into()),
            role: Some("video".into()),
            label: label.map(Into::into),
            ..Default::default()
        };
        let mut audio = video("audio", None);
        audio.role = Some("audio".into());
        let catalog = Catalog::live(vec![
            video("video/720p", Some("720p")),
            video("video/360p", Some("360p")),
            audio,
        ]);
        assert_eq!(find_rendition(&catalog, "360p").unwrap().name, "video/360p");
        assert_eq!(find_rendition(&catalog, "video/720p").unwrap().name, "video/720p");
        let err = find_rendition(&catalog, "1080p").unwrap_err().to_string();
        assert!(err.contains("video/720p, video/360p"), "{err}");
        assert!(find_rendition(&catalog, "audio").is_err(), "only video tracks");
        let (tracks, _) = select_tracks(&catalog, false, None).unwrap();
        assert_eq!(tracks[0].name, "video/720p", "the first video track by default");
        let (tracks, _) = select_tracks(&catalog, false, Some("360p")).unwrap();
        let names: Vec<&str> = tracks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["video/360p", "audio"]);
    }
}
