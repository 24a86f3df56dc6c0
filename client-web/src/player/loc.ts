/**
 * LOC object properties (draft-ietf-moq-loc) as Banyan's publisher writes them
 * (`media/src/loc.rs`): every object carries Timestamp (0x10, wall-clock µs since the Unix epoch,
 * no Timescale); the first object of each group carries the codec config (0x0D video, 0x0F audio).
 */
import { kvpBytes, kvpVarint, type KeyValuePair } from "../coding";

export const LocProperty = {
  Timestamp: 0x10,
  Timescale: 0x08,
  VideoConfig: 0x0d,
  AudioConfig: 0x0f,
} as const;

export interface LocMeta {
  /** Capture time, µs since the Unix epoch; undefined when absent or not wall-clock. */
  captureUs: number | undefined;
  config: Uint8Array | undefined;
}

export function locMeta(properties: readonly KeyValuePair[], role: "video" | "audio"): LocMeta {
  const ts = kvpVarint(properties, LocProperty.Timestamp);
  const mediaTime = kvpVarint(properties, LocProperty.Timescale) !== undefined;
  return {
    captureUs: ts === undefined || mediaTime ? undefined : Number(ts),
    config: kvpBytes(properties, role === "video" ? LocProperty.VideoConfig : LocProperty.AudioConfig),
  };
}
