//! The fourteen cases, one function each, in the runner's order. Each returns what it observed
//! on a pass, or the [`Failure`] that says which step went wrong and how.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use banyan_moq::coding::{Location, PublishDoneCode, RequestErrorCode, TrackName, TrackNamespace};
use banyan_moq::data::{FetchItem, ObjectStatus};
use banyan_moq::message::{
    Fetch, FetchType, GroupOrder, JoiningFetch, Message, Parameters, Publish, PublishNamespace, RequestOk,
    StandaloneFetch, Subscribe, SubscribeNamespace, SubscribeTracks,
};
use banyan_moq::session::{Client, Error, NamespaceEvent, Request, Session, Subscription, TrackWriter};

use super::roles::{self, Clock, Received, Seen, Track, OBJECTS_PER_GROUP};
use super::{Case, Config, Conn, Failure};

/// What a case runs with.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub client: &'a Client,
    /// `<namespace>/<run id>/<case>`, or why it could not be made.
    pub namespace: Result<TrackNamespace, Failure>,
}

impl Ctx<'_> {
    fn namespace(&self) -> Result<TrackNamespace, Failure> {
        self.namespace.clone()
    }

    fn track(&self) -> Result<Track, Failure> {
        Ok(Track {
            namespace: self.namespace()?,
            name: TrackName::from(self.config.track.as_str()),
        })
    }
}

/// Run `case`.
pub(crate) async fn run(ctx: &Ctx<'_>, case: Case) -> Result<String, Failure> {
    match case {
        Case::SetupOnly => setup_only(ctx).await,
        Case::AnnounceOnly => announce_only(ctx).await,
        Case::PublishNamespaceDone => publish_namespace_done(ctx).await,
        Case::SubscribeError => subscribe_error(ctx).await,
        Case::RendezvousTimeout => rendezvous_timeout(ctx).await,
        Case::AnnounceSubscribe => announce_subscribe(ctx).await,
        Case::SubscribeBeforeAnnounce => subscribe_before_announce(ctx).await,
        Case::DataSubgroupBasic => data_subgroup_basic(ctx).await,
        Case::NamespaceDiscovery => namespace_discovery(ctx).await,
        Case::Fetch => fetch(ctx).await,
        Case::Join => join(ctx).await,
        Case::SubscribeNamespaceLifecycle => subscribe_namespace_lifecycle(ctx).await,
        Case::PublishTrackOnly => publish_track_only(ctx).await,
        Case::PublishTrackSubscribe => publish_track_subscribe(ctx).await,
    }
}

/// How long one request may wait for its answer.
const STEP: Duration = Duration::from_secs(5);
/// How soon a refusal that needs no waiting must arrive (subscribe-error, rendezvous-timeout).
const PROMPT: Duration = Duration::from_secs(2);
/// How long a subscriber waits for objects that are being published.
const DELIVERY: Duration = Duration::from_secs(10);

/// `work`, bounded by `limit`; a session error or the timeout becomes a [`Failure`] naming `step`.
async fn within<T>(
    step: &str,
    limit: Duration,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Failure::Session {
            step: step.to_string(),
            source,
        }),
        Err(_) => Err(Failure::TimedOut {
            step: step.to_string(),
            within: limit,
        }),
    }
}

fn subscribe_message(track: &Track, parameters: Parameters) -> Subscribe {
    Subscribe {
        request_id: 0,
        track_namespace: track.namespace.clone(),
        track_name: track.name.clone(),
        parameters,
    }
}

async fn announce(
    session: &Session,
    namespace: &TrackNamespace,
) -> Result<banyan_moq::session::NamespacePublication, Failure> {
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: namespace.clone(),
        parameters: Parameters::default(),
    };
    within("PUBLISH_NAMESPACE", STEP, session.publish_namespace(request)).await
}

async fn subscribe(session: &Session, track: &Track, step: &str) -> Result<Subscription, Failure> {
    let parameters = Parameters {
        group_order: Some(GroupOrder::Ascending),
        ..Default::default()
    };
    within(
        step,
        STEP,
        session.subscribe(subscribe_message(track, parameters)),
    )
    .await
}

fn publish_message(track: &Track) -> Publish {
    Publish {
        track_namespace: track.namespace.clone(),
        track_name: track.name.clone(),
        ..Default::default()
    }
}

fn elapsed_ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

/// setup-only: connect, exchange SETUP, close. Asserts SETUP completes with draft-18.
async fn setup_only(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let conn = Conn::open(ctx, "client").await?;
    let version = conn.session.version();
    Ok(format!(
        "SETUP exchanged over {} ({})",
        conn.session.transport(),
        version.alpn()
    ))
}

