/**
 * The player: connect → catalog → subscribe video (and audio) → jitter buffer → WebCodecs, with
 * live stats, and reconnect on GOAWAY or connection failure that resumes at the next group.
 * Its {@link Interactions} (likes, chat, gifts) follow it onto each new session.
 */
import { Interactions } from "../interact/interactions";
import { browserEnvironment, connectRelay, plan, relayUrls, type ChooseOptions, type RelayUrls } from "../session/choose";
import {
  MoqtError,
  Session,
  type SubscribeOptions,
  type Subscription,
  type TrackObject,
} from "../session/session";
import { transportOfUrl, type TransportKind } from "../session/transport";
import { AudioRenderer } from "./audio";
import { CATALOG_TRACK, parseCatalog, type MediaTrack, type ParsedCatalog } from "./catalog";
import { JitterBuffer, PlayoutClock, type Frame } from "./jitter";
import { locMeta } from "./loc";
import { PlaybackMeter } from "./meter";
import { VideoRenderer, type VideoPayload } from "./video";

export interface PlayerOptions {
  /**
   * WebTransport URL of the relay, e.g. `https://127.0.0.1:4443/` (a `ws://`/`wss://` URL here
   * is taken as its WebSocket URL). At least one of `relay` and `websocket` is needed.
   */
  relay?: string;
  /** The relay's QMux-over-WebSocket URL, e.g. `ws://127.0.0.1:4443/` (`/v1/watch`'s `websocket`). */
  websocket?: string;
  /**
   * Only this transport. Default: WebSocket where WebTransport is missing or broken (WebKit),
   * else a race, WebTransport first and WebSocket 500 ms later (see `session/choose.ts`).
   */
  transport?: TransportKind;
  /** The broadcast's namespace, e.g. `live/demo`. */
  broadcast: string;
  canvas: HTMLCanvasElement;
  /** Development certificate hashes (hex SHA-256). */
  serverCertificateHashes?: string[];
  token?: string;
  /** Jitter slack beyond the fastest recent frame (ms, default 60; aims under 150 ms total). */
  targetLatencyMs?: number;
  /** Play audio when the catalog has an audio track (default true). */
  audio?: boolean;
  /** Called whenever stats change noticeably (about every 250 ms while playing). */
  onStats?: (stats: PlayerStats) => void;
  /** Likes, chat and gifts alongside the video (default true). */
  interactions?: boolean;
  /** The chat room (the control plane's `chat_room`; default `"0"`). */
  room?: string;
  /** The viewer's name in its token (the control plane's `sub`), to show its own timeout or ban. */
  sub?: string;
  /**
   * How long (ms) the relay may hold the catalog and media SUBSCRIBEs while nobody publishes
   * the broadcast yet (RENDEZVOUS_TIMEOUT; default 5000, so a viewer can open the page before
   * the broadcaster starts; the relay may cap it). When it runs out the player reconnects and
   * asks again, with its usual backoff. 0: no wait (a draft-18 relay then refuses at once).
   */
  rendezvousTimeoutMs?: number;
}

/** The default {@link PlayerOptions.rendezvousTimeoutMs}. */
export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 5000;

/**
 * The SUBSCRIBE options of a media track. No GROUP_ORDER: the relay then uses the publisher's
 * preference (Banyan's media tracks declare descending, newest group first), which is what a
 * live player wants under congestion. Audio (priority 1) comes before video (2).
 */
export function mediaSubscribeOptions(role: MediaTrack["role"], rendezvousTimeoutMs: number): SubscribeOptions {
  return { subscriberPriority: role === "audio" ? 1 : 2, rendezvousTimeoutMs };
}

