// Session.fetch against a fake WebTransport that plays the relay with the package's own
// encoders. A FETCH's objects come on their own unidirectional stream and its FETCH_OK on the
// request stream; either can arrive first. Proves: objects that arrive (and end) before the
// FETCH_OK are not lost (this hung forever once: the chat history after a page reload), the
// usual order works, a session that closes rejects a pending FETCH (before or after its
// FETCH_OK, with no rejection left unhandled), and a FETCH stream for a request we never sent
// closes the session with PROTOCOL_VIOLATION. Also: SUBSCRIBE carries the RENDEZVOUS_TIMEOUT
// asked for (the player's default 5 s, its option, none when 0). The player's media SUBSCRIBE
// leaves GROUP_ORDER out (the publisher's descending order applies), and a subgroup stream's end
// is reported as finished (FIN), reset (by the relay) or cancelled (by us). Token refresh: a
// subscription's `refresh` sends REQUEST_UPDATE with the token (REQUEST_OK resolves it,
// REQUEST_ERROR rejects it), and the player's refresh schedule and JWT `exp` reading.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Reader, SessionErrorCode, Writer } from "../src/coding";
import { FetchStream, SubgroupStream, encodeFetchHeader, encodeSubgroupHeader, type SubgroupHeader } from "../src/data";
import { decodeFrame, encodeFrame, type Message } from "../src/message";
import { DEFAULT_RENDEZVOUS_TIMEOUT_MS, Player, mediaSubscribeOptions, refreshDelayMs, tokenExpiry } from "../src/player/player";
import { Session, subscribeParameters, type StreamEnd } from "../src/session/session";

/** A readable stream the test feeds chunk by chunk. */
function feed(): {
  stream: ReadableStream<Uint8Array>;
  push: (b: Uint8Array) => void;
  end: () => void;
  fail: (e: Error) => void;
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => (controller = c) });
  return { stream, push: (b) => controller.enqueue(b), end: () => controller.close(), fail: (e) => controller.error(e) };
}

/** A request stream the client opened: the frames it wrote, and a way to answer. */
interface Request {
  written: Message[];
  answer: (m: Message) => void;
  /** The session is gone: the stream errors, as WebTransport's do. */
  fail: (e: Error) => void;
}

/** The relay side of one WebTransport session. */
class FakeTransport {
  readonly protocol = "moqt-18";
  readonly ready = Promise.resolve();
  readonly closed: Promise<{ closeCode: number; reason: string }>;
  closedWith: { closeCode?: number; reason?: string } | undefined;
  readonly requests: Request[] = [];
  private readonly incoming = new TransformStream<ReadableStream<Uint8Array>, ReadableStream<Uint8Array>>();
  private readonly incomingWriter = this.incoming.writable.getWriter();
  readonly incomingUnidirectionalStreams = this.incoming.readable;
  readonly datagrams = { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>() };
  private resolveClosed!: (info: { closeCode: number; reason: string }) => void;

  constructor() {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    // The server's control stream: SETUP, then kept open.
    const control = feed();
    control.push(encodeFrame({ type: "SETUP" }));
    void this.incomingWriter.write(control.stream);
  }

  /** The server opens a unidirectional stream with `bytes` and leaves it open; returns a reset. */
  sendOpenStream(bytes: Uint8Array): () => void {
    const stream = feed();
    stream.push(bytes);
    void this.incomingWriter.write(stream.stream);
    return () => stream.fail(new Error("WebTransportError: stream reset"));
  }

  /** The server opens a unidirectional stream with `bytes` and ends it; resolves once the
   *  client has read it to its end. */
  sendStream(bytes: Uint8Array): Promise<void> {
    let chunks = [bytes];
    let drained!: () => void;
    const done = new Promise<void>((resolve) => (drained = resolve));
    const stream = new ReadableStream<Uint8Array>(
      {
        // Called only when the client asks for more: after the last chunk, that is the end.
        pull: (c) => {
          const [next, ...rest] = chunks;
          chunks = rest;
          if (next) return c.enqueue(next);
          c.close();
          drained();
        },
      },
      { highWaterMark: 0 },
    );
    void this.incomingWriter.write(stream);
    return done;
  }

  async createUnidirectionalStream(): Promise<WritableStream<Uint8Array>> {
    return new WritableStream<Uint8Array>();
  }

  async createBidirectionalStream(): Promise<{ readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> }> {
    const toClient = feed();
    const request: Request = { written: [], answer: (m) => toClient.push(encodeFrame(m)), fail: toClient.fail };
    this.requests.push(request);
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => void request.written.push(decodeFrame(new Reader(chunk))),
    });
    return { readable: toClient.stream, writable };
  }

  close(info: { closeCode?: number; reason?: string } = {}): void {
    this.closedWith = info;
    this.resolveClosed({ closeCode: info.closeCode ?? 0, reason: info.reason ?? "" });
    for (const request of this.requests) request.fail(new Error("WebTransport session closed"));
  }
}

