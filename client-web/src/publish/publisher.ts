/**
 * Publishing a `MediaStream` (camera and microphone, or a screen) as a Banyan broadcast, the way
 * `banyan-publish` does (`publisher/src/publish.rs`, `broadcast.rs`):
 *
 * - frames come from `MediaStreamTrackProcessor`; each is stamped with the page's wall clock when
 *   it is read (its capture timestamp, LOC property 0x10) and goes to a WebCodecs encoder unless
 *   the encoder already holds {@link MAX_VIDEO_QUEUE} frames (then it is dropped, never queued);
 * - video: H.264 (`avc1.42e0LL`, constrained baseline, `avc: {format: "avc"}` so the decoder
 *   config's `description` is the avcC the player and fMP4 muxers expect), falling back to VP8
 *   then VP9 where the browser cannot encode H.264 (`stats.videoCodec`, `stats.codecNote`); a
 *   keyframe every GOP ({@link KeyframePolicy}) and one group per GOP; `realtime` latency mode;
 * - audio: Opus, groups of 500 ms;
 * - one MoQT group per GOP on track `video` (priority 128), `audio` (64) and the MSF catalog on
 *   `catalog` (0, a new group per version), group IDs from the wall-clock ms at start;
 * - PUBLISH_NAMESPACE over the session the player would use (WebTransport, or QMux over
 *   WebSocket), then each SUBSCRIBE from the relay (one per track) is answered with SUBSCRIBE_OK
 *   and subgroup streams from the next group on; a subscription whose groups back up loses its
 *   oldest ones ({@link GroupWindow});
 * - a relay that goes away (GOAWAY, a failure) is reconnected with backoff (100 ms doubling to
 *   2 s) and the namespace published again, the encoders running meanwhile; new subscriptions
 *   start at the next group, which is made at once (a keyframe);
 * - `stop()`: the complete catalog, the last groups finished, PUBLISH_DONE on every
 *   subscription, the namespace withdrawn, the session closed.
 */
import { SessionErrorCode, type KeyValuePair } from "../coding";
import { PropertyType } from "../data";
import { GroupOrder } from "../message";
import { connectRelay, type ChooseOptions, type RelayUrls } from "../session/choose";
import type { Publication, SubgroupWriter } from "../session/publication";
import type { IncomingSubscribe, NamespacePublication } from "../session/serve";
import type { Session } from "../session/session";
import type { TransportKind } from "../session/transport";
import {
  catalogBytes,
  completeCatalog,
  liveCatalog,
  opusHead,
  type AudioTrackInfo,
  type VideoTrackInfo,
} from "./catalog";
import {
  AudioGroups,
  EncodeGate,
  GroupWindow,
  KeyframePolicy,
  MAX_LAG,
  TrackGroups,
  firstGroupId,
} from "./groups";
import { refreshDelayMs, tokenExpiry } from "../session/token";
import { locProperties, nowUs, type MediaKind } from "./loc";

/** Frames the video encoder may hold before new ones are dropped. */
export const MAX_VIDEO_QUEUE = 3;
/** Audio frames (10–20 ms each) the audio encoder may hold before new ones are dropped. */
export const MAX_AUDIO_QUEUE = 16;
export const VIDEO_PRIORITY = 128;
export const AUDIO_PRIORITY = 64;
export const CATALOG_PRIORITY = 0;
/** How long `stop()` lets the last groups and PUBLISH_DONEs drain before closing (publisher DRAIN). */
export const DRAIN_MS = 1000;

export interface PublisherOptions {
  /** The broadcast's namespace, e.g. `live/me`. */
  broadcast: string;
  stream: MediaStream;
  /** Video target bitrate, bits per second (default 2.5 Mbit/s). */
  videoBitrate?: number;
  /** Audio target bitrate (default 64 kbit/s). */
  audioBitrate?: number;
  /** Keyframe interval and group length, ms (default 1000). */
  gopMs?: number;
  /** Codec strings to try in order instead of H.264 → VP8 → VP9 (e.g. `["vp8"]`). */
  videoCodecs?: string[];
  /** Called about once a second with the stats. */
  onStats?: (stats: PublishStats) => void;
  /**
   * Fetch a fresh token for the current one (e.g. `refreshFromControl`); with it the publisher
   * hands the relay a fresh token (REQUEST_UPDATE on its PUBLISH_NAMESPACE) ahead of expiry.
   * Without it, the relay ends the session 5 s after the token's `exp`.
   */
  refreshToken?: (token: string) => Promise<string>;
}