/// announce-only: PUBLISH_NAMESPACE; asserts REQUEST_OK.
async fn announce_only(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let namespace = ctx.namespace()?;
    let conn = Conn::open(ctx, "publisher").await?;
    let _refuse = roles::refuse_requests(&conn.session);
    let _publication = announce(&conn.session, &namespace).await?;
    Ok(format!(
        "REQUEST_OK for PUBLISH_NAMESPACE {}",
        namespace.to_path()
    ))
}

/// publish-namespace-done: PUBLISH_NAMESPACE, REQUEST_OK, then withdraw it (draft-18 has no
/// PUBLISH_NAMESPACE_DONE: the request stream ends, §10.15, §3.3.2). Asserts the relay took
/// the withdrawal without ending the session: a further PUBLISH_NAMESPACE is answered.
async fn publish_namespace_done(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let namespace = ctx.namespace()?;
    let conn = Conn::open(ctx, "publisher").await?;
    let _refuse = roles::refuse_requests(&conn.session);
    let publication = announce(&conn.session, &namespace).await?;
    publication.withdraw();
    let check = namespace
        .join(&super::namespace("after-withdrawal")?)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let request = PublishNamespace {
        request_id: 0,
        track_namespace: check,
        parameters: Parameters::default(),
    };
    within(
        "PUBLISH_NAMESPACE after the withdrawal",
        STEP,
        conn.session.publish_namespace(request),
    )
    .await?;
    Ok("REQUEST_OK, namespace withdrawn (request stream ended); the session still answers".into())
}

/// subscribe-error: SUBSCRIBE to a track nobody publishes, without RENDEZVOUS_TIMEOUT.
/// Asserts REQUEST_ERROR DOES_NOT_EXIST within 2 s (§10.2.6: absent means 0, and with 0 "the
/// relay MUST immediately return REQUEST_ERROR with error code DOES_NOT_EXIST").
async fn subscribe_error(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = Track {
        namespace: ctx
            .namespace()?
            .join(&super::namespace("nonexistent")?)
            .map_err(|e| Failure::Config(e.to_string()))?,
        name: TrackName::from(ctx.config.track.as_str()),
    };
    let conn = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&conn.session);
    let sent = Instant::now();
    let answer = tokio::time::timeout(
        PROMPT,
        conn.session
            .subscribe(subscribe_message(&track, Parameters::default())),
    )
    .await;
    match answer {
        Err(_) => Err(Failure::Check(format!(
            "no answer to SUBSCRIBE within {PROMPT:?}: without RENDEZVOUS_TIMEOUT the relay must \
             answer DOES_NOT_EXIST at once (draft-18 §10.2.6)"
        ))),
        Ok(Ok(_)) => Err(Failure::Check("SUBSCRIBE_OK for a track nobody publishes".into())),
        Ok(Err(Error::Refused {
            code: RequestErrorCode::DoesNotExist,
            ..
        })) => Ok(format!(
            "REQUEST_ERROR DOES_NOT_EXIST after {} ms",
            elapsed_ms(sent)
        )),
        Ok(Err(Error::Refused { code, reason, .. })) => Err(Failure::Check(format!(
            "REQUEST_ERROR {code} ({reason:?}), expected DOES_NOT_EXIST (0x10) (draft-18 §10.2.6)"
        ))),
        Ok(Err(source)) => Err(Failure::Session {
            step: "SUBSCRIBE".into(),
            source,
        }),
    }
}

/// rendezvous-timeout: SUBSCRIBE with RENDEZVOUS_TIMEOUT = 500 ms to a track nobody publishes.
/// Asserts REQUEST_ERROR TIMEOUT within 2 s (§10.2.6).
async fn rendezvous_timeout(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = Track {
        namespace: ctx
            .namespace()?
            .join(&super::namespace("nonexistent")?)
            .map_err(|e| Failure::Config(e.to_string()))?,
        name: TrackName::from(ctx.config.track.as_str()),
    };
    let conn = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&conn.session);
    let parameters = Parameters {
        rendezvous_timeout: Some(500),
        ..Default::default()
    };
    let sent = Instant::now();
    let answer = tokio::time::timeout(
        PROMPT,
        conn.session.subscribe(subscribe_message(&track, parameters)),
    )
    .await;
    match answer {
        Err(_) => Err(Failure::Check(format!(
            "no answer within {PROMPT:?} to SUBSCRIBE with RENDEZVOUS_TIMEOUT=500: expected \
             REQUEST_ERROR TIMEOUT when it expires (draft-18 §10.2.6)"
        ))),
        Ok(Ok(_)) => Err(Failure::Check("SUBSCRIBE_OK for a track nobody publishes".into())),
        Ok(Err(Error::Refused {
            code: RequestErrorCode::Timeout,
            ..
        })) => Ok(format!("REQUEST_ERROR TIMEOUT after {} ms", elapsed_ms(sent))),
        Ok(Err(Error::Refused { code, reason, .. })) => Err(Failure::Check(format!(
            "REQUEST_ERROR {code} ({reason:?}) after {} ms, expected TIMEOUT (0x2) once the 500 ms \
             rendezvous expires (draft-18 §10.2.6)",
            elapsed_ms(sent)
        ))),
        Ok(Err(source)) => Err(Failure::Session {
            step: "SUBSCRIBE".into(),
            source,
        }),
    }
}

