import type { Reader } from "./reader";
import type { Writer } from "./writer";

/** A position in a track: `{Group, Object}` (draft-18 §1.4.2), ordered group-major. */
export interface Location {
  group: number;
  object: number;
}

export function decodeLocation(r: Reader): Location {
  return { group: r.varint("group id"), object: r.varint("object id") };
}

export function encodeLocation(w: Writer, l: Location): void {
  w.varint(l.group).varint(l.object);
}

export function compareLocations(a: Location, b: Location): number {
  return a.group - b.group || a.object - b.object;
}
