//! The interaction payloads a viewer sends and a watcher reads, written from
//! `docs/interactions.md` as a third-party client would (every integer a MoQT varint, every
//! string a varint length then its bytes).

use banyan_moq::coding::{decode_varint, encode_varint};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `interact` object type LIKE: `source` varint, `total` varint.
pub const TYPE_LIKE: u64 = 0x1;
/// `interact` object type COMMENT: `room` string, `text` string.
pub const TYPE_COMMENT: u64 = 0x2;

/// Comment `seq` of a room is object `seq % CHAT_GROUP` of group `seq / CHAT_GROUP`.
pub const CHAT_GROUP: u64 = 64;

/// A LIKE payload: `source` has sent `total` likes so far.
pub fn like(source: u64, total: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(17);
    encode_varint(TYPE_LIKE, &mut buf);
    encode_varint(source, &mut buf);
    encode_varint(total, &mut buf);
    buf.freeze()
}

/// A COMMENT payload for `room`.
pub fn comment(room: &str, text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(room.len() + text.len() + 10);
    encode_varint(TYPE_COMMENT, &mut buf);
    put_string(room.as_bytes(), &mut buf);
    put_string(text.as_bytes(), &mut buf);
    buf.freeze()
}

/// The total carried by one `likes` object; `None` if it is not exactly one varint.
pub fn decode_total(mut payload: Bytes) -> Option<u64> {
    let total = decode_varint(&mut payload).ok()?;
    (!payload.has_remaining()).then_some(total)
}

/// The text of one `chat/<room>` object (`accepted_ms` varint, `text` string, `author`
/// string); `None` if malformed or not UTF-8.
pub fn decode_chat_text(mut payload: Bytes) -> Option<String> {
    let _accepted_ms = decode_varint(&mut payload).ok()?;
    let len = usize::try_from(decode_varint(&mut payload).ok()?).ok()?;
    if payload.remaining() < len {
        return None;
    }
    let text = payload.split_to(len);
    let author = usize::try_from(decode_varint(&mut payload).ok()?).ok()?;
    if payload.remaining() != author {
        return None;
    }
    String::from_utf8(text.to_vec()).ok()
}

/// The text of a bench comment: who sent it, its number, and when (µs since the Unix epoch).
pub fn comment_text(viewer: u64, n: u64, sent_us: u64) -> String {
    format!("bench {viewer} {n} {sent_us}")
}

/// The send time (µs since the Unix epoch) in a [`comment_text`]; `None` for other text.
pub fn comment_sent_us(text: &str) -> Option<u64> {
    let mut fields = text.strip_prefix("bench ")?.split(' ');
    let _viewer = fields.next()?;
    let _n = fields.next()?;
    let sent = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(sent)
}

fn put_string(bytes: &[u8], buf: &mut BytesMut) {
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_bytes_match_the_documented_layout() {
        // type 0x1, source 5, total 300 (two-byte varint: prefix 0b10, 14 bits).
        assert_eq!(like(5, 300).as_ref(), &[0x01, 0x05, 0x81, 0x2c]);
    }

    #[test]
    fn comment_bytes_match_the_documented_layout() {
        assert_eq!(comment("0", "hi").as_ref(), &[0x02, 0x01, b'0', 0x02, b'h', b'i']);
    }

    #[test]
    fn totals_and_chat_objects_decode() {
        assert_eq!(decode_total(Bytes::from_static(&[0x81, 0x2c])), Some(300));
        assert_eq!(decode_total(Bytes::from_static(&[0x81])), None);
        assert_eq!(decode_total(Bytes::from_static(&[0x01, 0x00])), None);
        let mut chat = BytesMut::new();
        encode_varint(1_700_000_000_000, &mut chat);
        put_string(b"hello", &mut chat);
        put_string(b"ann", &mut chat);
        assert_eq!(decode_chat_text(chat.freeze()), Some("hello".into()));
        assert_eq!(decode_chat_text(Bytes::from_static(&[0x01, 0x03, b'a'])), None);
    }

    #[test]
    fn comment_text_carries_its_send_time() {
        let text = comment_text(3, 7, 1_234_567);
        assert_eq!(comment_sent_us(&text), Some(1_234_567));
        assert_eq!(comment_sent_us("hello"), None);
        assert_eq!(comment_sent_us("bench 1 2 3 4"), None);
    }
}
