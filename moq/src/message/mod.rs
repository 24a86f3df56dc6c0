//! Control messages (draft-18 §10): one file per message, named as the spec names it, and the
//! control-message framing:
//!
//! ```text
//! MOQT Control Message {
//!   Message Type (vi64),
//!   Message Length (16),
//!   Message Payload (..),
//! }
//! ```
//!
//! Each message type implements [`Decode`]/[`Encode`] for its *payload* only. Several payloads
//! end with a field whose length is "the rest of the message" (Track Properties, GOAWAY's
//! optional Request ID, SETUP's options), so a payload decoder must be given exactly the
//! payload; [`Message::decode_frame`] does that.
//!
//! # Framing API
//!
//! [`Message::decode_frame`] takes `&mut B` where `B: Buf + Clone` — in practice a `Bytes`
//! (payload fields are zero-copy slices of it) or a `&[u8]` (e.g. a view of a `BytesMut`; the
//! caller advances its buffer by how far the slice moved). It decodes from a clone and advances
//! `buf` past the frame **only on success**: on [`DecodeError::Incomplete`] (and on every other
//! error) `buf` is left untouched, so the caller reads more and retries.
//!
//! # Module map
//! - parameters: [`params`] ([`Parameters`], [`ParameterScope`]), [`auth_token`] ([`Token`]),
//!   [`subscription_filter`] ([`SubscriptionFilter`]), [`group_order`] ([`GroupOrder`]).
//! - extensions: [`hop_path`] ([`HopPath`]: Banyan's relay-path loop and depth safety).
//! - session: [`setup`], [`goaway`].
//! - generic responses: [`request_ok`], [`request_error`] ([`Redirect`]), [`request_update`].
//! - subscriptions: [`subscribe`], [`subscribe_ok`], [`publish`], [`publish_ok`],
//!   [`publish_done`], [`track_status`].
//! - fetch: [`fetch`], [`fetch_ok`].
//! - namespaces: [`publish_namespace`], [`namespace`], [`namespace_done`],
//!   [`subscribe_namespace`], [`subscribe_tracks`], [`publish_blocked`].

pub mod auth_token;
pub mod fetch;
pub mod fetch_ok;
pub mod goaway;
pub mod group_order;
pub mod hop_path;
pub mod namespace;
pub mod namespace_done;
pub mod params;
pub mod publish;
pub mod publish_blocked;
pub mod publish_done;
pub mod publish_namespace;
pub mod publish_ok;
pub mod request_error;
pub mod request_ok;
pub mod request_update;
pub mod setup;
pub mod subscribe;
pub mod subscribe_namespace;
pub mod subscribe_ok;
pub mod subscribe_tracks;
pub mod subscription_filter;
pub mod track_status;

pub use auth_token::{AliasType, Token};
pub use fetch::{Fetch, FetchType, JoiningFetch, StandaloneFetch};
pub use fetch_ok::FetchOk;
pub use goaway::Goaway;
pub use group_order::GroupOrder;
pub use hop_path::{HopPath, HOP_ID_OPTION};
pub use namespace::Namespace;
pub use namespace_done::NamespaceDone;
pub use params::{ParameterScope, Parameters, UpdateTarget};
pub use publish::Publish;
pub use publish_blocked::PublishBlocked;
pub use publish_done::PublishDone;
pub use publish_namespace::PublishNamespace;
pub use publish_ok::PublishOk;
pub use request_error::{Redirect, RequestError};
pub use request_ok::RequestOk;
pub use request_update::RequestUpdate;
pub use setup::Setup;
pub use subscribe::Subscribe;
pub use subscribe_namespace::SubscribeNamespace;
pub use subscribe_ok::SubscribeOk;
pub use subscribe_tracks::SubscribeTracks;
pub use subscription_filter::{FilterType, SubscriptionFilter};
pub use track_status::TrackStatus;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::coding::{
    decode_length_prefixed, decode_u16, decode_varint, encode_varint, Decode, DecodeError, Encode,
    EncodeError, FullTrackName, TrackName, TrackNamespace, Version,
};

/// The largest control message payload the 16-bit Message Length can describe.
pub const MAX_MESSAGE_SIZE: usize = u16::MAX as usize;

