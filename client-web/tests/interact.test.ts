import { describe, expect, it } from "vitest";
import { DecodeError, Reader } from "../src/coding";
import { SubgroupStream, decodeDatagram, decodeSubgroupHeader } from "../src/data";
import {
  decodeChat,
  decodeGiftEvent,
  decodeModUpdate,
  describeAction,
  decodeTotal,
  decodeUp,
  encodeChat,
  encodeGiftEvent,
  encodeTotal,
  encodeUp,
  refusalLabel,
  type Up,
} from "../src/interact";
import { Publication } from "../src/session/publication";
import { catchDecode, hex, toHex } from "./helpers";

// Byte for byte what relay/src/interact/payload.rs encodes (docs/interactions.md): type varint,
// then varints and length-prefixed strings.
const UP_VECTORS: [string, Up][] = [
  ["010764", { type: "like", source: 7n, total: 100 }],
  ["0107bbbd", { type: "like", source: 7n, total: 15_293 }],
  ["0202313206" + "68c3a96c6c6f", { type: "comment", room: "12", text: "héllo" }],
  ["0303632d31030a", { type: "gift", clientId: "c-1", kind: 3, amount: 10 }],
  ["020000", { type: "comment", room: "", text: "" }],
  ["050203657665", { type: "moderate", action: { kind: "ban", sub: "eve" } }],
  ["05000003", { type: "moderate", action: { kind: "delete", room: 0, seq: 3 } }],
  ["050103626f621e", { type: "moderate", action: { kind: "timeout", sub: "bob", secs: 30 } }],
  ["050502", { type: "moderate", action: { kind: "gate", gate: "subscribers" } }],
];

// A `mod` track object (relay/src/interact/moderation.rs `Update`, the same bytes in its tests):
// seq 7, at 1 ms, by "m", action slow 5 s, state: slow 5, followers-only, bans ["eve"], no
// timeouts, deleted [0#3].
const MOD_UPDATE = "0701016d0104050501010365766500010003";

describe("moderation updates", () => {
  it("decode the state a `mod` object carries", () => {
    const update = decodeModUpdate(hex(MOD_UPDATE));
    expect(update).toEqual({
      seq: 7,
      atMs: 1,
      by: "m",
      action: { kind: "slow", secs: 5 },
      state: { slowSecs: 5, gate: "followers", bans: ["eve"], timeouts: new Map(), deleted: new Set(["0#3"]) },
    });
    expect(describeAction({ kind: "delete", room: 0, seq: 3 })).toBe("delete 0#3");
    const bytes = hex(MOD_UPDATE);
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(catchDecode(() => decodeModUpdate(bytes.subarray(0, cut))), `cut ${cut}`).toBeInstanceOf(DecodeError);
    }
    expect(refusalLabel(0x1007)).toBe("banned");
    expect(refusalLabel(0x100b)).toBe("not_moderator");
  });
});

