import { describe, expect, it } from "vitest";
import { Reader, U64_MAX, encodeVarint, varintLen } from "../src/coding";
import { catchDecode, hex, toHex } from "./helpers";

describe("draft-18 varint", () => {
  // The spec's table of example encodings (§1.4.1), including non-minimal ones.
  const examples: [string, bigint][] = [
    ["25", 37n],
    ["8025", 37n],
    ["bbbd", 15_293n],
    ["ed7f3e7d", 226_442_877n],
    ["faa1a0e403d8", 2_893_212_287_960n],
    ["fc8998abc66bc0", 151_288_809_941_952n],
    ["fefa318fa8e3ca11", 70_423_237_261_249_041n],
    ["ffffffffffffffffff", U64_MAX],
  ];

  it("decodes the spec examples, and every strict prefix is incomplete", () => {
    for (const [h, value] of examples) {
      const bytes = hex(h);
      const r = new Reader(bytes);
      expect(r.varintBig()).toBe(value);
      expect(r.remaining).toBe(0);
      for (let cut = 0; cut < bytes.length; cut++) {
        const err = catchDecode(() => new Reader(bytes.subarray(0, cut)).varintBig());
        expect(err?.kind, `${h} cut ${cut}`).toBe("incomplete");
      }
    }
  });

  it("encodes minimal forms as in the spec", () => {
    expect(toHex(encodeVarint(37))).toBe("25");
    expect(toHex(encodeVarint(15_293))).toBe("bbbd");
    expect(toHex(encodeVarint(226_442_877))).toBe("ed7f3e7d");
  });

  it("round-trips at every length boundary", () => {
    for (let len = 1; len <= 9; len++) {
      const max = len === 9 ? U64_MAX : (1n << BigInt(7 * len)) - 1n;
      for (const v of [max, max - 1n, max + 1n > U64_MAX ? max : max + 1n]) {
        const bytes = encodeVarint(v);
        expect(bytes.length).toBe(varintLen(v));
        expect(new Reader(bytes).varintBig()).toBe(v);
      }
    }
  });

  it("refuses values beyond a JS number where a number is required", () => {
    const err = catchDecode(() => new Reader(encodeVarint(1n << 60n)).varint("group id"));
    expect(err?.kind).toBe("too-large");
  });
});