macro_rules! messages {
    ($($(#[$meta:meta])* $variant:ident,)*) => {
        /// Any draft-18 control message.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Message {
            $($(#[$meta])* $variant($variant),)*
        }

        impl Message {
            /// The Message Type on the wire.
            pub const fn type_id(&self) -> u64 {
                match self {
                    $(Message::$variant(_) => $variant::TYPE,)*
                }
            }

            /// The spec's name for the message, e.g. `"SUBSCRIBE_OK"`.
            pub const fn name(&self) -> &'static str {
                match self {
                    $(Message::$variant(_) => $variant::NAME,)*
                }
            }

            /// Decode the payload of a message of type `type_id`. `buf` must hold exactly the
            /// payload (see the module docs); unknown types are [`DecodeError::UnknownMessage`].
            pub fn decode_payload<B: Buf>(
                type_id: u64,
                buf: &mut B,
                version: Version,
            ) -> Result<Self, DecodeError> {
                match type_id {
                    $($variant::TYPE => Ok(Message::$variant($variant::decode(buf, version)?)),)*
                    other => Err(DecodeError::UnknownMessage(other)),
                }
            }

            /// True when `type_id` is a control message type of this version.
            pub const fn is_known_type(type_id: u64) -> bool {
                matches!(type_id, $($variant::TYPE)|*)
            }

            /// Write the payload (no type or length).
            pub fn encode_payload<B: BufMut>(&self, buf: &mut B, version: Version) {
                match self {
                    $(Message::$variant(m) => m.encode(buf, version),)*
                }
            }
        }

        $(
            impl From<$variant> for Message {
                fn from(m: $variant) -> Self {
                    Message::$variant(m)
                }
            }
        )*
    };
}

messages! {
    /// SETUP (0x2F00).
    Setup,
    /// GOAWAY (0x10).
    Goaway,
    /// REQUEST_OK (0x7).
    RequestOk,
    /// REQUEST_ERROR (0x5).
    RequestError,
    /// REQUEST_UPDATE (0x2).
    RequestUpdate,
    /// SUBSCRIBE (0x3).
    Subscribe,
    /// SUBSCRIBE_OK (0x4).
    SubscribeOk,
    /// PUBLISH (0x1D).
    Publish,
    /// PUBLISH_OK (0x1E): REQUEST_OK's layout under its own type (see [`publish_ok`]).
    PublishOk,
    /// PUBLISH_DONE (0xB).
    PublishDone,
    /// FETCH (0x16).
    Fetch,
    /// FETCH_OK (0x18).
    FetchOk,
    /// TRACK_STATUS (0xD).
    TrackStatus,
    /// PUBLISH_NAMESPACE (0x6).
    PublishNamespace,
    /// NAMESPACE (0x8).
    Namespace,
    /// NAMESPACE_DONE (0xE).
    NamespaceDone,
    /// SUBSCRIBE_NAMESPACE (0x50).
    SubscribeNamespace,
    /// SUBSCRIBE_TRACKS (0x51).
    SubscribeTracks,
    /// PUBLISH_BLOCKED (0xF).
    PublishBlocked,
}

impl Message {
    /// The Request ID this message consumes: present on the eight request messages
    /// (SUBSCRIBE, PUBLISH, FETCH, TRACK_STATUS, PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE,
    /// SUBSCRIBE_TRACKS, REQUEST_UPDATE). Responses carry none (their stream identifies the
    /// request). GOAWAY's Request ID is a watermark, not a new request, and is not returned.
    pub const fn request_id(&self) -> Option<u64> {
        match self {
            Message::Subscribe(m) => Some(m.request_id),
            Message::Publish(m) => Some(m.request_id),
            Message::Fetch(m) => Some(m.request_id),
            Message::TrackStatus(m) => Some(m.request_id),
            Message::PublishNamespace(m) => Some(m.request_id),
            Message::SubscribeNamespace(m) => Some(m.request_id),
            Message::SubscribeTracks(m) => Some(m.request_id),
            Message::RequestUpdate(m) => Some(m.request_id),
            _ => None,
        }
    }

    /// True for the seven types that may open a bidirectional request stream (§3.3).
    pub const fn is_request_start(&self) -> bool {
        Self::type_starts_request(self.type_id())
    }

    /// True when `type_id` is one of the seven types that may open a request stream.
    pub const fn type_starts_request(type_id: u64) -> bool {
        matches!(
            type_id,
            TrackStatus::TYPE
                | Subscribe::TYPE
                | Publish::TYPE
                | Fetch::TYPE
                | PublishNamespace::TYPE
                | SubscribeNamespace::TYPE
                | SubscribeTracks::TYPE
        )
    }

    /// Decode one framed control message from the front of `buf`.
    ///
    /// - Any strict prefix of a valid frame is [`DecodeError::Incomplete`].
    /// - A declared length above `max_size` (itself capped at [`MAX_MESSAGE_SIZE`]) is
    ///   [`DecodeError::TooLarge`] as soon as the header is readable, before any payload.
    /// - An unknown type is [`DecodeError::UnknownMessage`] as soon as the type is readable.
    /// - The payload is decoded from exactly Message Length bytes: bytes left over are
    ///   [`DecodeError::LengthMismatch`]; a payload that ends inside a field is malformed
    ///   ([`DecodeError::Invalid`] or [`DecodeError::KeyValueFormat`]), never `Incomplete`.
    ///
    /// `buf` is advanced past the frame only on success (see the module docs).
    pub fn decode_frame<B: Buf + Clone>(
        buf: &mut B,
        version: Version,
        max_size: usize,
    ) -> Result<Message, DecodeError> {
        let mut peek = buf.clone();
        let type_id = decode_varint(&mut peek)?;
        if !Self::is_known_type(type_id) {
            return Err(DecodeError::UnknownMessage(type_id));
        }
        let declared = usize::from(decode_u16(&mut peek)?);
        let limit = max_size.min(MAX_MESSAGE_SIZE);
        if declared > limit {
            return Err(DecodeError::TooLarge {
                what: "control message",
                size: declared as u64,
                limit: limit as u64,
            });
        }
        if peek.remaining() < declared {
            return Err(DecodeError::Incomplete);
        }
        let mut payload = peek.copy_to_bytes(declared);
        let message = Self::decode_payload(type_id, &mut payload, version).map_err(|e| match e {
            DecodeError::Incomplete => DecodeError::Invalid("message payload ends inside a field"),
            other => other,
        })?;
        if payload.has_remaining() {
            return Err(DecodeError::LengthMismatch {
                declared,
                used: declared - payload.remaining(),
            });
        }
        *buf = peek;
        Ok(message)
    }

    /// Write the framed message: type, 16-bit length, payload. A payload over
    /// [`MAX_MESSAGE_SIZE`] is [`EncodeError::TooLarge`] and nothing is written.
    pub fn encode_frame<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let mut payload = BytesMut::new();
        self.encode_payload(&mut payload, version);
        let len = u16::try_from(payload.len()).map_err(|_| EncodeError::TooLarge {
            what: "control message",
            size: payload.len(),
            limit: MAX_MESSAGE_SIZE,
        })?;
        encode_varint(self.type_id(), buf);
        buf.put_u16(len);
        buf.put_slice(&payload);
        Ok(())
    }

    /// The framed encoding as a fresh buffer.
    pub fn to_frame(&self, version: Version) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode_frame(&mut buf, version)?;
        Ok(buf.freeze())
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decode a Track Namespace followed by a Track Name, checking the 4096-byte Full Track Name
/// limit.
pub(crate) fn decode_track<B: Buf>(
    buf: &mut B,
    version: Version,
) -> Result<(TrackNamespace, TrackName), DecodeError> {
    let full = FullTrackName::decode(buf, version)?;
    Ok((full.namespace, full.name))
}

/// Decode a length-prefixed UTF-8 string of at most `limit` bytes.
pub(crate) fn decode_string<B: Buf>(
    buf: &mut B,
    what: &'static str,
    limit: usize,
) -> Result<String, DecodeError> {
    let bytes = decode_length_prefixed(buf, what, limit)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid(what))
}
