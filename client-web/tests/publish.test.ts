// publish()'s pieces that need no browser: the LOC object a frame becomes (decoded back by the
// player's reading of media/src/loc.rs, on the same subgroup stream type banyan-publish opens,
// checked against moq/vectors), the MSF catalog (media/src/catalog.rs's shape and field order,
// read back by the player's parser), group numbering as publisher/src/broadcast.rs numbers
// groups, the keyframe and audio-group policies, the bounded encoder queue and the window that
// abandons groups a subscription cannot send in time; and the Session side of publishing
// (PUBLISH_NAMESPACE, a relay's SUBSCRIBE answered with SUBSCRIBE_OK and a subgroup stream,
// PUBLISH_DONE, anything else refused) against a fake WebTransport.
import { describe, expect, it } from "vitest";
import { Reader, Writer, namespaceFromPath, utf8 } from "../src/coding";
import { SubgroupStream, decodeSubgroupHeader, encodeSubgroupHeader, streamTypeFromCode, type SubgroupHeader } from "../src/data";
import { PublishDoneCode, RequestErrorCode, decodeFrame, encodeFrame, type Message } from "../src/message";
import { parseCatalog } from "../src/player/catalog";
import { LocProperty, locMeta } from "../src/player/loc";
import { completeCatalog, liveCatalog, opusHead, catalogBytes } from "../src/publish/catalog";
import { AudioGroups, EncodeGate, GroupWindow, KeyframePolicy, MAX_LAG, TrackGroups, firstGroupId } from "../src/publish/groups";
import { locProperties } from "../src/publish/loc";
import { avcCodecFor, videoCandidates } from "../src/publish/publisher";
import { Session } from "../src/session/session";
import type { IncomingSubscribe } from "../src/session/serve";
import { hex, loadVectors, toHex } from "./helpers";

// media/src/loc.rs's `frame_round_trips_through_the_wire` frame.
const TIMESTAMP_US = 1_746_104_606_044_123;
const AVCC = new Uint8Array([1, 0x64, 0, 0x28, 0xff]);
const PAYLOAD = new Uint8Array([0, 0, 0, 5, 0x65, 0x61, 0x62, 0x63, 0x64]);

/** The header banyan-publish opens for a media group: subgroup 0, priority, properties. */
function mediaHeader(priority: number): SubgroupHeader {
  return { trackAlias: 1, groupId: 7, subgroupId: { mode: "zero" }, publisherPriority: priority, properties: true, endOfGroup: false, firstObject: false };
}

describe("LOC objects", () => {
  it("a group's first frame carries the timestamp and the config, decoded as banyan-media reads it", () => {
    const properties = locProperties("video", TIMESTAMP_US, AVCC);
    const w = new Writer();
    encodeSubgroupHeader(w, mediaHeader(128));
    new SubgroupStream(mediaHeader(128)).encodeObject(w, { objectId: 0, properties, status: 0, payload: PAYLOAD });
    const r = new Reader(w.finish());
    const header = decodeSubgroupHeader(r);
    const object = new SubgroupStream(header).decodeObject(r, 1 << 20);
    expect(header.publisherPriority).toBe(128);
    expect(object.payload).toEqual(PAYLOAD);
    expect(locMeta(object.properties, "video")).toEqual({ captureUs: TIMESTAMP_US, config: AVCC });
    // The config is Video Config (0x0D): an audio reading does not see it, as in loc.rs.
    expect(locMeta(object.properties, "audio").config).toBeUndefined();
    // Only the two LOC properties, no Timescale (which would make the timestamp media time).
    expect(object.properties.map((p) => p.key).sort()).toEqual([LocProperty.VideoConfig, LocProperty.Timestamp]);
  });

  it("later frames carry only the timestamp; audio config is Audio Config (0x0F)", () => {
    expect(locProperties("audio", 42)).toEqual([{ key: LocProperty.Timestamp, value: 42n }]);
    const head = opusHead(2, 48_000);
    expect(locMeta(locProperties("audio", 42, head), "audio")).toEqual({ captureUs: 42, config: head });
    expect(() => locProperties("video", -1)).toThrow(RangeError);
    expect(() => locProperties("video", 1.5)).toThrow(RangeError);
  });

  it("media streams use the stream type of the moq vector with properties and a priority", () => {
    // moq/vectors/data.json: "subgroup object with Immutable Properties", type 0x11 (properties,
    // subgroup id 0, priority present): what banyan-publish's open_subgroup(g, 0, Some(p), true) sends.
    const vector = loadVectors("data").find((v) => v.name === "subgroup object with Immutable Properties");
    expect(vector).toBeDefined();
    const vectorType = new Reader(hex(vector!.hex)).varint("type");
    const w = new Writer();
    encodeSubgroupHeader(w, mediaHeader(32));
    expect(new Reader(w.finish()).varint("type")).toBe(vectorType);
    expect(streamTypeFromCode(vectorType).kind).toBe("subgroup");
  });
});

