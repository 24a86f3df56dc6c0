// The ABR rule (src/player/abr.ts) against the same simulated link as the Rust tests
// (media/tests/abr.rs): a FIFO of a given capacity, 20 ms propagation, 30 fps one-second groups
// whose keyframe is a quarter of the group's bytes, a publisher clock offset, seeded jitter. The
// scenarios and bounds are the Rust ones, so the two implementations are held to one rule.
import { describe, expect, it } from "vitest";
import { BROWSER_MIN_COUNTED_BYTES, Chooser, Estimator, type Rendition } from "../src/player/abr";

const FPS = 30;
const PROPAGATION_US = 20_000;

class Link {
  freeAtUs = 0;
  lastArrivalUs = 0;
  seed = 0x2545f4914f6cdd1dn;
  constructor(public capacityBps: number, private readonly jitterUs: number) {}

  send(atUs: number, bytes: number): number {
    const start = Math.max(atUs, this.freeAtUs);
    this.freeAtUs = start + (bytes * 8 * 1e6) / this.capacityBps;
    this.seed = (this.seed * 6364136223846793005n + 1n) & 0xffffffffffffffffn;
    const jitter = this.jitterUs === 0 ? 0 : Number((this.seed >> 33n) % BigInt(this.jitterUs));
    const arrival = Math.max(this.freeAtUs + PROPAGATION_US + jitter, this.lastArrivalUs);
    this.lastArrivalUs = arrival;
    return Math.floor(arrival);
  }
}

function groupSizes(bitrate: number): number[] {
  const groupBytes = bitrate / 8;
  return Array.from({ length: FPS }, (_, i) => Math.floor(i === 0 ? groupBytes * 0.25 : (groupBytes * 0.75) / (FPS - 1)));
}

function play(
  groups: number,
  capacity: (g: number) => number,
  jitterUs: number,
  offsetUs: number,
  streamBitrate: number,
  chooser: Chooser | undefined,
  estimator: Estimator,
): { played: number[]; samples: number[] } {
  const link = new Link(capacity(0), jitterUs);
  const played: number[] = [];
  const samples: number[] = [];
  for (let g = 0; g < groups; g++) {
    link.capacityBps = capacity(g);
    const bitrate = chooser?.current.bitrate ?? streamBitrate;
    played.push(bitrate);
    let latencyUs = 0;
    groupSizes(bitrate).forEach((bytes, i) => {
      const captureUs = 1_000_000 + g * 1_000_000 + Math.floor((i * 1_000_000) / FPS);
      const arrivalUs = link.send(captureUs, bytes);
      latencyUs = arrivalUs - captureUs;
      const s = estimator.object(g, bytes, captureUs + offsetUs, arrivalUs);
      if (s !== undefined) samples.push(s);
    });
    const s = estimator.endGroup();
    if (s !== undefined) samples.push(s);
    chooser?.onGroup(estimator.estimate, latencyUs > 1_000_000);
  }
  return { played, samples };
}

const ladder = (): Rendition[] => [
  { name: "video/240p", bitrate: 300_000 },
  { name: "video/360p", bitrate: 800_000 },
  { name: "video/720p", bitrate: 2_500_000 },
];

function estimateOver(groups: number, capacity: number, jitterUs: number, stream: number, e = new Estimator()): number {
  play(groups, () => capacity, jitterUs, 0, stream, undefined, e);
  return e.estimate as number;
}

describe("ABR estimator", () => {
  it("measures a fast link, not the stream it carries", () => {
    expect(Math.abs(estimateOver(10, 20e6, 0, 1_000_000) - 20e6)).toBeLessThanOrEqual(2e6);
  });
  it("measures a link slower than the stream at its pace", () => {
    expect(Math.abs(estimateOver(6, 1.5e6, 0, 2_500_000) - 1.5e6)).toBeLessThanOrEqual(0.075e6);
  });
  it("is made conservative by jitter, not wrong", () => {
    const e = estimateOver(10, 8e6, 2_000, 1_000_000);
    expect(e).toBeGreaterThan(2e6);
    expect(e).toBeLessThan(8.8e6);
  });
  it("does not depend on a clock offset between publisher and viewer", () => {
    const a = play(8, () => 6e6, 1_000, 0, 1_000_000, undefined, new Estimator()).samples;
    const b = play(8, () => 6e6, 1_000, 3_600_000_000, 1_000_000, undefined, new Estimator()).samples;
    expect(b).toEqual(a);
  });
});

