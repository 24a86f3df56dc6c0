/** Track Namespaces and Track Names (draft-18 §2.4.1). */
import { DecodeError } from "./error";
import type { Reader } from "./reader";
import { utf8, type Writer } from "./writer";

export const MAX_NAMESPACE_FIELDS = 32;
export const MAX_FULL_TRACK_NAME_LEN = 4096;

/** An ordered tuple of 0 to 32 non-empty byte fields. */
export type TrackNamespace = Uint8Array[];

/** A namespace from `/`-separated text: `"live/show"` → `("live", "show")`; `""` is empty. */
export function namespaceFromPath(path: string): TrackNamespace {
  if (path === "") return [];
  const fields = path.split("/").map(utf8);
  if (fields.length > MAX_NAMESPACE_FIELDS) throw new RangeError("a namespace has at most 32 fields");
  if (fields.some((f) => f.length === 0)) throw new RangeError("namespace fields must not be empty");
  return fields;
}

export function namespaceToPath(ns: TrackNamespace): string {
  const d = new TextDecoder();
  return ns.map((f) => d.decode(f)).join("/");
}

export function decodeNamespace(r: Reader): TrackNamespace {
  const count = r.varint("namespace field count");
  if (count > MAX_NAMESPACE_FIELDS) throw DecodeError.tooLarge("namespace field count", count, MAX_NAMESPACE_FIELDS);
  const fields: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const field = r.lengthPrefixed("namespace field", MAX_FULL_TRACK_NAME_LEN - total);
    if (field.length === 0) throw DecodeError.invalid("empty namespace field");
    total += field.length;
    fields.push(field);
  }
  return fields;
}

export function encodeNamespace(w: Writer, ns: TrackNamespace): void {
  w.varint(ns.length);
  for (const f of ns) w.lengthPrefixed(f);
}

/** A namespace then a track name, with the 4096-byte Full Track Name limit. */
export function decodeTrack(r: Reader): { namespace: TrackNamespace; name: Uint8Array } {
  const namespace = decodeNamespace(r);
  const used = namespace.reduce((n, f) => n + f.length, 0);
  const name = r.lengthPrefixed("track name", MAX_FULL_TRACK_NAME_LEN - used);
  return { namespace, name };
}
