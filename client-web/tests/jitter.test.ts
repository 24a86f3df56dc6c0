import { describe, expect, it } from "vitest";
import { JitterBuffer, PlayoutClock, type Frame } from "../src/player/jitter";

/** A fake 30 fps source: group `g` has `gop` frames; capture times in µs from a fixed epoch. */
const EPOCH_MS = 1_700_000_000_000;
const FRAME_MS = 1000 / 30;

function frame(group: number, object: number, gop: number, arrivalDelayMs: number, clockSkewMs = 0): Frame<string> {
  const index = group * gop + object;
  const captureMs = EPOCH_MS + index * FRAME_MS;
  return {
    group,
    object,
    captureUs: Math.round(captureMs * 1000),
    arrivalMs: captureMs + arrivalDelayMs + clockSkewMs,
    keyframe: object === 0,
    data: `${group}/${object}`,
  };
}

function names(frames: Frame<string>[]): string[] {
  return frames.map((f) => f.data);
}

describe("JitterBuffer", () => {
  it("holds each frame for the target latency beyond the fastest transit, then releases in order", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
    const f0 = frame(0, 0, 30, 10);
    const f1 = frame(0, 1, 30, 10);
    buf.push(f0);
    buf.push(f1);
    // Due at capture + 10 ms (transit) + 50 ms (target).
    expect(buf.pop(f0.arrivalMs)).toEqual([]);
    expect(buf.pop(f0.captureUs / 1000 + 59)).toEqual([]);
    expect(names(buf.pop(f0.captureUs / 1000 + 60))).toEqual(["0/0"]);
    expect(names(buf.pop(f1.captureUs / 1000 + 60))).toEqual(["0/1"]);
    expect(buf.dropped).toBe(0);
  });

  it("absorbs jitter up to the target: late-but-within-slack frames play on schedule and in order", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 80 });
    const delays = [10, 70, 15, 60, 10, 85, 12];
    const frames = delays.map((d, i) => frame(0, i, 30, d));
    // Arrivals out of order (by arrival time), released strictly in object order.
    const byArrival = [...frames].sort((a, b) => a.arrivalMs - b.arrivalMs);
    const released: string[] = [];
    let t = EPOCH_MS;
    for (const f of byArrival) {
      for (; t < f.arrivalMs; t += 1) released.push(...names(buf.pop(t)));
      buf.push(f);
    }
    for (let end = t + 500; t < end; t += 1) released.push(...names(buf.pop(t)));
    expect(released).toEqual(frames.map((f) => f.data));
    expect(buf.dropped).toBe(0);
  });

  it("estimates the clock offset from the fastest frame, whatever the publisher's clock says", () => {
    const clock = new PlayoutClock();
    const buf = new JitterBuffer<string>(clock, { targetLatencyMs: 40 });
    // Viewer clock is 5 s behind the publisher: transit looks negative.
    for (let i = 0; i < 10; i++) buf.push(frame(0, i, 30, 20 + (i % 3) * 15, -5000));
    expect(clock.offsetMs).toBeCloseTo(20 - 5000, 5);
    const first = frame(0, 0, 30, 20, -5000);
    expect(buf.pop(first.captureUs / 1000 - 5000 + 20 + 39)).toEqual([]);
    expect(names(buf.pop(first.captureUs / 1000 - 5000 + 20 + 40))).toEqual(["0/0"]);
  });

  it("skips to the newest group instead of drifting when it falls behind", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50, catchUpMs: 200 });
    // Groups of 10 frames; two whole groups arrive, then the player stalls (e.g. tab hidden).
    for (let g = 0; g < 3; g++) for (let o = 0; o < 10; o++) buf.push(frame(g, o, 10, 10));
    const start = frame(0, 0, 10, 10);
    // One second later than frame 0/0 was due: far beyond catch-up.
    const out = buf.pop(start.captureUs / 1000 + 10 + 50 + 1000);
    expect(out[0]?.data).toBe("2/0");
    expect(out.every((f) => f.group === 2)).toBe(true);
    expect(buf.dropped).toBe(20);
    expect(buf.skips).toBe(1);
  });

  it("does not skip while within the catch-up allowance", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50, catchUpMs: 200 });
    for (let g = 0; g < 2; g++) for (let o = 0; o < 10; o++) buf.push(frame(g, o, 10, 10));
    const start = frame(0, 0, 10, 10);
    const out = buf.pop(start.captureUs / 1000 + 10 + 50 + 150);
    expect(out[0]?.data).toBe("0/0");
    expect(buf.skips).toBe(0);
  });

  it("waits for a keyframe before releasing anything (joining mid-group or after reset)", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 0 });
    for (let o = 5; o < 10; o++) buf.push(frame(0, o, 10, 5));
    buf.push(frame(1, 0, 10, 5));
    const out = buf.pop(frame(1, 0, 10, 5).arrivalMs + 1);
    expect(names(out)).toEqual(["1/0"]);
    expect(buf.dropped).toBe(5);
  });

  it("drops the rest of a group after a gap and resumes at the next keyframe", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 0 });
    for (const o of [0, 1, 3, 4]) buf.push(frame(0, o, 5, 5)); // object 2 lost
    buf.push(frame(1, 0, 5, 5));
    const out = buf.pop(frame(1, 0, 5, 5).arrivalMs + 1);
    expect(names(out)).toEqual(["0/0", "0/1", "1/0"]);
    expect(buf.dropped).toBe(2);
  });

  it("refuses frames behind what was already released and ignores duplicates", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 0 });
    buf.push(frame(3, 0, 5, 1));
    buf.push(frame(3, 0, 5, 1));
    expect(buf.length).toBe(1);
    buf.pop(frame(3, 0, 5, 1).arrivalMs);
    buf.push(frame(2, 4, 5, 1));
    expect(buf.length).toBe(0);
    expect(buf.dropped).toBe(1);
  });

  it("bounds memory: beyond maxFrames it sheds to the newest keyframe", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 10_000, maxFrames: 25 });
    for (let g = 0; g < 4; g++) for (let o = 0; o < 10; o++) buf.push(frame(g, o, 10, 1));
    expect(buf.length).toBeLessThanOrEqual(25);
    expect(buf.skips).toBeGreaterThan(0);
  });

  it("keeps audio and video on one timeline through a shared clock", () => {
    const clock = new PlayoutClock();
    const video = new JitterBuffer<string>(clock, { targetLatencyMs: 50 });
    const audio = new JitterBuffer<string>(clock, { targetLatencyMs: 50 });
    const v = frame(0, 0, 30, 30); // video is slower
    const a = { ...frame(0, 0, 30, 8), data: "audio" }; // audio faster, same capture time
    video.push(v);
    audio.push(a);
    expect(video.dueAt(v)).toBe(audio.dueAt(a));
  });
});
