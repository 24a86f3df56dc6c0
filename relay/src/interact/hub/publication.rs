//! A viewer's (or child relay's) `interact` publication served: its datagrams and streams
//! read, each object admitted for its publisher and applied to the broadcast (summed, posted
//! or recorded at the origin, queued for the parent elsewhere).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use banyan_moq::coding::{RequestErrorCode, StreamResetCode};
use banyan_moq::message::RequestOk;
use banyan_moq::session::{Error as SessionError, PublishRequest, SubgroupReader, TrackEvent};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::super::moderation::Identity;
use super::super::payload::{ChatObject, Up};
use super::super::viewer::{Admission, Admitted};
use super::super::Refusal;
use super::{Broadcast, Hub, Role, Serving, PUBLICATION_DRAIN};

impl Hub {
    /// Serve a viewer's (or child relay's) PUBLISH of an `interact` track until it ends;
    /// a viewer's comments are held to `room` when its token names one and judged against
    /// the broadcast's moderation as `who` (`who.moderator` may send moderation actions).
    pub async fn serve(
        self: Arc<Self>,
        request: PublishRequest,
        from_relay: bool,
        room: Option<u64>,
        who: Identity,
    ) -> Result<(), SessionError> {
        let namespace = request.message.track_namespace.clone();
        let Some(broadcast) = self.broadcast(&namespace) else {
            return request
                .reject(
                    RequestErrorCode::ExcessiveLoad,
                    "too many broadcasts with interactions",
                )
                .await;
        };
        let _serving = Serving::new(broadcast.clone());
        if !from_relay {
            // A viewer's comments are judged here: learn the moderation state. (A relay in
            // the middle follows once a child's follower subscribes to `mod` through it.)
            self.follow(&broadcast);
        }
        // A child relay's viewer count is kept under this number while the publication lives.
        let id = self.served.fetch_add(1, Ordering::Relaxed);
        let mut subscription = request.accept(RequestOk::default()).await?;
        let mut publisher = if from_relay {
            Admission::relay(&self.config)
        } else {
            // A relay's comments were judged at their edge; a viewer's are judged here.
            Admission::viewer(&self.config).in_room(room).viewer_is(who)
        };
        let (objects, mut received) =
            mpsc::channel::<(Bytes, Option<tokio::sync::oneshot::Sender<Refusal>>)>(64);
        let mut attached = None;
        // This publication's stream readers: stopped with it.
        let mut readers = JoinSet::new();
        let result = loop {
            tokio::select! {
                event = subscription.next() => match event {
                    Ok(Some(TrackEvent::Datagram(datagram))) => {
                        // A refused like datagram is dropped; `apply` counts it.
                        let _ = self.apply(&broadcast, id, &mut publisher, &mut attached, datagram.payload).await;
                    }
                    Ok(Some(TrackEvent::Subgroup(reader))) => {
                        while readers.try_join_next().is_some() {}
                        readers.spawn(read_subgroup(reader, objects.clone()));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                },
                Some((payload, reply)) = received.recv() => {
                    self.apply_replying(&broadcast, id, &mut publisher, &mut attached, payload, reply).await;
                }
            }
        };
        // The publication ended: objects still being read from its last streams (a final
        // like total, the last comments) are applied before the source is detached.
        drop(objects);
        let _ = tokio::time::timeout(PUBLICATION_DRAIN, async {
            while let Some((payload, reply)) = received.recv().await {
                self.apply_replying(&broadcast, id, &mut publisher, &mut attached, payload, reply)
                    .await;
            }
        })
        .await;
        if let Some(source) = attached {
            broadcast.likes.lock().detach(source, Instant::now());
        }
        broadcast.children.lock().forget(id);
        result
    }

    /// [`Hub::apply`] an object read from a stream, telling its reader of a refusal (the
    /// reader then stops the stream with the refusal's code).
    async fn apply_replying(
        &self,
        broadcast: &Arc<Broadcast>,
        id: u64,
        publisher: &mut Admission,
        attached: &mut Option<u64>,
        payload: Bytes,
        reply: Option<tokio::sync::oneshot::Sender<Refusal>>,
    ) {
        if let Err(refusal) = self.apply(broadcast, id, publisher, attached, payload).await {
            if let Some(reply) = reply {
                let _ = reply.send(refusal);
            }
        }
    }

    async fn apply(
        &self,
        broadcast: &Arc<Broadcast>,
        id: u64,
        publisher: &mut Admission,
        attached: &mut Option<u64>,
        payload: Bytes,
    ) -> Result<(), Refusal> {
        let admitted = publisher.admit(payload).inspect_err(|refusal| {
            self.metrics.interact_refuse(*refusal);
        })?;
        match admitted {
            Admitted::Viewers { count } => broadcast
                .children
                .lock()
                .report(id, count, Instant::now())
                .inspect_err(|refusal| self.metrics.interact_refuse(*refusal)),
            Admitted::Like {
                source,
                total,
                refused,
            } => {
                if refused > 0 {
                    self.metrics.interact_refuse(Refusal::RateLimited);
                }
                let mut likes = broadcast.likes.lock();
                if attached.is_none() {
                    likes.attach(source);
                    *attached = Some(source);
                }
                let before = likes.total();
                likes.update(source, total);
                self.metrics.likes_in.inc_by(likes.total().saturating_sub(before));
                Ok(())
            }
            Admitted::Moderate { by, action } => {
                let by = by
                    .or_else(|| publisher.who().and_then(|who| who.sub.clone()))
                    .unwrap_or_else(|| "moderator".into());
                self.forward_action(broadcast, by, action)
                    .await
                    .inspect_err(|refusal| self.metrics.interact_refuse(*refusal))
            }
            Admitted::Comment { room, text, by } => {
                if let Some(who) = publisher.who() {
                    self.judge_comment(broadcast, who)
                        .await
                        .inspect_err(|refusal| self.metrics.interact_refuse(*refusal))?;
                }
                self.metrics.comments_in.inc();
                let author = by
                    .or_else(|| publisher.who().and_then(|who| who.sub.clone()))
                    .unwrap_or_default();
                match &broadcast.role {
                    Role::Origin { .. } => {
                        let accepted_ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        self.post(
                            broadcast,
                            room,
                            ChatObject {
                                accepted_ms,
                                text,
                                author,
                            },
                        );
                        Ok(())
                    }
                    Role::Edge { comments } => {
                        let up = Up::CommentBy {
                            room: Bytes::from(room.to_string()),
                            text: Bytes::from(text),
                            by: Bytes::from(author),
                        };
                        comments.try_send(up.encode()).map_err(|_| {
                            self.metrics.interact_refuse(Refusal::RateLimited);
                            Refusal::RateLimited
                        })
                    }
                }
            }
            Admitted::Gift {
                client_id,
                kind,
                amount,
            } => match &broadcast.role {
                Role::Origin {
                    events, events_group, ..
                } => {
                    self.record_gift(broadcast, events, events_group, client_id, kind, amount)
                        .await
                }
                Role::Edge { comments } => {
                    let up = Up::Gift {
                        client_id,
                        kind,
                        amount,
                    };
                    comments.try_send(up.encode()).map_err(|_| {
                        self.metrics.interact_refuse(Refusal::RateLimited);
                        Refusal::RateLimited
                    })
                }
            },
        }
    }
}

/// Read one subgroup stream of an `interact` publication, handing each object to the
/// session's loop; a refused object stops the stream with the refusal's code.
async fn read_subgroup(
    mut reader: SubgroupReader,
    objects: mpsc::Sender<(Bytes, Option<tokio::sync::oneshot::Sender<Refusal>>)>,
) {
    loop {
        let object = match reader.next().await {
            Ok(Some(object)) => object,
            Ok(None) | Err(_) => return,
        };
        let (reply, refused) = tokio::sync::oneshot::channel();
        if objects.send((object.payload, Some(reply))).await.is_err() {
            return;
        }
        if let Ok(refusal) = refused.await {
            reader.stop(StreamResetCode::from_code(refusal.code()));
            return;
        }
    }
}