/// announce-subscribe: a publisher announces and serves the track; a second session
/// subscribes. Asserts SUBSCRIBE_OK (the relay routed the subscription to the publisher or
/// answered it itself).
async fn announce_subscribe(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let clock = Clock::start();
    let publisher = Conn::open(ctx, "publisher").await?;
    let _serving = roles::serve(&publisher.session, track.clone(), &clock);
    let _publication = announce(&publisher.session, &track.namespace).await?;
    let subscriber = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&subscriber.session);
    let subscription = subscribe(&subscriber.session, &track, "SUBSCRIBE").await?;
    Ok(format!(
        "SUBSCRIBE_OK (track alias {})",
        subscription.track_alias()
    ))
}

/// REQUEST_ERROR codes that are a deliberate answer to a SUBSCRIBE for a track that has no
/// publisher yet (as opposed to INTERNAL_ERROR, a fault).
const DELIBERATE: [RequestErrorCode; 7] = [
    RequestErrorCode::DoesNotExist,
    RequestErrorCode::Timeout,
    RequestErrorCode::Unauthorized,
    RequestErrorCode::NotSupported,
    RequestErrorCode::MalformedAuthToken,
    RequestErrorCode::ExpiredAuthToken,
    RequestErrorCode::MalformedTrack,
];

/// subscribe-before-announce: SUBSCRIBE first; the publisher connects and announces 500 ms
/// later (sooner if the SUBSCRIBE is answered sooner). Asserts SUBSCRIBE_OK (the relay held
/// it) or a deliberate REQUEST_ERROR (it did not), within 2 s of the announcement.
async fn subscribe_before_announce(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let clock = Clock::start();
    let subscriber = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&subscriber.session);
    let sent = Instant::now();
    let answer = subscriber
        .session
        .subscribe(subscribe_message(&track, Parameters::default()));
    tokio::pin!(answer);
    // The case's timeline: the publisher arrives 500 ms after the SUBSCRIBE.
    let early = tokio::select! {
        result = &mut answer => Some(result),
        _ = tokio::time::sleep(Duration::from_millis(500)) => None,
    };
    let (_publisher, _serving, _publication, result) = match early {
        Some(result) => (None, None, None, result),
        None => {
            let publisher = Conn::open(ctx, "publisher").await?;
            let serving = roles::serve(&publisher.session, track.clone(), &clock);
            let publication = announce(&publisher.session, &track.namespace).await?;
            let result = tokio::time::timeout(PROMPT, &mut answer).await.map_err(|_| {
                Failure::Check(format!(
                    "no answer to the SUBSCRIBE within {PROMPT:?} of the announcement"
                ))
            })?;
            (Some(publisher), Some(serving), Some(publication), result)
        }
    };
    match result {
        Ok(_) => Ok(format!(
            "SUBSCRIBE_OK after {} ms (the relay held the subscription until the publisher came)",
            elapsed_ms(sent)
        )),
        Err(Error::Refused { code, reason, .. }) if DELIBERATE.contains(&code) => Ok(format!(
            "REQUEST_ERROR {code} ({reason:?}) after {} ms (the relay did not hold it)",
            elapsed_ms(sent)
        )),
        Err(Error::Refused { code, reason, .. }) => Err(Failure::Check(format!(
            "REQUEST_ERROR {code} ({reason:?}): expected SUBSCRIBE_OK or a deliberate refusal \
             (DOES_NOT_EXIST, TIMEOUT, UNAUTHORIZED, NOT_SUPPORTED, ...)"
        ))),
        Err(source) => Err(Failure::Session {
            step: "SUBSCRIBE".into(),
            source,
        }),
    }
}

/// data-subgroup-basic's MoQT Test tuple (moq-test-00): forwarding preference 0 (one subgroup
/// per group), groups 0..=2, objects 0..=4, 64-byte first object then 32 bytes, 2 ms apart,
/// increments 1, no end-of-group markers, no extensions, no publisher delivery timeout.
const TEST_TUPLE: [&str; 16] = [
    "moq-test-00",
    "0",
    "0",
    "0",
    "2",
    "4",
    "5",
    "64",
    "32",
    "2",
    "1",
    "1",
    "0",
    "-1",
    "-1",
    "0",
];
const DATA_GROUPS: u64 = 3;
const DATA_OBJECTS: u64 = 5;
const DATA_FILL: u8 = b't';
const DATA_TRACK: &str = "track";

