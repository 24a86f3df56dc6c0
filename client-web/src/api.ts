/**
 * The public API: `connect`, `watch`, `like`, `comment`, `gift`, `publish`; the transport choice
 * (`connectRelay`, `planTransports`, `TransportMemory`).
 *
 * ```ts
 * import { watch, like, comment } from "@banyan/client-web";
 * const player = watch({ relay: "https://127.0.0.1:4443/", hash: "3f1c…", broadcast: "live/demo", canvas });
 * player.stats.latencyMs;
 * like(player);
 * await comment(player, "hello");
 * const live = publish({ relay: "https://127.0.0.1:4443/", hash: "3f1c…", broadcast: "live/me",
 *   stream: await navigator.mediaDevices.getUserMedia({ video: true, audio: true }) });
 * await live.stop();
 * ```
 */
import type { ChatComment } from "./interact/interactions";
import type { GiftEvent, ModAction, ModUpdate } from "./interact/payload";
import { Player, type PlayerOptions, type PlayerStats } from "./player/player";
import { Publisher, type PublisherOptions, type PublishStats } from "./publish/publisher";
import { connectRelay, relayUrls, type ChooseOptions } from "./session/choose";
import { Session } from "./session/session";
import type { TransportKind } from "./session/transport";

export { Player, Publisher, Session };
export type { PublishStats };
export { avcCodecFor, MAX_VIDEO_QUEUE, MAX_AUDIO_QUEUE } from "./publish/publisher";
export { IncomingSubscribe, NamespacePublication } from "./session/serve";
export { DEFAULT_RENDEZVOUS_TIMEOUT_MS } from "./player/player";
export { subscribeParameters, type SubscribeOptions } from "./session/session";
export type { PlayerOptions, PlayerStats, TransportKind };
export type { ConnectOptions } from "./session/session";
export {
  HEAD_START_MS,
  REMEMBER_MS,
  TransportMemory,
  connectRelay,
  isWebKit,
  parseTransport,
  plan as planTransports,
  type ChooseOptions,
  type RelayUrls,
} from "./session/choose";
export { MoqtError, Subscription, type TrackObject, type SessionClosed } from "./session/session";
export { JitterBuffer, PlayoutClock, type Frame, type JitterOptions } from "./player/jitter";
export { parseCatalog, type MediaTrack, type ParsedCatalog } from "./player/catalog";
export { VideoRenderer, type VideoPayload } from "./player/video";
export { RenditionSwitcher, ladderOf, startRendition, type SwitchRecord } from "./player/renditions";
export { Publication, SubgroupWriter } from "./session/publication";
export { Interactions, InteractionError, type ChatComment, type InteractionsOptions } from "./interact/interactions";
export {
  describeAction,
  refusalLabel,
  type Gate,
  type GiftEvent,
  type ModAction,
  type ModState,
  type ModUpdate,
} from "./interact/payload";

export interface RelayTarget {
  /** WebTransport URL, e.g. `https://127.0.0.1:4443/` (a `ws://`/`wss://` URL: the WebSocket one). */
  relay?: string;
  /** QMux-over-WebSocket URL, e.g. `ws://127.0.0.1:4443/` (control's `websocket`). */
  websocket?: string;
  /**
   * Only this transport; default: chosen (WebSocket where WebTransport is missing or WebKit's,
   * else WebTransport first and WebSocket 500 ms later, the winner remembered for a day).
   */
  transport?: TransportKind;
  /** Development certificate SHA-256 (hex), or several. */
  hash?: string | string[];
  /** A relay JWT (from the control plane's `/v1/watch`). */
  token?: string;
}

/** Open a raw MoQT session (SETUP done) to a relay, over the transport chosen as for `watch`. */
export function connect(target: RelayTarget): Promise<Session> {
  return connectRelay(relayUrls(target.relay, target.websocket), connectOptions(target));
}

/**
 * What `watch` takes: the relay (`hash` and `token` as for `connect`) and the player's own
 * options (`broadcast`, `canvas`, `targetLatencyMs`, `audio`, `onStats`, `interactions`, `room`,
 * `rendezvousTimeoutMs`, `rendition`, `startBitrate`, `refreshToken`, e.g. {@link refreshFromControl}; see
 * {@link PlayerOptions}).
 */
export interface WatchOptions extends RelayTarget, Omit<PlayerOptions, keyof RelayTarget | "serverCertificateHashes"> {}

/**
 * A `refreshToken` for {@link watch} that asks the control plane at `control` (its base URL,
 * e.g. `https://control.example`) for a fresh token: `POST /v1/refresh` with the current one.
 * The fresh token keeps the subject, namespace and room; the player presents it to the relay
 * before the current one expires.
 */
export function refreshFromControl(control: string): (token: string) => Promise<string> {
  return async (token: string) => {
    const response = await fetch(`${control.replace(/\/$/, "")}/v1/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token }),
    });
    if (!response.ok) throw new Error(`control plane: HTTP ${response.status} for /v1/refresh`);
    const body = (await response.json()) as { token?: unknown };
    if (typeof body.token !== "string" || !body.token) throw new Error("control plane: /v1/refresh returned no token");
    return body.token;
  };
}

/** Start playing a broadcast into a canvas; reconnects by itself until `stop()`. */
export function watch(options: WatchOptions): Player {
  const { hash: _hash, token: _token, transport: _transport, ...player } = options;
  return new Player({ ...player, ...connectOptions(options) });
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

/**
 * Send a moderation action (delete a comment, time out or ban a viewer by name, slow mode, a
 * followers-/subscribers-only gate). The player's token needs the `mod` claim (control mints it
 * for `?user=NAME` when NAME is a `--moderator` of the broadcast). Resolves with the `mod` update
 * carrying it once the origin applied it; rejects with `not_moderator` and the like.
 */
export async function moderate(player: Player, action: ModAction): Promise<ModUpdate> {
  return interactionsOf(player, "moderate").moderate(action);
}

/**
 * What `publish` takes: the relay (`hash`, `token` and `transport` as for `connect`; the token
 * must allow publishing the broadcast) and the publisher's options (`broadcast`, `stream`,
 * bitrates, `gopMs`, `videoCodecs`, `onStats`; see {@link PublisherOptions}).
 */
export interface PublishOptions extends RelayTarget, PublisherOptions {}

/**
 * Go live with a `MediaStream` (camera and microphone from `getUserMedia`, or a screen from
 * `getDisplayMedia`): H.264 (else VP8/VP9) and Opus through WebCodecs, LOC objects with capture
 * timestamps, one group per GOP, an MSF catalog, PUBLISH_NAMESPACE on the relay, each relay
 * SUBSCRIBE answered. `ready` resolves once the relay accepted the namespace; `stop()` ends the
 * broadcast cleanly. Does not stop the stream's tracks (they are the caller's).
 */
export function publish(options: PublishOptions): Publisher {
  const { relay, websocket, hash: _hash, token: _token, transport: _transport, ...rest } = options;
  return new Publisher(relayUrls(relay, websocket), connectOptions(options), rest);
}

function interactionsOf(player: Player, what: string) {
  if (!player.interactions) throw new InteractionsUnavailableError(what);
  return player.interactions;
}

function connectOptions(target: RelayTarget): ChooseOptions {
  const options: ChooseOptions = {};
  if (target.transport) options.transport = target.transport;
  const hashes = target.hash === undefined ? [] : Array.isArray(target.hash) ? target.hash : [target.hash];
  if (hashes.length > 0) options.serverCertificateHashes = hashes;
  if (target.token) options.token = target.token;
  return options;
}