export interface PublishStats {
  state: "connecting" | "live" | "reconnecting" | "stopped" | "error";
  broadcast: string;
  relay: string;
  transport: TransportKind | undefined;
  /** The WebCodecs codec string in use, and why it is not H.264 if it is not. */
  videoCodec: string | undefined;
  codecNote: string | undefined;
  width: number | undefined;
  height: number | undefined;
  /** Video frames read from the track, handed to the encoder, dropped because its queue was full. */
  framesCaptured: number;
  framesEncoded: number;
  framesDropped: number;
  /** Video objects written to at least one subscription. */
  framesSent: number;
  audioFramesEncoded: number;
  /** The video encoder's queue now, and the largest seen. */
  encodeQueue: number;
  maxEncodeQueue: number;
  /** Video groups started, and groups abandoned on some subscription (sent too late). */
  groups: number;
  groupsAbandoned: number;
  /** Payload bytes written to subscriptions (all tracks), and their rate over the last second. */
  bytesSent: number;
  bitrateKbps: number;
  /** Relay subscriptions being served, per track. */
  subscribers: Record<string, number>;
  /** The first group ID (wall-clock ms at start). */
  firstGroup: number;
  /** Sessions re-established after the first (GOAWAY or a lost relay). */
  reconnects: number;
  /** Tokens refreshed with the relay (see {@link PublisherOptions.refreshToken}). */
  tokenRefreshes: number;
  lastError: string | undefined;
}

/** One subgroup stream being sent: writes are chained in order; it can be abandoned (reset). */
class GroupStream {
  private chain: Promise<SubgroupWriter | undefined>;
  private abandoned = false;

  constructor(
    readonly group: number,
    publication: Publication,
    priority: number,
  ) {
    this.chain = publication.openSubgroup(group, { priority, properties: true }).catch(() => undefined);
  }

  write(object: number, payload: Uint8Array, properties: KeyValuePair[]): void {
    this.chain = this.chain.then(async (w) => {
      if (!w || this.abandoned) return w;
      try {
        await w.write(object, payload, properties);
        return w;
      } catch {
        return undefined;
      }
    });
  }

  /** FIN once everything queued is written; resolves then (or on failure). */
  finish(): Promise<void> {
    return this.chain.then(async (w) => {
      if (w && !this.abandoned) await w.finish().catch(() => {});
    });
  }

  abandon(): void {
    this.abandoned = true;
    void this.chain.then((w) => w?.abort());
  }
}

/** One relay subscription of a media track: from the next group on, oldest groups abandoned. */
class TrackSubscriber {
  private readonly window: GroupWindow;
  private readonly streams = new Map<number, GroupStream>();
  private current: GroupStream | undefined;

  constructor(
    readonly publication: Publication,
    private readonly priority: number,
    budgetMs: number,
    private readonly onAbandoned: () => void,
  ) {
    this.window = new GroupWindow(MAX_LAG, budgetMs);
  }

  /** One object; `object === 0` starts its group. False when it was not sent (not started yet). */
  write(group: number, object: number, payload: Uint8Array, properties: KeyValuePair[]): boolean {
    const now = performance.now();
    if (object === 0) {
      if (this.current) this.close(this.current);
      const stream = new GroupStream(group, this.publication, this.priority);
      this.streams.set(group, stream);
      this.current = stream;
      this.abandon(this.window.start(group, now));
    } else {
      this.abandon(this.window.overdue(now));
    }
    if (this.current?.group !== group) return false;
    this.current.write(object, payload, properties);
    return true;
  }

  /** Finish the group being written; resolves when its stream is closed. */
  async end(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (current) await this.close(current);
  }

  private close(stream: GroupStream): Promise<void> {
    return stream.finish().then(() => {
      this.window.finished(stream.group);
      this.streams.delete(stream.group);
    });
  }

  private abandon(groups: number[]): void {
    for (const g of groups) {
      const stream = this.streams.get(g);
      if (!stream) continue;
      stream.abandon();
      this.streams.delete(g);
      if (stream === this.current) this.current = undefined;
      this.onAbandoned();
    }
  }
}