fn data_size(object: u64) -> usize {
    if object == 0 {
        64
    } else {
        32
    }
}

/// data-subgroup-basic: the publisher announces the routing prefix; the subscriber subscribes
/// to the prefix plus the MoQT Test tuple, track "track". The relay's upstream SUBSCRIBE must
/// have Forward State 1; the publisher sends groups 0..=2 of objects 0..=4 (one subgroup
/// stream per group, priority 128, payload 't' x 64 then x 32, FIN, no end-of-group), then
/// PUBLISH_DONE TRACK_ENDED with Stream Count 3. Asserts the subscriber gets every object once
/// with the right subgroup, priority and payload, and PUBLISH_DONE TRACK_ENDED after the
/// streams it counts have ended.
async fn data_subgroup_basic(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let prefix = ctx.namespace()?;
    let full = prefix
        .join(&TrackNamespace::new(TEST_TUPLE).map_err(|e| Failure::Config(e.to_string()))?)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let track = Track {
        namespace: full.clone(),
        name: TrackName::from(DATA_TRACK),
    };
    let publisher = Conn::open(ctx, "publisher").await?;
    let _publication = announce(&publisher.session, &prefix).await?;
    let subscriber = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&subscriber.session);

    // The downstream SUBSCRIBE and the relay's upstream one, concurrently: a relay may wait
    // for the publisher's SUBSCRIBE_OK before it answers the subscriber.
    let upstream = async {
        loop {
            match publisher.session.accept().await {
                Some(Request::Subscribe(r))
                    if r.message.track_namespace == full && r.message.track_name == track.name =>
                {
                    let forward = r.message.parameters.forward;
                    return r.accept(Default::default()).await.map(|w| (w, forward));
                }
                Some(other) => {
                    let _ = other
                        .reject(RequestErrorCode::DoesNotExist, "not this case's track")
                        .await;
                }
                None => return Err(Error::Transport("publisher session ended".into())),
            }
        }
    };
    let (subscription, accepted) = tokio::join!(
        subscribe(&subscriber.session, &track, "SUBSCRIBE"),
        within("upstream SUBSCRIBE at the publisher", STEP, upstream),
    );
    let subscription = subscription?;
    let (writer, forward) = accepted?;
    if forward == Some(false) {
        return Err(Failure::Check(
            "the relay subscribed upstream with Forward State 0".into(),
        ));
    }
    let (mut seen, _watching) = roles::watch(subscription);

    // The publisher: one subgroup stream per group, paced as the tuple says.
    let send = async {
        let mut streams = 0u64;
        for group in 0..DATA_GROUPS {
            let mut stream = writer
                .open_subgroup(group, 0, Some(roles::PRIORITY), false)
                .await?;
            streams += 1;
            for object in 0..DATA_OBJECTS {
                if group != 0 || object != 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let payload = vec![DATA_FILL; data_size(object)];
                stream.write_payload(object, payload.into()).await?;
            }
            stream.finish();
        }
        Ok::<_, Error>(streams)
    };
    let sent = within("sending the objects", DELIVERY, send).await?;
    let done_sent = writer.finish(PublishDoneCode::TrackEnded, "track ended").await;

    // The subscriber: everything until the subscription ends (bounded).
    let mut objects: Vec<Received> = Vec::new();
    let (mut ended, mut reset, mut done, mut end) = (0u64, Vec::new(), None, None);
    let deadline = tokio::time::Instant::now() + DELIVERY;
    while end.is_none() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(Seen::Object(o))) => objects.push(o),
            Ok(Some(Seen::StreamEnded(result))) => {
                ended += 1;
                if let Err(e) = result {
                    reset.push(e);
                }
            }
            Ok(Some(Seen::Done(d))) => done = Some(d),
            Ok(Some(Seen::End(e))) => end = Some(e),
            Ok(None) | Err(_) => break,
        }
    }

    let mut problems = Vec::new();
    if let Err(e) = &done_sent {
        problems.push(format!(
            "the relay cancelled the upstream subscription before PUBLISH_DONE ({e})"
        ));
    }
    match &done {
        None => problems.push("no PUBLISH_DONE downstream".to_string()),
        Some(d) if d.status_code != PublishDoneCode::TrackEnded => problems.push(format!(
            "PUBLISH_DONE status {}, expected TRACK_ENDED",
            d.status_code
        )),
        Some(d)
            if d.stream_count != banyan_moq::message::PublishDone::UNKNOWN_STREAM_COUNT
                && ended < d.stream_count =>
        {
            problems.push(format!("{ended} of {} downstream streams ended", d.stream_count))
        }
        Some(_) => {}
    }
    if let Some(Some(e)) = &end {
        problems.push(format!("the subscription ended with an error: {e}"));
    }
    problems.extend(data_problems(&objects));
    let count = done
        .as_ref()
        .map_or("none".to_string(), |d| d.stream_count.to_string());
    let summary = format!(
        "{} objects received; Stream Count upstream {sent}, downstream {count}; {} stream(s) reset",
        objects
            .iter()
            .filter(|o| o.status == ObjectStatus::Normal)
            .count(),
        reset.len()
    );
    match problems.first() {
        None => Ok(summary),
        Some(first) => Err(Failure::Check(format!(
            "{first} ({} problem(s)); {summary}",
            problems.len()
        ))),
    }
}

