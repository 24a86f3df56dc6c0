// The MoQT session unchanged on @moq/qmux: a ws:// URL opens a QMux session (the package's own
// client) over an in-memory WebSocket whose other end is the package's server role, played as a
// relay by the test. Proves: the client offers exactly the subprotocol `qmux-01.moqt-18` (the
// relay's), SETUP is exchanged, a SUBSCRIBE is answered and its subgroup stream's objects and an
// OBJECT_DATAGRAM arrive, a like datagram goes up as a QMux DATAGRAM, the relay's close settles
// `session.closed`; connectRelay, with a WebTransport that never connects, starts the WebSocket
// after the head start, keeps it, remembers it and closes the WebTransport attempt; in a page
// without WebTransport it picks WebSocket without a race (nothing remembered).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import QMuxSession from "@moq/qmux";
import { Reader, Writer } from "../src/coding";
import { SubgroupStream, decodeDatagram, encodeDatagram, encodeSubgroupHeader, type SubgroupHeader } from "../src/data";
import { decodeFrame, encodeFrame, type Message } from "../src/message";
import { MEMORY_KEY, TransportMemory, connectRelay, type KeyValueStore } from "../src/session/choose";
import { Session } from "../src/session/session";

/** One end of an in-memory WebSocket (the slice `@moq/web-socket-stream` uses). */
class MemorySocket {
  binaryType = "blob";
  bufferedAmount = 0;
  readyState = 0;
  protocol = "";
  extensions = "";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  peer: MemorySocket | undefined;

  send(data: ArrayBufferLike | ArrayBufferView | string): void {
    if (this.readyState !== 1 || typeof data === "string") return;
    const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    const copy = bytes.slice().buffer;
    const peer = this.peer;
    setTimeout(() => peer?.readyState === 1 && peer.onmessage?.({ data: copy }), 0);
  }

  close(code = 1000, reason = ""): void {
    for (const end of [this, this.peer]) {
      if (!end || end.readyState >= 2) continue;
      end.readyState = 3;
      setTimeout(() => end.onclose?.({ code, reason }), 0);
    }
  }

  open(protocol: string): void {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.({});
  }
}

const SUBPROTOCOL = "qmux-01.moqt-18";
let offered: string[] = [];
let relay: Promise<QMuxSession>;

beforeEach(() => {
  offered = [];
  let accepted!: (s: QMuxSession) => void;
  relay = new Promise((resolve) => (accepted = resolve));
  // The page's WebSocket: its peer is accepted by the relay when it offers our subprotocol.
  vi.stubGlobal(
    "WebSocket",
    class extends MemorySocket {
      constructor(_url: string, protocols?: string | string[]) {
        super();
        offered = typeof protocols === "string" ? [protocols] : [...(protocols ?? [])];
        const server = new MemorySocket();
        this.peer = server;
        server.peer = this;
        setTimeout(() => {
          if (!offered.includes(SUBPROTOCOL)) return this.close(1002, "no subprotocol");
          server.open(SUBPROTOCOL);
          accepted(QMuxSession.accept(server as never));
          this.open(SUBPROTOCOL);
        }, 0);
      }
    },
  );
});

afterEach(() => {
  vi.unstubAllGlobals();
});

/** The first message on a request stream (the client keeps it open). */
async function firstMessage(stream: ReadableStream<Uint8Array>): Promise<Message> {
  const reader = stream.getReader();
  let buf = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("request stream ended");
    const next = new Uint8Array(buf.length + value.length);
    next.set(buf);
    next.set(value, buf.length);
    buf = next;
    try {
      reader.releaseLock();
      return decodeFrame(new Reader(buf));
    } catch {
      // incomplete: read more
    }
  }
}

/** The relay's half of SETUP: read the client's control stream's SETUP, send its own. */
async function relaySetup(server: QMuxSession): Promise<void> {
  await server.ready;
  const uni = server.incomingUnidirectionalStreams.getReader();
  const control = await uni.read();
  if (control.done) throw new Error("no control stream");
  const setup = await firstMessage(control.value);
  expect(setup.type).toBe("SETUP");
  uni.releaseLock();
  const ours = await server.createUnidirectionalStream();
  const writer = ours.getWriter();
  await writer.write(encodeFrame({ type: "SETUP" }));
  writer.releaseLock();
}

const text = (s: string) => new TextEncoder().encode(s);