/** A media track: numbering, its codec configuration, the subscriptions it feeds. */
class OutTrack {
  readonly groups: TrackGroups;
  config: Uint8Array | undefined;
  readonly subscribers = new Set<TrackSubscriber>();
  frames = 0;

  constructor(
    readonly name: string,
    readonly kind: MediaKind,
    readonly priority: number,
    firstGroup: number,
  ) {
    this.groups = new TrackGroups(firstGroup);
  }

  /** Write one frame; returns the payload bytes handed to subscriptions (0 when none took it). */
  write(captureUs: number, payload: Uint8Array, newGroup: boolean): number {
    const at = this.groups.write(newGroup);
    if (!at) return 0;
    this.frames++;
    const properties = locProperties(this.kind, captureUs, at.object === 0 ? this.config : undefined);
    let sent = 0;
    for (const s of this.subscribers) {
      if (s.write(at.group, at.object, payload, properties)) sent += payload.length;
    }
    return sent;
  }
}

/** H.264 level for a frame size: 3.1 up to 720p, 4.0 up to 1080p, 5.0, then 5.1. */
export function avcCodecFor(width: number, height: number): string {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const level = mbs <= 3600 ? 0x1f : mbs <= 8192 ? 0x28 : mbs <= 22080 ? 0x32 : 0x33;
  return `avc1.42e0${level.toString(16)}`;
}

/** The codecs tried, in order: H.264 for the size, then VP8 and VP9. */
export function videoCandidates(width: number, height: number, preferred?: string[]): string[] {
  return preferred?.length ? preferred : [avcCodecFor(width, height), "vp8", "vp09.00.10.08"];
}

/** A browser publisher; see {@link publish} in `api.ts`. */
export class Publisher {
  readonly stats: PublishStats;
  /** Resolves once the namespace is published (rejects if connecting or PUBLISH_NAMESPACE fails). */
  readonly ready: Promise<void>;
  private session: Session | undefined;
  private namespace: NamespacePublication | undefined;
  private readonly video: OutTrack;
  private readonly audio: OutTrack;
  private readonly catalogSubs = new Set<Publication>();
  private catalogGroup: number;
  private catalog: Record<string, unknown> | undefined;
  private videoInfo: VideoTrackInfo | undefined;
  private audioInfo: AudioTrackInfo | undefined;
  private readonly hasVideo: boolean;
  private readonly hasAudio: boolean;
  private readonly keyframes: KeyframePolicy;
  private readonly videoGate = new EncodeGate(MAX_VIDEO_QUEUE);
  private readonly audioGate = new EncodeGate(MAX_AUDIO_QUEUE);
  private readonly audioGroups = new AudioGroups();
  private videoEncoder: VideoEncoder | undefined;
  private audioEncoder: AudioEncoder | undefined;
  private readonly readers: ReadableStreamDefaultReader<unknown>[] = [];
  private readonly captures = new Map<number, number>();
  private audioOffsetUs: number | undefined;
  private stopped = false;
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private lastBytes = 0;

  constructor(
    urls: RelayUrls,
    connect: ChooseOptions,
    private readonly options: PublisherOptions,
  ) {
    const first = firstGroupId(Date.now());
    this.catalogGroup = first;
    this.video = new OutTrack("video", "video", VIDEO_PRIORITY, first);
    this.audio = new OutTrack("audio", "audio", AUDIO_PRIORITY, first);
    this.keyframes = new KeyframePolicy((options.gopMs ?? 1000) * 1000);
    this.hasVideo = options.stream.getVideoTracks().length > 0;
    this.hasAudio = options.stream.getAudioTracks().length > 0;
    this.stats = {
      state: "connecting",
      broadcast: options.broadcast,
      relay: urls.webtransport ?? urls.websocket ?? "",
      transport: undefined,
      videoCodec: undefined,
      codecNote: undefined,
      width: undefined,
      height: undefined,
      framesCaptured: 0,
      framesEncoded: 0,
      framesDropped: 0,
      framesSent: 0,
      audioFramesEncoded: 0,
      encodeQueue: 0,
      maxEncodeQueue: 0,
      groups: 0,
      groupsAbandoned: 0,
      bytesSent: 0,
      bitrateKbps: 0,
      subscribers: { catalog: 0, video: 0, audio: 0 },
      firstGroup: first,
      reconnects: 0,
      tokenRefreshes: 0,
      lastError: undefined,
    };
    this.ready = this.start(urls, connect);
    this.ready.catch((e: unknown) => this.failed(e));
    this.statsTimer = setInterval(() => this.tick(), 1000);
  }

