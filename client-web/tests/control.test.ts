import { describe, expect, it } from "vitest";
import { DecodeError, Reader, namespaceToPath } from "../src/coding";
import { MESSAGE_TYPES, decodeFrame, encodeFrame, type Message } from "../src/message";
import { catchDecode, hex, loadVectors, toHex } from "./helpers";

const vectors = loadVectors("control");

function decode(bytes: Uint8Array): Message {
  const r = new Reader(bytes);
  const m = decodeFrame(r);
  expect(r.remaining).toBe(0);
  return m;
}

function find(name: string): Message {
  const v = vectors.find((x) => x.name === name);
  if (!v) throw new Error(`no vector ${name}`);
  return decode(hex(v.hex));
}

describe("control message vectors (moq/vectors/control.json)", () => {
  it("cover every message type", () => {
    const types = new Set(vectors.map((v) => v.message));
    expect(types.size).toBe(Object.keys(MESSAGE_TYPES).length);
  });

  for (const v of vectors) {
    it(`${v.name}: decodes as ${v.message} and re-encodes byte for byte`, () => {
      const wire = hex(v.hex);
      const m = decode(wire);
      expect(m.type).toBe(v.message);
      expect(toHex(encodeFrame(m))).toBe(v.hex);
    });

    it(`${v.name}: every strict prefix is incomplete and leaves the cursor alone`, () => {
      const wire = hex(v.hex);
      for (let cut = 0; cut < wire.length; cut++) {
        const r = new Reader(wire.subarray(0, cut));
        const err = catchDecode(() => decodeFrame(r));
        expect(err?.kind, `cut ${cut}`).toBe("incomplete");
        expect(r.pos).toBe(0);
      }
    });
  }

  it("mean what their descriptions say", () => {
    const subscribe = find("subscribe");
    if (subscribe.type !== "SUBSCRIBE") throw new Error("not SUBSCRIBE");
    expect(namespaceToPath(subscribe.trackNamespace)).toBe("live/show");
    expect(new TextDecoder().decode(subscribe.trackName)).toBe("video");
    expect(subscribe.parameters.subscriberPriority).toBe(128);
    expect(subscribe.parameters.subscriptionFilter).toEqual({
      type: "absolute-range",
      start: { group: 5, object: 0 },
      endGroupDelta: 2,
    });
    expect(subscribe.parameters.authorizationTokens).toEqual([{ aliasType: "use-alias", tokenAlias: 7 }]);

    const setup = find("setup_client");
    if (setup.type !== "SETUP") throw new Error("not SETUP");
    expect(setup.path).toBe("/live?room=1");
    expect(setup.authority).toBe("relay.example:4443");
    expect(setup.maxAuthTokenCacheSize).toBe(4096n);
    expect(setup.unknownOptions?.length).toBe(1);

    const redirect = find("request_error_redirect");
    if (redirect.type !== "REQUEST_ERROR") throw new Error("not REQUEST_ERROR");
    expect(redirect.retryInterval).toBe(1001);
    expect(redirect.redirect?.connectUri).toBe("moqt://r2.example");

    const goaway = find("goaway_control_stream");
    if (goaway.type !== "GOAWAY") throw new Error("not GOAWAY");
    expect(goaway).toEqual({ type: "GOAWAY", newSessionUri: "moqt://b.example/live", timeout: 5000, requestId: 4 });

    const ok = find("subscribe_ok");
    if (ok.type !== "SUBSCRIBE_OK") throw new Error("not SUBSCRIBE_OK");
    expect(ok.trackAlias).toBe(17);
    expect(ok.parameters.largestObject).toEqual({ group: 1000, object: 3 });

    const done = find("publish_done_unknown_count");
    if (done.type !== "PUBLISH_DONE") throw new Error("not PUBLISH_DONE");
    expect(done.streamCount).toBe((1n << 62n) - 1n);
  });
});

describe("malformed control messages", () => {
  it("refuse an unknown type as soon as it is readable", () => {
    expect(catchDecode(() => decodeFrame(new Reader(hex("3f"))))?.kind).toBe("unknown-message");
  });

  it("refuse a declared length above the limit before the payload arrives", () => {
    expect(catchDecode(() => decodeFrame(new Reader(hex("0300ff")), 100))?.kind).toBe("too-large");
  });

  it("refuse bytes left over inside the declared length", () => {
    // REQUEST_OK with no parameters declared 2 bytes long: one byte of "properties" that is a
    // truncated pair, then nothing — a formatting error, not a request for more bytes.
    const err = catchDecode(() => decodeFrame(new Reader(hex("070002000b"))));
    expect(err?.incomplete).toBe(false);
  });

  it("refuse a parameter that does not belong to the message", () => {
    // SUBSCRIBE_OK carrying FORWARD (0x10).
    expect(catchDecode(() => decodeFrame(new Reader(hex("0400041101" + "1001"))))?.kind).toBe(
      "unknown-parameter",
    );
  });

  it("never throw anything but DecodeError on arbitrary bytes", () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
    for (let i = 0; i < 5000; i++) {
      const bytes = new Uint8Array(rand() % 40);
      for (let j = 0; j < bytes.length; j++) bytes[j] = rand() & 0xff;
      // Start with a known type half the time so payload decoders are exercised.
      if (bytes.length > 3 && i % 2 === 0) {
        const types = Object.values(MESSAGE_TYPES).filter((t) => t < 0x40);
        bytes[0] = types[rand() % types.length] ?? 3;
        bytes[1] = 0;
        bytes[2] = bytes.length - 3;
      }
      try {
        decodeFrame(new Reader(bytes));
      } catch (e) {
        expect(e).toBeInstanceOf(DecodeError);
      }
    }
  });
});


describe("RENDEZVOUS_TIMEOUT (parameter 0x04) on SUBSCRIBE", () => {
  // SUBSCRIBE (0x03), length 16, request 2, namespace ("t"), name "video", two parameters:
  // type 0x04 (RENDEZVOUS_TIMEOUT) = varint 5000 (two bytes, prefix 10: 0x9388), then FORWARD
  // (delta 0x0c) = 1.
  const wire = "0300100201017405766964656f020493880c01";
  const subscribe: Message = {
    type: "SUBSCRIBE",
    requestId: 2,
    trackNamespace: [new TextEncoder().encode("t")],
    trackName: new TextEncoder().encode("video"),
    parameters: { rendezvousTimeout: 5000, forward: true },
  };

  it("encodes as draft-18 lays it out", () => {
    expect(toHex(encodeFrame(subscribe))).toBe(wire);
  });

  it("decodes back", () => {
    const m = decode(hex(wire));
    if (m.type !== "SUBSCRIBE") throw new Error("not SUBSCRIBE");
    expect(m.parameters.rendezvousTimeout).toBe(5000);
    expect(m.parameters.forward).toBe(true);
  });
});
