/**
 * WebCodecs video: frames released by the jitter buffer are decoded and drawn to a canvas.
 * Configuration comes from the catalog (codec string, inline description) or from the LOC
 * Video Config property on each group's first object; without a description H.264 is fed as
 * Annex B. A decoder error resets it and waits for the next keyframe.
 *
 * Renditions: a frame may name the track it came from (`VideoPayload.track`). At a keyframe
 * whose track has another codec string, size or description than the decoder's, the decoder is
 * configured again in place: WebCodecs runs a `configure` after the chunks queued before it, so
 * the old rendition's last frames still come out and the picture does not blank.
 */
import type { Frame } from "./jitter";
import type { MediaTrack } from "./catalog";

export interface VideoPayload {
  data: Uint8Array;
  /** The LOC Video Config (WebCodecs description) carried by this object, if any. */
  config?: Uint8Array;
  /** The rendition it belongs to, when not the renderer's own track. */
  track?: MediaTrack;
}

export interface VideoEvents {
  /** A frame was drawn: its capture time (µs since the epoch). */
  onRendered(captureUs: number, width: number, height: number): void;
  /** A frame could not be decoded (counted as dropped). */
  onDropped(count: number): void;
  onError(message: string): void;
}

/** Decoder queue depth beyond which delta frames are shed until the next keyframe. */
const MAX_DECODE_QUEUE = 30;

export class VideoRenderer {
  private decoder: VideoDecoder | undefined;
  private configured: string | undefined;
  private needKeyframe = true;
  private readonly ctx: CanvasRenderingContext2D | null;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly track: MediaTrack,
    private readonly events: VideoEvents,
  ) {
    this.ctx = canvas.getContext("2d");
  }

  /** Chunks waiting in the decoder (0 when there is none). */
  get decodeQueueSize(): number {
    return this.decoder?.decodeQueueSize ?? 0;
  }

  decode(frame: Frame<VideoPayload>): void {
    const track = frame.data.track ?? this.track;
    if (track.synthetic) {
      this.drawSynthetic(frame, track);
      return;
    }
    if (frame.keyframe) {
      const description = frame.data.config ?? track.description;
      const key = `${track.codec}|${track.width ?? 0}x${track.height ?? 0}|${description ? hexOf(description) : "annexb"}`;
      if (!this.decoder || this.decoder.state === "closed" || key !== this.configured) {
        this.configure(track, description, key);
      }
      this.needKeyframe = false;
    }
    const decoder = this.decoder;
    if (!decoder || decoder.state !== "configured" || this.needKeyframe) {
      this.events.onDropped(1);
      return;
    }
    if (!frame.keyframe && decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      this.needKeyframe = true;
      this.events.onDropped(1);
      return;
    }
    try {
      decoder.decode(
        new EncodedVideoChunk({
          type: frame.keyframe ? "key" : "delta",
          timestamp: frame.captureUs,
          data: frame.data.data,
        }),
      );
    } catch (e) {
      this.fail(`decode: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  close(): void {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = undefined;
  }

  /**
   * A synthetic track's payload is filler, not media: draw a card naming the frame instead, and
   * report it played out so the overlay's latency and counters still work.
   */
  private drawSynthetic(frame: Frame<VideoPayload>, track: MediaTrack): void {
    const { canvas, ctx } = this;
    const width = track.width ?? canvas.width;
    const height = track.height ?? canvas.height;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    if (ctx) {
      ctx.fillStyle = `hsl(${(frame.group * 47) % 360}, 45%, 25%)`;
      ctx.fillRect(0, 0, width, height);
      ctx.fillStyle = "#fff";
      ctx.font = `${Math.max(16, Math.round(height / 14))}px monospace`;
      ctx.textAlign = "center";
      ctx.fillText("synthetic source (no picture)", width / 2, height / 2 - height / 12);
      ctx.fillText(`group ${frame.group}  frame ${frame.object}`, width / 2, height / 2 + height / 12);
    }
    this.events.onRendered(frame.captureUs, width, height);
  }

  private configure(track: MediaTrack, description: Uint8Array | undefined, key: string): void {
    const config: VideoDecoderConfig = { codec: track.codec, optimizeForLatency: true };
    if (description) config.description = description as Uint8Array<ArrayBuffer>;
    if (track.width) config.codedWidth = track.width;
    if (track.height) config.codedHeight = track.height;
    if (this.decoder?.state === "configured") {
      // Another rendition: configure again in place, after the chunks already queued.
      try {
        this.decoder.configure(config);
        this.configured = key;
        return;
      } catch {
        // not accepted in place: start a fresh decoder below
      }
    }
    this.close();
    const decoder = new VideoDecoder({
      output: (f) => this.render(f),
      error: (e) => this.fail(`decoder: ${e.message}`),
    });
    try {
      decoder.configure(config);
    } catch (e) {
      this.events.onError(`configure ${track.codec}: ${e instanceof Error ? e.message : String(e)}`);
      decoder.close();
      return;
    }
    this.decoder = decoder;
    this.configured = key;
  }

  private render(f: VideoFrame): void {
    try {
      if (this.canvas.width !== f.displayWidth || this.canvas.height !== f.displayHeight) {
        this.canvas.width = f.displayWidth;
        this.canvas.height = f.displayHeight;
      }
      this.ctx?.drawImage(f, 0, 0);
      this.events.onRendered(f.timestamp, f.displayWidth, f.displayHeight);
    } finally {
      f.close();
    }
  }

  private fail(message: string): void {
    this.events.onError(message);
    this.needKeyframe = true;
    this.configured = undefined;
    this.close();
  }
}

function hexOf(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