describe("interaction payloads (docs/interactions.md)", () => {
  for (const [h, up] of UP_VECTORS) {
    it(`${up.type} ${h}: encodes and decodes`, () => {
      expect(toHex(encodeUp(up))).toBe(h);
      expect(decodeUp(hex(h))).toEqual(up);
    });

    it(`${up.type} ${h}: every truncation and any suffix is malformed, never incomplete`, () => {
      const bytes = hex(h);
      for (let cut = 0; cut < bytes.length; cut++) {
        const err = catchDecode(() => decodeUp(bytes.subarray(0, cut)));
        expect(err, `cut ${cut}`).toBeInstanceOf(DecodeError);
        expect(err?.incomplete, `cut ${cut}`).toBe(false);
      }
      const longer = new Uint8Array([...bytes, 0]);
      expect(catchDecode(() => decodeUp(longer))?.incomplete).toBe(false);
    });
  }

  it("a 62-bit like source round-trips", () => {
    const up: Up = { type: "like", source: (1n << 62n) - 1n, total: 0 };
    expect(decodeUp(encodeUp(up))).toEqual(up);
  });

  it("refuse an unknown type", () => {
    expect(catchDecode(() => decodeUp(hex("0900")))).toBeInstanceOf(DecodeError);
  });

  it("down-track objects: likes total, chat, gift events", () => {
    expect(toHex(encodeTotal(15_293))).toBe("bbbd");
    expect(decodeTotal(hex("bbbd"))).toBe(15_293);
    expect(catchDecode(() => decodeTotal(hex("bbbd00")))).toBeInstanceOf(DecodeError);
    expect(toHex(encodeChat({ acceptedMs: 37, text: "hi", author: "ann" }))).toBe("25026869" + "03616e6e");
    expect(decodeChat(hex("2502686903616e6e"))).toEqual({ acceptedMs: 37, text: "hi", author: "ann" });
    const chat = { acceptedMs: 1_700_000_000_000, text: "hi 👋", author: "" };
    expect(decodeChat(encodeChat(chat))).toEqual(chat);
    // Invalid UTF-8 in a comment is refused.
    expect(catchDecode(() => decodeChat(hex("0102fffe00")))).toBeInstanceOf(DecodeError);
    expect(toHex(encodeGiftEvent({ seq: 9, clientId: "c", kind: 2, amount: 3 }))).toBe("0901630203");
    expect(decodeGiftEvent(hex("0901630203"))).toEqual({ seq: 9, clientId: "c", kind: 2, amount: 3 });
  });

  it("label refusal codes", () => {
    expect(refusalLabel(0x1001)).toBe("rate_limited");
    expect(refusalLabel(0x1006)).toBe("unavailable");
    expect(refusalLabel(0x42)).toBe("code 0x42");
  });
});

describe("Publication (the interact track's objects on the wire)", () => {
  function fake() {
    const datagrams: Uint8Array[] = [];
    const streams: Uint8Array[][] = [];
    const transport = {
      sendDatagram: (b: Uint8Array) => (datagrams.push(b), true),
      createUnidirectionalStream: async () => {
        const chunks: Uint8Array[] = [];
        streams.push(chunks);
        return new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) });
      },
    };
    const request = new WritableStream<Uint8Array>().getWriter();
    return { datagrams, streams, publication: new Publication("likes/show", "interact", 5, transport, request) };
  }

  it("sends a like as an OBJECT_DATAGRAM with the PUBLISH's alias", () => {
    const { datagrams, publication } = fake();
    const payload = encodeUp({ type: "like", source: 9n, total: 3 });
    expect(publication.sendDatagram(12, 0, payload)).toBe(true);
    const d = decodeDatagram(datagrams[0] ?? new Uint8Array());
    if (d.kind !== "object") throw new Error("not an object datagram");
    expect(d.object.trackAlias).toBe(5);
    expect(d.object.groupId).toBe(12);
    expect(d.object.objectId).toBe(0);
    expect(decodeUp(d.object.payload)).toEqual({ type: "like", source: 9n, total: 3 });
  });

  it("writes comments as the objects 0, 1, … of one subgroup stream", async () => {
    const { streams, publication } = fake();
    const stream = await publication.openSubgroup(4);
    await stream.write(0, encodeUp({ type: "comment", room: "0", text: "a" }));
    await stream.write(1, encodeUp({ type: "comment", room: "0", text: "b" }));
    await stream.finish();
    const bytes = new Uint8Array((streams[0] ?? []).flatMap((c) => [...c]));
    const r = new Reader(bytes);
    const header = decodeSubgroupHeader(r);
    expect(header.trackAlias).toBe(5);
    expect(header.groupId).toBe(4);
    const state = new SubgroupStream(header);
    const objects = [state.decodeObject(r, 1000), state.decodeObject(r, 1000)];
    expect(r.remaining).toBe(0);
    expect(objects.map((o) => o.objectId)).toEqual([0, 1]);
    expect(objects.map((o) => decodeUp(o.payload))).toEqual([
      { type: "comment", room: "0", text: "a" },
      { type: "comment", room: "0", text: "b" },
    ]);
    expect(await stream.closed).toBeUndefined();
  });

  it("sends nothing once ended", () => {
    const { datagrams, publication } = fake();
    publication.end();
    expect(publication.sendDatagram(0, 0, new Uint8Array([1]))).toBe(false);
    expect(datagrams).toHaveLength(0);
  });
});
