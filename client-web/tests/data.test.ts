import { describe, expect, it } from "vitest";
import { DecodeError, Reader, Writer, encodeVarint } from "../src/coding";
import {
  FetchStream,
  ObjectStatus,
  PropertyType,
  SubgroupStream,
  decodeDatagram,
  decodeSubgroupHeader,
  encodeDatagram,
  encodeFetchHeader,
  encodeSubgroupHeader,
  findProperty,
  skipPadding,
  streamTypeCode,
  streamTypeFromCode,
  type FetchGroupOrder,
  type FetchItem,
  type SubgroupHeader,
  type SubgroupObject,
} from "../src/data";
import { hex, loadVectors, toHex } from "./helpers";

const LIMIT = 1 << 20;
const vectors = loadVectors("data");

function decodeSubgroupStream(bytes: Uint8Array): { header: SubgroupHeader; objects: SubgroupObject[] } {
  const r = new Reader(bytes);
  const header = decodeSubgroupHeader(r);
  const stream = new SubgroupStream(header);
  const objects: SubgroupObject[] = [];
  while (r.hasRemaining()) objects.push(stream.decodeObject(r, LIMIT));
  return { header, objects };
}

function encodeSubgroupStream(header: SubgroupHeader, objects: SubgroupObject[]): Uint8Array {
  const w = new Writer();
  encodeSubgroupHeader(w, header);
  const stream = new SubgroupStream(header);
  for (const o of objects) stream.encodeObject(w, o);
  return w.finish();
}

function decodeFetchStream(bytes: Uint8Array, order: FetchGroupOrder): { requestId: number; items: FetchItem[] } {
  const r = new Reader(bytes);
  const t = streamTypeFromCode(r.varint());
  expect(t.kind).toBe("fetch");
  const requestId = r.varint();
  const stream = new FetchStream(order);
  const items: FetchItem[] = [];
  while (r.hasRemaining()) items.push(stream.decodeItem(r, LIMIT));
  return { requestId, items };
}

function encodeFetchStream(requestId: number, items: FetchItem[], order: FetchGroupOrder): Uint8Array {
  const w = new Writer();
  encodeFetchHeader(w, requestId);
  const stream = new FetchStream(order);
  for (const item of items) stream.encodeItem(w, item);
  return w.finish();
}

describe("data plane vectors (moq/vectors/data.json)", () => {
  it("exist", () => expect(vectors.length).toBeGreaterThanOrEqual(20));

  for (const v of vectors) {
    it(`${v.name}: decodes and re-encodes byte for byte`, () => {
      const bytes = hex(v.hex);
      let again: Uint8Array;
      switch (v.kind) {
        case "stream_type": {
          const r = new Reader(bytes);
          again = encodeVarint(streamTypeCode(streamTypeFromCode(r.varint())));
          break;
        }
        case "subgroup_stream": {
          const { header, objects } = decodeSubgroupStream(bytes);
          again = encodeSubgroupStream(header, objects);
          break;
        }
        case "fetch_stream":
        case "fetch_stream_descending": {
          const order = v.kind === "fetch_stream" ? "ascending" : "descending";
          const { requestId, items } = decodeFetchStream(bytes, order);
          again = encodeFetchStream(requestId, items, order);
          break;
        }
        case "object_datagram":
          again = encodeDatagram(decodeDatagram(bytes));
          break;
        case "padding_stream": {
          const r = new Reader(bytes);
          expect(streamTypeFromCode(r.varint()).kind).toBe("padding");
          const n = skipPadding(r);
          again = new Writer().varint(0x132b3e28).bytes(new Uint8Array(n)).finish();
          break;
        }
        case "padding_datagram":
          again = encodeDatagram(decodeDatagram(bytes));
          break;
        default:
          throw new Error(`unknown vector kind ${v.kind}`);
      }
      expect(toHex(again)).toBe(v.hex);
    });
  }

  it("subgroup streams: every truncation asks for more and keeps the reader's place", () => {
    for (const v of vectors.filter((x) => x.kind === "subgroup_stream")) {
      const bytes = hex(v.hex);
      const full = decodeSubgroupStream(bytes);
      // Feed the stream one byte at a time, as a network reader would.
      const objects: SubgroupObject[] = [];
      let header: SubgroupHeader | undefined;
      let stream: SubgroupStream | undefined;
      let pos = 0;
      for (let end = 1; end <= bytes.length; end++) {
        const r = new Reader(bytes.subarray(0, end), pos);
        for (;;) {
          try {
            if (!stream) {
              header = decodeSubgroupHeader(r);
              stream = new SubgroupStream(header);
            } else {
              if (!r.hasRemaining()) break;
              objects.push(stream.decodeObject(r, LIMIT));
            }
            pos = r.pos;
          } catch (e) {
            if (e instanceof DecodeError && e.incomplete) break;
            throw e;
          }
        }
      }
      expect(header, v.name).toEqual(full.header);
      expect(objects, v.name).toEqual(full.objects);
    }
  });

  it("mean what their descriptions say", () => {
    const { header, objects } = decodeSubgroupStream(hex("3b010a05023e0201780000000000000004"));
    expect(header.subgroupId).toEqual({ mode: "first-object-id" });
    expect(header.endOfGroup).toBe(true);
    expect(header.publisherPriority).toBeUndefined();
    expect(objects.map((o) => o.objectId)).toEqual([5, 6, 7]);
    expect(findProperty(objects[0]!.properties, PropertyType.PriorObjectIdGap)).toEqual([2n]);
    expect(objects[2]!.status).toBe(ObjectStatus.EndOfTrack);

    const immutable = decodeSubgroupStream(hex("1104062000040b023c01026f6b"));
    expect(findProperty(immutable.objects[0]!.properties, PropertyType.PriorGroupIdGap)).toEqual([1n]);

    const two = vectors.find((v) => v.name.startsWith("spec example 2"));
    const ex2 = decodeSubgroupStream(hex(two!.hex));
    expect(findProperty(ex2.objects[0]!.properties, 4)).toEqual([2186796243n]);
  });
});

describe("malformed data", () => {
  it("refuses a payload above the limit from the header alone", () => {
    const w = new Writer().varint(0x10).varint(1).varint(0).u8(0).varint(0).varint(LIMIT + 1);
    const r = new Reader(w.finish());
    const stream = new SubgroupStream(decodeSubgroupHeader(r));
    expect(() => stream.decodeObject(r, LIMIT)).toThrow(/exceeds the limit/);
  });

  it("refuses an object after End of Group", () => {
    const { header } = decodeSubgroupStream(hex("1005078000026869020003"));
    const r = new Reader(hex("1005078000026869020003" + "00016869"));
    const stream = new SubgroupStream(decodeSubgroupHeader(r));
    stream.decodeObject(r, LIMIT);
    stream.decodeObject(r, LIMIT);
    expect(header.groupId).toBe(7);
    expect(() => stream.decodeObject(r, LIMIT)).toThrow(/after end of group/);
  });

  it("refuses unknown stream types", () => {
    expect(() => streamTypeFromCode(0x06)).toThrow(DecodeError);
    expect(() => streamTypeFromCode(0x16)).toThrow(DecodeError); // subgroup id mode 0b11
  });

  it("refuses truncated datagrams as malformed, not incomplete", () => {
    const err = (() => {
      try {
        decodeDatagram(hex("0001"));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).incomplete).toBe(false);
  });
});