describe("MSF catalog", () => {
  const video = { name: "video", codec: "avc1.42e01f", width: 1280, height: 720, framerate: 30, bitrate: 2_500_000, description: AVCC };
  const audio = { name: "audio", codec: "opus", samplerate: 48_000, channels: 2, bitrate: 64_000, description: opusHead(2, 48_000) };

  it("is written as banyan-media writes it (fields, order, inline init data)", () => {
    const json = new TextDecoder().decode(catalogBytes(liveCatalog(1_746_104_606_044, video, audio)));
    expect(json).toBe(
      JSON.stringify({
        version: "draft-01",
        generatedAt: 1_746_104_606_044,
        tracks: [
          { name: "video", packaging: "loc", isLive: true, role: "video", renderGroup: 1, initRef: "video-init", codec: "avc1.42e01f", framerate: 30, bitrate: 2_500_000, width: 1280, height: 720 },
          { name: "audio", packaging: "loc", isLive: true, role: "audio", renderGroup: 1, initRef: "audio-init", codec: "opus", bitrate: 64_000, samplerate: 48_000, channelConfig: "2" },
        ],
        initDataList: [
          { id: "video-init", type: "inline", data: "AWQAKP8=" },
          { id: "audio-init", type: "inline", data: "T3B1c0hlYWQBAgAAgLsAAAAAAA==" },
        ],
      }),
    );
  });

  it("is read back by the player with its codec configuration", () => {
    const parsed = parseCatalog(catalogBytes(liveCatalog(1, video, audio)), "live/me");
    expect(parsed.video).toMatchObject({ namespace: "live/me", name: "video", codec: "avc1.42e01f", width: 1280, height: 720, description: AVCC });
    expect(parsed.audio).toMatchObject({ name: "audio", codec: "opus", samplerate: 48_000, channels: 2 });
    expect(toHex(parsed.audio!.description!)).toBe("4f707573486561640102000080bb0000000000");
  });

  it("leaves out what is unknown: VP8 has no description, no framerate", () => {
    const catalog = liveCatalog(1, { name: "video", codec: "vp8", width: 640, height: 480, bitrate: 1_000_000 });
    expect(catalog).toEqual({
      version: "draft-01",
      generatedAt: 1,
      tracks: [{ name: "video", packaging: "loc", isLive: true, role: "video", renderGroup: 1, codec: "vp8", bitrate: 1_000_000, width: 640, height: 480 }],
    });
  });

  it("ends a broadcast with the complete catalog", () => {
    expect(completeCatalog(5.7)).toEqual({ version: "draft-01", generatedAt: 5, isComplete: true, tracks: [] });
  });
});

describe("group numbering", () => {
  it("starts at the wall-clock ms and counts up per group, objects from 0 (broadcast.rs)", () => {
    const first = firstGroupId(1_746_104_606_044.7);
    expect(first).toBe(1_746_104_606_044);
    const track = new TrackGroups(100);
    expect(track.write(false)).toBeUndefined(); // no group yet: dropped
    expect(track.write(true)).toEqual({ group: 100, object: 0 });
    expect(track.write(false)).toEqual({ group: 100, object: 1 });
    expect(track.write(true)).toEqual({ group: 101, object: 0 });
    expect(track.currentGroup).toBe(101);
    expect(track.upcomingGroup).toBe(102);
  });

  it("makes a keyframe every GOP of capture time, and at once when asked", () => {
    const keys = new KeyframePolicy(1_000_000);
    const at = (ms: number) => keys.isKeyframe(ms * 1000);
    expect([at(0), at(33), at(999), at(1000), at(1033)]).toEqual([true, false, false, true, false]);
    keys.request(); // a new subscription
    expect([at(1066), at(1100), at(2066)]).toEqual([true, false, true]);
    expect(() => new KeyframePolicy(0)).toThrow(RangeError);
  });

  it("groups audio by 500 ms of capture time", () => {
    const groups = new AudioGroups();
    expect([0, 20_000, 499_999, 500_000, 980_000, 1_000_000].map((t) => groups.isGroupStart(t))).toEqual([true, false, false, true, false, true]);
  });
});

