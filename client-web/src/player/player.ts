/**
 * The player: connect → catalog → subscribe video (and audio) → jitter buffer → WebCodecs, with
 * live stats, and reconnect on GOAWAY or connection failure that resumes at the next group.
 * Its {@link Interactions} (likes, chat, gifts) follow it onto each new session.
 *
 * Adaptive bitrate: when the catalog offers a ladder (two or more video tracks of one `altGroup`
 * with a `bitrate`), the player starts at {@link startRendition}'s choice, feeds the
 * {@link Estimator} with every object of the rendition it plays (size, capture and arrival
 * time), asks the {@link Chooser} at each group boundary (with the decoder's health: frames it
 * refused or shed, its queue), and switches make-before-break at a group boundary
 * ({@link RenditionSwitcher}). {@link Player.setRendition} pins one rendition (the page's picker)
 * or returns to `auto`.
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
import { BROWSER_MIN_COUNTED_BYTES, Chooser, Estimator } from "./abr";
import { AudioRenderer } from "./audio";
import { CATALOG_TRACK, parseCatalog, type MediaTrack, type ParsedCatalog } from "./catalog";
import { JitterBuffer, PlayoutClock, type Frame } from "./jitter";
import { locMeta } from "./loc";
import { refreshDelayMs, tokenExpiry } from "../session/token";
import { PlaybackMeter } from "./meter";
import { ladderOf, RenditionSwitcher, startRendition, type Action, type SwitchRecord } from "./renditions";
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
  /** The relay token (JWT); the relay ends the session 5 s after its `exp`. */
  token?: string;
  /**
   * Fetch a fresh token for the current one (e.g. control's `POST /v1/refresh`); with it, the
   * player hands the relay a fresh token (REQUEST_UPDATE on its video subscription) ahead of the
   * current one's expiry, with no gap. Without it, the session ends with the token.
   */
  refreshToken?: (token: string) => Promise<string>;
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
  /**
   * Which rendition of a ladder to play: `auto` (the default: adaptive bitrate) or a video track
   * name from the catalog (e.g. `video/360p`), kept until {@link Player.setRendition} changes it.
   */
  rendition?: string;
  /**
   * Bits per second to start from in `auto` (the highest rendition at most half of it). Default:
   * the browser's `navigator.connection.downlink` where it has one (Chromium), else the lowest
   * rendition. See {@link startRendition}.
   */
  startBitrate?: number;
}

/** The default {@link PlayerOptions.rendezvousTimeoutMs}. */
export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 5000;

export { refreshDelayMs, tokenExpiry };

/**
 * The SUBSCRIBE options of a media track. No GROUP_ORDER: the relay then uses the publisher's
 * preference (Banyan's media tracks declare descending, newest group first), which is what a
 * live player wants under congestion. Audio (priority 1) comes before video (2). A rendition
 * switched down to (`downSwitch`) gets 1 too: it must overtake the larger one it replaces, which
 * a narrowed link is still busy with, or its first keyframe waits behind that backlog while the
 * picture is frozen.
 */
export function mediaSubscribeOptions(role: MediaTrack["role"], rendezvousTimeoutMs: number, downSwitch = false): SubscribeOptions {
  return { subscriberPriority: role === "audio" || downSwitch ? 1 : 2, rendezvousTimeoutMs };
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
  /** Tokens refreshed with the relay (see {@link PlayerOptions.refreshToken}). */
  tokenRefreshes: number;
  /** Seconds before the token's `exp` the last refresh was presented to the relay. */
  tokenRefreshLeadS: number | undefined;
  lastError: string | undefined;
  /** The video track being decoded (a rendition of the ladder, or the only video track). */
  rendition: string;
  /** The ladder the catalog offers, highest bitrate first (empty with a single video track). */
  renditions: { name: string; bitrate: number; width: number | undefined; height: number | undefined }[];
  /** `auto`: the ABR rule chooses; `manual`: a rendition was picked. */
  renditionMode: "auto" | "manual";
  /** The ABR estimate of the bandwidth received (kbit/s; undefined before the first group). */
  estimateKbps: number | undefined;
  /** Rendition switches completed. */
  switches: number;
  /** The last 10 switches (time, from, to, first group, reason, estimate when asked). */
  switchLog: SwitchRecord[];
  /** The longest single stall (ms), the one in progress included. */
  longestStallMs: number;
}

