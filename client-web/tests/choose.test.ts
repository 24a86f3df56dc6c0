// The transport choice (src/session/choose.ts), without a network: which transports a page tries
// (forced, WebKit, no WebTransport, missing URLs, the remembered winner first), the winner kept
// in storage for a day and not renewed by winning again, and the race on a fake clock: the
// second contender starts exactly HEAD_START_MS after the first (at once when the first fails),
// never when the first wins in time, the loser is aborted or closed, and all failing rejects
// with every reason.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  HEAD_START_MS,
  MEMORY_KEY,
  REMEMBER_MS,
  TransportMemory,
  isWebKit,
  parseTransport,
  plan,
  race,
  relayUrls,
  type Contender,
  type Environment,
  type KeyValueStore,
} from "../src/session/choose";
import type { TransportKind } from "../src/session/transport";

const UA = {
  chrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
  headlessChrome: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
  edge: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0",
  android: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36",
  firefox: "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0",
  safari: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.0 Safari/605.1.15",
  iosSafari: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
  iosChrome: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/140.0.0.0 Mobile/15E148 Safari/604.1",
  iosFirefox: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/140.0 Mobile/15E148 Safari/605.1.15",
};

const both = { webtransport: "https://relay.test/", websocket: "ws://relay.test:4443/" };
const chrome: Environment = { hasWebTransport: true, userAgent: UA.chrome };

describe("isWebKit", () => {
  it("is true for Safari and every iOS browser, false for Chromium-based browsers and Firefox", () => {
    for (const ua of [UA.safari, UA.iosSafari, UA.iosChrome, UA.iosFirefox]) expect(isWebKit(ua), ua).toBe(true);
    for (const ua of [UA.chrome, UA.headlessChrome, UA.edge, UA.android, UA.firefox, ""]) expect(isWebKit(ua), ua).toBe(false);
  });
});

describe("plan", () => {
  it("races WebTransport first, then WebSocket, by default", () => {
    expect(plan(both, chrome).order).toEqual(["webtransport", "websocket"]);
    expect(plan(both, { hasWebTransport: true, userAgent: UA.firefox }).order).toEqual(["webtransport", "websocket"]);
  });

  it("uses only the forced transport, whatever the browser or memory", () => {
    expect(plan(both, chrome, "websocket", "webtransport")).toEqual({ order: ["websocket"], reason: "forced" });
    expect(plan(both, { hasWebTransport: true, userAgent: UA.safari }, "webtransport").order).toEqual(["webtransport"]);
    expect(() => plan({ webtransport: both.webtransport }, chrome, "websocket")).toThrow(/no websocket URL/);
  });

  it("goes straight to WebSocket on WebKit, even with a WebTransport constructor", () => {
    for (const ua of [UA.safari, UA.iosChrome]) {
      expect(plan(both, { hasWebTransport: true, userAgent: ua }, undefined, "webtransport").order).toEqual(["websocket"]);
    }
  });

  it("goes straight to WebSocket without WebTransport in the page, or without its URL", () => {
    expect(plan(both, { hasWebTransport: false, userAgent: UA.chrome }).order).toEqual(["websocket"]);
    expect(plan({ websocket: both.websocket }, chrome).order).toEqual(["websocket"]);
  });

  it("uses WebTransport alone when the relay has no WebSocket URL, and fails when nothing can work", () => {
    expect(plan({ webtransport: both.webtransport }, chrome).order).toEqual(["webtransport"]);
    expect(() => plan({ webtransport: both.webtransport }, { hasWebTransport: false, userAgent: "" })).toThrow(/no WebTransport/);
    expect(() => plan({}, chrome)).toThrow(/no relay URL/);
  });

  it("puts a remembered WebSocket winner first, WebTransport still racing behind it", () => {
    expect(plan(both, chrome, undefined, "websocket").order).toEqual(["websocket", "webtransport"]);
    expect(plan(both, chrome, undefined, "webtransport").order).toEqual(["webtransport", "websocket"]);
  });

  it("reads the relay's URLs by scheme", () => {
    expect(relayUrls("ws://r/")).toEqual({ websocket: "ws://r/" });
    expect(relayUrls("wss://r/", "wss://other/")).toEqual({ websocket: "wss://other/" });
    expect(relayUrls("https://r/", "ws://r:1/")).toEqual({ webtransport: "https://r/", websocket: "ws://r:1/" });
    expect(parseTransport("WebSocket")).toBe("websocket");
    expect(parseTransport("quic")).toBeUndefined();
  });
});

class MapStore implements KeyValueStore {
  readonly map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
}

