//! `banyan-record`: record a live broadcast to disk as it arrives, and export a recording to
//! one MP4. See docs/recording.md.
//!
//! `run` subscribes like any viewer (reusing [`crate::watch`]'s catalog and subscription
//! readers) to the catalog, every LOC media track and the interaction tracks (`likes`,
//! `viewers`, `events`, `chat/<room>`), and hands each whole group to [`store::Recording`],
//! which writes it as a CMAF segment. A group that arrives only in part (its stream reset, the
//! session lost) is not recorded. A full disk ends the run with exit code
//! [`EXIT_DISK_FULL`] and an `ALERT` line on stderr; the recorder is only a subscriber, so
//! the live path never notices.
//!
//! # Module map
//! - [`store`]: the on-disk format: segments, index, playlists, timeline, retention, reopening.
//! - [`export`]: a recording's first video and first audio track as one fragmented MP4.

pub mod export;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use banyan_moq::coding::{decode_varint, SessionErrorCode, TrackNamespace};
use banyan_moq::data::SubgroupObject;
use banyan_moq::session::Session;
use tokio::sync::mpsc;
use tokio::time::Instant;
use url::Url;

use crate::connect::{Backoff, ConnectArgs};
use crate::watch::{self, Msg};
use store::{Recording, Retention};

/// The exit code when the disk filled up (ENOSPC): the recording stopped.
pub const EXIT_DISK_FULL: u8 = 3;

/// Groups of one track held open at once; beyond this the oldest open group is dropped.
const MAX_OPEN_GROUPS: usize = 8;

/// Record a live MoQT broadcast to disk, or export a recording.
#[derive(clap::Parser, Debug)]
#[command(name = "banyan-record", version)]
pub struct RecordCli {
    #[command(subcommand)]
    pub command: RecordCommand,
}

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RecordCommand {
    /// Subscribe to a broadcast and write it to DIR/<broadcast>/ as it arrives (CMAF segments
    /// per group, index, HLS playlists, chat/likes timeline). Exits 0 when the broadcast ends
    /// or on SIGTERM, 3 when the disk is full (an `ALERT` line on stderr), 1 on other errors.
    Run(Box<RunArgs>),
    /// Write a recording's first video and first audio track as one (fragmented) MP4.
    Export(ExportArgs),
}

/// `banyan-record run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The relay URL (`moqt://`, `https://` WebTransport or `ws(s)://`).
    #[arg(long, value_name = "URL")]
    pub relay: Url,
    /// The broadcast name (the track namespace, `/`-separated).
    #[arg(long, value_name = "NAME")]
    pub broadcast: String,
    /// The recordings' root directory; this broadcast goes to DIR/<broadcast>/ and a
    /// recording already there is continued.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Delete segments captured longer ago than this (e.g. `24h`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,
    /// Keep at most this many segment bytes of this broadcast (oldest deleted first).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_bytes_per_broadcast: Option<u64>,
    /// Keep at most this many bytes of recordings under DIR: older recordings are deleted
    /// whole first, then this one's oldest segments.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
    /// Chat rooms to record (`chat/0` .. `chat/<N-1>`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub chat_rooms: u32,
    /// Pin the relay's certificate by its SHA-256 (hex).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["tls_ca", "tls_insecure"])]
    pub tls_hash: Option<String>,
    /// Trust the CA certificates in this PEM file instead of the system roots.
    #[arg(long, value_name = "PEM", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate. Only for loopback tests.
    #[arg(long)]
    pub tls_insecure: bool,
    /// An authorization token (JWT) with subscribe rights on the broadcast.
    #[arg(long, value_name = "JWT", env = "BANYAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long the relay may hold the SUBSCRIBEs while nobody publishes the broadcast.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub rendezvous: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "warn", env = "BANYAN_LOG")]
    pub log: String,
}

/// `banyan-record export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The recording: DIR/<broadcast> (the directory holding recording.json).
    pub recording: PathBuf,
    /// The MP4 to write.
    pub output: PathBuf,
}

/// `2G`, `500M`, `64k` or plain bytes (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. 500M"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use k, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

