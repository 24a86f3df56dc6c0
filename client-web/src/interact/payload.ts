/**
 * Interaction object payloads (docs/interactions.md), mirroring `relay/src/interact/payload.rs`.
 * Every integer is a MoQT varint; a *string* is a varint length then that many bytes. A payload
 * is one whole object, so running out of bytes, or bytes left over, is malformed.
 */
import { DecodeError, Reader, Writer, incompleteAs } from "../coding";

/** Up-track (`interact`) object types. */
export const UpType = { Like: 0x1, Comment: 0x2, Gift: 0x3, Moderate: 0x5 } as const;

/** The longest string field accepted when decoding (the relay refuses far less). */
const MAX_STRING = 1 << 16;

/** One object on an `interact` track (viewer → edge). */
export type Up =
  /** Cumulative likes sent under `source` (a random 62-bit id picked once per publication). */
  | { type: "like"; source: bigint; total: number }
  /** A comment for one chat room (`room` as the control plane assigned it: "0", "1", …). */
  | { type: "comment"; room: string; text: string }
  /** A gift; `clientId` (1 to 64 bytes) makes retries idempotent. */
  | { type: "gift"; clientId: string; kind: number; amount: number }
  /** A moderation action (the edge refuses it as `not_moderator` without the token's `mod` claim). */
  | { type: "moderate"; action: ModAction };

/** Who may comment: everybody, followers (token claim `fol` or `paid`), subscribers (`paid`). */
export type Gate = "open" | "followers" | "subscribers";
const GATES: Gate[] = ["open", "followers", "subscribers"];

/** A moderation action, mirroring `relay/src/interact/moderation.rs`. */
export type ModAction =
  /** Remove comment `seq` of `room` everywhere. */
  | { kind: "delete"; room: number; seq: number }
  /** Refuse `sub`'s comments for `secs` seconds (0 lifts it). */
  | { kind: "timeout"; sub: string; secs: number }
  /** Refuse `sub`'s comments and close their sessions until unbanned. */
  | { kind: "ban"; sub: string }
  | { kind: "unban"; sub: string }
  /** One comment per viewer per `secs` seconds (0: off). */
  | { kind: "slow"; secs: number }
  | { kind: "gate"; gate: Gate };

const MOD_KINDS = ["delete", "timeout", "ban", "unban", "slow", "gate"] as const;

function writeAction(w: Writer, a: ModAction): void {
  w.varint(MOD_KINDS.indexOf(a.kind));
  switch (a.kind) {
    case "delete":
      w.varint(a.room).varint(a.seq);
      break;
    case "timeout":
      w.string(a.sub).varint(a.secs);
      break;
    case "ban":
    case "unban":
      w.string(a.sub);
      break;
    case "slow":
      w.varint(a.secs);
      break;
    case "gate":
      w.varint(GATES.indexOf(a.gate));
      break;
  }
}

function readAction(r: Reader): ModAction {
  const kind = MOD_KINDS[r.varint("moderation action")];
  switch (kind) {
    case "delete":
      return { kind, room: r.varint("room"), seq: r.varint("seq") };
    case "timeout":
      return { kind, sub: r.string("sub", MAX_STRING), secs: r.varint("secs") };
    case "ban":
    case "unban":
      return { kind, sub: r.string("sub", MAX_STRING) };
    case "slow":
      return { kind, secs: r.varint("secs") };
    case "gate": {
      const gate = GATES[r.varint("gate")];
      if (!gate) throw DecodeError.invalid("unknown gate");
      return { kind, gate };
    }
    default:
      throw DecodeError.invalid("unknown moderation action");
  }
}

/** One words-long description of an action (`ban eve`, `delete 0#17`), as the relay's action log. */
export function describeAction(a: ModAction): string {
  switch (a.kind) {
    case "delete":
      return `delete ${a.room}#${a.seq}`;
    case "timeout":
      return `timeout ${a.sub} ${a.secs}s`;
    case "ban":
    case "unban":
      return `${a.kind} ${a.sub}`;
    case "slow":
      return `slow ${a.secs}s`;
    case "gate":
      return `gate ${a.gate}`;
  }
}

/** A broadcast's moderation state, as every `mod` object carries it whole. */
export interface ModState {
  slowSecs: number;
  gate: Gate;
  bans: string[];
  /** Timed-out viewers and when their timeout ends (ms since the Unix epoch). */
  timeouts: Map<string, number>;
  /** Deleted comments as `room#seq`. */
  deleted: Set<string>;
}

/** One object of the origin's `mod` track: an action as recorded (none in the first) and the state after it. */
export interface ModUpdate {
  seq: number;
  atMs: number;
  by: string;
  action: ModAction | undefined;
  state: ModState;
}

export function decodeModUpdate(payload: Uint8Array): ModUpdate {
  return whole(payload, (r) => {
    const seq = r.varint("seq");
    const atMs = r.varint("at ms");
    const by = r.lossyString("moderator", MAX_STRING);
    const hasAction = r.varint("has action");
    const action = hasAction === 1 ? readAction(r) : undefined;
    if (hasAction > 1) throw DecodeError.invalid("bad action flag");
    const slowSecs = r.varint("slow secs");
    const gate = GATES[r.varint("gate")];
    if (!gate) throw DecodeError.invalid("unknown gate");
    const bans: string[] = [];
    for (let n = r.varint("bans"); n > 0; n--) bans.push(r.string("sub", MAX_STRING));
    const timeouts = new Map<string, number>();
    for (let n = r.varint("timeouts"); n > 0; n--) timeouts.set(r.string("sub", MAX_STRING), r.varint("until"));
    const deleted = new Set<string>();
    for (let n = r.varint("deleted"); n > 0; n--) deleted.add(`${r.varint("room")}#${r.varint("seq")}`);
    return { seq, atMs, by, action, state: { slowSecs, gate, bans, timeouts, deleted } };
  });
}

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
    case "moderate":
      w.varint(UpType.Moderate);
      writeAction(w, up.action);
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
      case UpType.Moderate:
        return { type: "moderate", action: readAction(r) };
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
  /** Its author: the viewer token's `sub` (empty without auth). */
  author: string;
}

/** Comments per group on a `chat/<room>` track. */
export const CHAT_GROUP = 64;

export function encodeChat(c: ChatObject): Uint8Array {
  return new Writer().varint(c.acceptedMs).string(c.text).string(c.author).finish();
}

export function decodeChat(payload: Uint8Array): ChatObject {
  return whole(payload, (r) => ({
    acceptedMs: r.varint("accepted ms"),
    text: r.string("comment text", MAX_STRING),
    author: r.lossyString("comment author", MAX_STRING),
  }));
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
  0x1007: "banned",
  0x1008: "timed_out",
  0x1009: "slow_mode",
  0x100a: "gated",
  0x100b: "not_moderator",
  0x100c: "pending",
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