describe("bounded queues", () => {
  it("drops frames while the encoder holds its maximum, never queues them", () => {
    const gate = new EncodeGate(3);
    expect([0, 1, 2, 3, 4, 2, 0].map((q) => gate.admit(q))).toEqual([true, true, true, false, false, true, true]);
    expect(gate.dropped).toBe(2);
    expect(gate.maxQueue).toBe(4);
  });

  it("abandons the oldest group when more than MAX_LAG are behind the newest", () => {
    const window = new GroupWindow(MAX_LAG, 10_000);
    expect(window.start(1, 0)).toEqual([]);
    expect(window.start(2, 1)).toEqual([]);
    expect(window.start(3, 2)).toEqual([]);
    expect(window.start(4, 3)).toEqual([1]); // 2 and 3 behind 4: 1 is one too many
    window.finished(2);
    expect(window.start(5, 4)).toEqual([]);
    expect(window.inFlight).toEqual([3, 4, 5]);
  });

  it("abandons a group still sending a budget after the next one began", () => {
    const window = new GroupWindow(MAX_LAG, 1000);
    window.start(1, 0);
    window.start(2, 500); // group 1's successor began at 500
    expect(window.overdue(1500)).toEqual([]);
    expect(window.overdue(1501)).toEqual([1]);
    expect(window.overdue(100_000)).toEqual([]); // the newest group is never overdue
    window.finished(2);
    expect(window.inFlight).toEqual([]);
  });
});

describe("video codec choice", () => {
  it("picks an H.264 level for the frame size, then VP8 and VP9", () => {
    expect(avcCodecFor(640, 480)).toBe("avc1.42e01f");
    expect(avcCodecFor(1280, 720)).toBe("avc1.42e01f");
    expect(avcCodecFor(1920, 1080)).toBe("avc1.42e028");
    expect(avcCodecFor(2560, 1440)).toBe("avc1.42e032");
    expect(avcCodecFor(3840, 2160)).toBe("avc1.42e033");
    expect(videoCandidates(1280, 720)).toEqual(["avc1.42e01f", "vp8", "vp09.00.10.08"]);
    expect(videoCandidates(1280, 720, ["vp8"])).toEqual(["vp8"]);
  });
});

// ---- the Session as a publisher, against a fake WebTransport playing the relay ----

function feed() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => (controller = c) });
  return { stream, push: (b: Uint8Array) => controller.enqueue(b), end: () => controller.close() };
}

/** Collects what the client writes on a stream. */
function sink() {
  const chunks: Uint8Array[] = [];
  let closed = false;
  const stream = new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c), close: () => void (closed = true) });
  return {
    stream,
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) (out.set(c, at), (at += c.length));
      return out;
    },
    get closed() {
      return closed;
    },
  };
}

function frames(bytes: Uint8Array): Message[] {
  const r = new Reader(bytes);
  const out: Message[] = [];
  while (r.hasRemaining()) out.push(decodeFrame(r));
  return out;
}

class RelayDouble {
  readonly protocol = "moqt-18";
  readonly ready = Promise.resolve();
  readonly closed = new Promise<{ closeCode: number; reason: string }>(() => {});
  private readonly uni = new TransformStream<ReadableStream<Uint8Array>, ReadableStream<Uint8Array>>();
  private readonly uniWriter = this.uni.writable.getWriter();
  readonly incomingUnidirectionalStreams = this.uni.readable;
  private readonly bidi = new TransformStream<WebTransportBidirectionalStream, WebTransportBidirectionalStream>();
  private readonly bidiWriter = this.bidi.writable.getWriter();
  readonly incomingBidirectionalStreams = this.bidi.readable;
  readonly datagrams = { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>() };
  /** Request streams the client opened, and the relay's end of each. */
  readonly requests: { out: ReturnType<typeof sink>; answer: ReturnType<typeof feed> }[] = [];
  /** Unidirectional streams the client opened (control stream first). */
  readonly uniOut: ReturnType<typeof sink>[] = [];