/// How the received objects differ from data-subgroup-basic's: wrong ones in arrival order,
/// then missing ones in location order.
fn data_problems(objects: &[Received]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for o in objects.iter().filter(|o| o.status == ObjectStatus::Normal) {
        let at = format!("{}.{}", o.group, o.object);
        if !seen.insert((o.group, o.object)) {
            problems.push(format!("duplicate object {at}"));
            continue;
        }
        if o.group >= DATA_GROUPS || o.object >= DATA_OBJECTS {
            problems.push(format!("unexpected object {at}"));
            continue;
        }
        if o.subgroup != Some(0) {
            problems.push(format!("object {at} on subgroup {:?}, expected 0", o.subgroup));
        }
        // A stream without a priority inherits the track's, 128 by default (§13.1).
        let priority = o.priority.unwrap_or(roles::PRIORITY);
        if priority != roles::PRIORITY {
            problems.push(format!(
                "object {at} priority {priority}, expected {}",
                roles::PRIORITY
            ));
        }
        let size = data_size(o.object);
        if o.payload.len() != size {
            problems.push(format!(
                "object {at} payload {} bytes, expected {size}",
                o.payload.len()
            ));
        } else if o.payload.iter().any(|b| *b != DATA_FILL) {
            problems.push(format!("object {at} payload bytes are not all 0x74"));
        }
    }
    for group in 0..DATA_GROUPS {
        for object in 0..DATA_OBJECTS {
            if !seen.contains(&(group, object)) {
                problems.push(format!("missing object {group}.{object}"));
            }
        }
    }
    problems
}

/// namespace-discovery: the publisher announces the namespace and PUBLISHes the track; a
/// subscriber that knows only the namespace sends SUBSCRIBE_NAMESPACE, hears NAMESPACE, sends
/// SUBSCRIBE_TRACKS for it (draft-18's two-level discovery, §6.1) and is sent a PUBLISH.
/// Asserts the PUBLISH names the track.
async fn namespace_discovery(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let clock = Clock::start();
    let publisher = Conn::open(ctx, "publisher").await?;
    let _serving = roles::serve(&publisher.session, track.clone(), &clock);
    let _publication = announce(&publisher.session, &track.namespace).await?;
    let _publishing = publish_accepted(&publisher.session, &track, &clock).await?;

    let subscriber = Conn::open(ctx, "subscriber").await?;
    let half = Duration::from_millis(7500);
    let request = SubscribeNamespace {
        request_id: 0,
        track_namespace_prefix: track.namespace.clone(),
        parameters: Parameters::default(),
    };
    let mut namespaces = within(
        "SUBSCRIBE_NAMESPACE",
        STEP,
        subscriber.session.subscribe_namespace(request),
    )
    .await?;
    let found = match within("NAMESPACE", half, namespaces.next()).await? {
        Some(NamespaceEvent::Published(ns)) => ns,
        Some(NamespaceEvent::Done(ns)) => {
            return Err(Failure::Check(format!(
                "NAMESPACE_DONE {} before any NAMESPACE",
                ns.to_path()
            )))
        }
        None => {
            return Err(Failure::Check(
                "the relay ended SUBSCRIBE_NAMESPACE without a NAMESPACE".into(),
            ))
        }
    };
    let request = SubscribeTracks {
        request_id: 0,
        track_namespace_prefix: found.clone(),
        parameters: Parameters::default(),
    };
    let _tracks = within(
        "SUBSCRIBE_TRACKS",
        STEP,
        subscriber.session.subscribe_tracks(request),
    )
    .await?;
    let publish = async {
        loop {
            match subscriber.session.accept().await {
                Some(Request::Publish(p)) => return Ok(p),
                Some(other) => {
                    let _ = other
                        .reject(RequestErrorCode::NotSupported, "discovery only")
                        .await;
                }
                None => return Err(Error::Transport("subscriber session ended".into())),
            }
        }
    };
    let publish = within("PUBLISH from the relay", half, publish).await?;
    let (ns, name) = (
        publish.message.track_namespace.clone(),
        publish.message.track_name.clone(),
    );
    let _subscription = within("PUBLISH_OK", STEP, publish.accept(RequestOk::default())).await?;
    if ns != track.namespace || name != track.name {
        return Err(Failure::Check(format!(
            "PUBLISH names {}/{:?}, expected {}/{}",
            ns.to_path(),
            String::from_utf8_lossy(name.as_bytes()),
            track.namespace.to_path(),
            ctx.config.track
        )));
    }
    Ok(format!(
        "discovered '{}' in {} (NAMESPACE, SUBSCRIBE_TRACKS, PUBLISH)",
        ctx.config.track,
        found.to_path()
    ))
}

