/**
 * Choosing the transport: WebTransport or QMux over WebSocket (see `transport.ts`).
 *
 * - **Forced** (`?transport=` on the demo page, the `transport` option): that one only.
 * - **WebKit** (Safari, and every browser on iOS, which all run WebKit): WebSocket only, even
 *   where `WebTransport` exists. WebKit's WebTransport stalls under a live stream (flow-control
 *   credit that never comes back, no new incoming unidirectional streams after some thousands
 *   of them, a session killed by reading datagrams), which is why MoQ players keep WebKit on
 *   WebSocket. Detected by the user agent (`isWebKit`): a feature test cannot see these bugs.
 * - **No `WebTransport`** in the page, or no WebTransport URL: WebSocket only. No WebSocket URL:
 *   WebTransport only.
 * - Otherwise a **race**: the first choice starts at once and the other {@link HEAD_START_MS}
 *   later (at once if the first fails sooner); whichever completes MoQT SETUP first is kept and
 *   the other abandoned (aborted, or closed if it completes after all). The first choice is
 *   WebTransport, or the winner remembered from an earlier race (`TransportMemory`,
 *   localStorage, for a day), so a network that blocks UDP costs the head start only once a day.
 *   A remembered winner is not renewed by winning again: WebTransport gets its chance daily.
 */
import { MoqtError, Session, type ConnectOptions } from "./session";
import { TRANSPORT_KINDS, transportOfUrl, type TransportKind } from "./transport";

/** How long WebTransport (or the remembered winner) runs alone before the other joins the race. */
export const HEAD_START_MS = 500;

/** How long a race's winner is remembered (ms): a day. */
export const REMEMBER_MS = 24 * 60 * 60 * 1000;

/** The localStorage key of the remembered winner: `{"kind":"websocket","until":<epoch ms>}`. */
export const MEMORY_KEY = "banyan.transport";

/** The URLs a relay is reachable at, one per transport. */
export interface RelayUrls {
  /** `https://host:port/path` (WebTransport). */
  webtransport?: string | undefined;
  /** `ws://host:port/path` or `wss://…` (QMux over WebSocket). */
  websocket?: string | undefined;
}

/**
 * The URLs of a relay named by `relay` (either scheme: a `ws://`/`wss://` URL is the WebSocket
 * one) and, optionally, `websocket` beside it.
 */
export function relayUrls(relay: string | undefined, websocket?: string): RelayUrls {
  if (relay && transportOfUrl(relay) === "websocket") return { websocket: websocket ?? relay };
  return { webtransport: relay, websocket };
}

/** What the choice looks at. */
export interface Environment {
  /** Whether the page has a `WebTransport` constructor. */
  hasWebTransport: boolean;
  /** `navigator.userAgent`. */
  userAgent: string;
}

/** The transports to try, in order (the second after the head start), and why. */
export interface Plan {
  order: TransportKind[];
  reason: string;
}

/** Parse a `transport` setting (`?transport=`): a kind, or undefined for anything else. */
export function parseTransport(value: string | null | undefined): TransportKind | undefined {
  const v = value?.trim().toLowerCase();
  return TRANSPORT_KINDS.find((k) => k === v);
}

/**
 * WebKit by its user agent: `AppleWebKit/` without a Chromium token. Chrome, Edge, Opera and
 * Android WebViews also say `AppleWebKit/…` but carry `Chrome/`; Safari, and Chrome, Firefox or
 * Edge on iOS (`CriOS/`, `FxiOS/`, `EdgiOS/`: WebKit underneath), do not.
 */
export function isWebKit(userAgent: string): boolean {
  return /AppleWebKit\//.test(userAgent) && !/(Chrome|Chromium|HeadlessChrome)\//.test(userAgent);
}

/** The page's environment (`globalThis.WebTransport`, `navigator.userAgent`). */
export function browserEnvironment(): Environment {
  const g = globalThis as { WebTransport?: unknown; navigator?: { userAgent?: string } };
  return { hasWebTransport: typeof g.WebTransport === "function", userAgent: g.navigator?.userAgent ?? "" };
}

/** Which transports to try for `urls`, in order; throws when none can be. */
export function plan(urls: RelayUrls, env: Environment, forced?: TransportKind, remembered?: TransportKind): Plan {
  const url = (k: TransportKind) => (k === "webtransport" ? urls.webtransport : urls.websocket);
  if (forced) {
    if (!url(forced)) throw new MoqtError(`transport ${forced} was asked for, but the relay has no ${forced} URL`);
    return { order: [forced], reason: "forced" };
  }
  const webtransport = !!urls.webtransport && env.hasWebTransport;
  if (!urls.websocket) {
    if (!webtransport) {
      throw new MoqtError(
        urls.webtransport ? "this browser has no WebTransport and the relay no WebSocket URL" : "no relay URL",
      );
    }
    return { order: ["webtransport"], reason: "the relay has no WebSocket URL" };
  }
  if (!env.hasWebTransport) return { order: ["websocket"], reason: "this browser has no WebTransport" };
  if (!urls.webtransport) return { order: ["websocket"], reason: "the relay has no WebTransport URL" };
  if (isWebKit(env.userAgent)) return { order: ["websocket"], reason: "WebKit (its WebTransport stalls)" };
  if (remembered === "websocket") return { order: ["websocket", "webtransport"], reason: "race, WebSocket won last time" };
  return { order: ["webtransport", "websocket"], reason: "race" };
}