  constructor() {
    const control = feed();
    control.push(encodeFrame({ type: "SETUP" }));
    void this.uniWriter.write(control.stream);
  }

  async createUnidirectionalStream(): Promise<WritableStream<Uint8Array>> {
    const s = sink();
    this.uniOut.push(s);
    return s.stream;
  }

  async createBidirectionalStream(): Promise<WebTransportBidirectionalStream> {
    const out = sink();
    const answer = feed();
    this.requests.push({ out, answer });
    return { readable: answer.stream, writable: out.stream } as unknown as WebTransportBidirectionalStream;
  }

  /** The relay opens a request stream with `m`; returns what the client answers on it. */
  async request(m: Message) {
    const out = sink();
    const input = feed();
    input.push(encodeFrame(m));
    await this.bidiWriter.write({ readable: input.stream, writable: out.stream } as unknown as WebTransportBidirectionalStream);
    return { out, input };
  }

  close(): void {}
}

async function until<T>(probe: () => T | undefined, ms = 2000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("Session as a publisher", () => {
  it("publishes a namespace, answers a relay SUBSCRIBE, sends a subgroup, ends with PUBLISH_DONE", async () => {
    const relay = new RelayDouble();
    const global = globalThis as { WebTransport?: unknown };
    const saved = global.WebTransport;
    global.WebTransport = function () {
      return relay;
    };
    const session = await Session.connect("https://relay.test/").finally(() => (global.WebTransport = saved));
    const published = session.publishNamespace("live/me");
    const announce = await until(() => relay.requests[0]);
    announce.answer.push(encodeFrame({ type: "REQUEST_OK", parameters: {}, trackProperties: [] }));
    const publication = await published;
    expect(frames(announce.out.bytes())).toEqual([
      { type: "PUBLISH_NAMESPACE", requestId: 0, trackNamespace: namespaceFromPath("live/me"), parameters: {} },
    ]);

    const requests: IncomingSubscribe[] = [];
    session.onSubscribe = (r) => requests.push(r);
    const subscribe = await relay.request({ type: "SUBSCRIBE", requestId: 1, trackNamespace: namespaceFromPath("live/me"), trackName: utf8("video"), parameters: {} });
    const request = await until(() => requests[0]);
    expect([request.namespace, request.name]).toEqual(["live/me", "video"]);
    const track = await request.accept([{ key: 0x22, value: 2n }]);
    const [ok] = frames(subscribe.out.bytes());
    expect(ok).toMatchObject({ type: "SUBSCRIBE_OK", trackAlias: track.trackAlias, trackProperties: [{ key: 0x22, value: 2n }] });

    const group = await track.openSubgroup(1000, { priority: 128, properties: true });
    await group.write(0, PAYLOAD, locProperties("video", TIMESTAMP_US, AVCC));
    await group.finish();
    const r = new Reader(relay.uniOut[1]!.bytes());
    const header = decodeSubgroupHeader(r);
    expect(header).toMatchObject({ trackAlias: track.trackAlias, groupId: 1000, publisherPriority: 128, properties: true });
    expect(locMeta(new SubgroupStream(header).decodeObject(r, 1 << 20).properties, "video").captureUs).toBe(TIMESTAMP_US);

    track.finish();
    await until(() => (subscribe.out.closed ? true : undefined));
    expect(frames(subscribe.out.bytes())[1]).toEqual({ type: "PUBLISH_DONE", statusCode: PublishDoneCode.TrackEnded, streamCount: 1n, errorReason: "" });

    // Anything but SUBSCRIBE is refused; the namespace is withdrawn with FIN.
    const fetch = await relay.request({ type: "TRACK_STATUS", requestId: 3, trackNamespace: namespaceFromPath("live/me"), trackName: utf8("video"), parameters: {} });
    await until(() => (fetch.out.closed ? true : undefined));
    expect(frames(fetch.out.bytes())[0]).toMatchObject({ type: "REQUEST_ERROR", errorCode: RequestErrorCode.NotSupported });
    publication.done();
    await until(() => (announce.out.closed ? true : undefined));
    session.close();
  });
});