export interface PlayerStats {
  state: "connecting" | "playing" | "reconnecting" | "stopped";
  /** The URL of the session in use (WebTransport or WebSocket), or the one asked for before. */
  relay: string;
  /** What the session in use runs on (undefined before the first one). */
  transport: TransportKind | undefined;
  framesDecoded: number;
  framesDropped: number;
  /** Glass-to-glass latency of the last rendered frame: viewer wall clock − capture time. */
  latencyMs: number | undefined;
  /** min(arrival − capture) over 10 s: fastest transit plus the publisher/viewer clock offset. */
  clockOffsetMs: number | undefined;
  /** Received media bitrate over the last second, kbit/s. */
  bitrateKbps: number;
  width: number;
  height: number;
  videoCodec: string;
  audioFramesDecoded: number;
  bufferedMs: number;
  /**
   * Video groups not played in full, once per group: reset by the relay, never received (a hole
   * in the group IDs) or dropped by the jitter buffer. Counted within one subscription (groups
   * missed while reconnecting are not).
   */
  groupsSkipped: number;
  /** now − capture time of the video frame on screen (ms): how far behind live the picture is. */
  behindLiveMs: number | undefined;
  /** Median of behindLiveMs over the session (sampled every 100 ms while playing; 10 ms buckets). */
  behindLiveP50Ms: number | undefined;
  /** 99th percentile of behindLiveMs over the session. */
  behindLiveP99Ms: number | undefined;
  /** Largest behindLiveMs over the session. */
  behindLiveMaxMs: number | undefined;
  /** Times no new video frame was shown for more than 500 ms while playing. */
  stalls: number;
  /** Total time of those stalls (ms), the one in progress included. */
  stallMs: number;
  reconnects: number;
  /** The broadcast's like total, from the `likes` track (0 before the first). */
  likes: number;
  /** The broadcast's live viewer count, from the `viewers` track (0 before the first). */
  viewers: number;
  lastError: string | undefined;
}

const wallNow = () => performance.timeOrigin + performance.now();

export class Player {
  readonly stats: PlayerStats;
  /** Likes, comments and gifts for the broadcast (undefined with `interactions: false`). */
  readonly interactions: Interactions | undefined;
  private stopped = false;
  private session: Session | undefined;
  private readonly clock = new PlayoutClock();
  private readonly meter = new PlaybackMeter();
  private readonly videoBuffer: JitterBuffer<VideoPayload>;
  private readonly audioBuffer: JitterBuffer<VideoPayload>;
  private video: VideoRenderer | undefined;
  private audio: AudioRenderer | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private bytes: { at: number; n: number }[] = [];
  private catalog: ParsedCatalog | undefined;
  private wake: (() => void) | undefined;
  /** RENDEZVOUS_TIMEOUT of the catalog and media SUBSCRIBEs (ms). */
  private readonly rendezvous: number;

  constructor(private readonly options: PlayerOptions) {
    this.rendezvous = options.rendezvousTimeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
    const target = options.targetLatencyMs ?? 60;
    this.videoBuffer = new JitterBuffer(this.clock, { targetLatencyMs: target });
    this.audioBuffer = new JitterBuffer(this.clock, { targetLatencyMs: target });
    this.stats = {
      state: "connecting",
      relay: options.relay ?? options.websocket ?? "",
      transport: undefined,
      framesDecoded: 0,
      framesDropped: 0,
      latencyMs: undefined,
      clockOffsetMs: undefined,
      bitrateKbps: 0,
      width: 0,
      height: 0,
      videoCodec: "",
      audioFramesDecoded: 0,
      bufferedMs: 0,
      groupsSkipped: 0,
      behindLiveMs: undefined,
      behindLiveP50Ms: undefined,
      behindLiveP99Ms: undefined,
      behindLiveMaxMs: undefined,
      stalls: 0,
      stallMs: 0,
      reconnects: 0,
      likes: 0,
      viewers: 0,
      lastError: undefined,
    };
    if (options.interactions !== false) {
      this.interactions = new Interactions({
        broadcast: options.broadcast,
        room: options.room ?? "0",
        ...(options.sub ? { sub: options.sub } : {}),
      });
    }
    void this.run();
    this.tick();
  }

  /** Resume audio output after a user gesture (browsers start AudioContexts suspended). */
  async unmute(): Promise<void> {
    await this.audio?.start();
    await this.audio?.resume();
  }

  stop(): void {
    this.stopped = true;
    this.stats.state = "stopped";
    clearTimeout(this.timer);
    this.interactions?.stop();
    this.session?.close(0, "player stopped");
    this.video?.close();
    this.audio?.close();
    this.wake?.();
  }

  // ---- connection loop ----