/// A live track's history at the relay: the publisher announces and serves the clock; a
/// subscriber watches until it has seen objects of three groups, so the second is whole and
/// has passed through the relay. Returns that group, with the sessions kept open.
struct History {
    group: u64,
    _publisher: Conn,
    _serving: roles::Task,
    _publication: banyan_moq::session::NamespacePublication,
    _subscriber: Conn,
    _watching: roles::Task,
    _clock: Clock,
}

async fn history(ctx: &Ctx<'_>, track: &Track) -> Result<History, Failure> {
    let clock = Clock::start();
    let publisher = Conn::open(ctx, "publisher").await?;
    let serving = roles::serve(&publisher.session, track.clone(), &clock);
    let publication = announce(&publisher.session, &track.namespace).await?;
    let subscriber = Conn::open(ctx, "live subscriber").await?;
    let subscription = subscribe(&subscriber.session, track, "live SUBSCRIBE").await?;
    let (mut seen, watching) = roles::watch(subscription);
    let mut groups: Vec<u64> = Vec::new();
    let three = async {
        while groups.len() < 3 {
            match seen.recv().await {
                Some(Seen::Object(o)) if !groups.contains(&o.group) => groups.push(o.group),
                Some(Seen::End(e)) => {
                    return Err(Error::Transport(format!("live subscription ended: {e:?}")))
                }
                Some(_) => {}
                None => return Err(Error::Transport("live subscription ended".into())),
            }
        }
        Ok(())
    };
    within("objects of three groups on the live subscription", STEP, three).await?;
    let group = groups.get(1).copied().unwrap_or_default();
    Ok(History {
        group,
        _publisher: publisher,
        _serving: serving,
        _publication: publication,
        _subscriber: subscriber,
        _watching: watching,
        _clock: clock,
    })
}

/// Read a FETCH response to its end: object locations to payloads.
async fn read_fetch(
    mut reader: banyan_moq::session::FetchReader,
) -> Result<BTreeMap<Location, bytes::Bytes>, Error> {
    let mut objects = BTreeMap::new();
    while let Some(item) = reader.next().await? {
        if let FetchItem::Object(o) = item {
            objects.insert(Location::new(o.group_id, o.object_id), o.payload);
        }
    }
    Ok(objects)
}

/// Which of `expected` are missing or wrong in `got`.
fn history_problems(got: &BTreeMap<Location, bytes::Bytes>, expected: &[Location]) -> Vec<String> {
    let mut problems = Vec::new();
    for l in expected {
        match got.get(l) {
            None => problems.push(format!("missing {}.{}", l.group, l.object)),
            Some(p) if *p != roles::payload(l.group, l.object) => {
                problems.push(format!("{}.{} has the wrong payload", l.group, l.object))
            }
            Some(_) => {}
        }
    }
    for l in got.keys().filter(|l| !expected.contains(l)) {
        problems.push(format!("unexpected {}.{}", l.group, l.object));
    }
    problems
}

fn whole_group(group: u64) -> Vec<Location> {
    (0..OBJECTS_PER_GROUP).map(|o| Location::new(group, o)).collect()
}

