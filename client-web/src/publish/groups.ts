/**
 * The publishing policies of `publish()`, kept free of browser APIs so they are unit-tested:
 *
 * - {@link TrackGroups}: group and object numbering, as `publisher/src/broadcast.rs`'s
 *   `MediaTrack::write` (MSF: group IDs start at the wall-clock ms when publishing started, so a
 *   restarted publisher never reuses one, and go up by one per group; objects from 0 in a group;
 *   frames before the first group start are dropped).
 * - {@link KeyframePolicy}: a keyframe (a new group) every GOP of capture time, and at once when a
 *   new subscription wants one (a viewer joining starts at the next group).
 * - {@link AudioGroups}: audio groups of about 500 ms of capture time (as `banyan-publish`).
 * - {@link EncodeGate}: a frame is dropped, not queued, while the encoder already holds `max`.
 * - {@link GroupWindow}: per subscription, at most `maxLag` groups behind the newest may still be
 *   sending; an older one, or one still unsent a GOP after the next group began, is abandoned
 *   (its stream reset), never queued without bound (the native publisher's MAX_LAG and
 *   `LatencyBudget::Auto`).
 */

/** Groups a subscription may fall behind the newest before its oldest is abandoned (publisher MAX_LAG). */
export const MAX_LAG = 2;
/** Audio group length in µs of capture time (publisher AUDIO_GROUP). */
export const AUDIO_GROUP_US = 500_000;

/** The first group ID of a broadcast started at `nowMs` (wall-clock ms since the epoch). */
export function firstGroupId(nowMs: number): number {
  return Math.floor(nowMs);
}

/** Where a frame went: its group and object, and whether it starts the group. */
export interface Placement {
  group: number;
  object: number;
}

/** A track's numbering: `write(newGroup)` places one frame. */
export class TrackGroups {
  private nextGroup: number;
  private current: Placement | undefined;

  constructor(firstGroup: number) {
    this.nextGroup = firstGroup;
  }

  /** Place a frame; `newGroup` starts a group with it. Undefined: no group started yet (dropped). */
  write(newGroup: boolean): Placement | undefined {
    if (newGroup) {
      this.current = { group: this.nextGroup++, object: 0 };
    } else if (this.current) {
      this.current = { group: this.current.group, object: this.current.object + 1 };
    }
    return this.current;
  }

  /** The group being written, if any. */
  get currentGroup(): number | undefined {
    return this.current?.group;
  }

  /** The ID the next group will get. */
  get upcomingGroup(): number {
    return this.nextGroup;
  }
}

/** Decides which frames are keyframes: every `gopUs` of capture time, or when asked for one. */
export class KeyframePolicy {
  private lastKeyUs: number | undefined;
  private wanted = true;

  constructor(readonly gopUs: number) {
    if (!(gopUs > 0)) throw new RangeError(`GOP must be positive, not ${gopUs} µs`);
  }

  /** A new subscription (or a new encoder configuration) wants a group start soon. */
  request(): void {
    this.wanted = true;
  }

  /** Whether the frame captured at `captureUs` should be a keyframe (then it starts the GOP). */
  isKeyframe(captureUs: number): boolean {
    if (this.wanted || this.lastKeyUs === undefined || captureUs - this.lastKeyUs >= this.gopUs) {
      this.wanted = false;
      this.lastKeyUs = captureUs;
      return true;
    }
    return false;
  }
}

/** Audio frames start a group every `groupUs` of capture time. */
export class AudioGroups {
  private startUs: number | undefined;

  constructor(readonly groupUs = AUDIO_GROUP_US) {}

  isGroupStart(captureUs: number): boolean {
    if (this.startUs === undefined || captureUs >= this.startUs + this.groupUs) {
      this.startUs = captureUs;
      return true;
    }
    return false;
  }
}

/** Admits frames into an encoder while its queue is below `max`; counts what it drops. */
export class EncodeGate {
  dropped = 0;
  /** The largest queue seen when a frame was offered. */
  maxQueue = 0;

  constructor(readonly max: number) {
    if (!(max >= 1)) throw new RangeError(`the encoder queue bound must be at least 1, not ${max}`);
  }

  /** Whether a frame may go to an encoder whose `encodeQueueSize` is `queued`. */
  admit(queued: number): boolean {
    this.maxQueue = Math.max(this.maxQueue, queued);
    if (queued >= this.max) {
      this.dropped++;
      return false;
    }
    return true;
  }
}

/** One subscription's groups still sending, oldest first. */
export class GroupWindow {
  private readonly open: { group: number; nextStartedAt: number | undefined }[] = [];

  /** `budgetMs`: how long a group may still be sending after the next began (one GOP). */
  constructor(
    readonly maxLag: number,
    readonly budgetMs: number,
  ) {}

  /** Group `group` starts at `nowMs`; returns the groups to abandon (oldest first). */
  start(group: number, nowMs: number): number[] {
    const last = this.open[this.open.length - 1];
    if (last) last.nextStartedAt = nowMs;
    this.open.push({ group, nextStartedAt: undefined });
    const abandoned: number[] = [];
    while (this.open.length > this.maxLag + 1) abandoned.push(this.open.shift()!.group);
    return abandoned.concat(this.overdue(nowMs));
  }

  /** Groups past their budget at `nowMs`, removed from the window (the newest never is). */
  overdue(nowMs: number): number[] {
    const out: number[] = [];
    for (let i = this.open.length - 1; i >= 0; i--) {
      const g = this.open[i]!;
      if (g.nextStartedAt !== undefined && nowMs - g.nextStartedAt > this.budgetMs) {
        out.unshift(g.group);
        this.open.splice(i, 1);
      }
    }
    return out;
  }

  /** Group `group` was sent completely (or failed): it leaves the window. */
  finished(group: number): void {
    const i = this.open.findIndex((g) => g.group === group);
    if (i >= 0) this.open.splice(i, 1);
  }

  /** The groups still sending, oldest first. */
  get inFlight(): number[] {
    return this.open.map((g) => g.group);
  }
}