  private async run(): Promise<void> {
    const home = relayUrls(this.options.relay, this.options.websocket);
    let urls = home;
    let failures = 0;
    while (!this.stopped) {
      try {
        // The transport is chosen again for every session: after a GOAWAY or a failure too.
        const connect: ChooseOptions = { transport: this.options.transport };
        if (this.options.serverCertificateHashes) connect.serverCertificateHashes = this.options.serverCertificateHashes;
        if (this.options.token) connect.token = this.options.token;
        const session = await connectRelay(urls, connect);
        this.session = session;
        this.stats.relay = session.url;
        this.stats.transport = session.transportKind;
        failures = 0;
        const next = await this.play(session);
        urls = next ? this.movedTo(next, home) : home;
      } catch (e) {
        this.stats.lastError = e instanceof Error ? e.message : String(e);
        failures++;
        urls = home;
      }
      if (this.stopped) return;
      this.stats.state = "reconnecting";
      this.stats.reconnects++;
      // Reconnected media starts at a new group: wait for its keyframe.
      this.videoBuffer.reset();
      this.audioBuffer.reset();
      if (failures > 0) await this.sleep(Math.min(2000, 100 * 2 ** (failures - 1)));
    }
  }

  /**
   * Where a GOAWAY's New Session URI leads: that URL alone (its scheme says the transport), or
   * back to the relay we were given when this browser cannot use it (a WebTransport URL in a
   * page without WebTransport, or the other transport than the one forced).
   */
  private movedTo(uri: string, home: RelayUrls): RelayUrls {
    const moved: RelayUrls = transportOfUrl(uri) === "websocket" ? { websocket: uri } : { webtransport: uri };
    try {
      plan(moved, browserEnvironment(), this.options.transport);
      return moved;
    } catch {
      return home;
    }
  }

  /**
   * Play from one session until it closes (→ undefined) or sends GOAWAY (→ its New Session URI,
   * or undefined when it names none: reconnect to the relay we were given).
   */
  private async play(session: Session): Promise<string | undefined> {
    const goaway = new Promise<string | undefined>((resolve) => {
      session.onGoaway = (g) => resolve(g.newSessionUri || undefined);
    });
    const closed = session.closed.then((c) => {
      if (!c.local) this.stats.lastError = `session closed: code ${c.code} ${c.reason}`;
      return undefined;
    });
    const setup = this.subscribeAll(session);
    try {
      return await Promise.race([goaway, closed, setup.then(() => new Promise<never>(() => {}))]);
    } finally {
      // GOAWAY: leave at once; the new session resumes at the next group boundary. Failure to
      // set up (no catalog, refused SUBSCRIBE): close before retrying.
      session.close(0, "moving on");
    }
  }

  private async subscribeAll(session: Session): Promise<void> {
    const catalog = await this.loadCatalog(session);
    this.catalog = catalog;
    const video = catalog.video;
    if (!video) throw new MoqtError("catalog has no video track");
    this.stats.videoCodec = video.codec;
    this.video ??= new VideoRenderer(this.options.canvas, video, {
      onRendered: (captureUs, w, h) => {
        const now = wallNow();
        this.stats.framesDecoded++;
        this.stats.latencyMs = now - captureUs / 1000;
        this.meter.shown(captureUs, now);
        this.stats.width = w;
        this.stats.height = h;
      },
      onDropped: (n) => (this.otherDropped += n),
      onError: (m) => (this.stats.lastError = m),
    });
    const subs: Promise<Subscription>[] = [
      session.subscribe(video.namespace, video.name, mediaSubscribeOptions("video", this.rendezvous)),
    ];
    const audio = this.options.audio !== false ? catalog.audio : undefined;
    if (audio) {
      this.audio ??= new AudioRenderer(audio, (m) => (this.stats.lastError = m));
      void this.audio.start().catch((e: unknown) => (this.stats.lastError = `audio: ${String(e)}`));
      subs.push(session.subscribe(audio.namespace, audio.name, mediaSubscribeOptions("audio", this.rendezvous)));
    }
    const [videoSub, audioSub] = await Promise.all(subs);
    if (videoSub) this.feed(videoSub, video, this.videoBuffer);
    if (audioSub && audio) this.feed(audioSub, audio, this.audioBuffer);
    this.stats.state = "playing";
    void this.interactions?.attach(session).catch((e: unknown) => (this.stats.lastError = `interactions: ${String(e)}`));
    // Playing again: an error from a failed reconnect attempt no longer describes the player.
    this.stats.lastError = undefined;
  }