describe("ABR chooser", () => {
  it("moves down at once and back up with hysteresis", () => {
    const c = new Chooser(ladder(), 3_000_000);
    expect(c.current.name).toBe("video/720p");
    const { played } = play(60, (g) => (g < 30 ? 1.5e6 : 10e6), 1_000, 0, 0, c, new Estimator());
    const down = played.findIndex((b) => b < 2_500_000);
    expect(down).toBeGreaterThanOrEqual(0);
    expect(down).toBeLessThanOrEqual(2);
    expect(played.slice(down, 30).every((b) => b === 800_000)).toBe(true);
    const up = played.slice(30).indexOf(2_500_000);
    expect(up).toBeGreaterThanOrEqual(0);
    expect(up).toBeLessThanOrEqual(5);
    expect(played.slice(30 + up).every((b) => b === 2_500_000)).toBe(true);
    expect(c.switches).toBe(2);
  });
  it("does not oscillate on a link between two renditions", () => {
    const c = new Chooser(ladder(), 800_000);
    const { played } = play(60, () => 2.8e6, 2_000, 0, 0, c, new Estimator());
    expect(played.every((b) => b === 800_000)).toBe(true);
    expect(c.switches).toBe(0);
  });
  it("steps down when falling behind even when the estimate fits", () => {
    const c = new Chooser(ladder(), 3_000_000);
    expect(c.onGroup(50e6, true)?.name).toBe("video/360p");
    expect(c.onGroup(50e6, true)?.name).toBe("video/240p");
    expect(c.onGroup(50e6, true)).toBeUndefined();
  });
  it("refuses an empty ladder, starts at the lowest below every rendition, waits for an estimate", () => {
    expect(() => new Chooser([], 1)).toThrow();
    const c = new Chooser(ladder(), 0);
    expect(c.current.name).toBe("video/240p");
    expect(c.onGroup(undefined, false)).toBeUndefined();
    expect(new Estimator().estimate).toBeUndefined();
  });

  // The browser player's option (not the Rust rule): objects counting less than a datagram
  // beyond the base are left out, their extra delay being the page's arrival-time noise.
  it("browser: a fast link seen through milliseconds of arrival noise is not taken for a slow one", () => {
    // A 20 Mbit/s link, a 300 kbit/s rendition whose P-frames vary by +-30 %, and arrival noise
    // as a page sees it (main thread): 0-2 ms mostly, 2-10 ms one object in five. Idle link: each
    // object leaves when captured.
    const run = (e: Estimator): number => {
      let seed = 12345;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      for (let g = 0; g < 10; g++) {
        for (let i = 0; i < FPS; i++) {
          const mean = 300_000 / 8 / FPS;
          const bytes = Math.floor(i === 0 ? 300_000 / 8 / 4 : mean * 0.75 * (0.7 + 0.6 * rand()));
          const captureUs = g * 1_000_000 + Math.floor((i * 1_000_000) / FPS);
          const noiseUs = rand() < 0.8 ? rand() * 2_000 : 2_000 + rand() * 8_000;
          const arrivalUs = captureUs + PROPAGATION_US + Math.floor((bytes * 8 * 1e6) / 20e6 + noiseUs);
          e.object(g, bytes, captureUs, arrivalUs);
        }
      }
      e.endGroup();
      return e.estimate as number;
    };
    const plain = run(new Estimator());
    const browser = run(new Estimator({ minCountedBytes: BROWSER_MIN_COUNTED_BYTES }));
    console.log(`20 Mbit/s link, 300 kbit/s rendition, page-like arrival noise: plain ${plain} bit/s, browser ${browser} bit/s`);
    expect(plain).toBeLessThan(0.25 * 20e6); // the noise, not the link
    expect(browser).toBeGreaterThan(0.5 * 20e6);
    // A link slower than the stream is still measured at its pace.
    const slow = estimateOver(6, 1.5e6, 0, 2_500_000, new Estimator({ minCountedBytes: BROWSER_MIN_COUNTED_BYTES }));
    expect(Math.abs(slow - 1.5e6)).toBeLessThanOrEqual(0.15e6);
  });
});
