import { describe, expect, it } from "vitest";
import { CatalogError, parseCatalog } from "../src/player/catalog";
import { locMeta } from "../src/player/loc";

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe("MSF catalog", () => {
  it("picks the video and audio tracks of the spec's time-aligned example", () => {
    // draft-ietf-moq-msf, "Time-aligned Audio/Video Tracks with single quality".
    const catalog = parseCatalog(
      json({
        version: "draft-01",
        generatedAt: 1746104606044,
        tracks: [
          {
            name: "1080p-video",
            namespace: "conference.example.com/conference123/alice",
            packaging: "loc",
            isLive: true,
            targetLatency: 2000,
            role: "video",
            renderGroup: 1,
            codec: "av01.0.08M.10.0.110.09",
            width: 1920,
            height: 1080,
            framerate: 30,
            bitrate: 1500000,
          },
          {
            name: "audio",
            namespace: "conference.example.com/conference123/alice",
            packaging: "loc",
            isLive: true,
            targetLatency: 2000,
            role: "audio",
            renderGroup: 1,
            codec: "opus",
            samplerate: 48000,
            channelConfig: "2",
            bitrate: 32000,
          },
        ],
      }),
      "ignored",
    );
    expect(catalog.video).toMatchObject({ name: "1080p-video", codec: "av01.0.08M.10.0.110.09", width: 1920 });
    expect(catalog.audio).toMatchObject({ name: "audio", samplerate: 48000, channels: 2 });
    expect(catalog.video?.namespace).toBe("conference.example.com/conference123/alice");
  });

  it("resolves inline init data by initRef (as banyan-media writes the avcC) and inherits the namespace", () => {
    const catalog = parseCatalog(
      json({
        version: "draft-01",
        tracks: [{ name: "video", packaging: "loc", codec: "avc1.64001f", initRef: "v" }],
        initDataList: [{ id: "v", type: "inline", data: btoa("\x01\x64\x00\x1f") }],
        someFutureField: { ignored: true },
      }),
      "live/demo",
    );
    expect(catalog.video?.namespace).toBe("live/demo");
    expect(catalog.video?.role).toBe("video"); // from the codec when role is absent
    expect(Array.from(catalog.video?.description ?? [])).toEqual([1, 0x64, 0, 0x1f]);
  });

  it("refuses what is not an independent catalog with a CatalogError", () => {
    expect(() => parseCatalog(new TextEncoder().encode("{nope"), "x")).toThrow(CatalogError);
    expect(() => parseCatalog(json([1, 2]), "x")).toThrow(CatalogError);
    expect(() => parseCatalog(json({ deltaUpdate: [] }), "x")).toThrow(/delta/);
    expect(() => parseCatalog(new Uint8Array([0xff, 0xfe]), "x")).toThrow(CatalogError);
  });
});

describe("LOC properties", () => {
  it("reads the capture timestamp (0x10, µs) and the video config (0x0D)", () => {
    const config = new Uint8Array([1, 2, 3]);
    const meta = locMeta(
      [
        { key: 0x0d, value: config },
        { key: 0x10, value: 1_700_000_000_123_456n },
      ],
      "video",
    );
    expect(meta.captureUs).toBe(1_700_000_000_123_456);
    expect(meta.config).toEqual(config);
  });

  it("does not treat a media-time timestamp (Timescale present) as capture time", () => {
    const meta = locMeta(
      [
        { key: 0x08, value: 90000n },
        { key: 0x10, value: 12345n },
      ],
      "video",
    );
    expect(meta.captureUs).toBeUndefined();
  });
});
