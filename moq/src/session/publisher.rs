//! Sending objects: a subscription's [`TrackWriter`] with its [`SubgroupWriter`] streams and
//! datagrams, and the [`FetchWriter`] that answers a FETCH.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::error::Error;
use super::shared::Session;
use super::stream::{Origin, RequestStream};
use super::transport::SendStream;
use crate::coding::{
    DecodeError, Encode, KeyValuePairs, KvpValue, PublishDoneCode, ReasonPhrase, StreamResetCode,
};
use crate::data::{
    property_type, FetchGroupOrder, FetchHeader, FetchItem, FetchStream, ObjectDatagram, StreamType,
    SubgroupHeader, SubgroupId, SubgroupObject,
};
use crate::message::{GroupOrder, Message, Publish, PublishDone, Subscribe, SubscribeOk};

/// The QUIC send order for a stream (higher is sent first), from draft-18 §7's rules:
/// subscriber priority first, then publisher priority (both: lower value wins), then group
/// order (newer groups first when `descending`, older first otherwise).
///
/// Only the low 15 bits of the Group ID take part, so ordering between groups 32768 apart
/// wraps; live streams never keep that many groups in flight. Always below the control and
/// request streams' order (the highest priorities, 0 and 0, give up their top group slot).
pub fn send_order(subscriber_priority: u8, publisher_priority: u8, group_id: u64, descending: bool) -> i32 {
    let group = (group_id & 0x7fff) as i32;
    let slot = if descending { group } else { 0x7fff - group };
    order_in_slot(subscriber_priority, publisher_priority, slot)
}

/// The send order of a group that yields to every newer one (see `track::fanout`): the lowest
/// group slot at these priorities, so it still goes before anything less urgent.
pub fn yielded_send_order(subscriber_priority: u8, publisher_priority: u8) -> i32 {
    order_in_slot(subscriber_priority, publisher_priority, 0)
}

fn order_in_slot(subscriber_priority: u8, publisher_priority: u8, slot: i32) -> i32 {
    let order =
        (i32::from(255 - subscriber_priority) << 23) | (i32::from(255 - publisher_priority) << 15) | slot;
    order.min(super::stream::CONTROL_SEND_ORDER - 1)
}

/// Writes one subscription's objects: subgroup streams and datagrams (through the
/// [`TrackSender`] it derefs to), then PUBLISH_DONE.
///
/// Dropping it without [`finish`](Self::finish) resets the request stream.
#[derive(Debug)]
pub struct TrackWriter {
    sender: TrackSender,
    pub(crate) stream: RequestStream,
    origin: Origin,
    finished: bool,
    cancelled: bool,
}

/// The cloneable half of a [`TrackWriter`] that sends objects: open subgroup streams and send
/// datagrams from as many tasks as needed (e.g. one per group in flight).
#[derive(Debug, Clone)]
pub struct TrackSender {
    session: Session,
    alias: u64,
    shared: Arc<SenderState>,
}

#[derive(Debug)]
struct SenderState {
    streams_opened: AtomicU64,
    /// Subscriber priority in the low 8 bits, bit 8 set for descending group order.
    priority: AtomicU32,
}

impl TrackSender {
    fn new(session: Session, alias: u64, subscriber_priority: u8, descending: bool) -> Self {
        let state = SenderState {
            streams_opened: AtomicU64::new(0),
            priority: AtomicU32::new(pack_priority(subscriber_priority, descending)),
        };
        Self {
            session,
            alias,
            shared: Arc::new(state),
        }
    }

    /// The session's smoothed round-trip time.
    pub fn rtt(&self) -> std::time::Duration {
        self.session.rtt()
    }

    /// The Track Alias objects carry.
    pub fn track_alias(&self) -> u64 {
        self.alias
    }

    /// Open a stream for one subgroup. `publisher_priority` of `None` inherits the track's.
    /// Its send order follows [`send_order`] with the subscription's current priority.
    pub async fn open_subgroup(
        &self,
        group_id: u64,
        subgroup_id: u64,
        publisher_priority: Option<u8>,
        with_properties: bool,
    ) -> Result<SubgroupWriter, Error> {
        let header = SubgroupHeader {
            track_alias: self.alias,
            group_id,
            subgroup_id: if subgroup_id == 0 {
                SubgroupId::Zero
            } else {
                SubgroupId::Explicit(subgroup_id)
            },
            publisher_priority,
            properties: with_properties,
            end_of_group: false,
            first_object: false,
        };
        let (subscriber_priority, descending) = unpack_priority(self.shared.priority.load(Ordering::Relaxed));
        let order = send_order(
            subscriber_priority,
            publisher_priority.unwrap_or(128),
            group_id,
            descending,
        );
        self.shared.streams_opened.fetch_add(1, Ordering::Relaxed);
        SubgroupWriter::open(&self.session, header, order).await
    }

