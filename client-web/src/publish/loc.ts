/**
 * LOC objects as `banyan-media` writes them (`media/src/loc.rs`, `LocFrame::properties`): every
 * object carries the Timestamp property (0x10: capture time, wall-clock µs since the Unix epoch,
 * no Timescale); the first object of each group also carries the codec configuration (the
 * WebCodecs `description`: 0x0D Video Config, 0x0F Audio Config). Banyan's Decode Offset (0x3A)
 * is never needed here: WebCodecs encoders in realtime mode emit no B-frames.
 */
import type { KeyValuePair } from "../coding";
import { LocProperty } from "../player/loc";

export type MediaKind = "video" | "audio";

/** The Object Properties of one frame of a `kind` track (`config` on a group's first object). */
export function locProperties(kind: MediaKind, captureUs: number, config?: Uint8Array): KeyValuePair[] {
  if (!Number.isSafeInteger(captureUs) || captureUs < 0) {
    throw new RangeError(`a capture timestamp is whole µs since the epoch, not ${captureUs}`);
  }
  const properties: KeyValuePair[] = [{ key: LocProperty.Timestamp, value: BigInt(captureUs) }];
  if (config) properties.push({ key: kind === "video" ? LocProperty.VideoConfig : LocProperty.AudioConfig, value: config });
  return properties;
}

/** Wall-clock microseconds since the Unix epoch, now (the page's clock, sub-ms resolution). */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
