//! Off the origin: this relay's own `interact` publication to its parent, carrying the
//! subtree's like sum as a datagram every window, the subtree's viewer count as a datagram
//! when it changed (checked every window) and every [`REPORT_REFRESH`], and the accepted
//! comments and gifts in order on one stream, reopened on another parent when one goes away.

use std::sync::Arc;

use banyan_moq::coding::{PublishDoneCode, TrackName};
use banyan_moq::data::{ObjectDatagram, ObjectProperties, ObjectStatus};
use banyan_moq::message::{HopPath, Message, Parameters, Publish};
use banyan_moq::session::{Error as SessionError, TrackWriter};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::payload::Up;
use super::super::viewers::{Reporter, REPORT_REFRESH};
use super::{Broadcast, Hub, INTERACT};

impl Hub {
    /// Off the origin: keep an `interact` publication open to a parent; send the subtree's
    /// like sum every window (a lost datagram is repaired by the next) and each comment on
    /// its own stream. Ends when the broadcast is freed, after its final total went out.
    pub(super) async fn upstream(
        self: Arc<Self>,
        broadcast: Arc<Broadcast>,
        mut comments: mpsc::Receiver<Bytes>,
    ) {
        let Some(parents) = self.tracks.parents().cloned() else {
            return;
        };
        let namespace = broadcast.namespace.clone();
        let mut pending: Option<Bytes> = None;
        let mut group = 0u64;
        let path = HopPath::default();
        loop {
            let publish = Publish {
                request_id: 0,
                track_namespace: namespace.clone(),
                track_name: TrackName::new(INTERACT.to_vec()),
                track_alias: 0,
                parameters: Parameters::default(),
                track_properties: Default::default(),
            };
            let opening = parents.request(&namespace, &path, |session, _| {
                let publish = publish.clone();
                async move {
                    let mut writer = session.publish(publish).await?;
                    match writer.next_request().await? {
                        Some(Message::RequestOk(_)) => Ok(writer),
                        other => Err(SessionError::InvalidArgument(format!(
                            "parent refused interact: {other:?}"
                        ))),
                    }
                }
            });
            let opened = tokio::select! {
                opened = opening => opened,
                () = broadcast.freed() => return,
            };
            let writer = match opened {
                Ok((writer, _parent)) => writer,
                Err(e) => {
                    tracing::debug!(error = %e, "interact: no parent yet");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.window * 10) => continue,
                        () = broadcast.freed() => return,
                    }
                }
            };
            match self
                .feed(&broadcast, writer, &mut comments, &mut pending, &mut group)
                .await
            {
                Ok(Fed::Freed) => return,
                Ok(Fed::Ended) => tracing::info!("interact: parent ended the publication"),
                Err(e) => tracing::info!(error = %e, "interact: parent publication ended"),
            }
        }
    }

    async fn feed(
        &self,
        broadcast: &Broadcast,
        mut writer: TrackWriter,
        comments: &mut mpsc::Receiver<Bytes>,
        pending: &mut Option<Bytes>,
        group: &mut u64,
    ) -> Result<Fed, SessionError> {
        let sender = writer.sender();
        let mut tick = tokio::time::interval(self.config.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Comments go on one stream per publication, so the parent reads them in order.
        let mut stream = None;
        let mut object = 0u64;
        let comment_group = *group;
        *group += 1;
        // A new publication hears the count at once.
        let mut counts = Reporter::new(REPORT_REFRESH);
        loop {
            // A comment taken but not yet delivered goes first (again, after a reconnect).
            if let Some(payload) = pending.clone() {
                let out = match &mut stream {
                    Some(out) => out,
                    None => stream.insert(sender.open_subgroup(comment_group, 0, None, false).await?),
                };
                out.write_payload(object, payload).await?;
                object += 1;
                *pending = None;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let count = self.subtree_count(broadcast, Instant::now());
                    if counts.due(count, Instant::now()) {
                        sender.send_datagram(datagram(group, Up::Viewers { count }.encode()))?;
                    }
                    let total = broadcast.likes.lock().total();
                    if total > 0 {
                        let like = Up::Like { source: broadcast.source, total }.encode();
                        sender.send_datagram(datagram(group, like))?;
                    }
                }
                comment = comments.recv() => match comment {
                    Some(payload) => *pending = Some(payload),
                    None => return Ok(Fed::Ended),
                },
                request = writer.next_request() => {
                    if request?.is_none() {
                        return Ok(Fed::Ended);
                    }
                }
                () = broadcast.freed() => {
                    // The final total on the reliable stream (datagrams may all be lost),
                    // after any comment still queued, then the end of the publication.
                    let total = broadcast.likes.lock().total();
                    let mut out = match stream {
                        Some(out) => out,
                        None => sender.open_subgroup(comment_group, 0, None, false).await?,
                    };
                    while let Ok(payload) = comments.try_recv() {
                        out.write_payload(object, payload).await?;
                        object += 1;
                    }
                    if total > 0 {
                        let like = Up::Like { source: broadcast.source, total }.encode();
                        out.write_payload(object, like).await?;
                    }
                    out.finish();
                    writer.finish(PublishDoneCode::TrackEnded, "broadcast idle").await?;
                    return Ok(Fed::Freed);
                }
            }
        }
    }
}

/// The next datagram of the publication (group numbers count up), carrying `payload`.
fn datagram(group: &mut u64, payload: Bytes) -> ObjectDatagram {
    let datagram = ObjectDatagram {
        track_alias: 0,
        group_id: *group,
        object_id: 0,
        publisher_priority: None,
        properties: ObjectProperties::default(),
        end_of_group: false,
        status: ObjectStatus::Normal,
        payload,
    };
    *group += 1;
    datagram
}

/// How a publication to the parent ended without an error.
enum Fed {
    /// The parent (or its session) ended it; open another.
    Ended,
    /// The broadcast was freed; its final total went out.
    Freed,
}