    /// The send order a subgroup stream of this subscription takes when its group yields to
    /// newer groups: [`yielded_send_order`] with the subscription's current priority.
    pub fn yielded_send_order(&self, publisher_priority: Option<u8>) -> i32 {
        let (subscriber_priority, _) = unpack_priority(self.shared.priority.load(Ordering::Relaxed));
        yielded_send_order(subscriber_priority, publisher_priority.unwrap_or(128))
    }

    /// Send one object as a datagram (its Track Alias is set here). Datagrams larger than
    /// the path allows are refused with an error rather than fragmented.
    pub fn send_datagram(&self, mut datagram: ObjectDatagram) -> Result<(), Error> {
        datagram.track_alias = self.alias;
        let mut buf = BytesMut::new();
        datagram
            .encode(&mut buf, self.session.version())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.session.shared.transport.send_datagram(buf.freeze())?;
        Ok(())
    }

    /// The number of subgroup streams opened so far.
    pub fn streams_opened(&self) -> u64 {
        self.shared.streams_opened.load(Ordering::Relaxed)
    }

    /// The session this sender writes to.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

fn pack_priority(subscriber_priority: u8, descending: bool) -> u32 {
    u32::from(subscriber_priority) | (u32::from(descending) << 8)
}

fn unpack_priority(packed: u32) -> (u8, bool) {
    ((packed & 0xff) as u8, packed & 0x100 != 0)
}

/// Whether a track's properties ask for newest groups first (DEFAULT_PUBLISHER_GROUP_ORDER
/// Descending; absent means Ascending).
pub fn publisher_prefers_descending(track_properties: &KeyValuePairs) -> bool {
    matches!(
        track_properties.get(property_type::DEFAULT_PUBLISHER_GROUP_ORDER),
        Some(KvpValue::Varint(code)) if GroupOrder::from_code(*code) == Some(GroupOrder::Descending)
    )
}

/// The message type of UNSUBSCRIBE in drafts before 18.
const LEGACY_UNSUBSCRIBE: u64 = 0x0a;

impl TrackWriter {
    pub(crate) fn for_subscribe(
        session: Session,
        stream: RequestStream,
        subscribe: Subscribe,
        ok: SubscribeOk,
    ) -> Self {
        let subscriber_priority = subscribe.parameters.subscriber_priority.unwrap_or(128);
        // The subscriber's Group Order, else the publisher's (draft-18 §7).
        let descending = match subscribe.parameters.group_order {
            Some(order) => order == GroupOrder::Descending,
            None => publisher_prefers_descending(&ok.track_properties),
        };
        Self {
            sender: TrackSender::new(session, ok.track_alias, subscriber_priority, descending),
            stream,
            origin: Origin::subscribed(subscribe, ok),
            finished: false,
            cancelled: false,
        }
    }

    pub(crate) fn for_publish(session: Session, stream: RequestStream, publish: Publish) -> Self {
        let descending = publisher_prefers_descending(&publish.track_properties);
        Self {
            sender: TrackSender::new(session, publish.track_alias, 128, descending),
            stream,
            origin: Origin::Publish(Box::new(publish)),
            finished: false,
            cancelled: false,
        }
    }

    /// A cloneable sender for this subscription's objects.
    pub fn sender(&self) -> TrackSender {
        self.sender.clone()
    }

    /// The SUBSCRIBE this writer answers (`None` for a PUBLISH we initiated).
    pub fn subscribe(&self) -> Option<&Subscribe> {
        self.origin.subscribe().map(|(subscribe, _)| subscribe)
    }

    /// The PUBLISH we sent (`None` when answering a SUBSCRIBE).
    pub fn publish(&self) -> Option<&Publish> {
        self.origin.publish()
    }

    /// The SUBSCRIBE_OK we sent (`None` for a PUBLISH).
    pub fn subscribe_ok(&self) -> Option<&SubscribeOk> {
        self.origin.subscribe().map(|(_, ok)| ok)
    }

    /// Change the subscriber priority and group order used for new streams (e.g. after a
    /// REQUEST_UPDATE); every [`TrackSender`] clone sees the change.
    pub fn set_priority(&self, subscriber_priority: u8, descending: bool) {
        self.sender
            .shared
            .priority
            .store(pack_priority(subscriber_priority, descending), Ordering::Relaxed);
    }

