/**
 * The MSF catalog a browser publisher writes on the `catalog` track, shaped as `banyan-media`
 * writes it (`media/src/catalog.rs`: `Catalog::live`, `Track`, `set_init_data`, the field order
 * of its serde structs): `version` "draft-01", `generatedAt` (ms), one LOC track per medium with
 * render group 1, the codec's `description` as inline base64 init data `<name>-init` referenced by
 * `initRef`. `completeCatalog` is what ends a broadcast (`Catalog::complete`).
 */
export const MSF_VERSION = "draft-01";

export interface VideoTrackInfo {
  name: string;
  codec: string;
  width: number;
  height: number;
  framerate?: number;
  /** Target bitrate, bits per second. */
  bitrate: number;
  description?: Uint8Array;
}

export interface AudioTrackInfo {
  name: string;
  codec: string;
  samplerate: number;
  channels: number;
  bitrate: number;
  description?: Uint8Array;
}

/** An independent live catalog of `video` and/or `audio`, stamped `nowMs`. */
export function liveCatalog(nowMs: number, video?: VideoTrackInfo, audio?: AudioTrackInfo): Record<string, unknown> {
  const tracks: Record<string, unknown>[] = [];
  const initDataList: { id: string; type: "inline"; data: string }[] = [];
  const init = (name: string, description: Uint8Array | undefined) => {
    if (!description) return undefined;
    const id = `${name}-init`;
    initDataList.push({ id, type: "inline", data: base64(description) });
    return id;
  };
  if (video) {
    tracks.push(
      defined({
        name: video.name,
        packaging: "loc",
        isLive: true,
        role: "video",
        renderGroup: 1,
        initRef: init(video.name, video.description),
        codec: video.codec,
        framerate: video.framerate,
        bitrate: video.bitrate,
        width: video.width,
        height: video.height,
      }),
    );
  }
  if (audio) {
    tracks.push(
      defined({
        name: audio.name,
        packaging: "loc",
        isLive: true,
        role: "audio",
        renderGroup: 1,
        initRef: init(audio.name, audio.description),
        codec: audio.codec,
        bitrate: audio.bitrate,
        samplerate: audio.samplerate,
        channelConfig: String(audio.channels),
      }),
    );
  }
  const catalog: Record<string, unknown> = { version: MSF_VERSION, generatedAt: Math.floor(nowMs), tracks };
  if (initDataList.length > 0) catalog["initDataList"] = initDataList;
  return catalog;
}

/** The catalog that ends a live broadcast: complete, with no tracks. */
export function completeCatalog(nowMs: number): Record<string, unknown> {
  return { version: MSF_VERSION, generatedAt: Math.floor(nowMs), isComplete: true, tracks: [] };
}

/** The catalog object's payload (compact JSON, UTF-8). */
export function catalogBytes(catalog: Record<string, unknown>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(catalog));
}

/**
 * OpusHead (RFC 7845 §5.1, little-endian) for an encoder that gives no `description`: version 1,
 * `channels`, pre-skip `preSkip` samples, the input sample rate, gain 0, mapping family 0.
 */
export function opusHead(channels: number, sampleRate: number, preSkip = 0): Uint8Array {
  const head = new Uint8Array(19);
  head.set(new TextEncoder().encode("OpusHead"));
  const view = new DataView(head.buffer);
  view.setUint8(8, 1);
  view.setUint8(9, channels);
  view.setUint16(10, preSkip, true);
  view.setUint32(12, sampleRate, true);
  view.setInt16(16, 0, true);
  view.setUint8(18, 0);
  return head;
}

function defined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