let transport: FakeTransport;

beforeEach(() => {
  transport = new FakeTransport();
  vi.stubGlobal(
    "WebTransport",
    class {
      constructor() {
        return transport;
      }
    },
  );
});

afterEach(() => {
  vi.unstubAllGlobals();
});

const payload = (text: string) => new TextEncoder().encode(text);

/** A FETCH stream answering `requestId` with `objects` (group 3, objects 0, 1, …). */
function fetchStream(requestId: number, objects: string[]): Uint8Array {
  const w = new Writer();
  encodeFetchHeader(w, requestId);
  const state = new FetchStream("ascending");
  objects.forEach((text, i) =>
    state.encodeItem(w, {
      kind: "object",
      object: { groupId: 3, subgroupId: 0, objectId: i, publisherPriority: 128, properties: [], payload: payload(text) },
    }),
  );
  return w.finish();
}

const fetchOk: Message = {
  type: "FETCH_OK",
  endOfTrack: false,
  endLocation: { group: 3, object: 2 },
  parameters: {},
  trackProperties: [],
};

/** Wait until the client has sent its FETCH; its Request ID. */
async function fetchSent(): Promise<{ request: Request; requestId: number }> {
  await vi.waitFor(() => expect(transport.requests.at(-1)?.written[0]?.type).toBe("FETCH"));
  const request = transport.requests.at(-1)!;
  const fetch = request.written[0];
  if (fetch?.type !== "FETCH") throw new Error("no FETCH");
  return { request, requestId: fetch.requestId };
}

/** `promise`, or a rejection after `ms` (a hang fails fast, with a reason). */
function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const range = [{ group: 3, object: 0 }, { group: 3, object: 2 }] as const;

describe("Session.fetch", () => {
  it("keeps objects whose stream ended before the FETCH_OK arrived", async () => {
    const session = await Session.connect("https://relay.test/");
    const fetching = session.fetch("live/a", "chat/0", ...range);
    const { request, requestId } = await fetchSent();
    // The session reads the whole data stream before the answer comes.
    await within(transport.sendStream(fetchStream(requestId, ["first", "second"])), "data stream read");
    await new Promise((r) => setTimeout(r, 0));
    request.answer(fetchOk);
    const objects = await within(fetching, "FETCH with its objects first");
    expect(objects.map((o) => [o.groupId, o.objectId, new TextDecoder().decode(o.payload)])).toEqual([
      [3, 0, "first"],
      [3, 1, "second"],
    ]);
  });

  it("resolves in the usual order too: FETCH_OK, then the objects", async () => {
    const session = await Session.connect("https://relay.test/");
    const fetching = session.fetch("live/a", "chat/0", ...range);
    const { request, requestId } = await fetchSent();
    request.answer(fetchOk);
    await new Promise((r) => setTimeout(r, 20));
    void transport.sendStream(fetchStream(requestId, ["only"]));
    const objects = await within(fetching, "FETCH with FETCH_OK first");
    expect(objects.map((o) => [o.objectId, new TextDecoder().decode(o.payload)])).toEqual([[0, "only"]]);
  });

  it("rejects a FETCH still waiting for its objects when the session closes", async () => {
    const session = await Session.connect("https://relay.test/");
    const fetching = session.fetch("live/a", "chat/0", ...range);
    const { request } = await fetchSent();
    request.answer(fetchOk);
    transport.close({ closeCode: 0, reason: "bye" });
    await expect(within(fetching, "FETCH at session close")).rejects.toThrow(/session closed/);
  });

  it("rejects a FETCH whose session closes before its FETCH_OK, and nothing is left unhandled", async () => {
    // vitest fails the run on an unhandled rejection: the waiter rejected at close must not be.
    const session = await Session.connect("https://relay.test/");
    const fetching = session.fetch("live/a", "chat/0", ...range);
    await fetchSent();
    transport.close({ closeCode: 0, reason: "bye" });
    await expect(within(fetching, "FETCH closed before FETCH_OK")).rejects.toThrow();
    await within(session.closed, "session close");
    await new Promise((r) => setTimeout(r, 20));
  });

  it("closes the session on a FETCH stream for a request it never sent", async () => {
    const session = await Session.connect("https://relay.test/");
    void transport.sendStream(fetchStream(40, ["stray"]));
    await within(session.closed, "session close");
    expect(transport.closedWith?.closeCode).toBe(SessionErrorCode.ProtocolViolation);
  });
});