  /** End the broadcast cleanly (see the module comment); resolves once the session is closed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    for (const r of this.readers) r.cancel().catch(() => {});
    for (const e of [this.videoEncoder, this.audioEncoder]) {
      try {
        if (e && e.state !== "closed") e.close();
      } catch {
        // already closed
      }
    }
    const session = this.session;
    if (session?.isOpen) {
      this.catalog = completeCatalog(Date.now());
      this.catalogGroup++;
      const drains: Promise<void>[] = [];
      for (const p of this.catalogSubs) drains.push(this.sendCatalog(p).then(() => p.finish()));
      for (const track of [this.video, this.audio]) {
        for (const s of track.subscribers) drains.push(s.end().then(() => s.publication.finish()));
      }
      await Promise.race([Promise.all(drains), new Promise((r) => setTimeout(r, DRAIN_MS))]);
      this.namespace?.done();
      // Give the FINs and PUBLISH_DONEs a moment to leave before the session closes.
      await new Promise((r) => setTimeout(r, 100));
      session.close(SessionErrorCode.NoError, "broadcast complete");
    }
    clearInterval(this.statsTimer);
    if (this.stats.state !== "error") this.stats.state = "stopped";
    this.tick();
  }

  private async start(urls: RelayUrls, connect: ChooseOptions): Promise<void> {
    await this.announce(urls, connect);
    if (this.stopped) return;
    this.stats.state = "live";
    const videoTrack = this.options.stream.getVideoTracks()[0];
    const audioTrack = this.options.stream.getAudioTracks()[0];
    if (videoTrack) void this.runVideo(videoTrack).catch((e: unknown) => this.failed(e));
    if (audioTrack) void this.runAudio(audioTrack).catch((e: unknown) => this.noAudio(e));
  }

  /** Connect, answer SUBSCRIBEs, PUBLISH_NAMESPACE; a session that later ends is reconnected. */
  private async announce(urls: RelayUrls, connect: ChooseOptions): Promise<void> {
    const session = await connectRelay(urls, connect);
    if (this.stopped) {
      session.close(SessionErrorCode.NoError, "stopped");
      return;
    }
    session.onSubscribe = (request) => this.answer(request);
    try {
      this.namespace = await session.publishNamespace(this.options.broadcast);
    } catch (e) {
      session.close(SessionErrorCode.NoError, "announce failed");
      throw e;
    }
    if (this.stopped) {
      session.close(SessionErrorCode.NoError, "stopped");
      return;
    }
    this.session = session;
    this.stats.relay = session.url;
    this.stats.transport = session.transportKind;
    if (this.namespace) this.scheduleRefresh(session, this.namespace, connect);
    // A GOAWAY: move now (the relay drains us anyway); the new session is the same relay URL.
    session.onGoaway = () => session.close(SessionErrorCode.NoError, "reconnecting after GOAWAY");
    void session.closed.then((c) => {
      if (this.stopped || this.session !== session) return;
      this.stats.lastError = `the relay session ended (${c.reason || `code ${c.code}`}); reconnecting`;
      void this.reconnect(urls, connect);
    });
  }

  /**
   * Refresh the token ahead of its expiry on `publication` (the PUBLISH_NAMESPACE of
   * `session`), for as long as that session lasts; the fresh token also goes into `connect`
   * for reconnects. A failure is retried after 1 s while the relay's 5 s allowance lasts.
   */
  private scheduleRefresh(session: Session, publication: NamespacePublication, connect: ChooseOptions): void {
    clearTimeout(this.refreshTimer);
    const refreshToken = this.options.refreshToken;
    const exp = connect.token ? tokenExpiry(connect.token) : undefined;
    if (!refreshToken || exp === undefined) return;
    const attempt = async () => {
      if (this.stopped || this.session !== session || !connect.token) return;
      try {
        const fresh = await refreshToken(connect.token);
        await publication.refresh(fresh);
        connect.token = fresh;
        this.stats.tokenRefreshes++;
        this.scheduleRefresh(session, publication, connect);
      } catch (e) {
        this.stats.lastError = `token refresh: ${e instanceof Error ? e.message : String(e)}`;
        if (Date.now() < (exp + 5) * 1000) this.refreshTimer = setTimeout(() => void attempt(), 1000);
      }
    };
    this.refreshTimer = setTimeout(() => void attempt(), refreshDelayMs(exp, Date.now()));
  }

