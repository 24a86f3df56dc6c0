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
 * Which group plays. Frames are released in (group, object) order, one group at a time, and a
 * group is only entered at its keyframe (object 0). The relay may send the newest group first
 * under congestion (descending group order) and reset older group streams it cannot deliver in
 * time, so a newer group's keyframe can be buffered while the group being played is still
 * incomplete. The buffer then moves on to the newer group rather than play the older one late:
 *
 * - the older group's next frame has not arrived and the newer keyframe is due: the older group
 *   is abandoned (its missing frame would be later still);
 * - the older group's next frame arrived after it was due (late by more than `lateMs`): that
 *   group and any other late ones are dropped up to the first newer keyframe;
 * - the older group's stream was reset (or cancelled) and its next frame is missing: abandoned at
 *   once, nothing more of it can come;
 * - a gap inside a group (a lost object): the rest of the group is dropped once the frame after
 *   the gap is due;
 * - catch-up: the oldest held frame more than `catchUpMs` past due (e.g. a hidden tab) skips to
 *   the newest buffered group.
 *
 * Once a frame of a group has been released, nothing of an older group is ever released: frames
 * of older groups arriving later are dropped on arrival.
 *
 * Skipped groups. `groupsSkipped` counts, once per group, every group between the first one
 * played and the one playing now that was not played in full: never received (a hole in the
 * group IDs: the relay never opened it), reset by the relay or cancelled by us, or dropped here.
 * A group counts as played in full when its stream ended cleanly (FIN, reported with
 * {@link JitterBuffer.groupEnded}) and every object it carried was released. Each group is
 * settled once, when playback enters a newer group.
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
  /**
   * How long after its due time a frame of an older group may arrive and still be played while a
   * newer group's keyframe is buffered (default 1 ms, a rounding allowance: a frame that arrived
   * after it was due gives way).
   */
  lateMs?: number;
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
  readonly lateMs: number;
  readonly maxFrames: number;
  private queue: Frame<T>[] = [];
  /** The next frame we may release must be at or after this position; undefined = need a keyframe. */
  private expect: { group: number; object: number } | undefined;
  /** Frames of groups below this are refused: a newer group was entered, or this one given up. */
  private floor = -Infinity;
  /** The group being played (entered at its keyframe), how many of its objects were released, its keyframe's capture time. */
  private current: { group: number; released: number; captureUs: number } | undefined;
  /** Capture time between the keyframes of consecutive groups (µs), once seen. */
  private gopUs: number | undefined;
  /** Groups whose stream was reset or cancelled: what is missing of them will not come. */
  private readonly broken = new Set<number>();
  /** Groups whose stream ended cleanly (FIN). */
  private readonly ended = new Set<number>();
  /** The highest object ID received per group (a FIN'd group is complete when all were released). */
  private readonly highest = new Map<number, number>();
  /** Frames dropped (late, skipped by catch-up, after a gap, or before a keyframe). */
  dropped = 0;
  /** Times the buffer skipped forward to a newer group. */
  skips = 0;
  /** Groups not played in full (never received, reset, or dropped here), once per group. */
  groupsSkipped = 0;

  constructor(
    readonly clock: PlayoutClock,
    options: JitterOptions = {},
  ) {
    this.targetLatencyMs = options.targetLatencyMs ?? 60;
    this.catchUpMs = options.catchUpMs ?? 250;
    this.lateMs = options.lateMs ?? 1;
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
    // Anything behind what we already released is useless now, and so is any frame of a group
    // older than the one playing: it is never decoded after a newer group's frames.
    if ((this.expect && before(frame, this.expect)) || frame.group < this.floor) {
      this.dropped++;
      return;
    }
    this.highest.set(frame.group, Math.max(frame.object, this.highest.get(frame.group) ?? -1));
    // Insert in (group, object) order; streams of different groups may interleave.
    let i = this.queue.length;
    while (i > 0 && before(frame, this.queue[i - 1]!)) i--;
    const prev = this.queue[i - 1];
    if (prev && prev.group === frame.group && prev.object === frame.object) return; // duplicate
    this.queue.splice(i, 0, frame);
    if (this.queue.length > this.maxFrames) this.skipToNewestGroup();
  }

  /** The stream carrying `group` ended cleanly (FIN): everything it had has arrived. */
  groupEnded(group: number): void {
    if (group >= this.floor || group === this.current?.group) this.ended.add(group);
  }

  /** The stream carrying `group` was reset (by the relay) or cancelled: the rest will not come. */
  groupReset(group: number): void {
    if (group >= this.floor || group === this.current?.group) this.broken.add(group);
  }

  /** Release every frame due at `now`, in order, skipping forward first if we fell behind. */
  pop(now: number): Frame<T>[] {
    const head = this.queue[0];
    if (head && now - this.dueAt(head) > this.catchUpMs) this.skipToNewestGroup();
    const out: Frame<T>[] = [];
    while (this.queue.length > 0) {
      const frame = this.queue[0]!;
      if (this.arrivedLate(frame) && this.skipToNextGroup()) continue;
      if (!this.continues(frame)) {
        // A gap (lost object or group start without its keyframe): wait for the missing frame
        // until the next frame is due (at once if its stream was reset), then give up on this group.
        if (this.dueAt(frame) > now && !(this.expect && this.broken.has(this.expect.group))) break;
        this.dropUntilKeyframe();
        continue;
      }
      if (this.dueAt(frame) > now) break;
      this.queue.shift();
      if (this.current?.group !== frame.group) this.enter(frame);
      if (this.current) this.current.released++;
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

  /**
   * Drop everything and wait for a keyframe (after a reconnect). Group accounting starts over:
   * the new subscription may number groups afresh, and groups missed while reconnecting are not
   * counted as skipped.
   */
  reset(): void {
    this.dropped += this.queue.length;
    this.queue = [];
    this.expect = undefined;
    this.floor = -Infinity;
    this.current = undefined;
    this.broken.clear();
    this.ended.clear();
    this.highest.clear();
  }

  /**
   * Forget the held frames of `group` and later: another rendition replaces them from `group`
   * on. Refused (false, nothing changed) once a frame of `group` or later was released, unless
   * `rejoin` and `group` is the one playing: it then starts over at the other rendition's
   * keyframe of that group (its frames already due come out at once, the decoder catches up to
   * live); the group is then settled as the new rendition plays it.
   */
  replaceFrom(group: number, rejoin = false): boolean {
    const released = Math.max(this.current?.group ?? -Infinity, this.expect?.group ?? -Infinity);
    if (released > group || (released === group && !rejoin)) return false;
    this.queue = this.queue.filter((f) => f.group < group);
    for (const set of [this.broken, this.ended]) for (const g of set) if (g >= group) set.delete(g);
    for (const g of this.highest.keys()) if (g >= group) this.highest.delete(g);
    if (released === group) {
      this.current = undefined;
      this.expect = undefined;
      this.floor = group;
    }
    return true;
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

  /**
   * Playback enters a group at `keyframe`: settle the group left behind (played in full only if
   * its stream ended and all it carried was released) and count every group between the two as
   * skipped (never received, or dropped before it was entered).
   *
   * Group IDs go up by one per group, except when the publisher restarts behind a live
   * subscription and numbers afresh (banyan-publish starts at the wall clock in ms): a jump of
   * thousands that is no hole. So the count between two groups is capped at what their capture
   * times allow (with a quarter to spare) at the GOP duration seen between nearby groups.
   */
  private enter(keyframe: Frame<T>): void {
    const left = this.current;
    const group = keyframe.group;
    if (left) {
      const complete =
        this.ended.has(left.group) &&
        !this.broken.has(left.group) &&
        left.released === (this.highest.get(left.group) ?? -1) + 1;
      if (!complete) this.groupsSkipped++;
      const ids = group - left.group;
      const spanUs = keyframe.captureUs - left.captureUs;
      const byTime = this.gopUs ? Math.round((1.25 * spanUs) / this.gopUs) - 1 : Infinity;
      this.groupsSkipped += Math.max(0, Math.min(ids - 1, byTime));
      if (ids <= 4 && spanUs > 0) this.gopUs = spanUs / ids;
    }
    this.current = { group, released: 0, captureUs: keyframe.captureUs };
    this.floor = group;
    for (const set of [this.broken, this.ended]) for (const g of set) if (g < group) set.delete(g);
    for (const g of this.highest.keys()) if (g < group) this.highest.delete(g);
  }

  /**
   * The head arrived after it was due (beyond `lateMs`) and a newer group's keyframe is here:
   * an older group delivered late; drop up to that keyframe. True when something was dropped.
   */
  private arrivedLate(frame: Frame<T>): boolean {
    return frame.arrivalMs - this.dueAt(frame) > this.lateMs && this.newerKeyframe(frame.group) > 0;
  }

  /** The index of the first keyframe of a group after `group`, or -1. */
  private newerKeyframe(group: number): number {
    return this.queue.findIndex((f) => f.group > group && f.keyframe);
  }

  private skipToNextGroup(): boolean {
    const k = this.newerKeyframe(this.queue[0]?.group ?? Infinity);
    if (k <= 0) return false;
    this.dropFront(k);
    return true;
  }

  /** Give up on the group being played (or waited for): drop up to the next keyframe. */
  private dropUntilKeyframe(): void {
    let last = this.expect?.group ?? -Infinity;
    do {
      last = Math.max(last, this.queue.shift()?.group ?? -Infinity);
      this.dropped++;
    } while (this.queue.length > 0 && !this.queue[0]!.keyframe);
    this.floor = Math.max(this.floor, last + 1);
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
    this.dropFront(k);
  }

  /** Drop the first `k` frames (up to a keyframe) and refuse anything older from now on. */
  private dropFront(k: number): void {
    this.dropped += k;
    this.queue.splice(0, k);
    this.floor = Math.max(this.floor, this.queue[0]?.group ?? -Infinity);
    this.expect = undefined;
    this.skips++;
  }
}

function before(a: { group: number; object: number }, b: { group: number; object: number }): boolean {
  return a.group < b.group || (a.group === b.group && a.object < b.object);
}
