/**
 * Rendition switching: which video track feeds the decoder, and how it changes from one
 * rendition to another make-before-break at a group boundary. Pure logic (no session, no clock):
 * the player reports what arrives and what the decoder starts, and carries out the returned
 * {@link Action}s (subscribe, unsubscribe, stop reading old groups).
 *
 * A switch, from rendition A (playing) to B:
 * 1. `want(B)`: subscribe B while A keeps playing (B is *pending*).
 * 2. B's objects are dropped until the first keyframe (object 0) of a group G newer than every
 *    group the decoder has been given. That commits the switch: groups `< G` come from A, groups
 *    `>= G` from B (B becomes *playing*, A *retiring*); what A had delivered of G and later but
 *    not yet played leaves the jitter buffer, and B's older groups are no longer read. The
 *    renditions of a ladder are aligned (group N starts at the same keyframe time in every one),
 *    so the jitter buffer sees one continuous stream of group IDs. (A larger rendition's
 *    keyframe comes after the smaller one's of the same group: it is still taken while that
 *    group waits in the jitter buffer, else an up-switch could chase the next group forever.)
 * 3. A is unsubscribed once its last group `G - 1` has ended or the decoder has started group G
 *    (B's keyframe), whichever comes first. The picture never waits for B.
 *
 * A pending rendition that brings no usable keyframe within {@link PENDING_GROUPS} groups of
 * the playing one is given up (unsubscribed; the player keeps the rendition it has). A new
 * choice while one is pending replaces it; a choice while an old rendition is still retiring
 * waits until it is gone (one subscription per track in a session).
 */
import type { MediaTrack } from "./catalog";

/** Groups of the playing rendition a pending one may take to bring its first keyframe. */
export const PENDING_GROUPS = 4;
/** Switches kept in {@link RenditionSwitcher.log}. */
export const SWITCH_LOG = 10;

export type Action =
  | { kind: "subscribe"; track: string }
  | { kind: "unsubscribe"; track: string }
  /** Stop reading groups older than `group` of `track` (they will not be played). */
  | { kind: "cancelBefore"; track: string; group: number }
  /**
   * Take the frames of `group` and later out of the jitter buffer: the new rendition replaces
   * them (`rejoin`: `group` is the one playing, started over from the new rendition's keyframe).
   */
  | { kind: "replaceFrom"; group: number; rejoin: boolean };

/** One completed switch. */
export interface SwitchRecord {
  /** When it was committed (the caller's clock; the player uses wall-clock ms since the epoch). */
  atMs: number;
  from: string;
  to: string;
  /** The first group played from `to`. */
  group: number;
  /** `auto` (the ABR rule) or `manual` (the page's picker). */
  reason: "auto" | "manual";
  /** The bandwidth estimate when the switch was asked for (kbit/s), if there was one. */
  estimateKbps: number | undefined;
}

/** What to do with an object that arrived on a track. */
export interface Verdict {
  /** Give it to the jitter buffer. */
  play: boolean;
  actions: Action[];
}

/**
 * The ladder a catalog offers: its video tracks that share the first video track's `altGroup`
 * (all video tracks when it has none) and declare a `bitrate`, highest bitrate first. Fewer than
 * two means nothing to switch between.
 */
export function ladderOf(videos: MediaTrack[]): MediaTrack[] {
  const first = videos[0];
  if (!first) return [];
  return videos
    .filter((t) => !t.synthetic && t.bitrate !== undefined && t.bitrate > 0 && t.altGroup === first.altGroup)
    .sort((a, b) => (b.bitrate ?? 0) - (a.bitrate ?? 0) || a.name.localeCompare(b.name));
}

/**
 * The rendition to start with: the highest whose bitrate is at most half of `downlinkBps` (the
 * browser's own estimate of its downlink, `navigator.connection.downlink`, Chromium only), else
 * the lowest. Half, because that figure is a coarse guess from past page loads (capped at
 * 10 Mbit/s) and the estimator needs a few groups to measure: starting low costs a few seconds
 * of a smaller picture (the rule moves up after `upHold` groups), starting too high costs a
 * stall. `ladder` is {@link ladderOf}'s (highest first).
 */
export function startRendition(ladder: MediaTrack[], downlinkBps: number | undefined): MediaTrack | undefined {
  const lowest = ladder[ladder.length - 1];
  if (downlinkBps === undefined || !(downlinkBps > 0)) return lowest;
  return ladder.find((t) => (t.bitrate ?? 0) <= downlinkBps / 2) ?? lowest;
}

export class RenditionSwitcher {
  /** The track whose groups (from `from` on) feed the decoder. */
  playing: string;
  /** Completed switches. */
  switches = 0;
  /** The last {@link SWITCH_LOG} switches, oldest first. */
  readonly log: SwitchRecord[] = [];
  /** The first group played from `playing` (0 before any switch). */
  from = 0;
  /** Newest group of `playing` given to the buffer. */
  private newest = -1;
  /** Newest group given to the decoder. */
  private releasedGroup = -1;
  private pending:
    | { track: string; waited: number; reason: SwitchRecord["reason"]; estimateKbps: number | undefined; rejoin: boolean }
    | undefined;
  /** The previous rendition, still delivering groups before `until`. */
  private retiring: { track: string; until: number } | undefined;
  /** A choice made while a rendition was retiring. */
  private queued: { track: string; reason: SwitchRecord["reason"]; estimateKbps: number | undefined; rejoin: boolean } | undefined;