  private async reconnect(urls: RelayUrls, connect: ChooseOptions): Promise<void> {
    this.stats.state = "reconnecting";
    this.stats.reconnects++;
    // The old session's publications have ended; new subscriptions come on the new session.
    this.catalogSubs.clear();
    this.video.subscribers.clear();
    this.audio.subscribers.clear();
    let delayMs = 100;
    while (!this.stopped) {
      try {
        await this.announce(urls, connect);
        if (!this.stopped) this.stats.state = "live";
        return;
      } catch (e) {
        this.stats.lastError = `reconnecting: ${e instanceof Error ? e.message : String(e)}`;
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(delayMs * 2, 2000);
      }
    }
  }

  private answer(request: IncomingSubscribe): void {
    const refuse = (why: string) => void request.reject(undefined, why);
    if (this.stopped) return refuse("the broadcast has ended");
    if (request.namespace !== this.options.broadcast) return refuse(`not publishing ${request.namespace}`);
    if (request.name === "catalog") {
      void request.accept().then(async (p) => {
        this.catalogSubs.add(p);
        void p.done.then(() => this.catalogSubs.delete(p));
        if (this.catalog) await this.sendCatalog(p);
      });
      return;
    }
    const track = request.name === "video" && this.hasVideo ? this.video : request.name === "audio" && this.hasAudio ? this.audio : undefined;
    if (!track) return refuse("no such track");
    void request.accept(liveMediaProperties()).then((p) => {
      const budget = track.kind === "video" ? this.keyframes.gopUs / 1000 : 1000;
      const sub = new TrackSubscriber(p, track.priority, budget, () => this.stats.groupsAbandoned++);
      track.subscribers.add(sub);
      // A subscription starts at the next group: ask for it now rather than at the next GOP.
      if (track.kind === "video") this.keyframes.request();
      void p.done.then(() => track.subscribers.delete(sub));
    });
  }

  private async sendCatalog(p: Publication): Promise<void> {
    if (!this.catalog || !p.isOpen) return;
    try {
      const sub = await p.openSubgroup(this.catalogGroup, { priority: CATALOG_PRIORITY, properties: true });
      await sub.write(0, catalogBytes(this.catalog));
      await sub.finish();
    } catch {
      // the subscription or session went away
    }
  }

  /** A track's configuration changed (or is first known): a new catalog version, to every subscriber. */
  private updateCatalog(): void {
    if (this.stopped) return;
    if (this.hasVideo && !this.videoInfo) return;
    if (this.hasAudio && !this.audioInfo && !this.audioGaveUp) return;
    this.catalog = liveCatalog(Date.now(), this.videoInfo, this.audioInfo);
    this.catalogGroup++;
    for (const p of this.catalogSubs) void this.sendCatalog(p);
  }

  // ---- video ----