describe("TransportMemory", () => {
  it("remembers a winner for a day, then forgets it", () => {
    let now = 1_000_000;
    const store = new MapStore();
    const memory = new TransportMemory(store, () => now);
    expect(memory.get()).toBeUndefined();
    memory.won("websocket");
    expect(JSON.parse(store.getItem(MEMORY_KEY)!)).toEqual({ kind: "websocket", until: 1_000_000 + REMEMBER_MS });
    now += REMEMBER_MS - 1;
    expect(memory.get()).toBe("websocket");
    // A new visit (a new memory on the same storage) sees it too.
    expect(new TransportMemory(store, () => now).get()).toBe("websocket");
    now += 1;
    expect(memory.get()).toBeUndefined();
    expect(store.map.has(MEMORY_KEY)).toBe(false);
  });

  it("is not renewed by the same winner, so WebTransport is tried first again after a day", () => {
    let now = 0;
    const memory = new TransportMemory(new MapStore(), () => now);
    memory.won("websocket");
    now = REMEMBER_MS / 2;
    memory.won("websocket");
    now = REMEMBER_MS;
    expect(memory.get()).toBeUndefined();
    // A different winner replaces it.
    memory.won("websocket");
    memory.won("webtransport");
    expect(memory.get()).toBe("webtransport");
  });

  it("treats garbage, a missing store and a failing store as nothing remembered", () => {
    const store = new MapStore();
    store.setItem(MEMORY_KEY, "{not json");
    expect(new TransportMemory(store).get()).toBeUndefined();
    store.setItem(MEMORY_KEY, JSON.stringify({ kind: "carrier-pigeon", until: Date.now() + 1000 }));
    expect(new TransportMemory(store).get()).toBeUndefined();
    const none = new TransportMemory(undefined);
    none.won("websocket");
    expect(none.get()).toBeUndefined();
    const failing: KeyValueStore = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("quota");
      },
      removeItem: () => {},
    };
    const memory = new TransportMemory(failing);
    expect(() => memory.won("websocket")).not.toThrow();
    expect(memory.get()).toBeUndefined();
  });
});

/** A contender whose outcome the test decides, recording when it started and if it was aborted. */
class Fake {
  startedAt: number | undefined;
  aborted = false;
  private settle: { ok: (v: string) => void; fail: (e: Error) => void } | undefined;
  constructor(readonly kind: TransportKind) {}
  contender(): Contender<string> {
    return {
      kind: this.kind,
      connect: (signal) => {
        this.startedAt = Date.now();
        signal.addEventListener("abort", () => (this.aborted = true));
        return new Promise((ok, fail) => (this.settle = { ok, fail }));
      },
    };
  }
  succeed(): void {
    this.settle?.ok(`${this.kind} session`);
  }
  fail(why: string): void {
    this.settle?.fail(new Error(why));
  }
}

describe("race", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function start(first: Fake, second: Fake) {
    const closed: string[] = [];
    const outcome = race([first.contender(), second.contender()], (loser, kind) => closed.push(`${kind}: ${loser}`));
    outcome.catch(() => {});
    return { outcome, closed };
  }

  it("gives the first contender a 500 ms head start and keeps the second if it completes first", async () => {
    const wt = new Fake("webtransport");
    const ws = new Fake("websocket");
    const { outcome, closed } = start(wt, ws);
    expect(HEAD_START_MS).toBe(500);
    expect(wt.startedAt).toBe(0);
    await vi.advanceTimersByTimeAsync(HEAD_START_MS - 1);
    expect(ws.startedAt).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(ws.startedAt).toBe(HEAD_START_MS);
    ws.succeed();
    await expect(outcome).resolves.toEqual({ kind: "websocket", value: "websocket session" });
    // The loser still connecting is aborted; if it completes anyway, it is closed.
    expect(wt.aborted).toBe(true);
    wt.succeed();
    await vi.advanceTimersByTimeAsync(0);
    expect(closed).toEqual(["webtransport: webtransport session"]);
  });

  it("never starts the second when the first completes within the head start", async () => {
    const wt = new Fake("webtransport");
    const ws = new Fake("websocket");
    const { outcome, closed } = start(wt, ws);
    await vi.advanceTimersByTimeAsync(120);
    wt.succeed();
    await expect(outcome).resolves.toMatchObject({ kind: "webtransport" });
    await vi.advanceTimersByTimeAsync(10 * HEAD_START_MS);
    expect(ws.startedAt).toBeUndefined();
    expect(closed).toEqual([]);
  });

  it("keeps the first when it completes after the second started, and closes the second then", async () => {
    const wt = new Fake("webtransport");
    const ws = new Fake("websocket");
    const { outcome, closed } = start(wt, ws);
    await vi.advanceTimersByTimeAsync(HEAD_START_MS + 50);
    wt.succeed();
    await expect(outcome).resolves.toMatchObject({ kind: "webtransport" });
    expect(ws.aborted).toBe(true);
    ws.succeed();
    await vi.advanceTimersByTimeAsync(0);
    expect(closed).toEqual(["websocket: websocket session"]);
  });

  it("starts the second at once when the first fails before its head start is over", async () => {
    const wt = new Fake("webtransport");
    const ws = new Fake("websocket");
    const { outcome } = start(wt, ws);
    await vi.advanceTimersByTimeAsync(30);
    wt.fail("QUIC blocked");
    await vi.advanceTimersByTimeAsync(0);
    expect(ws.startedAt).toBe(30);
    ws.succeed();
    await expect(outcome).resolves.toMatchObject({ kind: "websocket" });
  });

  it("rejects with both reasons when both fail", async () => {
    const wt = new Fake("webtransport");
    const ws = new Fake("websocket");
    const { outcome } = start(wt, ws);
    await vi.advanceTimersByTimeAsync(HEAD_START_MS);
    ws.fail("refused");
    wt.fail("timed out");
    await expect(outcome).rejects.toThrow("websocket: refused; webtransport: timed out");
  });

  it("runs a single contender alone", async () => {
    const ws = new Fake("websocket");
    const outcome = race([ws.contender()], () => {});
    ws.succeed();
    await expect(outcome).resolves.toMatchObject({ kind: "websocket" });
  });
});