    /// The next request from the subscriber on the request stream: a REQUEST_UPDATE, or for
    /// a PUBLISH its PUBLISH_OK / REQUEST_ERROR. `None` once the subscriber has cancelled
    /// (STOP_SENDING, FIN or reset of its side); then [`finish`](Self::finish) promptly.
    ///
    /// For interoperability, the pre-draft-18 UNSUBSCRIBE message (type 0x0A), which some
    /// peers still send, is read as a cancellation.
    pub async fn next_request(&mut self) -> Result<Option<Message>, Error> {
        if self.cancelled {
            return Ok(None);
        }
        match self.stream.next_or_stopped().await {
            Ok(Some(message)) => Ok(Some(message)),
            Ok(None)
            | Err(Error::Cancelled(_))
            | Err(Error::Decode(DecodeError::UnknownMessage(LEGACY_UNSUBSCRIBE))) => {
                self.cancelled = true;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Answer a REQUEST_UPDATE (with REQUEST_OK or REQUEST_ERROR).
    pub async fn respond(&mut self, message: Message) -> Result<(), Error> {
        self.stream.send(&message).await
    }

    /// End the subscription: PUBLISH_DONE with the number of streams opened, then FIN.
    /// Close every subgroup stream first (the spec requires it).
    pub async fn finish(mut self, status: PublishDoneCode, reason: &str) -> Result<(), Error> {
        self.finished = true;
        let done = PublishDone {
            status_code: status,
            stream_count: self.sender.streams_opened(),
            error_reason: ReasonPhrase::new(reason),
        };
        let result = self.stream.send(&done.into()).await;
        self.stream.finish();
        result
    }
}

/// A writer sends through its [`TrackSender`]: `track_alias`, `open_subgroup`, `send_datagram`
/// and `streams_opened` are the sender's.
impl std::ops::Deref for TrackWriter {
    type Target = TrackSender;

    fn deref(&self) -> &TrackSender {
        &self.sender
    }
}

impl Drop for TrackWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.stream.reset(StreamResetCode::Cancelled);
        }
    }
}

/// One subgroup's stream: objects in increasing Object ID order.
#[derive(Debug)]
pub struct SubgroupWriter {
    stream: Box<dyn SendStream>,
    header: SubgroupHeader,
    version: crate::Version,
    prev_object_id: Option<u64>,
    buf: BytesMut,
}

impl SubgroupWriter {
    async fn open(session: &Session, header: SubgroupHeader, order: i32) -> Result<Self, Error> {
        let stream = session.shared.transport.open_uni().await?;
        stream.set_priority(order);
        let version = session.version();
        let mut writer = Self {
            stream,
            header,
            version,
            prev_object_id: None,
            buf: BytesMut::with_capacity(64),
        };
        writer.header.encode(&mut writer.buf, version);
        let head = writer.buf.split().freeze();
        writer.stream.write_chunk(head).await?;
        Ok(writer)
    }

    /// The stream's header.
    pub fn header(&self) -> &SubgroupHeader {
        &self.header
    }

    /// Write one object. Its payload is shared, not copied.
    pub async fn write(&mut self, object: &SubgroupObject) -> Result<(), Error> {
        object
            .header()
            .encode(&mut self.buf, &self.header, self.prev_object_id, self.version)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.prev_object_id = Some(object.object_id);
        let head = self.buf.split().freeze();
        if object.payload.is_empty() {
            self.stream.write_chunk(head).await?;
        } else {
            let mut chunks = [head, object.payload.clone()];
            self.stream.write_all_chunks(&mut chunks).await?;
        }
        Ok(())
    }

    /// Write an object from an id and payload.
    pub async fn write_payload(&mut self, object_id: u64, payload: Bytes) -> Result<(), Error> {
        self.write(&SubgroupObject::new(object_id, payload)).await
    }

    /// Change this stream's send order.
    pub fn set_send_order(&self, order: i32) {
        self.stream.set_priority(order);
    }

    /// End the subgroup cleanly (FIN).
    pub fn finish(mut self) {
        let _ = self.stream.finish();
    }

    /// End the subgroup (FIN) but keep the stream, to wait for [`delivered`](Self::delivered)
    /// and still be able to [`reset`](Self::reset) it until then.
    pub fn send_fin(&mut self) {
        let _ = self.stream.finish();
    }

    /// After [`send_fin`](Self::send_fin): wait until the peer has acknowledged every byte of
    /// the stream (true), or stopped it or the session ended (false). This is what the
    /// transport's send buffers and congestion window still hold for the stream, which a
    /// completed write does not say.
    pub async fn delivered(&self) -> bool {
        matches!(self.stream.stopped().await, Ok(None))
    }