/** Decoder health: more frames than this refused or shed by the decoder in one group is "behind". */
const BEHIND_DROPPED_PER_GROUP = 3;
/** Decoder health: a decode queue deeper than this at a group boundary is "behind". */
const BEHIND_DECODE_QUEUE = 10;
/**
 * No new frame for this long (ms) while playing: the chooser is asked at once, as behind,
 * rather than at the end of the group (a link that suddenly narrowed would otherwise freeze
 * the picture for up to a group before the switch is even asked for, and the new rendition's
 * keyframe can be up to a group away). Below the meter's 500 ms stall threshold.
 */
const STALLED_ASK_MS = 250;
/**
 * No object of the rendition playing has arrived for this long (ms): asked at once as well. It
 * sees a narrowed link before the picture does (the jitter buffer still has frames to show);
 * on a healthy link objects come every frame interval (33 ms at 30 fps).
 */
const SILENT_ASK_MS = 150;

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
  /** The ladder (highest first; empty: a single video track, no switching). */
  private ladder: MediaTrack[] = [];
  private switcher: RenditionSwitcher | undefined;
  private estimator = new Estimator({ minCountedBytes: BROWSER_MIN_COUNTED_BYTES });
  private chooser: Chooser | undefined;
  private manual: string | undefined;
  /** Video subscriptions of the current session, by track name. */
  private readonly videoSubs = new Map<string, Subscription>();
  private estimatedGroup = -1;
  /** The group during which the chooser was last asked early (stalled picture). */
  private askedEarly = -1;
  /** When the last object of the rendition playing arrived (performance.now()). */
  private lastArrival: number | undefined;
  /** A rendition whose groups were cancelled while a switch down is pending (see askIfStalled). */
  private starved: string | undefined;
  /** The first group of a new rendition: not given to the estimator. */
  private skipSample = -1;
  private droppedAtGroup = 0;
  /** The token in use: the given one, then each refreshed one (reconnects use it too). */
  private token: string | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly options: PlayerOptions) {
    this.rendezvous = options.rendezvousTimeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
    this.token = options.token;
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
      tokenRefreshes: 0,
      tokenRefreshLeadS: undefined,
      lastError: undefined,
      rendition: "",
      renditions: [],
      renditionMode: options.rendition && options.rendition !== "auto" ? "manual" : "auto",
      estimateKbps: undefined,
      switches: 0,
      switchLog: [],
      longestStallMs: 0,
    };
    if (this.stats.renditionMode === "manual") this.manual = options.rendition;
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

  /**
   * Play `name` (a rendition's track name) from now on, or `auto` to let the ABR rule choose
   * again. The switch is make-before-break at the next group boundary. Throws for a name the
   * ladder does not have (once the catalog is known).
   */
  setRendition(name: string): void {
    if (name === "auto") {
      this.manual = undefined;
      this.stats.renditionMode = "auto";
      this.chooser = undefined; // rebuilt at the next group, starting from what plays
      return;
    }
    if (this.ladder.length > 0 && !this.ladder.some((t) => t.name === name)) {
      throw new Error(`no rendition ${JSON.stringify(name)} (the ladder has ${this.ladder.map((t) => t.name).join(", ")})`);
    }
    this.manual = name;
    this.stats.renditionMode = "manual";
    if (this.switcher) this.apply(this.switcher.want(name, "manual", this.stats.estimateKbps, this.isDown(name)));
  }

  stop(): void {
    this.stopped = true;
    this.stats.state = "stopped";
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
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
        if (this.token) connect.token = this.token;
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

  /**
   * Refresh the token ahead of its expiry, on `sub` (the video subscription) of `session`, for
   * as long as that session lasts: fetch a fresh token with `refreshToken`, present it to the
   * relay (REQUEST_UPDATE), and schedule the next. A failure is retried after 1 s while the
   * relay's 5 s allowance lasts.
   */
  private scheduleRefresh(session: Session, pick: () => Subscription | undefined): void {
    clearTimeout(this.refreshTimer);
    const refreshToken = this.options.refreshToken;
    const exp = this.token ? tokenExpiry(this.token) : undefined;
    if (!refreshToken || exp === undefined) return;
    const attempt = async () => {
      if (this.stopped || this.session !== session || !this.token) return;
      try {
        const sub = pick();
        if (!sub) throw new MoqtError("no open subscription to carry the refresh");
        const fresh = await refreshToken(this.token);
        await sub.refresh(fresh);
        this.stats.tokenRefreshLeadS = exp - Date.now() / 1000;
        this.stats.tokenRefreshes++;
        this.token = fresh;
        this.scheduleRefresh(session, pick);
      } catch (e) {
        this.stats.lastError = `token refresh: ${e instanceof Error ? e.message : String(e)}`;
        if (Date.now() < (exp + 5) * 1000) this.refreshTimer = setTimeout(() => void attempt(), 1000);
      }
    };
    this.refreshTimer = setTimeout(() => void attempt(), refreshDelayMs(exp, Date.now()));
  }

  private async subscribeAll(session: Session): Promise<void> {
    const catalog = await this.loadCatalog(session);
    this.catalog = catalog;
    const first = catalog.video;
    if (!first) throw new MoqtError("catalog has no video track");
    const video = this.chooseVideo(catalog);
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
    this.videoSubs.clear();
    if (videoSub) this.feedVideo(videoSub, video);
    // Any open subscription carries a refresh for the whole session: audio's lasts as long as
    // the session, a video one may be switched away from (see RenditionSwitcher).
    this.scheduleRefresh(session, () => audioSub ?? this.videoSubs.values().next().value);
    if (audioSub && audio) this.feed(audioSub, audio, this.audioBuffer);
    this.stats.state = "playing";
    void this.interactions?.attach(session).catch((e: unknown) => (this.stats.lastError = `interactions: ${String(e)}`));
    // Playing again: an error from a failed reconnect attempt no longer describes the player.
    this.stats.lastError = undefined;
  }

  /**
   * The video track to subscribe first in a session: the only one, or with a ladder the one the
   * switcher plays (kept across reconnects), the manual choice, or {@link startRendition}'s.
   */
  private chooseVideo(catalog: ParsedCatalog): MediaTrack {
    const first = catalog.video as MediaTrack;
    this.ladder = ladderOf(catalog.videos);
    this.stats.renditions = this.ladder.map((t) => ({ name: t.name, bitrate: t.bitrate ?? 0, width: t.width, height: t.height }));
    if (this.ladder.length < 2) {
      this.ladder = [];
      this.switcher = undefined;
      this.stats.rendition = first.name;
      return first;
    }
    const known = (name: string | undefined) => this.ladder.find((t) => t.name === name);
    let start: MediaTrack | undefined;
    if (this.switcher && known(this.switcher.target)) {
      start = known(this.switcher.restart());
    } else {
      const downlink = (navigator as { connection?: { downlink?: number } }).connection?.downlink;
      start = known(this.manual) ?? startRendition(this.ladder, this.options.startBitrate ?? (downlink ? downlink * 1e6 : undefined));
      const previous = this.switcher;
      this.switcher = new RenditionSwitcher((start ?? first).name);
      if (previous) {
        this.switcher.switches = previous.switches;
        this.switcher.log.push(...previous.log);
      }
    }
    if (this.manual && !known(this.manual)) {
      this.stats.lastError = `no rendition ${JSON.stringify(this.manual)} in the catalog: playing auto`;
      this.manual = undefined;
      this.stats.renditionMode = "auto";
    }
    const track = start ?? first;
    this.stats.rendition = track.name;
    this.chooser = undefined;
    this.starved = undefined;
    this.lastArrival = undefined;
    this.estimator = new Estimator({ minCountedBytes: BROWSER_MIN_COUNTED_BYTES });
    this.estimatedGroup = -1;
    return track;
  }

  /** Feed a video subscription: through the switcher when there is a ladder. */
  private feedVideo(sub: Subscription, track: MediaTrack): void {
    this.videoSubs.set(track.name, sub);
    const switcher = this.switcher;
    if (!switcher) {
      this.feed(sub, track, this.videoBuffer);
      return;
    }
    let newestGroup = -1;
    sub.onObject = (o: TrackObject) => {
      if (o.payload.length === 0) return;
      const verdict = switcher.object(track.name, o.groupId, o.objectId, wallNow());
      this.apply(verdict.actions);
      if (!verdict.play) return;
      this.bytes.push({ at: performance.now(), n: o.payload.length });
      const meta = locMeta(o.properties, "video");
      if (meta.captureUs === undefined) {
        this.otherDropped++;
        this.stats.lastError = "object without a LOC Timestamp";
        return;
      }
      if (o.groupId > newestGroup) {
        newestGroup = o.groupId;
        sub.cancelGroupsBefore(newestGroup - 1);
      }
      const arrivalMs = wallNow();
      if (switcher.playing === track.name) {
        this.lastArrival = performance.now();
        this.estimate(o.groupId, o.payload.length, meta.captureUs, arrivalMs);
      }
      const data: VideoPayload = { data: o.payload, track };
      if (meta.config) data.config = meta.config;
      this.videoBuffer.push({ group: o.groupId, object: o.objectId, captureUs: meta.captureUs, arrivalMs, keyframe: o.objectId === 0, data });
      this.wake?.();
    };
    sub.onStreamEnd = (group, end) => {
      const ended = switcher.streamEnded(track.name, group);
      this.apply(ended.actions);
      if (!ended.forBuffer) return;
      if (end === "finished") this.videoBuffer.groupEnded(group);
      else this.videoBuffer.groupReset(group);
      this.wake?.();
    };
  }

  /** One object of the playing rendition for the estimator; at a group boundary, ask the chooser. */
  private estimate(group: number, bytes: number, captureUs: number, arrivalMs: number): void {
    // A straggler of a group already ended would end the newer one early: not counted.
    if (group < this.estimatedGroup) return;
    const boundary = group !== this.estimatedGroup;
    // The first group of a new rendition is not sampled: it follows the subscription's start
    // (what the relay had cached comes in a burst, objects the player did not play share the
    // link) and the retiring rendition's last group, so its arrival times say little about the
    // link. The group before it is sampled as it stands.
    const fresh = this.switcher !== undefined && this.switcher.switches > 0 && group === this.switcher.from;
    if (boundary && fresh) {
      this.estimator.endGroup();
      this.skipSample = group;
    }
    if (group !== this.skipSample) this.estimator.object(group, bytes, captureUs, Math.round(arrivalMs * 1000));
    const estimate = this.estimator.estimate;
    this.stats.estimateKbps = estimate === undefined ? undefined : Math.round(estimate / 1000);
    if (!boundary) return;
    const first = this.estimatedGroup < 0;
    this.estimatedGroup = group;
    // Decoder health over the group that just ended: frames it refused or shed, its queue.
    const dropped = this.otherDropped - this.droppedAtGroup;
    this.droppedAtGroup = this.otherDropped;
    if (first) return;
    const behind = dropped > BEHIND_DROPPED_PER_GROUP || (this.video?.decodeQueueSize ?? 0) > BEHIND_DECODE_QUEUE;
    this.ask(behind);
  }

  /**
   * Ask the chooser (auto only) and start the switch it asks for. Behind with no estimate yet
   * (the first groups, or a link that narrowed before any sample): an estimate of 0, so the
   * chooser goes down to the lowest rendition rather than wait for a measurement.
   */
  private ask(behind: boolean): void {
    const switcher = this.switcher;
    if (this.manual || !switcher) return;
    const target = this.ladder.find((t) => t.name === switcher.target);
    if (!target) return;
    if (!this.chooser || this.chooser.current.name !== target.name) {
      this.chooser = new Chooser(this.ladder.map((t) => ({ name: t.name, bitrate: t.bitrate ?? 0 })), target.bitrate ?? 0);
    }
    const next = this.chooser.onGroup(this.estimator.estimate ?? (behind ? 0 : undefined), behind);
    if (next) this.apply(switcher.want(next.name, "auto", this.stats.estimateKbps, this.isDown(next.name)));
  }

  /**
   * The picture has not moved for {@link STALLED_ASK_MS}: ask at once, once per group. A switch
   * down asked for here stops reading the frozen rendition's groups at once (they come too late
   * to show and hold the narrowed link the smaller rendition needs for its keyframe); the
   * rendition itself stays subscribed until the switch is made, as always.
   */
  private askIfStalled(wall: number): void {
    if (this.stats.state !== "playing" || this.askedEarly === this.estimatedGroup) return;
    const since = this.meter.sinceShownMs(wall);
    const silent = this.lastArrival === undefined ? 0 : performance.now() - this.lastArrival;
    if ((since === undefined || since < STALLED_ASK_MS) && silent < SILENT_ASK_MS) return;
    this.askedEarly = this.estimatedGroup;
    const switcher = this.switcher;
    const playing = switcher?.playing;
    this.ask(true);
    if (switcher && playing && switcher.target !== playing && this.isDown(switcher.target)) {
      this.videoSubs.get(playing)?.cancelGroupsBefore(Number.MAX_SAFE_INTEGER);
      this.starved = playing;
    }
  }

  /** `name` has a lower bitrate than the rendition playing. */
  private isDown(name: string): boolean {
    const bitrate = (n: string | undefined) => this.ladder.find((t) => t.name === n)?.bitrate ?? 0;
    return bitrate(name) < bitrate(this.switcher?.playing);
  }

  /** Carry out the switcher's actions on this session. */
  private apply(actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === "replaceFrom") {
        // Cannot be refused: the switcher takes a group only while nothing of it was released.
        this.videoBuffer.replaceFrom(a.group, a.rejoin);
      } else if (a.kind === "cancelBefore") {
        this.videoSubs.get(a.track)?.cancelGroupsBefore(a.group);
      } else if (a.kind === "unsubscribe") {
        this.videoSubs.get(a.track)?.unsubscribe();
        this.videoSubs.delete(a.track);
      } else {
        const track = this.ladder.find((t) => t.name === a.track);
        const session = this.session;
        if (!track || !session) continue;
        const down = this.isDown(track.name);
        session
          .subscribe(track.namespace, track.name, mediaSubscribeOptions("video", this.rendezvous, down))
          .then((sub) => {
            // Given up (or the session changed) while the SUBSCRIBE was on its way.
            if (this.session !== session || !this.switcher?.subscribed.includes(track.name)) sub.unsubscribe();
            else this.feedVideo(sub, track);
          })
          .catch((e: unknown) => {
            this.stats.lastError = `rendition ${track.name}: ${e instanceof Error ? e.message : String(e)}`;
            if (this.session !== session || !this.switcher) return;
            // What plays no longer sends anything: start the session over (same rendition).
            if (this.starved === this.switcher.playing) session.close(0, "rendition switch failed");
            // Keep what plays: the pending choice is dropped.
            else this.apply(this.switcher.want(this.switcher.playing, "auto", undefined));
          });
      }
    }
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
    for (const f of this.videoBuffer.pop(now)) {
      if (this.switcher) this.apply(this.switcher.released(f.group));
      this.video?.decode(f);
    }
    for (const f of this.audioBuffer.pop(now)) this.audio?.decode(f);
    this.meter.tick(now, this.stats.state === "playing");
    this.askIfStalled(now);
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
    this.stats.longestStallMs = this.meter.longestStallMs(wall);
    if (this.switcher) {
      this.stats.rendition = this.switcher.playing;
      this.stats.switches = this.switcher.switches;
      this.stats.switchLog = [...this.switcher.log];
    }
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