/** Wait until the client has sent a SUBSCRIBE on a new request stream; that SUBSCRIBE. */
async function subscribeSent(index: number): Promise<Extract<Message, { type: "SUBSCRIBE" }>> {
  await vi.waitFor(() => expect(transport.requests[index]?.written[0]?.type).toBe("SUBSCRIBE"));
  const subscribe = transport.requests[index]?.written[0];
  if (subscribe?.type !== "SUBSCRIBE") throw new Error("no SUBSCRIBE");
  return subscribe;
}

// A draft-18 relay refuses a SUBSCRIBE for a track nobody publishes at once unless it carries
// RENDEZVOUS_TIMEOUT: the client asks for the wait it needs.
describe("Session.subscribe and RENDEZVOUS_TIMEOUT", () => {
  it("sends the wait asked for, and none when not asked", async () => {
    const session = await Session.connect("https://relay.test/");
    const waiting = session.subscribe("live/demo", "catalog", { rendezvousTimeoutMs: 5000 });
    const plain = session.subscribe("live/demo", "likes");
    waiting.catch(() => {});
    plain.catch(() => {});
    expect((await subscribeSent(0)).parameters).toEqual({ forward: true, rendezvousTimeout: 5000 });
    expect((await subscribeSent(1)).parameters).toEqual({ forward: true });
    session.close(0, "done");
    await expect(waiting).rejects.toThrow();
  });

  it("refuses a wait that is not a whole number of ms, before sending anything", async () => {
    const session = await Session.connect("https://relay.test/");
    for (const bad of [-1, 1.5, Number.NaN]) {
      await expect(session.subscribe("live/demo", "video", { rendezvousTimeoutMs: bad })).rejects.toThrow(RangeError);
    }
    expect(transport.requests).toHaveLength(0);
    session.close(0, "done");
  });

  it("the player asks for 5 s on its catalog SUBSCRIBE by default, or what it is told", async () => {
    for (const [options, expected] of [
      [{}, 5000],
      [{ rendezvousTimeoutMs: 1200 }, 1200],
      [{ rendezvousTimeoutMs: 0 }, undefined],
    ] as const) {
      transport = new FakeTransport();
      const player = new Player({
        relay: "https://relay.test/",
        broadcast: "live/demo",
        canvas: {} as HTMLCanvasElement,
        interactions: false,
        ...options,
      });
      try {
        const subscribe = await subscribeSent(0);
        expect(new TextDecoder().decode(subscribe.trackName)).toBe("catalog");
        expect(subscribe.parameters.rendezvousTimeout).toBe(expected);
        expect(DEFAULT_RENDEZVOUS_TIMEOUT_MS).toBe(5000);
      } finally {
        player.stop();
      }
    }
  });
});

describe("the player's media SUBSCRIBE and group streams", () => {
  it("asks for no GROUP_ORDER, so the relay applies the publisher's (descending: newest group first)", () => {
    for (const role of ["video", "audio"] as const) {
      const parameters = subscribeParameters(mediaSubscribeOptions(role, 5000));
      expect(parameters.groupOrder).toBeUndefined();
    }
    // Audio before video.
    expect(mediaSubscribeOptions("audio", 0).subscriberPriority).toBeLessThan(mediaSubscribeOptions("video", 0).subscriberPriority!);
  });

  /** A subgroup stream of `group` on alias 0 carrying `objects` one-byte objects. */
  function subgroupStream(group: number, objects: number): Uint8Array {
    const header: SubgroupHeader = {
      trackAlias: 0,
      groupId: group,
      subgroupId: { mode: "zero" },
      properties: false,
      endOfGroup: false,
      firstObject: false,
    };
    const w = new Writer();
    encodeSubgroupHeader(w, header);
    const state = new SubgroupStream(header);
    for (let o = 0; o < objects; o++) state.encodeObject(w, { objectId: o, properties: [], status: 0, payload: payload("x") });
    return w.finish();
  }

  it("reports each group stream's end: finished on FIN, reset when the relay resets it, cancelled when we did", async () => {
    const session = await Session.connect("https://relay.test/");
    const subscribing = session.subscribe("live/demo", "video");
    await subscribeSent(0);
    transport.requests[0]!.answer({ type: "SUBSCRIBE_OK", trackAlias: 0, parameters: {}, trackProperties: [] });
    const sub = await within(subscribing, "SUBSCRIBE_OK");
    const objects: string[] = [];
    const ends: [number, StreamEnd][] = [];
    sub.onObject = (o) => objects.push(`${o.groupId}/${o.objectId}`);
    sub.onStreamEnd = (group, end) => ends.push([group, end]);
    await transport.sendStream(subgroupStream(1, 3));
    await vi.waitFor(() => expect(ends).toContainEqual([1, "finished"]));
    const reset = transport.sendOpenStream(subgroupStream(2, 2));
    await vi.waitFor(() => expect(objects).toContain("2/1"));
    reset();
    await vi.waitFor(() => expect(ends).toContainEqual([2, "reset"]));
    // Groups older than the newest two are cancelled, also when their stream opens late.
    sub.cancelGroupsBefore(2);
    void transport.sendStream(subgroupStream(0, 1));
    await vi.waitFor(() => expect(ends).toContainEqual([0, "cancelled"]));
    expect(objects).toEqual(["1/0", "1/1", "1/2", "2/0", "2/1"]);
    expect(session.isOpen).toBe(true);
    session.close(0, "done");
  });
});

