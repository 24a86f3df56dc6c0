/**
 * Objects (draft-18 §10.2): status, Object Properties and the well-known property types.
 * Mirrors `banyan_moq::data::object`.
 */
import { DecodeError, Reader, decodeKvps, encodeKvps, encodeWith, type KeyValuePair, type Writer } from "../coding";

export const MAX_OBJECT_PROPERTIES_LEN = 1 << 20;

export const PropertyType = {
  ImmutableProperties: 0x0b,
  /** DEFAULT_PUBLISHER_GROUP_ORDER (Track scope, e.g. in SUBSCRIBE_OK). */
  DefaultPublisherGroupOrder: 0x22,
  PriorGroupIdGap: 0x3c,
  PriorObjectIdGap: 0x3e,
} as const;

export const ObjectStatus = { Normal: 0, EndOfGroup: 3, EndOfTrack: 4 } as const;
export type ObjectStatus = (typeof ObjectStatus)[keyof typeof ObjectStatus];

export function decodeStatus(r: Reader): ObjectStatus {
  const code = r.varint("object status");
  if (code === 0 || code === 3 || code === 4) return code;
  throw DecodeError.invalid("object status");
}

/** Properties Length then Key-Value-Pairs; the length is refused above 1 MiB before buffering. */
export function decodeProperties(r: Reader): KeyValuePair[] {
  const len = r.varint("object properties length");
  if (len > MAX_OBJECT_PROPERTIES_LEN) {
    throw DecodeError.tooLarge("object properties length", len, MAX_OBJECT_PROPERTIES_LEN);
  }
  return decodeKvps(r.sub(len));
}

export function encodeProperties(w: Writer, props: readonly KeyValuePair[]): void {
  w.lengthPrefixed(encodeWith((p) => encodeKvps(p, props)));
}

/**
 * Every value of `key`, looking inside Immutable Properties (0x0B) too, as receivers must.
 * Malformed immutable properties are ignored here (the relay validates them).
 */
export function findProperty(props: readonly KeyValuePair[], key: number): KeyValuePair["value"][] {
  const out: KeyValuePair["value"][] = [];
  for (const p of props) {
    if (p.key === key) out.push(p.value);
    if (p.key === PropertyType.ImmutableProperties && typeof p.value !== "bigint") {
      try {
        for (const inner of decodeKvps(new Reader(p.value))) if (inner.key === key) out.push(inner.value);
      } catch {
        // not our concern here
      }
    }
  }
  return out;
}
