/**
 * Key-Value-Pairs (draft-18 §1.4.3): types are delta-encoded, even types carry one varint,
 * odd types carry a length-prefixed byte string of at most 65535 bytes. Properties (track and
 * object) are sequences of these, bounded by a known byte length.
 */
import { DecodeError } from "./error";
import { Reader, incompleteAs } from "./reader";
import type { Writer } from "./writer";

export const MAX_KVP_VALUE_LEN = 0xffff;

/** One pair with its absolute type: `value` is a bigint for even types, bytes for odd ones. */
export type KeyValuePair = { key: number; value: bigint } | { key: number; value: Uint8Array };

/** Decode pairs until the (bounded) reader is exhausted. Never `incomplete`: the length was known. */
export function decodeKvps(r: Reader): KeyValuePair[] {
  const pairs: KeyValuePair[] = [];
  let key = 0;
  while (r.hasRemaining()) {
    const delta = incompleteAs(
      () => r.varint("key-value pair type"),
      () => DecodeError.invalid("key-value pair"),
    );
    key += delta;
    if (!Number.isSafeInteger(key)) throw DecodeError.invalid("key-value pair type overflow");
    const k = key;
    if (k % 2 === 0) {
      pairs.push({ key: k, value: incompleteAs(() => r.varintBig(), () => DecodeError.kvpFormat(k)) });
    } else {
      const bytes = incompleteAs(
        () => r.lengthPrefixed("key-value pair value", MAX_KVP_VALUE_LEN),
        () => DecodeError.kvpFormat(k),
      );
      pairs.push({ key: k, value: bytes });
    }
  }
  return pairs;
}

/** Encode pairs (sorted stably by key first, as the delta encoding requires). */
export function encodeKvps(w: Writer, pairs: readonly KeyValuePair[]): void {
  let previous = 0;
  for (const pair of sortKvps(pairs)) {
    w.varint(pair.key - previous);
    previous = pair.key;
    if (typeof pair.value === "bigint") w.varint(pair.value);
    else w.lengthPrefixed(pair.value);
  }
}

export function sortKvps(pairs: readonly KeyValuePair[]): KeyValuePair[] {
  return [...pairs].sort((a, b) => a.key - b.key);
}

/** The first varint value with this key. */
export function kvpVarint(pairs: readonly KeyValuePair[], key: number): bigint | undefined {
  for (const p of pairs) if (p.key === key && typeof p.value === "bigint") return p.value;
  return undefined;
}

/** The first byte value with this key. */
export function kvpBytes(pairs: readonly KeyValuePair[], key: number): Uint8Array | undefined {
  for (const p of pairs) if (p.key === key && typeof p.value !== "bigint") return p.value;
  return undefined;
}
