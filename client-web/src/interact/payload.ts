/**
 * Interaction object payloads (docs/interactions.md), mirroring `relay/src/interact/payload.rs`.
 * Every integer is a MoQT varint; a *string* is a varint length then that many bytes. A payload
 * is one whole object, so running out of bytes, or bytes left over, is malformed.
 */
import { DecodeError, Reader, Writer, incompleteAs } from "../coding";

/** Up-track (`interact`) object types. */
export const UpType = { Like: 0x1, Comment: 0x2, Gift: 0x3 } as const;

/** The longest string field accepted when decoding (the relay refuses far less). */
const MAX_STRING = 1 << 16;

/** One object on an `interact` track (viewer → edge). */
export type Up =
  /** Cumulative likes sent under `source` (a random 62-bit id picked once per publication). */
  | { type: "like"; source: bigint; total: number }
  /** A comment for one chat room (`room` as the control plane assigned it: "0", "1", …). */
  | { type: "comment"; room: string; text: string }
  /** A gift; `clientId` (1 to 64 bytes) makes retries idempotent. */
  | { type: "gift"; clientId: string; kind: number; amount: number };

export function encodeUp(up: Up): Uint8Array {
  const w = new Writer();
  switch (up.type) {
    case "like":
      w.varint(UpType.Like).varint(up.source).varint(up.total);
      break;
    case "comment":
      w.varint(UpType.Comment).string(up.room).string(up.text);
      break;
    case "gift":
      w.varint(UpType.Gift).string(up.clientId).varint(up.kind).varint(up.amount);
      break;
  }
  return w.finish();
}

export function decodeUp(payload: Uint8Array): Up {
  return whole(payload, (r) => {
    const type = r.varint("interaction type");
    switch (type) {
      case UpType.Like:
        return { type: "like", source: r.varintBig(), total: r.varint("like total") };
      case UpType.Comment:
        return { type: "comment", room: r.string("room", MAX_STRING), text: r.string("comment text", MAX_STRING) };
      case UpType.Gift:
        return {
          type: "gift",
          clientId: r.string("gift client id", MAX_STRING),
          kind: r.varint("gift kind"),
          amount: r.varint("gift amount"),
        };
      default:
        throw DecodeError.invalid(`unknown interaction type 0x${type.toString(16)}`);
    }
  });
}

/** One object of a `chat/<room>` track: comment `seq` is object `seq % 64` of group `seq / 64`. */
export interface ChatObject {
  /** When the origin accepted the comment, ms since the Unix epoch. */
  acceptedMs: number;
  text: string;
}

/** Comments per group on a `chat/<room>` track. */
export const CHAT_GROUP = 64;

export function encodeChat(c: ChatObject): Uint8Array {
  return new Writer().varint(c.acceptedMs).string(c.text).finish();
}

export function decodeChat(payload: Uint8Array): ChatObject {
  return whole(payload, (r) => ({ acceptedMs: r.varint("accepted ms"), text: r.string("comment text", MAX_STRING) }));
}

/** One object of the `events` track: a gift as the origin's ledger recorded it. */
export interface GiftEvent {
  /** Ledger sequence (increasing, may have gaps); a retried gift is announced with the same seq. */
  seq: number;
  clientId: string;
  kind: number;
  amount: number;
}

export function encodeGiftEvent(e: GiftEvent): Uint8Array {
  return new Writer().varint(e.seq).string(e.clientId).varint(e.kind).varint(e.amount).finish();
}

export function decodeGiftEvent(payload: Uint8Array): GiftEvent {
  return whole(payload, (r) => ({
    seq: r.varint("gift seq"),
    clientId: r.lossyString("gift client id", MAX_STRING),
    kind: r.varint("gift kind"),
    amount: r.varint("gift amount"),
  }));
}

/** A `likes` track object (the broadcast's cumulative like total) or a `viewers` track object (its live viewer count). */
export function encodeTotal(total: number): Uint8Array {
  return new Writer().varint(total).finish();
}

export function decodeTotal(payload: Uint8Array): number {
  return whole(payload, (r) => r.varint("like total"));
}

/** Refusal codes the edge uses to STOP_SENDING a refused interaction stream. */
export const Refusal = {
  0x1001: "rate_limited",
  0x1002: "too_large",
  0x1003: "invalid_utf8",
  0x1004: "bad_room",
  0x1005: "malformed",
  0x1006: "unavailable",
} as const satisfies Record<number, string>;

/** The label of a refusal code, e.g. `rate_limited` for 0x1001. */
export function refusalLabel(code: number): string {
  return (Refusal as Record<number, string>)[code] ?? `code 0x${code.toString(16)}`;
}

function whole<T>(payload: Uint8Array, f: (r: Reader) => T): T {
  const r = new Reader(payload);
  const value = incompleteAs(
    () => f(r),
    () => DecodeError.invalid("interaction payload ends inside a field"),
  );
  if (r.hasRemaining()) throw DecodeError.invalid("bytes after the interaction payload");
  return value;
}