  private async runVideo(track: MediaStreamTrack): Promise<void> {
    const Processor = trackProcessor();
    const processor = new Processor({ track, maxBufferSize: 2 });
    const reader = processor.readable.getReader() as ReadableStreamDefaultReader<VideoFrame>;
    this.readers.push(reader as ReadableStreamDefaultReader<unknown>);
    let configured: { width: number; height: number } | undefined;
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done || this.stopped) {
        frame?.close();
        return;
      }
      const captureUs = nowUs();
      this.stats.framesCaptured++;
      try {
        const width = frame.displayWidth;
        const height = frame.displayHeight;
        if (!configured || configured.width !== width || configured.height !== height) {
          await this.configureVideo(width, height, track);
          configured = { width, height };
          this.keyframes.request();
        }
        const encoder = this.videoEncoder;
        if (!encoder || encoder.state !== "configured") continue;
        this.stats.encodeQueue = encoder.encodeQueueSize;
        if (!this.videoGate.admit(encoder.encodeQueueSize)) {
          this.stats.framesDropped = this.videoGate.dropped;
          continue;
        }
        this.stats.maxEncodeQueue = this.videoGate.maxQueue;
        const keyFrame = this.keyframes.isKeyframe(captureUs);
        this.captures.set(frame.timestamp, captureUs);
        if (this.captures.size > 64) this.captures.delete(this.captures.keys().next().value!);
        encoder.encode(frame, { keyFrame });
      } finally {
        frame.close();
      }
    }
  }

  private async configureVideo(width: number, height: number, track: MediaStreamTrack): Promise<void> {
    const framerate = track.getSettings().frameRate;
    const bitrate = this.options.videoBitrate ?? 2_500_000;
    const notes: string[] = [];
    let chosen: VideoEncoderConfig | undefined;
    for (const codec of videoCandidates(width, height, this.options.videoCodecs)) {
      const config: VideoEncoderConfig = {
        codec,
        width,
        height,
        bitrate,
        latencyMode: "realtime",
        ...(framerate ? { framerate } : {}),
        ...(codec.startsWith("avc1") ? { avc: { format: "avc" as const } } : {}),
      };
      const support = await VideoEncoder.isConfigSupported(config).catch(() => ({ supported: false }));
      if (support.supported) {
        chosen = config;
        break;
      }
      notes.push(`${codec} unsupported`);
    }
    if (!chosen) throw new Error(`this browser cannot encode video at ${width}x${height}: ${notes.join(", ")}`);
    const note = notes.length > 0 ? `${notes.join(", ")} by this browser's VideoEncoder: using ${chosen.codec}` : undefined;
    if (note && !this.stats.codecNote) console.warn(`banyan publish: ${note}`);
    this.stats.codecNote = note;
    this.stats.videoCodec = chosen.codec;
    this.stats.width = width;
    this.stats.height = height;
    if (!this.videoEncoder || this.videoEncoder.state === "closed") {
      this.videoEncoder = new VideoEncoder({
        output: (chunk, meta) => this.videoOutput(chunk, meta),
        error: (e) => this.failed(e),
      });
    }
    this.videoEncoder.configure(chosen);
    this.videoInfo = undefined;
    this.pendingVideo = {
      name: "video",
      codec: chosen.codec,
      width,
      height,
      bitrate,
      ...(framerate ? { framerate: Math.round(framerate) } : {}),
    };
  }

  private pendingVideo: VideoTrackInfo | undefined;

  private videoOutput(chunk: EncodedVideoChunk, meta: EncodedVideoChunkMetadata | undefined): void {
    if (this.stopped) return;
    const config = meta?.decoderConfig;
    if (config && this.pendingVideo) {
      const description = config.description ? copyBytes(config.description) : undefined;
      const codec = config.codec || this.pendingVideo.codec;
      const same = this.videoInfo && this.videoInfo.codec === codec && sameBytes(this.videoInfo.description, description);
      if (!same) this.newVideoConfig(codec, description);
    }
    const captureUs = this.captures.get(chunk.timestamp) ?? nowUs();
    this.captures.delete(chunk.timestamp);
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.stats.framesEncoded++;
    if (!this.videoInfo) return; // no configuration yet: nothing can decode it
    const key = chunk.type === "key";
    if (key) this.stats.groups++;
    const sent = this.video.write(captureUs, data, key);
    if (sent > 0) this.stats.framesSent++;
    this.stats.bytesSent += sent;
  }

  /** The encoder's (new) decoder configuration: the track's config and a new catalog version. */
  private newVideoConfig(codec: string, description: Uint8Array | undefined): void {
    if (!this.pendingVideo) return;
    this.videoInfo = { ...this.pendingVideo, codec, ...(description ? { description } : {}) };
    this.stats.videoCodec = codec;
    this.video.config = description;
    this.updateCatalog();
  }

  // ---- audio ----

  private audioGaveUp = false;

  private noAudio(e: unknown): void {
    this.audioGaveUp = true;
    const message = `audio not published: ${e instanceof Error ? e.message : String(e)}`;
    console.warn(`banyan publish: ${message}`);
    this.stats.lastError = message;
    this.updateCatalog();
  }

  private async runAudio(track: MediaStreamTrack): Promise<void> {
    const Processor = trackProcessor();
    const processor = new Processor({ track, maxBufferSize: 8 });
    const reader = processor.readable.getReader() as ReadableStreamDefaultReader<AudioData>;
    this.readers.push(reader as ReadableStreamDefaultReader<unknown>);
    for (;;) {
      const { value: data, done } = await reader.read();
      if (done || this.stopped) {
        data?.close();
        return;
      }
      try {
        // Capture time of this buffer's first sample ≈ now; chunks map through the offset.
        this.audioOffsetUs = nowUs() - data.timestamp;
        if (!this.audioEncoder) await this.configureAudio(data.sampleRate, data.numberOfChannels);
        const encoder = this.audioEncoder!;
        if (encoder.state !== "configured" || !this.audioGate.admit(encoder.encodeQueueSize)) continue;
        encoder.encode(data);
      } finally {
        data.close();
      }
    }
  }

  private async configureAudio(sampleRate: number, numberOfChannels: number): Promise<void> {
    const bitrate = this.options.audioBitrate ?? 64_000;
    const channels = Math.min(numberOfChannels, 2);
    const config: AudioEncoderConfig = { codec: "opus", sampleRate, numberOfChannels: channels, bitrate };
    const support = await AudioEncoder.isConfigSupported(config).catch(() => ({ supported: false }));
    if (!support.supported) throw new Error(`this browser cannot encode Opus at ${sampleRate} Hz, ${channels} channel(s)`);
    this.audioEncoder = new AudioEncoder({
      output: (chunk, meta) => this.audioOutput(chunk, meta, sampleRate, channels, bitrate),
      error: (e) => this.noAudio(e),
    });
    this.audioEncoder.configure(config);
  }

  private audioOutput(
    chunk: EncodedAudioChunk,
    meta: EncodedAudioChunkMetadata | undefined,
    sampleRate: number,
    channels: number,
    bitrate: number,
  ): void {
    if (this.stopped) return;
    if (!this.audioInfo) {
      const given = meta?.decoderConfig?.description;
      const description = given ? copyBytes(given) : opusHead(channels, sampleRate);
      this.audioInfo = { name: "audio", codec: "opus", samplerate: 48_000, channels, bitrate, description };
      this.audio.config = description;
      this.updateCatalog();
    }
    const captureUs = Math.max(0, Math.round(chunk.timestamp + (this.audioOffsetUs ?? nowUs() - chunk.timestamp)));
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.stats.audioFramesEncoded++;
    this.stats.bytesSent += this.audio.write(captureUs, data, this.audioGroups.isGroupStart(captureUs));
  }

  // ---- stats and errors ----

  private tick(): void {
    this.stats.bitrateKbps = Math.round(((this.stats.bytesSent - this.lastBytes) * 8) / 1000);
    this.lastBytes = this.stats.bytesSent;
    this.stats.encodeQueue = this.videoEncoder?.state === "configured" ? this.videoEncoder.encodeQueueSize : 0;
    this.stats.subscribers = {
      catalog: this.catalogSubs.size,
      video: this.video.subscribers.size,
      audio: this.audio.subscribers.size,
    };
    this.options.onStats?.(this.stats);
  }

  private failed(e: unknown): void {
    this.stats.lastError = e instanceof Error ? e.message : String(e);
    if (this.stopped) return;
    this.stats.state = "error";
    console.error(`banyan publish: ${this.stats.lastError}`);
    void this.stop();
  }
}

