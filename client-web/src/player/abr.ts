// Adaptive bitrate: the same rule as the Rust `banyan_media::abr` (read its module docs for the
// reasoning), for the browser player. Sans-IO: the player feeds each video object's size,
// capture time and arrival time, and asks after each group which rendition to play next.
//
// Estimator: per object, only the time the link was busy with it counts. The smallest recent
// delay (capture to arrival) is the empty path plus that object's transfer (the base, kept with
// its size); an object that did not wait behind another took `delay - base` for the bytes it has
// beyond the base object's, a queued one took from the previous arrival to its own for all its
// bytes; idle gaps never count. A group's sample is counted bytes over busy time; the estimate
// moves towards a higher sample by SMOOTHING and drops to a lower one at once. (The browser
// player also leaves out objects counting less than a datagram: `minCountedBytes`.)
//
// Chooser: down at once below `downBelow` x the playing bitrate (or when falling behind), to the
// highest rendition whose bitrate x `downHeadroom` fits; up one step after `upHold` groups in a
// row above `upAbove` x the next bitrate, and no sooner than `upHold` groups after a switch.

/** Groups over which the smallest delay (the empty path) is remembered. */
export const BASE_WINDOW_GROUPS = 10;
/** Weight of a new sample in the estimate when it is above it. */
export const SMOOTHING = 0.3;
/** The least busy time counted for one object, µs (a smaller one is clock noise). */
export const MIN_BUSY_US = 250;
/**
 * What the browser player passes as {@link EstimatorOptions.minCountedBytes}: one datagram's
 * worth. An object that needs no more datagrams than the base object takes no longer on the
 * link, so its extra delay is arrival-time noise, which in a page (main-thread scheduling) is
 * milliseconds and would drown the few bytes it counts.
 */
export const BROWSER_MIN_COUNTED_BYTES = 1200;

export interface EstimatorOptions {
  /**
   * An object adds to its group's sample only if it counts at least this many bytes (default 0,
   * as the Rust rule).
   */
  minCountedBytes?: number;
}

export interface Rendition {
  /** Its track name. */
  name: string;
  /** Bits per second (the catalog's `bitrate`). */
  bitrate: number;
}

interface Delay {
  delayUs: number;
  size: number;
}

const lower = (a: Delay, b: Delay): Delay => (a.delayUs < b.delayUs || (a.delayUs === b.delayUs && a.size <= b.size) ? a : b);

/** The bandwidth a viewer receives, from its video objects. */
export class Estimator {
  private base: Delay[] = [];
  private group?: { id: number; bytes: number; busyUs: number; min: Delay };
  private previousArrivalUs?: number;
  private value?: number;
  /** Group samples taken so far. */
  samples = 0;
  private readonly minCounted: number;

  constructor(options: EstimatorOptions = {}) {
    this.minCounted = options.minCountedBytes ?? 0;
  }

  /**
   * One video object of `bytes` in `group`, captured at `captureUs` (publisher clock) and read
   * whole at `arrivalUs` (viewer clock), in arrival order. The first object of a new group ends
   * the previous one: returns its sample (bits per second) if it had any counted bytes.
   */
  object(group: number, bytes: number, captureUs: number, arrivalUs: number): number | undefined {
    const delay: Delay = { delayUs: arrivalUs - captureUs, size: bytes };
    let finished: number | undefined;
    if (this.group === undefined || this.group.id !== group) {
      if (this.group !== undefined) finished = this.finish(this.group);
      this.group = { id: group, bytes: 0, busyUs: 0, min: delay };
    }
    const base = [...this.base, this.group.min, delay].reduce(lower);
    const earliest = captureUs + base.delayUs;
    const queued = this.previousArrivalUs !== undefined && this.previousArrivalUs > earliest;
    const start = queued ? (this.previousArrivalUs as number) : earliest;
    const counted = queued ? bytes : Math.max(0, bytes - base.size);
    const busy = arrivalUs - start;
    if (busy >= MIN_BUSY_US && counted > 0 && counted >= this.minCounted) {
      this.group.bytes += counted;
      this.group.busyUs += busy;
    }
    this.group.min = lower(this.group.min, delay);
    this.previousArrivalUs = arrivalUs;
    return finished;
  }

  /** The current group is complete: take its sample now. */
  endGroup(): number | undefined {
    const done = this.group;
    this.group = undefined;
    return done === undefined ? undefined : this.finish(done);
  }

  /** Bits per second (undefined before the first group has ended). */
  get estimate(): number | undefined {
    return this.value === undefined ? undefined : Math.floor(this.value);
  }

  private finish(group: { bytes: number; busyUs: number; min: Delay }): number | undefined {
    if (this.base.length === BASE_WINDOW_GROUPS) this.base.shift();
    this.base.push(group.min);
    if (group.bytes === 0 || group.busyUs === 0) return undefined;
    const sample = (group.bytes * 8 * 1e6) / group.busyUs;
    this.value = this.value !== undefined && sample >= this.value ? this.value + SMOOTHING * (sample - this.value) : sample;
    this.samples += 1;
    return Math.floor(sample);
  }
}

export interface Policy {
  downBelow: number;
  downHeadroom: number;
  upAbove: number;
  upHold: number;
}

/** The same numbers as the Rust `Policy::default()`. */
export const DEFAULT_POLICY: Policy = { downBelow: 1.1, downHeadroom: 1.25, upAbove: 1.4, upHold: 3 };

/** Which rendition to play, following an [`Estimator`]. */
export class Chooser {
  private readonly ladder: Rendition[];
  private index: number;
  private above = 0;
  private sinceSwitch = 0;
  /** Switches made so far. */
  switches = 0;

  /** Starts on the highest rendition at or below `startBitrate` (the lowest if none is). */
  constructor(ladder: Rendition[], startBitrate: number, private readonly policy: Policy = DEFAULT_POLICY) {
    if (ladder.length === 0) throw new Error("an ABR chooser needs at least one rendition");
    this.ladder = [...ladder].sort((a, b) => a.bitrate - b.bitrate || a.name.localeCompare(b.name));
    const fits = this.ladder.map((r) => r.bitrate <= startBitrate).lastIndexOf(true);
    this.index = Math.max(0, fits);
  }

  get current(): Rendition {
    // The constructor refuses an empty ladder and every index stored is in range.
    return this.ladder[this.index] ?? (this.ladder[0] as Rendition);
  }

  /** A group has ended: the rendition to switch to, if the rule says switch. */
  onGroup(estimate: number | undefined, behind: boolean): Rendition | undefined {
    this.sinceSwitch += 1;
    if (estimate === undefined) return undefined;
    const p = this.policy;
    if ((estimate < this.current.bitrate * p.downBelow || behind) && this.index > 0) {
      const fits = Math.max(0, this.ladder.map((r) => r.bitrate * p.downHeadroom <= estimate).lastIndexOf(true));
      return this.switchTo(Math.min(fits, this.index - 1));
    }
    const next = this.ladder[this.index + 1];
    if (next !== undefined && estimate >= next.bitrate * p.upAbove) {
      this.above += 1;
      if (this.above >= p.upHold && this.sinceSwitch >= p.upHold) return this.switchTo(this.index + 1);
    } else {
      this.above = 0;
    }
    return undefined;
  }

  private switchTo(index: number): Rendition {
    this.index = index;
    this.above = 0;
    this.sinceSwitch = 0;
    this.switches += 1;
    return this.current;
  }
}
