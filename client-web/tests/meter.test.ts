import { describe, expect, it } from "vitest";
import { PlaybackMeter } from "../src/player/meter";

/** Capture time (µs) of a frame captured at `ms` on the fake clock. */
const at = (ms: number) => ms * 1000;

describe("PlaybackMeter", () => {
  it("measures behind-live as now minus the capture time of the frame on screen, growing while frozen", () => {
    const m = new PlaybackMeter();
    expect(m.behindLiveMs(1000)).toBeUndefined();
    m.shown(at(900), 1000);
    expect(m.behindLiveMs(1000)).toBe(100);
    expect(m.behindLiveMs(1300)).toBe(400);
  });

  it("keeps p50, p99 and max of behind-live over the session, one sample per interval", () => {
    const m = new PlaybackMeter({ sampleEveryMs: 100 });
    // 99 s at 100 ms behind, then 1 s at 2000 ms behind: p50 100, p99 ≈ 100..2000 edge, max 2000.
    let t = 0;
    for (; t < 99_000; t += 33) {
      m.shown(at(t - 100), t);
      m.tick(t, true);
    }
    for (const end = t + 1000; t < end; t += 33) {
      m.shown(at(t - 2000), t);
      m.tick(t, true);
    }
    expect(m.quantile(0.5)).toBe(110); // the 10 ms bucket's upper edge
    expect(m.quantile(0.999)).toBe(2000); // capped by the largest sample
    expect(m.maxMs).toBe(2000);
    expect(m.quantile(0.99)).toBeLessThanOrEqual(2000);
  });

  it("does not weight a slow tick more than a regular one", () => {
    const m = new PlaybackMeter({ sampleEveryMs: 100 });
    m.shown(at(0), 50);
    m.tick(50, true);
    m.tick(5050, true); // one late tick, 5 s behind: one sample, not fifty
    for (let t = 5100; t < 5500; t += 100) {
      m.shown(at(t - 50), t);
      m.tick(t, true);
    }
    // Samples: 50, 5050, then 50 four times: the frozen 5 s is one sample in six.
    expect(m.quantile(0.8)).toBe(60); // the 10 ms bucket's upper edge
    expect(m.quantile(1)).toBe(5050);
    expect(m.maxMs).toBe(5050);
  });

  it("counts a stall once it passes 500 ms without a new frame, and its whole length", () => {
    const m = new PlaybackMeter({ stallMs: 500 });
    for (let t = 0; t <= 1000; t += 33) m.shown(at(t), t);
    expect(m.stalls).toBe(0);
    m.tick(1400, true);
    expect(m.stalls).toBe(0); // 409 ms: a hiccup, not a stall
    m.tick(1600, true);
    expect(m.stalls).toBe(1);
    expect(m.stallTotalMs(1600)).toBe(610); // the stall in progress is included
    m.tick(2000, true);
    m.shown(at(2100), 2100); // frames again after 1110 ms
    expect(m.stalls).toBe(1);
    expect(m.stallTotalMs(5000)).toBe(1110);
    // A gap seen only when the next frame comes (no tick in between) counts too.
    m.shown(at(2800), 2800);
    expect(m.stalls).toBe(2);
    expect(m.stallTotalMs(2800)).toBe(1110 + 700);
    expect(m.longestStallMs(2800)).toBe(1110);
    // One in progress counts once it is the longest.
    m.tick(4000, true);
    expect(m.longestStallMs(4000)).toBe(1200);
  });

  it("does not count time spent not playing (reconnecting) as a stall", () => {
    const m = new PlaybackMeter({ stallMs: 500 });
    m.shown(at(0), 0);
    m.tick(200, false);
    m.tick(3000, false);
    m.shown(at(3000), 3100);
    expect(m.stalls).toBe(0);
    expect(m.stallTotalMs(3100)).toBe(0);
  });
});