/// fetch: a standalone FETCH, from a third session, of a whole group the relay has already
/// forwarded ({G, 0} to the end of G). Asserts FETCH_OK and exactly that group's objects.
async fn fetch(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let history = history(ctx, &track).await?;
    let g = history.group;
    let fetcher = Conn::open(ctx, "fetcher").await?;
    let _refuse = roles::refuse_requests(&fetcher.session);
    let request = Fetch {
        request_id: 0,
        fetch_type: FetchType::Standalone(StandaloneFetch {
            track_namespace: track.namespace.clone(),
            track_name: track.name.clone(),
            start_location: Location::new(g, 0),
            end_location: Location::new(g, 0),
        }),
        parameters: Parameters::default(),
    };
    let reader = within("FETCH", STEP, fetcher.session.fetch(request)).await?;
    let got = within("the FETCH's objects", STEP, read_fetch(reader)).await?;
    let problems = history_problems(&got, &whole_group(g));
    match problems.first() {
        None => Ok(format!("group {g}: all {} objects by FETCH", got.len())),
        Some(first) => Err(Failure::Check(format!(
            "FETCH of group {g}: {first} ({} problem(s), {} objects received)",
            problems.len(),
            got.len()
        ))),
    }
}

/// join: SUBSCRIBE, then a relative joining FETCH one group back (§10.12.2) on the same
/// session, against a live track the relay has already forwarded. Asserts the objects from
/// {Largest.group - 1, 0} to the Joining Location (SUBSCRIBE_OK's Largest Object), the whole
/// earlier group included; when SUBSCRIBE_OK carries no Largest Object, at least one object.
async fn join(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let _history = history(ctx, &track).await?;
    let joiner = Conn::open(ctx, "joiner").await?;
    let _refuse = roles::refuse_requests(&joiner.session);
    let subscription = subscribe(&joiner.session, &track, "SUBSCRIBE").await?;
    let (request_id, largest) = match subscription.subscribe() {
        Some((subscribe, ok)) => (subscribe.request_id, ok.parameters.largest_object),
        None => return Err(Failure::Check("the subscription has no SUBSCRIBE".into())),
    };
    let request = Fetch {
        request_id: 0,
        fetch_type: FetchType::RelativeJoining(JoiningFetch {
            joining_request_id: request_id,
            joining_start: 1,
        }),
        parameters: Parameters::default(),
    };
    let reader = within("joining FETCH", STEP, joiner.session.fetch(request)).await?;
    let got = within("the joining FETCH's objects", STEP, read_fetch(reader)).await?;
    drop(subscription);
    let Some(largest) = largest else {
        return if got.is_empty() {
            Err(Failure::Check("the joining FETCH returned no objects".into()))
        } else {
            Ok(format!(
                "{} objects by the joining FETCH (SUBSCRIBE_OK had no Largest Object)",
                got.len()
            ))
        };
    };
    let start = Location::new(largest.group.saturating_sub(1), 0);
    let expected: Vec<Location> = (start.group..=largest.group)
        .flat_map(whole_group)
        .filter(|l| *l <= largest)
        .collect();
    let problems = history_problems(&got, &expected);
    match problems.first() {
        None => Ok(format!(
            "{} objects by the joining FETCH, {}.0 to the Joining Location {}.{}",
            got.len(),
            start.group,
            largest.group,
            largest.object
        )),
        Some(first) => Err(Failure::Check(format!(
            "joining FETCH from {}.0 to {}.{}: {first} ({} problem(s), {} objects received)",
            start.group,
            largest.group,
            largest.object,
            problems.len(),
            got.len()
        ))),
    }
}

/// subscribe-namespace-lifecycle: a subscriber sends SUBSCRIBE_NAMESPACE for the case's
/// namespace; a separate publisher publishes exactly that namespace, then withdraws it.
/// Asserts NAMESPACE, then NAMESPACE_DONE, for it (each within 5 s).
async fn subscribe_namespace_lifecycle(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let namespace = ctx.namespace()?;
    let subscriber = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&subscriber.session);
    let request = SubscribeNamespace {
        request_id: 0,
        track_namespace_prefix: namespace.clone(),
        parameters: Parameters::default(),
    };
    let mut events = within(
        "SUBSCRIBE_NAMESPACE",
        STEP,
        subscriber.session.subscribe_namespace(request),
    )
    .await?;
    let publisher = Conn::open(ctx, "publisher").await?;
    let _refuse_publisher = roles::refuse_requests(&publisher.session);
    let publication = announce(&publisher.session, &namespace).await?;
    let describe = |e: &Option<NamespaceEvent>| match e {
        Some(NamespaceEvent::Published(ns)) => format!("NAMESPACE {}", ns.to_path()),
        Some(NamespaceEvent::Done(ns)) => format!("NAMESPACE_DONE {}", ns.to_path()),
        None => "the end of the SUBSCRIBE_NAMESPACE stream".into(),
    };
    let first = within("NAMESPACE", STEP, events.next()).await?;
    if first != Some(NamespaceEvent::Published(namespace.clone())) {
        return Err(Failure::Check(format!(
            "expected NAMESPACE {}, received {}",
            namespace.to_path(),
            describe(&first)
        )));
    }
    publication.withdraw();
    let second = within("NAMESPACE_DONE after the withdrawal", STEP, events.next()).await?;
    if second != Some(NamespaceEvent::Done(namespace.clone())) {
        return Err(Failure::Check(format!(
            "NAMESPACE received, then {} instead of NAMESPACE_DONE",
            describe(&second)
        )));
    }
    Ok("NAMESPACE then NAMESPACE_DONE received".into())
}

