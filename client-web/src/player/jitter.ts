/**
 * The jitter buffer: holds received frames until they are due, then releases them in order.
 *
 * Timing model. Every frame carries its capture time `captureUs` (publisher wall clock, µs since
 * the Unix epoch). The buffer estimates `offsetMs = min(arrival − capture)` over a sliding window
 * of recent frames: the transit time of the fastest recent frame plus any clock difference
 * between publisher and viewer. A frame is due at
 *
 *     capture + offsetMs + targetLatencyMs
 *
 * i.e. `targetLatencyMs` is the slack we allow for jitter beyond the fastest path. Audio and
 * video share the mapping (pass one `PlayoutClock` to both buffers) so they stay in sync.
 *
 * Catch-up. If the oldest held frame is more than `catchUpMs` past due and a newer group is
 * buffered, everything before the newest group's first object (a keyframe: one group per GOP)
 * is dropped and counted, instead of playing out late and drifting. A gap inside a group (a reset
 * stream) also drops the rest of that group, since later frames depend on the missing one.
 *
 * Pure logic: the caller passes `now` (ms, same clock as `arrivalMs`), so tests use a fake clock.
 */

export interface Frame<T = Uint8Array> {
  group: number;
  object: number;
  /** Capture time, µs since the Unix epoch (publisher clock). */
  captureUs: number;
  /** Arrival time in ms on the viewer's wall clock (e.g. `performance.timeOrigin + performance.now()`). */
  arrivalMs: number;
  /** The first object of a group: decodable on its own. */
  keyframe: boolean;
  data: T;
}

export interface JitterOptions {
  /** Slack beyond the fastest recent frame, in ms (default 60: aims under 150 ms glass-to-glass). */
  targetLatencyMs?: number;
  /** How late the oldest frame may run before skipping to the newest group (default 250 ms). */
  catchUpMs?: number;
  /** Frames held at most; beyond this the buffer skips forward (default 600). */
  maxFrames?: number;
}

/** Shared capture→local mapping (one per player so audio and video agree). */
export class PlayoutClock {
  /** Window over which the minimum transit is taken, in ms of arrival time. */
  private readonly windowMs: number;
  private samples: { at: number; transit: number }[] = [];

  constructor(windowMs = 10_000) {
    this.windowMs = windowMs;
  }

  /** Record one frame's arrival; returns the current offset estimate. */
  observe(captureUs: number, arrivalMs: number): number {
    const transit = arrivalMs - captureUs / 1000;
    // Monotonic deque of minima: drop samples that can never be the minimum again.
    while (this.samples.length > 0 && (this.samples[this.samples.length - 1]?.transit ?? -Infinity) >= transit) {
      this.samples.pop();
    }
    this.samples.push({ at: arrivalMs, transit });
    while (this.samples.length > 1 && (this.samples[0]?.at ?? arrivalMs) < arrivalMs - this.windowMs) {
      this.samples.shift();
    }
    return this.offsetMs ?? transit;
  }

  /** min(arrival − capture) over the window: fastest transit plus clock offset; undefined before any frame. */
  get offsetMs(): number | undefined {
    return this.samples[0]?.transit;
  }

  /** Forget everything (after a reconnect the path may differ). */
  reset(): void {
    this.samples = [];
  }
}

export class JitterBuffer<T = Uint8Array> {
  readonly targetLatencyMs: number;
  readonly catchUpMs: number;
  readonly maxFrames: number;
  private queue: Frame<T>[] = [];
  /** The next frame we may release must be at or after this position; undefined = need a keyframe. */
  private expect: { group: number; object: number } | undefined;
  /** Frames dropped (late, skipped by catch-up, after a gap, or before a keyframe). */
  dropped = 0;
  /** Times the buffer skipped forward to a newer group. */
  skips = 0;

