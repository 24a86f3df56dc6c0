//! Interaction object payloads. Every integer is a MoQT varint; every string is a varint
//! length followed by that many bytes. Decoding takes one whole object payload: a payload
//! that ends early or has bytes left over is [`Refusal::Malformed`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use banyan_moq::coding::{decode_varint, encode_varint};

use super::moderation::Action;
use super::Refusal;

/// Up-track object type: a cumulative like count.
pub const TYPE_LIKE: u64 = 0x1;
/// Up-track object type: a chat comment.
pub const TYPE_COMMENT: u64 = 0x2;
/// Up-track object type: a gift.
pub const TYPE_GIFT: u64 = 0x3;
/// Up-track object type: a child relay's viewer count (relays only).
pub const TYPE_VIEWERS: u64 = 0x4;
/// Up-track object type: a comment a child relay admitted, with its author's `sub` (relays only).
pub const TYPE_COMMENT_BY: u64 = 0x7;
/// Up-track object type: a moderation action from a moderator (token claim `mod`).
pub const TYPE_MODERATE: u64 = 0x5;
/// Up-track object type: a moderation action vouched for by a child relay, with the
/// moderator's `sub` (relays only).
pub const TYPE_MODERATED: u64 = 0x6;

/// One object on an `interact` track (viewer → edge, relay → parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Up {
    /// The sender's cumulative likes since `source` started; a later object carries a total
    /// at least as large, so a lost datagram loses nothing once a later one arrives.
    Like {
        /// The sender's random 62-bit source id, stable across its reconnections.
        source: u64,
        /// Likes counted by the source so far.
        total: u64,
    },
    /// A comment for one chat room, raw bytes as received (see [`super::viewer`] for checks).
    Comment {
        /// The room, as assigned by the control plane (`chat_room`).
        room: Bytes,
        /// The text; must be UTF-8.
        text: Bytes,
    },
    /// A gift; `client_id` makes retries idempotent.
    Gift {
        /// The sender's id for this gift, reused on every retry.
        client_id: Bytes,
        /// Application-defined gift kind.
        kind: u64,
        /// How many of `kind`.
        amount: u64,
    },
    /// A child relay's live viewer count: its own viewers plus its children's latest
    /// counts. A gauge (it goes down when viewers leave); only relays may send it.
    Viewers {
        /// Viewers in the sender's subtree now.
        count: u64,
    },
    /// A comment a child relay admitted, naming its author (the viewer token's `sub`).
    CommentBy {
        /// The room.
        room: Bytes,
        /// The text.
        text: Bytes,
        /// The author's `sub` (empty when the edge runs without auth).
        by: Bytes,
    },
    /// A moderation action, sent by a moderator; its edge checks the `mod` claim.
    Moderate(Action),
    /// A moderation action a child relay admitted from moderator `by` (relays only).
    Moderated {
        /// The moderator's token `sub`.
        by: Bytes,
        /// The action.
        action: Action,
    },
}

impl Up {
    /// Decode one whole object payload.
    pub fn decode(mut payload: Bytes) -> Result<Self, Refusal> {
        let buf = &mut payload;
        let message = match varint(buf)? {
            TYPE_LIKE => Up::Like {
                source: varint(buf)?,
                total: varint(buf)?,
            },
            TYPE_COMMENT => Up::Comment {
                room: string(buf)?,
                text: string(buf)?,
            },
            TYPE_GIFT => Up::Gift {
                client_id: string(buf)?,
                kind: varint(buf)?,
                amount: varint(buf)?,
            },
            TYPE_VIEWERS => Up::Viewers { count: varint(buf)? },
            TYPE_COMMENT_BY => Up::CommentBy {
                room: string(buf)?,
                text: string(buf)?,
                by: string(buf)?,
            },
            TYPE_MODERATE => Up::Moderate(Action::decode(buf)?),
            TYPE_MODERATED => Up::Moderated {
                by: string(buf)?,
                action: Action::decode(buf)?,
            },
            _ => return Err(Refusal::Malformed),
        };
        if buf.has_remaining() {
            return Err(Refusal::Malformed);
        }
        Ok(message)
    }