impl RunArgs {
    fn connect_args(&self) -> ConnectArgs {
        ConnectArgs {
            url: self.relay.clone(),
            tls_hash: self.tls_hash.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_insecure: self.tls_insecure,
            token: self.token.clone(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `e` is a full disk.
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::StorageFull)
}

/// What a subscribed track is, by its index in the message stream.
#[derive(Debug, Clone)]
enum Sub {
    Media(usize),
    Interaction(String),
}

/// One media track's groups still streaming.
#[derive(Debug, Default)]
struct Open {
    groups: BTreeMap<u64, (Vec<SubgroupObject>, usize)>,
}

/// Run `banyan-record run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let connector = args.connect_args().connector()?;
    let namespace = TrackNamespace::from_path(&args.broadcast).context("--broadcast")?;
    store::recording_dir(&args.dir, &args.broadcast).context("--broadcast")?;
    let rendezvous = watch::rendezvous_ms(args.rendezvous);
    let retention = Retention {
        max_age: args.max_age,
        max_bytes_per_broadcast: args.max_bytes_per_broadcast,
        max_bytes: args.max_bytes,
    };
    let shutdown = banyan_control::binary::shutdown_signal()?;
    tokio::pin!(shutdown);
    let mut recording: Option<Recording> = None;
    let mut backoff = Backoff::default();
    let mut dropped_groups = 0u64;
    let mut interactions: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    'sessions: loop {
        let first = recording.is_none();
        let (session, driver) = match connector.connect(None).await {
            Ok(pair) => pair,
            Err(e) if first => return Err(e),
            Err(e) => {
                tracing::info!(error = %format!("{e:#}"), "reconnect failed");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let driver = tokio::spawn(driver.run());
        let started = Instant::now();
        let catalog = match watch::read_catalog(&session, &namespace, rendezvous).await {
            Ok(c) => c,
            Err(e) => {
                session.close(SessionErrorCode::NoError, "no catalog");
                driver.abort();
                if first {
                    return Err(e);
                }
                tracing::info!(error = %format!("{e:#}"), "catalog after reconnect");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if recording.is_none() {
            let rec = Recording::open(&args.dir, &args.broadcast, &catalog, retention.clone())?;
            eprintln!(
                "record: recording {} into {} (tracks: {}; {} segments already there)",
                args.broadcast,
                rec.dir().display(),
                rec.track_names().join(", "),
                rec.segments()
            );
            recording = Some(rec);
        }
        let Some(rec) = recording.as_mut() else {
            continue;
        };
        if !first {
            if let Err(e) = rec.check_catalog(&catalog) {
                session.close(SessionErrorCode::NoError, "catalog changed");
                driver.abort();
                return Err(e);
            }
        }
        if catalog.is_complete == Some(true) {
            session.close(SessionErrorCode::NoError, "broadcast complete");
            driver.abort();
            rec.end()?;
            break;
        }
        let (subs, mut rx) = subscribe_all(&session, &namespace, rendezvous, rec, args.chat_rooms).await;
        let (mut tasks, kinds) = subs;
        let media = rec.track_names().len();
        let mut open: Vec<Open> = (0..media).map(|_| Open::default()).collect();
        let mut ended = vec![false; media];
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let outcome: anyhow::Result<bool> = loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => break Ok(false),
                    Some(msg) => {
                        let done = handle(msg, &kinds, rec, &mut open, &mut ended, &mut dropped_groups, &mut interactions);
                        match done {
                            Err(e) => break Err(e),
                            Ok(()) if ended.iter().all(|&e| e) => break Ok(true),
                            Ok(()) => {}
                        }
                    }
                },
                _ = tick.tick() => eprintln!(
                    "record: segments {} bytes {} dropped groups {} deleted segments {}",
                    rec.segments(), rec.bytes(), dropped_groups, rec.deleted_segments
                ),
                _ = session.closed() => break Ok(false),
                () = shutdown.as_mut() => {
                    tasks.abort_all();
                    session.close(SessionErrorCode::NoError, "recorder stopping");
                    driver.abort();
                    eprintln!("record: stopped by signal ({} segments, {} bytes)", rec.segments(), rec.bytes());
                    return Ok(());
                }
            }
        };
        tasks.abort_all();
        session.close(SessionErrorCode::NoError, "reconnecting");
        driver.abort();
        match outcome {
            Ok(true) => {
                rec.end()?;
                eprintln!(
                    "record: the broadcast ended ({} segments, {} bytes)",
                    rec.segments(),
                    rec.bytes()
                );
                break 'sessions;
            }
            Ok(false) => {
                dropped_groups += open.iter().map(|o| o.groups.len() as u64).sum::<u64>();
                eprintln!("record: lost the relay; reconnecting");
                if started.elapsed() > Duration::from_secs(5) {
                    backoff.reset();
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

type Subscribed = (tokio::task::JoinSet<()>, Vec<Sub>);

/// Subscribe to the recording's media tracks and to the interaction tracks the relay has.
async fn subscribe_all(
    session: &Session,
    namespace: &TrackNamespace,
    rendezvous: Option<u64>,
    rec: &Recording,
    chat_rooms: u32,
) -> (Subscribed, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel::<Msg>(1024);
    let mut tasks = tokio::task::JoinSet::new();
    let mut kinds = Vec::new();
    for (i, name) in rec.track_names().iter().enumerate() {
        kinds.push(Sub::Media(i));
        if let Some(sub) = watch::subscribe_retrying(session, namespace, name, rendezvous).await {
            tasks.spawn(watch::read_subscription(i, sub, tx.clone()));
        }
    }
    let mut names: Vec<String> = ["likes", "viewers", "events"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend((0..chat_rooms).map(|r| format!("chat/{r}")));
    for name in names {
        let index = kinds.len();
        kinds.push(Sub::Interaction(name.clone()));
        // No rendezvous: an origin serves these itself; a relay without them refuses at once.
        match watch::subscribe(session, namespace, &name, None).await {
            Ok(sub) => {
                tasks.spawn(watch::read_subscription(index, sub, tx.clone()));
            }
            Err(e) => tracing::debug!(track = name, error = %format!("{e:#}"), "no interaction track"),
        }
    }
    ((tasks, kinds), rx)
}

/// One message: collect media objects per group, write a group when its stream ends clean,
/// append interactions to the timeline.
fn handle(
    msg: Msg,
    kinds: &[Sub],
    rec: &mut Recording,
    open: &mut [Open],
    ended: &mut [bool],
    dropped: &mut u64,
    interactions: &mut BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let now_ms = banyan_media::loc::unix_micros() / 1000;
    let index = match &msg {
        Msg::Object { track, .. } | Msg::GroupEnd { track, .. } | Msg::TrackEnd { track } => *track,
        Msg::Counter { .. } => return Ok(()),
    };
    match kinds.get(index) {
        Some(Sub::Media(track)) => {
            let track = *track;
            let Some(o) = open.get_mut(track) else {
                return Ok(());
            };
            match msg {
                Msg::Object { group, object, .. } => {
                    if rec.has_group(track, group) {
                        return Ok(());
                    }
                    let entry = o.groups.entry(group).or_default();
                    entry.1 += object.payload.len();
                    entry.0.push(object);
                    if entry.1 > store::MAX_GROUP_BYTES {
                        tracing::warn!(group, "group over {} bytes; not recorded", store::MAX_GROUP_BYTES);
                        o.groups.remove(&group);
                        *dropped += 1;
                    }
                    while o.groups.len() > MAX_OPEN_GROUPS {
                        o.groups.pop_first();
                        *dropped += 1;
                    }
                }
                Msg::GroupEnd { group, clean, .. } => {
                    if let Some((mut objects, _)) = o.groups.remove(&group) {
                        objects.sort_by_key(|o| o.object_id);
                        let written = clean && rec.write_group(track, group, &objects, now_ms)?;
                        if !written && !rec.has_group(track, group) {
                            *dropped += 1;
                        }
                    }
                }
                Msg::TrackEnd { .. } => {
                    if let Some(e) = ended.get_mut(track) {
                        *e = true;
                    }
                }
                Msg::Counter { .. } => {}
            }
        }
        Some(Sub::Interaction(name)) => {
            if let Msg::Object { group, object, .. } = msg {
                match interaction_event(name, group, &object, now_ms) {
                    Some((key, event)) => {
                        // Relays send a value again (a resubscription starts at the current
                        // group): counters are written when they change, the rest once.
                        let value = event.get("value").filter(|v| v.is_number());
                        let fresh = if let Some(value) = value {
                            interactions.insert(key, value.clone()).as_ref() != Some(value)
                        } else {
                            interactions.insert(key, serde_json::Value::Bool(true)).is_none()
                        };
                        if fresh {
                            rec.timeline(&event)?;
                        }
                    }
                    None => tracing::debug!(track = name, group, "malformed interaction object"),
                }
            }
        }
        None => {}
    }
    Ok(())
}

/// A timeline line for an interaction object, and its deduplication key (counters by track,
/// so only changes are written; chat by object; gifts by ledger sequence).
fn interaction_event(
    track: &str,
    group: u64,
    object: &SubgroupObject,
    arrival_unix_ms: u64,
) -> Option<(String, serde_json::Value)> {
    let mut buf: &[u8] = &object.payload;
    let string = |buf: &mut &[u8]| -> Option<String> {
        let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
        let bytes = buf.get(..len)?;
        let s = std::str::from_utf8(bytes).ok()?.to_string();
        *buf = buf.get(len..)?;
        Some(s)
    };
    if track == "likes" || track == "viewers" {
        let value = watch::decode_total(&object.payload)?;
        let event = serde_json::json!({"track": track, "group": group, "value": value, "arrival_unix_ms": arrival_unix_ms});
        return Some((track.to_string(), event));
    }
    if track == "events" {
        let seq = decode_varint(&mut buf).ok()?;
        let client_id = string(&mut buf)?;
        let kind = decode_varint(&mut buf).ok()?;
        let amount = decode_varint(&mut buf).ok()?;
        if !buf.is_empty() {
            return None;
        }
        let event = serde_json::json!({"track": track, "group": group, "seq": seq, "client_id": client_id,
            "kind": kind, "amount": amount, "arrival_unix_ms": arrival_unix_ms});
        return Some((format!("events#{seq}"), event));
    }
    // A comment: when the edge accepted it, its text, and its author (the viewer token's `sub`,
    // empty without auth; docs/interactions.md).
    let accepted = decode_varint(&mut buf).ok()?;
    let text = string(&mut buf)?;
    let author = string(&mut buf)?;
    if !buf.is_empty() {
        return None;
    }
    let id = object.object_id;
    let event = serde_json::json!({"track": track, "group": group, "object": id, "seq": group * 64 + id,
        "accepted_unix_ms": accepted, "text": text, "author": author, "arrival_unix_ms": arrival_unix_ms});
    Some((format!("{track}#{group}/{id}"), event))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("2M"), Ok(2 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn chat_objects_decode_and_malformed_ones_are_refused() {
        let mut payload = Vec::new();
        banyan_moq::coding::encode_varint(1_700_000_000_000, &mut payload);
        banyan_moq::coding::encode_varint(2, &mut payload);
        payload.extend_from_slice(b"hi");
        banyan_moq::coding::encode_varint(3, &mut payload);
        payload.extend_from_slice(b"ann");
        let object = SubgroupObject {
            object_id: 3,
            payload: payload.clone().into(),
            ..Default::default()
        };
        let (key, event) = interaction_event("chat/0", 1, &object, 5).unwrap();
        assert_eq!(key, "chat/0#1/3");
        assert_eq!(event["text"], "hi");
        assert_eq!(event["author"], "ann");
        assert_eq!(event["seq"], 67);
        assert_eq!(event["accepted_unix_ms"], 1_700_000_000_000u64);
        payload.push(0);
        let trailing = SubgroupObject {
            payload: payload.into(),
            ..Default::default()
        };
        assert!(interaction_event("chat/0", 1, &trailing, 5).is_none());
    }
}
