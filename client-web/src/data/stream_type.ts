/** Unidirectional stream types (draft-18 §3.3) and the SUBGROUP_HEADER type bits (§10.4.2). */
import { DecodeError } from "../coding";

export const FETCH_HEADER = 0x05;
export const SETUP_STREAM = 0x2f00;
export const PADDING_STREAM = 0x132b3e28;
export const PADDING_DATAGRAM = 0x132b3e29;

export type SubgroupIdMode = "zero" | "first-object-id" | "explicit";

export interface SubgroupType {
  properties: boolean;
  subgroupIdMode: SubgroupIdMode;
  endOfGroup: boolean;
  defaultPriority: boolean;
  firstObject: boolean;
}

export function subgroupTypeFromCode(code: number): SubgroupType | undefined {
  // 0b0XX1XXXX: below 0x80 with bit 4 set; subgroup id mode 0b11 is reserved.
  if (code >= 0x80 || (code & 0x10) === 0) return undefined;
  const mode = (code & 0x06) >> 1;
  if (mode === 3) return undefined;
  return {
    properties: (code & 0x01) !== 0,
    subgroupIdMode: mode === 0 ? "zero" : mode === 1 ? "first-object-id" : "explicit",
    endOfGroup: (code & 0x08) !== 0,
    defaultPriority: (code & 0x20) !== 0,
    firstObject: (code & 0x40) !== 0,
  };
}

export function subgroupTypeCode(t: SubgroupType): number {
  const mode = t.subgroupIdMode === "zero" ? 0 : t.subgroupIdMode === "first-object-id" ? 1 : 2;
  return (
    0x10 |
    (mode << 1) |
    (t.properties ? 0x01 : 0) |
    (t.endOfGroup ? 0x08 : 0) |
    (t.defaultPriority ? 0x20 : 0) |
    (t.firstObject ? 0x40 : 0)
  );
}

export type StreamType =
  | { kind: "fetch" }
  | { kind: "setup" }
  | { kind: "padding" }
  | { kind: "subgroup"; subgroup: SubgroupType };

export function streamTypeFromCode(code: number): StreamType {
  if (code === FETCH_HEADER) return { kind: "fetch" };
  if (code === SETUP_STREAM) return { kind: "setup" };
  if (code === PADDING_STREAM) return { kind: "padding" };
  const subgroup = subgroupTypeFromCode(code);
  if (subgroup) return { kind: "subgroup", subgroup };
  throw new DecodeError("unknown-stream-type", `unknown stream type 0x${code.toString(16)}`);
}

export function streamTypeCode(t: StreamType): number {
  switch (t.kind) {
    case "fetch":
      return FETCH_HEADER;
    case "setup":
      return SETUP_STREAM;
    case "padding":
      return PADDING_STREAM;
    case "subgroup":
      return subgroupTypeCode(t.subgroup);
  }
}