    /// Encode as one object payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Up::Like { source, total } => {
                encode_varint(TYPE_LIKE, &mut buf);
                encode_varint(*source, &mut buf);
                encode_varint(*total, &mut buf);
            }
            Up::Comment { room, text } => {
                encode_varint(TYPE_COMMENT, &mut buf);
                put_string(room, &mut buf);
                put_string(text, &mut buf);
            }
            Up::Gift {
                client_id,
                kind,
                amount,
            } => {
                encode_varint(TYPE_GIFT, &mut buf);
                put_string(client_id, &mut buf);
                encode_varint(*kind, &mut buf);
                encode_varint(*amount, &mut buf);
            }
            Up::Viewers { count } => {
                encode_varint(TYPE_VIEWERS, &mut buf);
                encode_varint(*count, &mut buf);
            }
            Up::CommentBy { room, text, by } => {
                encode_varint(TYPE_COMMENT_BY, &mut buf);
                put_string(room, &mut buf);
                put_string(text, &mut buf);
                put_string(by, &mut buf);
            }
            Up::Moderate(action) => {
                encode_varint(TYPE_MODERATE, &mut buf);
                action.encode(&mut buf);
            }
            Up::Moderated { by, action } => {
                encode_varint(TYPE_MODERATED, &mut buf);
                put_string(by, &mut buf);
                action.encode(&mut buf);
            }
        }
        buf.freeze()
    }
}

/// One object on a `chat/<room>` track (origin → everyone). The group id is the comment's
/// sequence number in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatObject {
    /// When the edge accepted the comment, milliseconds since the Unix epoch.
    pub accepted_ms: u64,
    /// The comment text (valid UTF-8).
    pub text: String,
    /// Its author: the viewer token's `sub` (empty without auth), so moderators can act on it.
    pub author: String,
}

impl ChatObject {
    /// Encode as one object payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        encode_varint(self.accepted_ms, &mut buf);
        put_string(self.text.as_bytes(), &mut buf);
        put_string(self.author.as_bytes(), &mut buf);
        buf.freeze()
    }

    /// Decode one whole object payload.
    pub fn decode(mut payload: Bytes) -> Result<Self, Refusal> {
        let accepted_ms = varint(&mut payload)?;
        let text = string(&mut payload)?;
        let author = string(&mut payload)?;
        if payload.has_remaining() {
            return Err(Refusal::Malformed);
        }
        let text = String::from_utf8(text.to_vec()).map_err(|_| Refusal::InvalidUtf8)?;
        let author = String::from_utf8(author.to_vec()).map_err(|_| Refusal::InvalidUtf8)?;
        Ok(Self {
            accepted_ms,
            text,
            author,
        })
    }
}

/// One object on the `events` track (origin → everyone): a gift as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftEvent {
    /// Its ledger sequence number; a retry of a recorded gift is announced again with the
    /// same `seq`, so readers deduplicate by it.
    pub seq: u64,
    /// The sender's id for the gift.
    pub client_id: Bytes,
    /// Gift kind.
    pub kind: u64,
    /// Amount.
    pub amount: u64,
}

impl GiftEvent {
    /// Encode as one object payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        encode_varint(self.seq, &mut buf);
        put_string(&self.client_id, &mut buf);
        encode_varint(self.kind, &mut buf);
        encode_varint(self.amount, &mut buf);
        buf.freeze()
    }

    /// Decode one whole object payload.
    pub fn decode(mut payload: Bytes) -> Result<Self, Refusal> {
        let buf = &mut payload;
        let event = Self {
            seq: varint(buf)?,
            client_id: string(buf)?,
            kind: varint(buf)?,
            amount: varint(buf)?,
        };
        if buf.has_remaining() {
            return Err(Refusal::Malformed);
        }
        Ok(event)
    }
}

/// Encode a `likes` track object (the broadcast's cumulative like total) or a `viewers`
/// track object (its live viewer count): one varint.
pub fn encode_total(total: u64) -> Bytes {
    let mut buf = BytesMut::new();
    encode_varint(total, &mut buf);
    buf.freeze()
}

/// Decode a `likes` or `viewers` track object.
pub fn decode_total(mut payload: Bytes) -> Result<u64, Refusal> {
    let total = varint(&mut payload)?;
    if payload.has_remaining() {
        return Err(Refusal::Malformed);
    }
    Ok(total)
}