  constructor(
    readonly clock: PlayoutClock,
    options: JitterOptions = {},
  ) {
    this.targetLatencyMs = options.targetLatencyMs ?? 60;
    this.catchUpMs = options.catchUpMs ?? 250;
    this.maxFrames = options.maxFrames ?? 600;
  }

  get length(): number {
    return this.queue.length;
  }

  /** The local time (ms) at which `frame` is due. */
  dueAt(frame: Frame<T>): number {
    return frame.captureUs / 1000 + (this.clock.offsetMs ?? 0) + this.targetLatencyMs;
  }

  push(frame: Frame<T>): void {
    this.clock.observe(frame.captureUs, frame.arrivalMs);
    // Anything behind what we already released is useless now.
    if (this.expect && before(frame, this.expect)) {
      this.dropped++;
      return;
    }
    // Insert in (group, object) order; streams of different groups may interleave.
    let i = this.queue.length;
    while (i > 0 && before(frame, this.queue[i - 1]!)) i--;
    const prev = this.queue[i - 1];
    if (prev && prev.group === frame.group && prev.object === frame.object) return; // duplicate
    this.queue.splice(i, 0, frame);
    if (this.queue.length > this.maxFrames) this.skipToNewestGroup();
  }

  /** Release every frame due at `now`, in order, skipping forward first if we fell behind. */
  pop(now: number): Frame<T>[] {
    const head = this.queue[0];
    if (head && now - this.dueAt(head) > this.catchUpMs) this.skipToNewestGroup();
    const out: Frame<T>[] = [];
    while (this.queue.length > 0) {
      const frame = this.queue[0]!;
      if (!this.continues(frame)) {
        // A gap (lost object or group start without its keyframe): wait for the missing frame
        // until the next frame is due, then give up on this group.
        if (this.dueAt(frame) > now) break;
        this.dropUntilKeyframe();
        continue;
      }
      if (this.dueAt(frame) > now) break;
      this.queue.shift();
      out.push(frame);
      this.expect = { group: frame.group, object: frame.object + 1 };
    }
    return out;
  }

  /** Time until the next frame is due (ms), or undefined when empty. */
  nextDue(now: number): number | undefined {
    const head = this.queue[0];
    return head ? Math.max(0, this.dueAt(head) - now) : undefined;
  }

  /** Drop everything and wait for a keyframe (after a reconnect). */
  reset(): void {
    this.dropped += this.queue.length;
    this.queue = [];
    this.expect = undefined;
  }

  /** How far the buffered media spans, in ms of capture time. */
  bufferedMs(): number {
    const first = this.queue[0];
    const last = this.queue[this.queue.length - 1];
    return first && last ? (last.captureUs - first.captureUs) / 1000 : 0;
  }

  private continues(frame: Frame<T>): boolean {
    if (this.expect === undefined) return frame.keyframe;
    if (frame.group === this.expect.group) return frame.object === this.expect.object;
    // A later group may start once its keyframe is here.
    return frame.group > this.expect.group && frame.keyframe;
  }

  private dropUntilKeyframe(): void {
    this.queue.shift();
    this.dropped++;
    while (this.queue.length > 0 && !this.queue[0]!.keyframe) {
      this.queue.shift();
      this.dropped++;
    }
    this.expect = undefined;
  }

  private skipToNewestGroup(): void {
    let k = -1;
    for (let i = this.queue.length - 1; i > 0; i--) {
      if (this.queue[i]!.keyframe) {
        k = i;
        break;
      }
    }
    if (k <= 0) {
      if (this.queue.length > this.maxFrames) {
        // No keyframe to jump to: shed the oldest and resync at the next keyframe.
        this.dropped += this.queue.length;
        this.queue = [];
        this.expect = undefined;
        this.skips++;
      }
      return;
    }
    this.dropped += k;
    this.queue.splice(0, k);
    this.expect = undefined;
    this.skips++;
  }
}

function before(a: { group: number; object: number }, b: { group: number; object: number }): boolean {
  return a.group < b.group || (a.group === b.group && a.object < b.object);
}
