/**
 * The public API: `connect`, `watch`, `like`, `comment`, `gift`.
 *
 * ```ts
 * import { watch, like, comment } from "@banyan/client-web";
 * const player = watch({ relay: "https://127.0.0.1:4443/", hash: "3f1c…", broadcast: "live/demo", canvas });
 * player.stats.latencyMs;
 * like(player);
 * await comment(player, "hello");
 * ```
 */
import type { ChatComment } from "./interact/interactions";
import type { GiftEvent } from "./interact/payload";
import { Player, type PlayerOptions, type PlayerStats } from "./player/player";
import { Session, type ConnectOptions } from "./session/session";

export { Player, Session };
export { DEFAULT_RENDEZVOUS_TIMEOUT_MS } from "./player/player";
export { subscribeParameters, type SubscribeOptions } from "./session/session";
export type { PlayerOptions, PlayerStats, ConnectOptions };
export { MoqtError, Subscription, type TrackObject, type SessionClosed } from "./session/session";
export { JitterBuffer, PlayoutClock, type Frame, type JitterOptions } from "./player/jitter";
export { parseCatalog, type MediaTrack, type ParsedCatalog } from "./player/catalog";
export { VideoRenderer, type VideoPayload } from "./player/video";
export { Publication, SubgroupWriter } from "./session/publication";
export { Interactions, InteractionError, type ChatComment, type InteractionsOptions } from "./interact/interactions";
export { refusalLabel, type GiftEvent } from "./interact/payload";

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
  /** Likes, chat and gifts (default true): `player.interactions`, `like`, `comment`, `gift`. */
  interactions?: boolean;
  /** The chat room to join: the control plane's `chat_room` (default `"0"`). */
  room?: string;
  /** How long (ms) the relay may hold the player's SUBSCRIBEs for a broadcast not yet on air
   *  (RENDEZVOUS_TIMEOUT; default 5000; 0 for none). */
  rendezvousTimeoutMs?: number;
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
  if (options.interactions !== undefined) player.interactions = options.interactions;
  if (options.room !== undefined) player.room = options.room;
  if (options.rendezvousTimeoutMs !== undefined) player.rendezvousTimeoutMs = options.rendezvousTimeoutMs;
  return new Player(player);
}

/** Thrown by `like`, `comment` and `gift` on a player started with `interactions: false`. */
export class InteractionsUnavailableError extends Error {
  override readonly name = "InteractionsUnavailableError";
  constructor(what: string) {
    super(`${what}: this player was started with interactions: false`);
  }
}

/**
 * Like the broadcast being watched: one like, sent as a datagram carrying this viewer's
 * cumulative total (docs/interactions.md). Resolves at once with the likes this viewer has sent;
 * the broadcast's total arrives on the `likes` track (`player.stats.likes`).
 */
export async function like(player: Player): Promise<number> {
  return interactionsOf(player, "like").like();
}

/**
 * Post a comment to the player's chat room. Resolves once it appears on `chat/<room>` (with its
 * sequence number in the room); rejects with an `InteractionError` whose `refusal` says why the
 * relay refused it (`rate_limited`, `too_large`, `invalid_utf8`, `bad_room`).
 */
export async function comment(player: Player, text: string): Promise<ChatComment> {
  return interactionsOf(player, "comment").comment(text);
}

/**
 * Send a gift (`kind`, `amount`); resolves once the origin has recorded it exactly once (it
 * appears on `events`), retrying with the same client id until then (default up to 30 s).
 * Needs an origin relay started with `--gift-ledger`.
 */
export async function gift(player: Player, kind = 1, amount = 1, timeoutMs?: number): Promise<GiftEvent> {
  return interactionsOf(player, "gift").gift(kind, amount, timeoutMs);
}

function interactionsOf(player: Player, what: string) {
  if (!player.interactions) throw new InteractionsUnavailableError(what);
  return player.interactions;
}

function connectOptions(target: RelayTarget): ConnectOptions {
  const options: ConnectOptions = {};
  const hashes = target.hash === undefined ? [] : Array.isArray(target.hash) ? target.hash : [target.hash];
  if (hashes.length > 0) options.serverCertificateHashes = hashes;
  if (target.token) options.token = target.token;
  return options;
}
