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

  describe("under descending group order (newest group first, older ones reset)", () => {
    /** Push `frames` at their arrival times and pop every ms; returns what was released, in order. */
    function play(buf: JitterBuffer<string>, frames: Frame<string>[], extra: (t: number) => void = () => {}): string[] {
      const byArrival = [...frames].sort((a, b) => a.arrivalMs - b.arrivalMs);
      const released: string[] = [];
      let t = Math.floor(byArrival[0]!.arrivalMs);
      const end = Math.max(...frames.map((f) => f.arrivalMs)) + 1000;
      let next = 0;
      for (; t < end; t++) {
        while (next < byArrival.length && byArrival[next]!.arrivalMs <= t) buf.push(byArrival[next++]!);
        extra(t);
        released.push(...names(buf.pop(t)));
      }
      return released;
    }
    const group = (g: number, delayMs: (o: number) => number, objects = 10) =>
      Array.from({ length: objects }, (_, o) => frame(g, o, 10, delayMs(o)));
    const order = (released: string[]) => released.map((n) => n.split("/").map(Number) as [number, number]);
    /** No frame of an older group after a newer group's frame. */
    function monotonic(released: string[]): boolean {
      let newest = -1;
      for (const [g] of order(released)) {
        if (g < newest) return false;
        newest = g;
      }
      return true;
    }

    it("plays an older group's tail that arrives interleaved with a newer group, in time, before the newer group", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 80 });
      // Group 1's first frames overtake group 0's tail (delayed 60 ms: within the 80 ms slack).
      const g0 = group(0, (o) => (o < 6 ? 10 : 60));
      const g1 = group(1, () => 10);
      const released = play(buf, [...g0, ...g1], (t) => {
        if (t === Math.ceil(g0[9]!.arrivalMs)) buf.groupEnded(0);
      });
      expect(released).toEqual([...g0, ...g1].map((f) => f.data));
      expect(buf.groupsSkipped).toBe(0);
      expect(buf.dropped).toBe(0);
    });

    it("drops an older group whose tail would be late and never decodes it after the newer group", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 80 });
      // Group 0's tail is stuck behind group 1 for 400 ms: long after group 1's keyframe is due.
      const g0 = group(0, (o) => (o < 6 ? 10 : 400));
      const g1 = group(1, () => 10);
      const g2 = group(2, () => 10);
      const released = play(buf, [...g0, ...g1, ...g2], (t) => {
        if (t === Math.ceil(g0[9]!.arrivalMs)) buf.groupEnded(0);
        if (t === Math.ceil(g1[9]!.arrivalMs)) buf.groupEnded(1);
      });
      expect(released).toEqual([...g0.slice(0, 6), ...g1, ...g2].map((f) => f.data));
      expect(monotonic(released)).toBe(true);
      expect(buf.groupsSkipped).toBe(1);
      expect(buf.dropped).toBe(4); // the tail, refused on arrival
    });

    it("skips an older group's frame that arrived after it was due once a newer keyframe is buffered", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 100, catchUpMs: 10_000 });
      // Group 0's tail arrives 200 ms after capture (due at 110): late, while group 1's keyframe
      // (arrived at 10 ms) is buffered but not yet due.
      const g0 = group(0, (o) => (o < 6 ? 10 : 200));
      const g1 = group(1, () => 10);
      const released = play(buf, [...g0, ...g1]);
      expect(released).toEqual([...g0.slice(0, 6), ...g1].map((f) => f.data));
      expect(buf.groupsSkipped).toBe(1);
      // Group 1's keyframe still played at its due time, not early.
      const due = buf.dueAt(g1[0]!);
      expect(due).toBeCloseTo(g1[0]!.captureUs / 1000 + 10 + 100, 3);
    });

    it("plays a late frame when no newer group is there to play instead", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50, catchUpMs: 10_000 });
      const g0 = group(0, (o) => (o < 6 ? 10 : 150));
      expect(play(buf, g0)).toEqual(g0.map((f) => f.data));
      expect(buf.groupsSkipped).toBe(0);
    });

    it("moves on at once from a group the relay reset mid-way, and counts it once", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
      const g0 = group(0, () => 10).slice(0, 5); // objects 5..9 never come: the stream was reset
      const g1 = group(1, () => 10);
      const g2 = group(2, () => 10);
      const released = play(buf, [...g0, ...g1, ...g2], (t) => {
        if (t === Math.ceil(g0[4]!.arrivalMs)) buf.groupReset(0);
        if (t === Math.ceil(g1[9]!.arrivalMs)) buf.groupEnded(1);
      });
      expect(released).toEqual([...g0, ...g1, ...g2].map((f) => f.data));
      expect(buf.groupsSkipped).toBe(1);
      // A second report for the same group (e.g. the stream's reset seen after the fact) counts nothing.
      buf.groupReset(0);
      buf.push(frame(0, 7, 10, 10));
      expect(buf.groupsSkipped).toBe(1);
    });

    it("counts a group that never arrives (a hole in the group IDs) once", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
      // Groups 0 and 1 play (the buffer learns the GOP), 2 never comes, 3 and 4 play.
      const [g0, g1, g3, g4] = [0, 1, 3, 4].map((g) => group(g, () => 10)) as Frame<string>[][];
      const all = [...g0!, ...g1!, ...g3!, ...g4!];
      const released = play(buf, all, (t) => {
        for (const g of [g0!, g1!, g3!]) if (t === Math.ceil(g[9]!.arrivalMs)) buf.groupEnded(g[0]!.group);
      });
      expect(released).toEqual(all.map((f) => f.data));
      expect(buf.groupsSkipped).toBe(1);
    });

    it("counts groups dropped by catch-up, and a group left without its end", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50, catchUpMs: 200 });
      for (let g = 0; g < 4; g++) for (let o = 0; o < 10; o++) buf.push(frame(g, o, 10, 10));
      for (let g = 0; g < 4; g++) buf.groupEnded(g);
      const start = frame(0, 0, 10, 10);
      // Play group 0 in time, then stall for a second: groups 1 and 2 are skipped.
      for (let t = 0; t < 10; t++) buf.pop(frame(0, t, 10, 10).captureUs / 1000 + 60);
      const out = buf.pop(start.captureUs / 1000 + 60 + 1000);
      expect(out[0]?.data).toBe("3/0");
      expect(buf.groupsSkipped).toBe(2);
    });

    it("does not count a publisher's fresh numbering (a jump of thousands of group IDs) as holes", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
      // Groups 0..2, then the publisher restarts and numbers from 5000 (its start in ms), one GOP later.
      const renumbered = (o: number) => ({ ...frame(3, o, 10, 10), group: 5000, data: `5000/${o}` });
      const frames = [...group(0, () => 10), ...group(1, () => 10), ...group(2, () => 10)];
      const later = Array.from({ length: 10 }, (_, o) => renumbered(o));
      const released = play(buf, [...frames, ...later], (t) => {
        for (const g of [0, 1, 2]) if (t === Math.ceil(frames[g * 10 + 9]!.arrivalMs)) buf.groupEnded(g);
      });
      expect(released).toEqual([...frames, ...later].map((f) => f.data));
      expect(buf.groupsSkipped).toBe(0);
    });

    it("starts counting afresh after a reconnect", () => {
      const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 0 });
      buf.push(frame(5, 0, 10, 1));
      buf.pop(frame(5, 0, 10, 1).arrivalMs + 1);
      buf.reset();
      // The new session's publisher numbers groups from 0 again: they play, nothing is counted.
      buf.push(frame(0, 0, 10, 1));
      expect(names(buf.pop(frame(0, 0, 10, 1).arrivalMs + 1))).toEqual(["0/0"]);
      expect(buf.groupsSkipped).toBe(0);
    });
  });

  it("lets another rendition replace groups not yet released, never one that was", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
    for (const f of [frame(0, 0, 3, 10), frame(0, 1, 3, 10), frame(1, 0, 3, 10)]) buf.push(f);
    const due = (g: number, o: number) => frame(g, o, 3, 10).captureUs / 1000 + 60;
    expect(names(buf.pop(due(0, 1)))).toEqual(["0/0", "0/1"]);
    expect(buf.replaceFrom(0)).toBe(false);
    expect(buf.replaceFrom(1)).toBe(true);
    // The new rendition's group 1 (same IDs, other payloads) plays in its place.
    buf.push({ ...frame(1, 0, 3, 10), data: "1/0 new" });
    buf.groupEnded(0);
    expect(names(buf.pop(due(1, 0)))).toEqual(["1/0 new"]);
    expect(buf.dropped).toBe(0);
    expect(buf.replaceFrom(1)).toBe(false);
  });

  it("rejoins the group playing from another rendition's keyframe", () => {
    const buf = new JitterBuffer<string>(new PlayoutClock(), { targetLatencyMs: 50 });
    for (const f of [frame(0, 0, 3, 10), frame(0, 1, 3, 10)]) buf.push(f);
    const due = (g: number, o: number) => frame(g, o, 3, 10).captureUs / 1000 + 60;
    expect(names(buf.pop(due(0, 0)))).toEqual(["0/0"]);
    expect(buf.replaceFrom(0)).toBe(false);
    expect(buf.replaceFrom(0, true)).toBe(true);
    // The new rendition's group 0 from its keyframe: what is already due comes out at once.
    for (const o of [0, 1, 2]) buf.push({ ...frame(0, o, 3, 10), data: `0/${o} new` });
    expect(names(buf.pop(due(0, 1)))).toEqual(["0/0 new", "0/1 new"]);
    buf.push(frame(1, 0, 3, 10));
    buf.groupEnded(0);
    expect(names(buf.pop(due(1, 0)))).toEqual(["0/2 new", "1/0"]);
    expect(buf.groupsSkipped).toBe(0); // played in full from the new rendition
  });
});
