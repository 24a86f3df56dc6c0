/**
 * How live the picture is: `behindLiveMs` (now − the capture time of the frame on screen) with
 * its p50/p99/max over the session, and stalls (no new video frame shown for more than
 * `stallMs` while playing).
 *
 * Pure logic: the caller passes `now` (ms, viewer wall clock, the clock capture times are
 * compared with), so tests use a fake clock.
 */

export interface MeterOptions {
  /** A gap between shown frames longer than this while playing is a stall (default 500 ms). */
  stallMs?: number;
  /** Behind-live is sampled once per this much wall time while playing (default 100 ms). */
  sampleEveryMs?: number;
}

/** Histogram bucket width (ms) and span: 10 ms resolution up to 60 s; beyond goes in the last. */
const BUCKET_MS = 10;
const BUCKETS = 6000;

export class PlaybackMeter {
  readonly stallMs: number;
  readonly sampleEveryMs: number;
  /** Times playback stalled (a gap of more than `stallMs` between shown frames). */
  stalls = 0;
  /** The largest behind-live sample so far (ms), or undefined before any. */
  maxMs: number | undefined;
  private closedStallMs = 0;
  private longestClosedMs = 0;
  private shownCaptureMs: number | undefined;
  private shownAt: number | undefined;
  private stalled = false;
  private nextSample: number | undefined;
  private readonly histogram = new Uint32Array(BUCKETS);
  private samples = 0;

  constructor(options: MeterOptions = {}) {
    this.stallMs = options.stallMs ?? 500;
    this.sampleEveryMs = options.sampleEveryMs ?? 100;
  }

  /** A video frame captured at `captureUs` (µs since the epoch) was put on screen at `now`. */
  shown(captureUs: number, now: number): void {
    if (this.shownAt !== undefined) {
      const gap = now - this.shownAt;
      if (gap > this.stallMs) {
        if (!this.stalled) this.stalls++;
        this.closedStallMs += gap;
        this.longestClosedMs = Math.max(this.longestClosedMs, gap);
      }
    }
    this.stalled = false;
    this.shownAt = now;
    this.shownCaptureMs = captureUs / 1000;
    this.nextSample ??= now;
    this.tick(now, true);
  }

  /**
   * Advance to `now`. While `playing`, a stall in progress is counted as soon as it passes
   * `stallMs`, and behind-live is sampled. When not playing (connecting, reconnecting) neither is
   * measured, and the next shown frame starts afresh.
   */
  tick(now: number, playing: boolean): void {
    if (!playing) {
      if (this.stalled && this.shownAt !== undefined) {
        this.closedStallMs += now - this.shownAt;
        this.longestClosedMs = Math.max(this.longestClosedMs, now - this.shownAt);
      }
      this.stalled = false;
      this.shownAt = undefined;
      this.shownCaptureMs = undefined;
      this.nextSample = undefined;
      return;
    }
    if (this.shownAt !== undefined && !this.stalled && now - this.shownAt > this.stallMs) {
      this.stalled = true;
      this.stalls++;
    }
    const behind = this.behindLiveMs(now);
    if (behind === undefined || this.nextSample === undefined || now < this.nextSample) return;
    this.record(behind);
    // One sample per interval, however late this tick is: a slow tick is not weighted more.
    this.nextSample += this.sampleEveryMs;
    if (this.nextSample <= now) this.nextSample = now + this.sampleEveryMs;
  }

  /** now − the capture time of the frame on screen (ms); undefined before the first frame. */
  behindLiveMs(now: number): number | undefined {
    return this.shownCaptureMs === undefined ? undefined : now - this.shownCaptureMs;
  }

  /** Total time spent stalled (ms), the stall in progress included. */
  stallTotalMs(now: number): number {
    const open = this.stalled && this.shownAt !== undefined ? now - this.shownAt : 0;
    return this.closedStallMs + open;
  }

  /** Time since the last frame was shown (ms), while playing; undefined before the first. */
  sinceShownMs(now: number): number | undefined {
    return this.shownAt === undefined ? undefined : now - this.shownAt;
  }

  /** The longest single stall (ms), the one in progress included; 0 before any. */
  longestStallMs(now: number): number {
    const open = this.stalled && this.shownAt !== undefined ? now - this.shownAt : 0;
    return Math.max(this.longestClosedMs, open);
  }

  /**
   * The `q` quantile (0..1) of the behind-live samples, to the histogram's 10 ms resolution
   * (the upper edge of the bucket it falls in, capped by the largest sample); undefined before
   * any sample.
   */
  quantile(q: number): number | undefined {
    if (this.samples === 0 || this.maxMs === undefined) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.samples));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.histogram[i]!;
      if (seen >= rank) return Math.min((i + 1) * BUCKET_MS, this.maxMs);
    }
    return this.maxMs;
  }

  private record(ms: number): void {
    const i = Math.min(BUCKETS - 1, Math.max(0, Math.floor(ms / BUCKET_MS)));
    this.histogram[i]!++;
    this.samples++;
    this.maxMs = this.maxMs === undefined ? ms : Math.max(this.maxMs, ms);
  }
}