  constructor(start: string) {
    this.playing = start;
  }

  /** The rendition being switched to, if a switch is under way; else the playing one. */
  get target(): string {
    return this.queued?.track ?? this.pending?.track ?? this.playing;
  }

  /** Tracks subscribed now (playing, pending, retiring). */
  get subscribed(): string[] {
    return [this.playing, this.pending?.track, this.retiring?.track].filter((t): t is string => t !== undefined);
  }

  /**
   * Switch to `track` (no-op if it is already the target). With `rejoin` (a switch down: the
   * picture may be frozen on a link too narrow for what plays) the switch may also take the
   * group being played, from the new rendition's keyframe of it (the relay starts a
   * subscription at the first object of its newest group), rather than wait for the next one.
   */
  want(track: string, reason: SwitchRecord["reason"], estimateKbps: number | undefined, rejoin = false): Action[] {
    if (track === this.target) return [];
    if (this.retiring) {
      // Nothing is pending while one retires: the choice waits for it to go.
      this.queued = track === this.playing ? undefined : { track, reason, estimateKbps, rejoin };
      return [];
    }
    const actions = this.dropPending();
    if (track !== this.playing) {
      this.pending = { track, waited: 0, reason, estimateKbps, rejoin };
      actions.push({ kind: "subscribe", track });
    }
    return actions;
  }

  /** An object `object` of `group` arrived on `track` at `nowMs`. */
  object(track: string, group: number, object: number, nowMs: number): Verdict {
    if (track === this.playing) {
      if (group < this.from) return { play: false, actions: [] };
      const actions: Action[] = [];
      if (group > this.newest) {
        if (this.newest >= 0 && this.pending && ++this.pending.waited > PENDING_GROUPS) actions.push(...this.dropPending());
        this.newest = group;
      }
      return { play: true, actions };
    }
    if (this.retiring && track === this.retiring.track) return { play: group < this.retiring.until, actions: [] };
    if (this.pending && track === this.pending.track) {
      const first = this.pending.rejoin ? this.releasedGroup : this.releasedGroup + 1;
      if (object !== 0 || group < first) return { play: false, actions: [] };
      return { play: true, actions: this.commit(group, nowMs) };
    }
    return { play: false, actions: [] };
  }

  /**
   * `track`'s stream of `group` ended (finished or reset). True when the jitter buffer should
   * hear of it (the group is one played from that track).
   */
  streamEnded(track: string, group: number): { forBuffer: boolean; actions: Action[] } {
    if (track === this.playing) return { forBuffer: group >= this.from, actions: [] };
    const r = this.retiring;
    if (r && track === r.track && group < r.until) {
      return { forBuffer: true, actions: group === r.until - 1 ? this.retire() : [] };
    }
    return { forBuffer: false, actions: [] };
  }

  /** The decoder was given a frame of `group`. */
  released(group: number): Action[] {
    this.releasedGroup = Math.max(this.releasedGroup, group);
    return this.retiring && group >= this.retiring.until ? this.retire() : [];
  }

  /** A new session: only the target is subscribed again, and plays from its first group. */
  restart(): string {
    this.playing = this.target;
    this.pending = undefined;
    this.retiring = undefined;
    this.queued = undefined;
    this.from = 0;
    this.newest = -1;
    this.releasedGroup = -1;
    return this.playing;
  }

  private commit(group: number, nowMs: number): Action[] {
    const p = this.pending;
    if (!p) return [];
    this.retiring = { track: this.playing, until: group };
    this.log.push({ atMs: nowMs, from: this.playing, to: p.track, group, reason: p.reason, estimateKbps: p.estimateKbps });
    if (this.log.length > SWITCH_LOG) this.log.shift();
    this.switches += 1;
    const replace = group <= this.newest;
    const rejoin = group <= this.releasedGroup;
    this.playing = p.track;
    this.pending = undefined;
    this.from = group;
    this.newest = group;
    const actions: Action[] = [{ kind: "cancelBefore", track: p.track, group }];
    if (replace || rejoin) actions.push({ kind: "replaceFrom", group, rejoin });
    return actions;
  }

  private retire(): Action[] {
    const r = this.retiring;
    if (!r) return [];
    this.retiring = undefined;
    const actions: Action[] = [{ kind: "unsubscribe", track: r.track }];
    const q = this.queued;
    this.queued = undefined;
    if (q) actions.push(...this.want(q.track, q.reason, q.estimateKbps, q.rejoin));
    return actions;
  }

  private dropPending(): Action[] {
    const p = this.pending;
    this.pending = undefined;
    return p ? [{ kind: "unsubscribe", track: p.track }] : [];
  }
}