/// publish-track-only: PUBLISH a track nobody subscribes to. Asserts PUBLISH_OK (a
/// REQUEST_OK, §10.10), then ends the track with PUBLISH_DONE TRACK_ENDED (Stream Count 0).
async fn publish_track_only(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let track = ctx.track()?;
    let conn = Conn::open(ctx, "publisher").await?;
    let _refuse = roles::refuse_requests(&conn.session);
    let mut writer = within("PUBLISH", STEP, conn.session.publish(publish_message(&track))).await?;
    publish_ok(&mut writer).await?;
    within(
        "PUBLISH_DONE",
        STEP,
        writer.finish(PublishDoneCode::TrackEnded, "track ended"),
    )
    .await?;
    Ok("PUBLISH_OK received, PUBLISH_DONE sent".into())
}

/// The relay's answer to a PUBLISH: its Forward State (if it set one) on PUBLISH_OK (a
/// REQUEST_OK, or the legacy 0x1E form), a failure on REQUEST_ERROR or a cancelled PUBLISH.
async fn publish_ok(writer: &mut TrackWriter) -> Result<Option<bool>, Failure> {
    loop {
        match within("PUBLISH_OK", STEP, writer.next_request()).await? {
            Some(Message::RequestOk(ok)) => return Ok(ok.parameters.forward),
            Some(Message::PublishOk(ok)) => return Ok(ok.parameters.forward),
            Some(Message::RequestError(e)) => {
                return Err(Failure::Check(format!(
                    "PUBLISH refused: REQUEST_ERROR {} ({:?})",
                    e.error_code,
                    e.error_reason.as_str()
                )))
            }
            Some(_) => continue,
            None => {
                return Err(Failure::Check(
                    "the relay cancelled the PUBLISH before PUBLISH_OK".into(),
                ))
            }
        }
    }
}

/// PUBLISH the track and, once the relay has accepted it, send its objects while Forward State
/// is 1. Waiting for PUBLISH_OK matters: a relay may register the track only then, so a
/// second session's SUBSCRIBE sent earlier can be refused "Track not found" (it was, once,
/// against moq-relay-ietf).
async fn publish_accepted(session: &Session, track: &Track, clock: &Clock) -> Result<roles::Task, Failure> {
    let mut writer = within("PUBLISH", STEP, session.publish(publish_message(track))).await?;
    let forward = publish_ok(&mut writer).await?.unwrap_or(true);
    Ok(roles::Task::spawn(roles::run_writer(
        writer,
        clock.watch(),
        forward,
    )))
}

/// publish-track-subscribe: the publisher PUBLISHes the track before any subscriber exists
/// (objects flow once PUBLISH_OK allows); a second session SUBSCRIBEs. Asserts SUBSCRIBE_OK
/// and 5 objects within 10 s.
async fn publish_track_subscribe(ctx: &Ctx<'_>) -> Result<String, Failure> {
    const WANTED: usize = 5;
    let track = ctx.track()?;
    let clock = Clock::start();
    let publisher = Conn::open(ctx, "publisher").await?;
    let _serving = roles::serve(&publisher.session, track.clone(), &clock);
    let _publishing = publish_accepted(&publisher.session, &track, &clock).await?;

    let subscriber = Conn::open(ctx, "subscriber").await?;
    let _refuse = roles::refuse_requests(&subscriber.session);
    let subscription = subscribe(&subscriber.session, &track, "SUBSCRIBE").await?;
    let (mut seen, _watching) = roles::watch(subscription);
    let mut received = 0usize;
    let deadline = tokio::time::Instant::now() + DELIVERY;
    while received < WANTED {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(Seen::Object(o))) if o.status == ObjectStatus::Normal => {
                if o.payload != roles::payload(o.group, o.object) {
                    return Err(Failure::Check(format!(
                        "object {}.{} has the wrong payload",
                        o.group, o.object
                    )));
                }
                received += 1;
            }
            Ok(Some(Seen::End(e))) => {
                return Err(Failure::Check(format!(
                    "the subscription ended after {received} of {WANTED} objects ({})",
                    e.unwrap_or_else(|| "no error".into())
                )))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if received < WANTED {
        return Err(Failure::Check(format!(
            "{received} of {WANTED} objects within {DELIVERY:?}"
        )));
    }
    Ok(format!("{received} objects received from the published track"))
}