describe("token refresh", () => {
  it("sends REQUEST_UPDATE with the token on the subscription's stream; REQUEST_OK resolves, REQUEST_ERROR rejects", async () => {
    const session = await Session.connect("https://relay.test/");
    const subscribing = session.subscribe("live/demo", "video");
    await subscribeSent(0);
    transport.requests[0]!.answer({ type: "SUBSCRIBE_OK", trackAlias: 0, parameters: {}, trackProperties: [] });
    const sub = await within(subscribing, "SUBSCRIBE_OK");
    const refreshed = sub.refresh("fresh.jwt.token");
    await vi.waitFor(() => expect(transport.requests[0]!.written[1]?.type).toBe("REQUEST_UPDATE"));
    const update = transport.requests[0]!.written[1];
    if (update?.type !== "REQUEST_UPDATE") throw new Error("no REQUEST_UPDATE");
    expect(update.parameters.authorizationTokens).toEqual([
      { aliasType: "use-value", tokenType: 0, tokenValue: payload("fresh.jwt.token") },
    ]);
    transport.requests[0]!.answer({ type: "REQUEST_OK", parameters: {}, trackProperties: [] });
    await within(refreshed, "REQUEST_OK");

    const refused = sub.refresh("someone.elses.token");
    refused.catch(() => {});
    await vi.waitFor(() => expect(transport.requests[0]!.written[2]?.type).toBe("REQUEST_UPDATE"));
    transport.requests[0]!.answer({ type: "REQUEST_ERROR", errorCode: 1n, retryInterval: 0, errorReason: "other subject" });
    await expect(within(refused, "REQUEST_ERROR")).rejects.toThrow(/REQUEST_UPDATE on live\/demo\/video refused: code 0x1 other subject/);
    session.close(0, "done");
  });

  it("a publisher sends REQUEST_UPDATE on its PUBLISH_NAMESPACE; the answer does not end the publication", async () => {
    const session = await Session.connect("https://relay.test/");
    const publishing = session.publishNamespace("live/me");
    await vi.waitFor(() => expect(transport.requests[0]?.written[0]?.type).toBe("PUBLISH_NAMESPACE"));
    transport.requests[0]!.answer({ type: "REQUEST_OK", parameters: {}, trackProperties: [] });
    const publication = await within(publishing, "REQUEST_OK");
    let ended = false;
    void publication.ended.then(() => (ended = true));
    const refreshed = publication.refresh("fresh.jwt.token");
    await vi.waitFor(() => expect(transport.requests[0]!.written[1]?.type).toBe("REQUEST_UPDATE"));
    const update = transport.requests[0]!.written[1];
    if (update?.type !== "REQUEST_UPDATE") throw new Error("no REQUEST_UPDATE");
    const token = update.parameters.authorizationTokens?.[0];
    expect(token && "tokenValue" in token ? token.tokenValue : undefined).toEqual(payload("fresh.jwt.token"));
    transport.requests[0]!.answer({ type: "REQUEST_OK", parameters: {}, trackProperties: [] });
    await within(refreshed, "REQUEST_OK");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ended).toBe(false);
    session.close(0, "done");
  });

  it("refreshes a quarter of the remaining life before exp, 2 s to 30 s ahead", () => {
    const now = 1_000_000_000_000;
    const at = (secondsLeft: number) => refreshDelayMs(now / 1000 + secondsLeft, now);
    expect(at(60)).toBe(45_000); // 15 s ahead
    expect(at(600)).toBe(570_000); // capped at 30 s ahead
    expect(at(4)).toBe(2_000); // at least 2 s ahead
    expect(at(1)).toBe(0); // already inside the lead: now
    expect(at(-3)).toBe(0);
  });

  it("reads a JWT's exp without verifying it", () => {
    const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    expect(tokenExpiry(`${b64({ alg: "HS256" })}.${b64({ ns: "live/a", exp: 1767225600 })}.sig`)).toBe(1767225600);
    expect(tokenExpiry("not-a-jwt")).toBeUndefined();
    expect(tokenExpiry(`${b64({})}.${b64({ ns: "x" })}.sig`)).toBeUndefined();
  });
});