  private async loadCatalog(session: Session): Promise<ParsedCatalog> {
    const sub = await session.subscribe(this.options.broadcast, CATALOG_TRACK, {
      subscriberPriority: 0,
      rendezvousTimeoutMs: this.rendezvous,
    });
    return new Promise<ParsedCatalog>((resolve, reject) => {
      sub.onObject = (o) => {
        // The first object of a group is an independent catalog; later ones are deltas.
        if (o.objectId !== 0 || o.payload.length === 0) return;
        try {
          const parsed = parseCatalog(o.payload, this.options.broadcast);
          resolve(parsed);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      };
      void sub.done.then(() => reject(new MoqtError("catalog track ended before a catalog arrived")));
    });
  }

  private feed(sub: Subscription, track: MediaTrack, buffer: JitterBuffer<VideoPayload>): void {
    let newestGroup = -1;
    sub.onObject = (o: TrackObject) => {
      if (o.payload.length === 0) return; // end-of-group / end-of-track markers
      this.bytes.push({ at: performance.now(), n: o.payload.length });
      const meta = locMeta(o.properties, track.role);
      if (meta.captureUs === undefined) {
        this.otherDropped++;
        this.stats.lastError = "object without a LOC Timestamp";
        return;
      }
      if (o.groupId > newestGroup) {
        newestGroup = o.groupId;
        // Never spend bandwidth on groups we will skip: keep the newest two.
        sub.cancelGroupsBefore(newestGroup - 1);
      }
      const frame: Frame<VideoPayload> = {
        group: o.groupId,
        object: o.objectId,
        captureUs: meta.captureUs,
        arrivalMs: wallNow(),
        keyframe: o.objectId === 0,
        data: meta.config ? { data: o.payload, config: meta.config } : { data: o.payload },
      };
      buffer.push(frame);
      this.wake?.();
    };
    // A reset (or cancelled) group stream will bring nothing more: the buffer need not wait for it.
    sub.onStreamEnd = (group, end) => {
      if (end === "finished") buffer.groupEnded(group);
      else buffer.groupReset(group);
      this.wake?.();
    };
  }

  // ---- playout loop ----

  private tick = (): void => {
    if (this.stopped) return;
    const now = wallNow();
    for (const f of this.videoBuffer.pop(now)) this.video?.decode(f);
    for (const f of this.audioBuffer.pop(now)) this.audio?.decode(f);
    this.meter.tick(now, this.stats.state === "playing");
    this.updateStats(now);
    const due = [this.videoBuffer.nextDue(now), this.audioBuffer.nextDue(now)].filter(
      (d): d is number => d !== undefined,
    );
    const wait = due.length > 0 ? Math.min(...due, 50) : 50;
    this.timer = setTimeout(this.tick, Math.max(1, wait));
    this.wake = () => {
      this.wake = undefined;
      clearTimeout(this.timer);
      this.timer = setTimeout(this.tick, 0);
    };
  };

  private lastStats = 0;
  /** Frames dropped outside the jitter buffer (decoder refused, no timestamp). */
  private otherDropped = 0;

  private updateStats(wall: number): void {
    const now = performance.now();
    while (this.bytes.length > 0 && (this.bytes[0]?.at ?? now) < now - 1000) this.bytes.shift();
    this.stats.bitrateKbps = Math.round((this.bytes.reduce((n, b) => n + b.n, 0) * 8) / 1000);
    this.stats.clockOffsetMs = this.clock.offsetMs;
    this.stats.bufferedMs = this.videoBuffer.bufferedMs();
    this.stats.groupsSkipped = this.videoBuffer.groupsSkipped;
    this.stats.behindLiveMs = this.meter.behindLiveMs(wall);
    this.stats.behindLiveP50Ms = this.meter.quantile(0.5);
    this.stats.behindLiveP99Ms = this.meter.quantile(0.99);
    this.stats.behindLiveMaxMs = this.meter.maxMs;
    this.stats.stalls = this.meter.stalls;
    this.stats.stallMs = this.meter.stallTotalMs(wall);
    this.stats.framesDropped = this.otherDropped + this.videoBuffer.dropped;
    this.stats.audioFramesDecoded = this.audio?.decoded ?? 0;
    this.stats.likes = this.interactions?.likes ?? 0;
    this.stats.viewers = this.interactions?.viewers ?? 0;
    if (now - this.lastStats > 250) {
      this.lastStats = now;
      this.options.onStats?.(this.stats);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}