/** SUBSCRIBE_OK's track properties for a live media track: newest groups first (as banyan-publish). */
function liveMediaProperties(): KeyValuePair[] {
  return [{ key: PropertyType.DefaultPublisherGroupOrder, value: BigInt(GroupOrder.Descending) }];
}

interface TrackProcessor<T> {
  readonly readable: ReadableStream<T>;
}

/** `MediaStreamTrackProcessor` (Chromium; not in TypeScript's DOM types), or a clear error. */
function trackProcessor(): new (init: { track: MediaStreamTrack; maxBufferSize?: number }) => TrackProcessor<unknown> {
  const p = (globalThis as { MediaStreamTrackProcessor?: unknown }).MediaStreamTrackProcessor;
  if (typeof p !== "function") throw new Error("this browser has no MediaStreamTrackProcessor (publishing needs Chrome, Edge or another Chromium)");
  return p as new (init: { track: MediaStreamTrack; maxBufferSize?: number }) => TrackProcessor<unknown>;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function copyBytes(source: AllowSharedBufferSource): Uint8Array {
  if (source instanceof ArrayBuffer || source instanceof SharedArrayBuffer) return new Uint8Array(source.slice(0));
  return new Uint8Array(source.buffer.slice(source.byteOffset, source.byteOffset + source.byteLength));
}
