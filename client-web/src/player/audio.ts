/**
 * WebCodecs audio to an AudioWorklet. Decoded PCM is posted to a small ring-buffer worklet that
 * plays it out continuously (silence on underrun, oldest samples shed when more than ~200 ms
 * queue up, so audio never drifts behind video). Audio frames are released by the same
 * jitter-buffer clock as video, which keeps the two in sync.
 */
import type { Frame } from "./jitter";
import type { MediaTrack } from "./catalog";

const WORKLET = `
class BanyanSink extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.channels = options.processorOptions.channels;
    this.max = Math.round(sampleRate * 0.2);
    this.queue = [];
    this.offset = 0;
    this.queued = 0;
    this.port.onmessage = (e) => {
      this.queue.push(e.data);
      this.queued += e.data[0].length;
      while (this.queued > this.max && this.queue.length > 1) {
        const dropped = this.queue.shift();
        this.queued -= dropped[0].length - this.offset;
        this.offset = 0;
      }
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    for (let i = 0; i < n; i++) {
      const chunk = this.queue[0];
      if (!chunk) break;
      for (let c = 0; c < out.length; c++) out[c][i] = chunk[Math.min(c, chunk.length - 1)][this.offset];
      this.offset++;
      this.queued--;
      if (this.offset >= chunk[0].length) { this.queue.shift(); this.offset = 0; }
    }
    return true;
  }
}
registerProcessor("banyan-sink", BanyanSink);
`;

export class AudioRenderer {
  private decoder: AudioDecoder | undefined;
  private context: AudioContext | undefined;
  private node: AudioWorkletNode | undefined;
  private ready: Promise<void> | undefined;
  private needKeyframe = true;
  /** Audio frames decoded. */
  decoded = 0;

  constructor(
    private readonly track: MediaTrack,
    private readonly onError: (message: string) => void,
  ) {}

  /** Create the AudioContext (call from a user gesture where autoplay is restricted). */
  async start(): Promise<void> {
    this.ready ??= this.init();
    return this.ready;
  }

  get state(): AudioContextState | "off" {
    return this.context?.state ?? "off";
  }

  async resume(): Promise<void> {
    await this.context?.resume();
  }

  decode(frame: Frame<{ data: Uint8Array; config?: Uint8Array }>): void {
    if (!this.node) return;
    if (frame.keyframe || !this.decoder) {
      if (!this.decoder || this.decoder.state === "closed") this.configure(frame.data.config ?? this.track.description);
      this.needKeyframe = false;
    }
    const decoder = this.decoder;
    if (!decoder || decoder.state !== "configured" || this.needKeyframe) return;
    try {
      decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: frame.captureUs, data: frame.data.data }));
    } catch (e) {
      this.onError(`audio decode: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  close(): void {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = undefined;
    void this.context?.close();
    this.context = undefined;
    this.node = undefined;
  }

  private async init(): Promise<void> {
    const sampleRate = this.track.samplerate ?? 48_000;
    const context = new AudioContext({ sampleRate, latencyHint: "interactive" });
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    await context.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const channels = this.track.channels ?? 2;
    this.node = new AudioWorkletNode(context, "banyan-sink", {
      outputChannelCount: [channels],
      processorOptions: { channels },
    });
    this.node.connect(context.destination);
    this.context = context;
  }

  private configure(description: Uint8Array | undefined): void {
    const decoder = new AudioDecoder({
      output: (data) => this.play(data),
      error: (e) => {
        this.onError(`audio decoder: ${e.message}`);
        this.needKeyframe = true;
      },
    });
    const config: AudioDecoderConfig = {
      codec: this.track.codec,
      sampleRate: this.track.samplerate ?? 48_000,
      numberOfChannels: this.track.channels ?? 2,
    };
    if (description) config.description = description as Uint8Array<ArrayBuffer>;
    try {
      decoder.configure(config);
      this.decoder = decoder;
    } catch (e) {
      this.onError(`audio configure ${this.track.codec}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private play(data: AudioData): void {
    try {
      const planes: Float32Array[] = [];
      for (let c = 0; c < data.numberOfChannels; c++) {
        const plane = new Float32Array(data.numberOfFrames);
        data.copyTo(plane, { planeIndex: c, format: "f32-planar" });
        planes.push(plane);
      }
      this.node?.port.postMessage(planes, planes.map((p) => p.buffer));
      this.decoded++;
    } finally {
      data.close();
    }
  }
}
