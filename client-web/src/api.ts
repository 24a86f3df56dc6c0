/**
 * The public API: `connect`, `watch`, `like`, `comment`.
 *
 * ```ts
 * import { watch } from "@banyan/client-web";
 * const player = watch({ relay: "https://127.0.0.1:4443/", hash: "3f1c…", broadcast: "live/demo", canvas });
 * player.stats.latencyMs;
 * ```
 */
import { Player, type PlayerOptions, type PlayerStats } from "./player/player";
import { Session, type ConnectOptions } from "./session/session";

export { Player, Session };
export type { PlayerOptions, PlayerStats, ConnectOptions };
export { MoqtError, Subscription, type TrackObject, type SessionClosed } from "./session/session";
export { JitterBuffer, PlayoutClock, type Frame, type JitterOptions } from "./player/jitter";
export { parseCatalog, type MediaTrack, type ParsedCatalog } from "./player/catalog";
export { VideoRenderer, type VideoPayload } from "./player/video";

export interface RelayTarget {
  /** WebTransport URL, e.g. `https://127.0.0.1:4443/`. */
  relay: string;
  /** Development certificate SHA-256 (hex), or several. */
  hash?: string | string[];
  /** A relay JWT (from the control plane's `/v1/watch`). */
  token?: string;
}

/** Open a raw MoQT session (SETUP done) to a relay. */
export function connect(target: RelayTarget): Promise<Session> {
  return Session.connect(target.relay, connectOptions(target));
}

export interface WatchOptions extends RelayTarget {
  broadcast: string;
  canvas: HTMLCanvasElement;
  targetLatencyMs?: number;
  audio?: boolean;
  onStats?: (stats: PlayerStats) => void;
}

/** Start playing a broadcast into a canvas; reconnects by itself until `stop()`. */
export function watch(options: WatchOptions): Player {
  const player: PlayerOptions = { relay: options.relay, broadcast: options.broadcast, canvas: options.canvas };
  const connect = connectOptions(options);
  if (connect.serverCertificateHashes) player.serverCertificateHashes = connect.serverCertificateHashes;
  if (options.token) player.token = options.token;
  if (options.targetLatencyMs !== undefined) player.targetLatencyMs = options.targetLatencyMs;
  if (options.audio !== undefined) player.audio = options.audio;
  if (options.onStats) player.onStats = options.onStats;
  return new Player(player);
}

/** Thrown by `like` and `comment` until the interaction tracks exist on the relay side. */
export class InteractionsUnavailableError extends Error {
  override readonly name = "InteractionsUnavailableError";
  constructor(what: string) {
    super(`${what}: interactions not available yet (likes and chat arrive with the interactions issue)`);
  }
}

/** Send a like for the broadcast being watched. Not available yet: always rejects. */
export async function like(_player: Player): Promise<never> {
  throw new InteractionsUnavailableError("like");
}

/** Send a chat comment. Not available yet: always rejects. */
export async function comment(_player: Player, _text: string): Promise<never> {
  throw new InteractionsUnavailableError("comment");
}

function connectOptions(target: RelayTarget): ConnectOptions {
  const options: ConnectOptions = {};
  const hashes = target.hash === undefined ? [] : Array.isArray(target.hash) ? target.hash : [target.hash];
  if (hashes.length > 0) options.serverCertificateHashes = hashes;
  if (target.token) options.token = target.token;
  return options;
}