    /// Abandon the subgroup (e.g. a subscriber that fell behind skips it).
    pub fn reset(mut self, code: StreamResetCode) {
        self.stream.reset(code.code());
    }
}

/// Writes the objects answering one FETCH on its data stream.
#[derive(Debug)]
pub struct FetchWriter {
    request: RequestStream,
    stream: Box<dyn SendStream>,
    state: FetchStream,
    version: crate::Version,
    buf: BytesMut,
}

impl FetchWriter {
    pub(crate) async fn open(
        request: RequestStream,
        request_id: u64,
        order: FetchGroupOrder,
    ) -> Result<Self, Error> {
        let session = request.session();
        let mut stream = session.shared.transport.open_uni().await?;
        let version = session.version();
        let mut buf = BytesMut::new();
        StreamType::Fetch.encode(&mut buf, version);
        crate::coding::encode_varint(FetchHeader { request_id }.request_id, &mut buf);
        stream.write_chunk(buf.split().freeze()).await?;
        Ok(Self {
            request,
            stream,
            state: FetchStream::new(order),
            version,
            buf,
        })
    }

    /// Write one object or End of Range marker.
    pub async fn write(&mut self, item: &FetchItem) -> Result<(), Error> {
        match item {
            FetchItem::Object(object) => {
                self.state
                    .encode_record(
                        &crate::data::FetchRecord::Object(object.header()),
                        &mut self.buf,
                        self.version,
                    )
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let head = self.buf.split().freeze();
                let mut chunks = [head, object.payload.clone()];
                self.stream.write_all_chunks(&mut chunks).await?;
            }
            FetchItem::EndOfRange(_) => {
                self.state
                    .encode_item(item, &mut self.buf, self.version)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let head = self.buf.split().freeze();
                self.stream.write_chunk(head).await?;
            }
        }
        Ok(())
    }

    /// Resolves when the requester cancels the fetch.
    pub async fn cancelled(&self) -> Option<u64> {
        self.request.stopped().await
    }

    /// Finish the data stream and the request stream. The request stream stays open for
    /// reading until the requester finishes its side, so completing a FETCH never looks like
    /// cancelling it (see `RequestStream::linger`).
    pub fn finish(self) {
        let FetchWriter {
            mut stream, request, ..
        } = self;
        let _ = stream.finish();
        request.linger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::KeyValuePair;
    use crate::session::stream::CONTROL_SEND_ORDER;

    #[test]
    fn send_order_follows_draft_18_and_stays_below_control() {
        // Subscriber priority first, then publisher priority (audio 64 before video 128).
        assert!(send_order(1, 200, 5, false) > send_order(2, 0, 5, false));
        assert!(send_order(128, 64, 5, false) > send_order(128, 128, 5, false));
        // Group order: newest first when descending, oldest first otherwise.
        assert!(send_order(128, 128, 9, true) > send_order(128, 128, 8, true));
        assert!(send_order(128, 128, 8, false) > send_order(128, 128, 9, false));
        // A yielded group goes after every group at its priorities, before anything less urgent.
        for group in [0, 1, 0x7ffe] {
            for descending in [false, true] {
                assert!(yielded_send_order(128, 128) <= send_order(128, 128, group, descending));
            }
        }
        assert!(yielded_send_order(128, 64) > send_order(128, 128, 5, true));
        // The control and request streams go before any data, even the most urgent.
        for descending in [false, true] {
            for group in [0, 0x7fff, u64::MAX] {
                assert!(send_order(0, 0, group, descending) < CONTROL_SEND_ORDER);
            }
        }
    }

    #[test]
    fn the_publisher_group_order_is_read_from_track_properties() {
        let mut properties = KeyValuePairs::new();
        assert!(!publisher_prefers_descending(&properties), "absent: ascending");
        let descending = KeyValuePair::varint(property_type::DEFAULT_PUBLISHER_GROUP_ORDER, 2);
        properties.push(descending.expect("an even key"));
        assert!(publisher_prefers_descending(&properties));
        assert!(publisher_prefers_descending(
            &crate::message::SubscribeOk::newest_first().track_properties
        ));
        let mut odd = KeyValuePairs::new();
        let invalid = KeyValuePair::varint(property_type::DEFAULT_PUBLISHER_GROUP_ORDER, 7);
        odd.push(invalid.expect("an even key"));
        assert!(
            !publisher_prefers_descending(&odd),
            "an invalid value is not descending"
        );
    }
}