/** The part of `Storage` the memory uses. */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The last race's winner, kept in `store` (localStorage) until it expires. */
export class TransportMemory {
  constructor(
    private readonly store: KeyValueStore | undefined,
    private readonly now: () => number = Date.now,
    private readonly ttlMs: number = REMEMBER_MS,
  ) {}

  /** The page's localStorage, when it has one it may use (not in a sandboxed frame). */
  static local(): TransportMemory {
    let store: KeyValueStore | undefined;
    try {
      store = (globalThis as { localStorage?: KeyValueStore }).localStorage;
    } catch {
      store = undefined;
    }
    return new TransportMemory(store);
  }

  /** The remembered winner, unless none, unreadable or expired (an expired one is removed). */
  get(): TransportKind | undefined {
    try {
      const raw = this.store?.getItem(MEMORY_KEY);
      if (!raw) return undefined;
      const value = JSON.parse(raw) as { kind?: unknown; until?: unknown };
      const kind = parseTransport(typeof value.kind === "string" ? value.kind : undefined);
      if (kind && typeof value.until === "number" && value.until > this.now()) return kind;
      this.store?.removeItem(MEMORY_KEY);
    } catch {
      // unreadable: as good as none
    }
    return undefined;
  }

  /** A race was won by `kind`: remember it for the TTL, unless it is already remembered. */
  won(kind: TransportKind): void {
    if (this.get() === kind) return;
    try {
      this.store?.setItem(MEMORY_KEY, JSON.stringify({ kind, until: this.now() + this.ttlMs }));
    } catch {
      // storage full or denied: the next visit races again
    }
  }
}

/** One contender: opens its transport and completes SETUP, giving up when `signal` aborts. */
export interface Contender<T> {
  kind: TransportKind;
  connect(signal: AbortSignal): Promise<T>;
}

/** The race's outcome: the winner, and what every contender that ran did. */
export interface RaceResult<T> {
  kind: TransportKind;
  value: T;
}

/** Timers, injectable for tests. */
export interface Timers {
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Race the contenders: the first starts at once, each next one `headStartMs` after the one
 * before it (or as soon as every earlier one has failed). The first to resolve wins; the others
 * are aborted, never started, or — resolving late — given to `close`. Rejects when all fail,
 * with every contender's error.
 */
export function race<T>(
  contenders: Contender<T>[],
  close: (loser: T, kind: TransportKind) => void,
  headStartMs = HEAD_START_MS,
  timers: Timers = realTimers,
): Promise<RaceResult<T>> {
  return new Promise((resolve, reject) => {
    const errors: string[] = [];
    const aborts = contenders.map(() => new AbortController());
    let started = 0;
    let settled = 0;
    let won = false;
    let timer: unknown;
    const startNext = () => {
      timers.clearTimeout(timer);
      timer = undefined;
      if (won || started >= contenders.length) return;
      const i = started++;
      const contender = contenders[i]!;
      if (started < contenders.length) timer = timers.setTimeout(startNext, headStartMs);
      new Promise<T>((ok) => ok(contender.connect(aborts[i]!.signal))).then(
        (value) => {
          if (won) {
            close(value, contender.kind);
            return;
          }
          won = true;
          timers.clearTimeout(timer);
          aborts.forEach((a, j) => j !== i && a.abort());
          resolve({ kind: contender.kind, value });
        },
        (e: unknown) => {
          settled++;
          if (won) return;
          errors.push(`${contender.kind}: ${e instanceof Error ? e.message : String(e)}`);
          if (settled === contenders.length) reject(new MoqtError(errors.join("; ")));
          // Every contender started so far has failed: start the next one now.
          else if (settled === started) startNext();
        },
      );
    };
    if (contenders.length === 0) reject(new MoqtError("no transport to try"));
    else startNext();
  });
}

/** How {@link connectRelay} connects: the session's options plus the choice's inputs. */
export interface ChooseOptions extends Omit<ConnectOptions, "signal"> {
  /** Only this transport (no race). */
  transport?: TransportKind | undefined;
  /** Where the race's winner is remembered (default: localStorage). */
  memory?: TransportMemory;
  /** Default: the page's (`browserEnvironment()`). */
  environment?: Environment;
  /** Default {@link HEAD_START_MS}. */
  headStartMs?: number;
}

/** Connect to a relay over the transport {@link plan} picks, racing when it names two. */
export async function connectRelay(urls: RelayUrls, options: ChooseOptions = {}): Promise<Session> {
  const { transport, memory = TransportMemory.local(), environment, headStartMs, ...connect } = options;
  const chosen = plan(urls, environment ?? browserEnvironment(), transport, transport ? undefined : memory.get());
  const contenders = chosen.order.map((kind): Contender<Session> => ({
    kind,
    connect: (signal) => {
      const url = kind === "webtransport" ? urls.webtransport : urls.websocket;
      return Session.connect(url!, { ...connect, signal });
    },
  }));
  const result = await race(contenders, (loser) => loser.close(0, "lost the transport race"), headStartMs);
  if (chosen.order.length > 1) memory.won(result.kind);
  return result.value;
}