pub(super) fn varint(buf: &mut Bytes) -> Result<u64, Refusal> {
    decode_varint(buf).map_err(|_| Refusal::Malformed)
}

pub(super) fn string(buf: &mut Bytes) -> Result<Bytes, Refusal> {
    let len = varint(buf)?;
    let len = usize::try_from(len).map_err(|_| Refusal::Malformed)?;
    if len > buf.remaining() {
        return Err(Refusal::Malformed);
    }
    Ok(buf.split_to(len))
}

pub(super) fn put_string(value: &[u8], buf: &mut BytesMut) {
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Up> {
        vec![
            Up::CommentBy {
                room: Bytes::from_static(b"1"),
                text: Bytes::from_static(b"hi"),
                by: Bytes::from_static(b"ann"),
            },
            Up::Moderate(Action::Delete { room: 1, seq: 2 }),
            Up::Moderated {
                by: Bytes::from_static(b"mia"),
                action: Action::Gate(super::super::moderation::Gate::Followers),
            },
            Up::Like {
                source: 0x3fff_ffff_ffff_ffff,
                total: 0,
            },
            Up::Like {
                source: 7,
                total: 1_000_000,
            },
            Up::Comment {
                room: Bytes::from_static(b"12"),
                text: Bytes::from("héllo"),
            },
            Up::Comment {
                room: Bytes::new(),
                text: Bytes::new(),
            },
            Up::Gift {
                client_id: Bytes::from_static(b"c-1"),
                kind: 3,
                amount: 10,
            },
            Up::Viewers { count: 0 },
            Up::Viewers { count: 50_000 },
        ]
    }

    #[test]
    fn up_round_trips() {
        for message in samples() {
            assert_eq!(Up::decode(message.encode()), Ok(message));
        }
    }

    #[test]
    fn every_truncation_and_any_suffix_is_malformed() {
        for message in samples() {
            let bytes = message.encode();
            for cut in 0..bytes.len() {
                assert_eq!(
                    Up::decode(bytes.slice(..cut)),
                    Err(Refusal::Malformed),
                    "{message:?} cut at {cut}"
                );
            }
            let mut longer = BytesMut::from(&bytes[..]);
            longer.put_u8(0);
            assert_eq!(Up::decode(longer.freeze()), Err(Refusal::Malformed));
        }
    }

    #[test]
    fn unknown_type_and_huge_length_are_malformed() {
        assert_eq!(
            Up::decode(Bytes::from_static(&[0x09, 0x00])),
            Err(Refusal::Malformed)
        );
        // A comment whose room claims 2^62-1 bytes.
        let mut buf = BytesMut::new();
        encode_varint(TYPE_COMMENT, &mut buf);
        encode_varint((1 << 62) - 1, &mut buf);
        assert_eq!(Up::decode(buf.freeze()), Err(Refusal::Malformed));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every 1- and 2-byte input, and a deterministic spread of longer ones.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..64usize {
            for _ in 0..256 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let _ = Up::decode(Bytes::from(bytes.clone()));
                let _ = ChatObject::decode(Bytes::from(bytes.clone()));
                let _ = decode_total(Bytes::from(bytes));
            }
        }
    }

    #[test]
    fn down_objects_round_trip() {
        let chat = ChatObject {
            accepted_ms: 1_700_000_000_000,
            text: "hi 👋".into(),
            author: "ann".into(),
        };
        assert_eq!(ChatObject::decode(chat.encode()), Ok(chat));
        assert_eq!(decode_total(encode_total(123_456_789)), Ok(123_456_789));
        let gift = GiftEvent {
            seq: 9,
            client_id: Bytes::from_static(b"c"),
            kind: 2,
            amount: 3,
        };
        assert_eq!(GiftEvent::decode(gift.encode()), Ok(gift.clone()));
        let bytes = gift.encode();
        for cut in 0..bytes.len() {
            assert_eq!(GiftEvent::decode(bytes.slice(..cut)), Err(Refusal::Malformed));
        }
        let mut bad = BytesMut::new();
        encode_varint(1, &mut bad);
        put_string(&[0xff, 0xfe], &mut bad);
        put_string(b"ann", &mut bad);
        assert_eq!(ChatObject::decode(bad.freeze()), Err(Refusal::InvalidUtf8));
    }
}