describe("Session over @moq/qmux", () => {
  it("runs SETUP, SUBSCRIBE, streams and datagrams both ways over QMux on a WebSocket", async () => {
    const connecting = Session.connect("ws://relay.test:4443/");
    const server = await relay;
    await relaySetup(server);
    const session = await connecting;
    expect(offered).toEqual([SUBPROTOCOL]);
    expect(session.transportKind).toBe("websocket");

    // SUBSCRIBE on a bidirectional stream; SUBSCRIBE_OK with alias 7.
    const subscribing = session.subscribe("live/demo", "video");
    const requests = server.incomingBidirectionalStreams.getReader();
    const bidi = await requests.read();
    if (bidi.done) throw new Error("no request stream");
    const subscribe = await firstMessage(bidi.value.readable);
    expect(subscribe.type).toBe("SUBSCRIBE");
    const answer = bidi.value.writable.getWriter();
    await answer.write(encodeFrame({ type: "SUBSCRIBE_OK", trackAlias: 7, parameters: {}, trackProperties: [] }));
    const sub = await subscribing;
    const objects: string[] = [];
    sub.onObject = (o) => objects.push(`${o.groupId}/${o.objectId} ${new TextDecoder().decode(o.payload)}`);

    // A subgroup stream of group 3 with two objects, then a datagram of group 4.
    const header: SubgroupHeader = { trackAlias: 7, groupId: 3, subgroupId: { mode: "zero" }, properties: false, endOfGroup: false, firstObject: false };
    const w = new Writer();
    encodeSubgroupHeader(w, header);
    const state = new SubgroupStream(header);
    state.encodeObject(w, { objectId: 0, properties: [], status: 0, payload: text("key") });
    state.encodeObject(w, { objectId: 1, properties: [], status: 0, payload: text("delta") });
    const data = (await server.createUnidirectionalStream()).getWriter();
    await data.write(w.finish());
    await data.close();
    await vi.waitFor(() => expect(objects).toEqual(["3/0 key", "3/1 delta"]));
    const down = server.datagrams.writable.getWriter();
    await down.write(
      encodeDatagram({ kind: "object", object: { trackAlias: 7, groupId: 4, objectId: 0, properties: [], endOfGroup: false, status: 0, payload: text("dgram") } }),
    );
    await vi.waitFor(() => expect(objects).toContain("4/0 dgram"));

    // Up: a PUBLISHed track's datagram (a like) arrives as a QMux DATAGRAM.
    const publishing = session.publish("live/demo", "interact");
    const request = await requests.read();
    if (request.done) throw new Error("no PUBLISH stream");
    expect((await firstMessage(request.value.readable)).type).toBe("PUBLISH");
    await request.value.writable.getWriter().write(encodeFrame({ type: "REQUEST_OK", parameters: {}, trackProperties: [] }));
    const publication = await publishing;
    const up = server.datagrams.readable.getReader();
    expect(publication.sendDatagram(0, 0, text("like"))).toBe(true);
    const datagram = await up.read();
    const decoded = decodeDatagram(datagram.value!);
    expect(decoded.kind === "object" && new TextDecoder().decode(decoded.object.payload)).toBe("like");

    // The relay closes the session (as on drain): `closed` settles with its code.
    server.close({ closeCode: 0, reason: "bye" });
    await expect(session.closed).resolves.toMatchObject({ code: 0, reason: "bye", local: false });
  });

  it("connectRelay races: WebSocket joins after the head start, wins, is remembered, and the WebTransport attempt is closed", async () => {
    const store = new Map<string, string>();
    const kv: KeyValueStore = {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    };
    // A WebTransport whose handshake never completes (UDP blocked), recording when it is closed.
    let wtOpened = 0;
    let wtClosed = 0;
    vi.stubGlobal(
      "WebTransport",
      class {
        readonly ready = new Promise<void>(() => {});
        readonly closed = new Promise<never>(() => {});
        constructor() {
          wtOpened++;
        }
        close(): void {
          wtClosed++;
        }
      },
    );
    const started = Date.now();
    const connecting = connectRelay(
      { webtransport: "https://relay.test/", websocket: "ws://relay.test:4443/" },
      { environment: { hasWebTransport: true, userAgent: "test" }, memory: new TransportMemory(kv), headStartMs: 50 },
    );
    await relaySetup(await relay);
    const session = await connecting;
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(session.transportKind).toBe("websocket");
    expect(wtOpened).toBe(1);
    expect(wtClosed).toBe(1);
    expect(JSON.parse(store.get(MEMORY_KEY)!)).toMatchObject({ kind: "websocket" });
    session.close();
  });

  it("connectRelay picks WebSocket in a page without WebTransport, with no race to remember", async () => {
    const store = new Map<string, string>();
    const kv: KeyValueStore = {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    };
    const connecting = connectRelay(
      { webtransport: "https://relay.test/", websocket: "ws://relay.test:4443/" },
      { environment: { hasWebTransport: false, userAgent: "test" }, memory: new TransportMemory(kv) },
    );
    await relaySetup(await relay);
    const session = await connecting;
    expect(session.transportKind).toBe("websocket");
    expect(session.url).toBe("ws://relay.test:4443/");
    expect(store.has(MEMORY_KEY)).toBe(false);
    session.close();
  });
});
