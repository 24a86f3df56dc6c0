// Rendition switching without a browser (src/player/renditions.ts): the ladder read from a
// catalog, the start choice, and make-before-break switches at a group boundary as the player
// drives them (objects arriving on two tracks, stream ends, frames given to the decoder).
import { describe, expect, it } from "vitest";
import type { MediaTrack } from "../src/player/catalog";
import { ladderOf, PENDING_GROUPS, RenditionSwitcher, startRendition, type Action } from "../src/player/renditions";

const track = (name: string, bitrate: number | undefined, altGroup: number | undefined = 1): MediaTrack => {
  const t: MediaTrack = { namespace: "live/x", name, role: "video", codec: "avc1.64001f", synthetic: false };
  if (bitrate !== undefined) t.bitrate = bitrate;
  if (altGroup !== undefined) t.altGroup = altGroup;
  return t;
};

const HIGH = "video/high";
const LOW = "video/low";

/** Feed a whole group of `frames` objects from `name`; the verdicts and actions. */
function group(s: RenditionSwitcher, name: string, g: number, frames = 3): { played: number; actions: Action[] } {
  let played = 0;
  const actions: Action[] = [];
  for (let o = 0; o < frames; o++) {
    const v = s.object(name, g, o, 1000 + g);
    if (v.play) played++;
    actions.push(...v.actions);
  }
  return { played, actions };
}

describe("ladderOf", () => {
  it("keeps the first video track's altGroup, with bitrates, highest first", () => {
    const ladder = ladderOf([track("video/360p", 800_000), track("video/720p", 2_500_000), track("other", 5_000_000, 2), track("nobitrate", undefined)]);
    expect(ladder.map((t) => t.name)).toEqual(["video/720p", "video/360p"]);
  });
  it("a single video track or synthetic ones make no ladder worth switching", () => {
    expect(ladderOf([])).toEqual([]);
    expect(ladderOf([track("video", 2_000_000)]).length).toBe(1);
    const synthetic = { ...track("video/b", 1_000_000), synthetic: true };
    expect(ladderOf([track("video/a", 2_000_000), synthetic]).map((t) => t.name)).toEqual(["video/a"]);
  });
});

describe("startRendition", () => {
  const ladder = ladderOf([track("video/720p", 2_500_000), track("video/480p", 1_200_000), track("video/240p", 400_000)]);
  it("starts at the highest rendition within half the browser's downlink", () => {
    expect(startRendition(ladder, 10e6)?.name).toBe("video/720p");
    expect(startRendition(ladder, 4e6)?.name).toBe("video/480p");
    expect(startRendition(ladder, 1e6)?.name).toBe("video/240p");
  });
  it("starts at the lowest without an estimate or below every rendition", () => {
    expect(startRendition(ladder, undefined)?.name).toBe("video/240p");
    expect(startRendition(ladder, 0)?.name).toBe("video/240p");
    expect(startRendition(ladder, 100_000)?.name).toBe("video/240p");
  });
});

describe("RenditionSwitcher", () => {
  it("switches make-before-break at the first new keyframe newer than what the decoder has", () => {
    const s = new RenditionSwitcher(HIGH);
    expect(group(s, HIGH, 10).played).toBe(3);
    expect(s.released(10)).toEqual([]);
    expect(s.want(LOW, "auto", 700)).toEqual([{ kind: "subscribe", track: LOW }]);
    expect(s.subscribed.sort()).toEqual([HIGH, LOW]);
    // The new subscription starts inside group 10, then brings group 10 whole: the decoder is
    // in group 10 already, so nothing of it plays and the old rendition goes on.
    expect(s.object(LOW, 10, 2, 0).play).toBe(false);
    expect(s.object(LOW, 10, 0, 0).play).toBe(false);
    expect(group(s, HIGH, 11, 1).played).toBe(1); // group 11 begins on the old rendition
    expect(group(s, HIGH, 12, 1).played).toBe(1); // and 12: both still in the jitter buffer
    expect(s.playing).toBe(HIGH);
    // Group 12's keyframe on the new one commits the switch; the old one's group 12 leaves the buffer.
    const commit = s.object(LOW, 12, 0, 5000);
    expect(commit.play).toBe(true);
    expect(commit.actions).toEqual([
      { kind: "cancelBefore", track: LOW, group: 12 },
      { kind: "replaceFrom", group: 12, rejoin: false },
    ]);
    expect(s.playing).toBe(LOW);
    expect(s.switches).toBe(1);
    expect(s.log).toEqual([{ atMs: 5000, from: HIGH, to: LOW, group: 12, reason: "auto", estimateKbps: 700 }]);
    // The old rendition still finishes group 11; its group 12 and the new one's group 11 are dropped.
    expect(s.object(HIGH, 11, 1, 0).play).toBe(true);
    expect(s.object(HIGH, 12, 1, 0).play).toBe(false);
    expect(s.object(LOW, 11, 1, 0).play).toBe(false);
    expect(s.object(LOW, 12, 1, 0).play).toBe(true);
    // Stream ends: the old one's group 11 concerns the buffer and retires it (unsubscribe).
    expect(s.streamEnded(LOW, 11)).toEqual({ forBuffer: false, actions: [] });
    expect(s.streamEnded(HIGH, 12)).toEqual({ forBuffer: false, actions: [] });
    expect(s.streamEnded(HIGH, 11)).toEqual({ forBuffer: true, actions: [{ kind: "unsubscribe", track: HIGH }] });
    expect(s.subscribed).toEqual([LOW]);
    expect(s.object(HIGH, 11, 2, 0).play).toBe(false);
  });

  it("a keyframe of a group nothing was played of yet needs no replacing", () => {
    const s = new RenditionSwitcher(LOW);
    group(s, LOW, 5);
    s.released(5);
    s.want(HIGH, "auto", 900);
    expect(s.object(HIGH, 6, 0, 1).actions).toEqual([{ kind: "cancelBefore", track: HIGH, group: 6 }]);
    expect(s.playing).toBe(HIGH);
  });

  it("a switch down may rejoin the group playing from the new rendition's keyframe", () => {
    const s = new RenditionSwitcher(HIGH);
    group(s, HIGH, 7);
    s.released(7); // frozen inside group 7: its next frames are stuck on a narrowed link
    s.want(LOW, "auto", 300, true);
    expect(s.object(LOW, 6, 0, 0).play).toBe(false); // older than what the decoder has
    const commit = s.object(LOW, 7, 0, 9);
    expect(commit.play).toBe(true);
    expect(commit.actions).toEqual([
      { kind: "cancelBefore", track: LOW, group: 7 },
      { kind: "replaceFrom", group: 7, rejoin: true },
    ]);
    // Nothing more of the old rendition plays; it goes once the decoder has the new group 7.
    expect(s.object(HIGH, 7, 5, 0).play).toBe(false);
    expect(s.released(7)).toEqual([{ kind: "unsubscribe", track: HIGH }]);
  });

  it("retires the old rendition once the decoder starts the new one's group", () => {
    const s = new RenditionSwitcher(HIGH);
    group(s, HIGH, 1);
    s.want(LOW, "manual", undefined);
    s.object(LOW, 2, 0, 0);
    expect(s.released(1)).toEqual([]);
    expect(s.released(2)).toEqual([{ kind: "unsubscribe", track: HIGH }]);
    expect(s.released(3)).toEqual([]);
    expect(s.log[0]?.reason).toBe("manual");
  });

  it("a choice while the old rendition retires waits for it; going back cancels the pending one", () => {
    const s = new RenditionSwitcher(HIGH);
    group(s, HIGH, 1);
    s.want(LOW, "auto", 500);
    s.object(LOW, 2, 0, 0);
    // Back to HIGH while HIGH is still retiring: no second subscription of HIGH yet.
    expect(s.want(HIGH, "manual", undefined)).toEqual([]);
    expect(s.target).toBe(HIGH);
    expect(s.released(2)).toEqual([
      { kind: "unsubscribe", track: HIGH },
      { kind: "subscribe", track: HIGH },
    ]);
    // Changing its mind again drops the pending subscription.
    expect(s.want(LOW, "auto", 500)).toEqual([{ kind: "unsubscribe", track: HIGH }]);
    expect(s.subscribed).toEqual([LOW]);
    expect(s.want(LOW, "auto", 500)).toEqual([]);
  });

  it("gives a pending rendition up when it brings no keyframe in time", () => {
    const s = new RenditionSwitcher(HIGH);
    group(s, HIGH, 0);
    s.want(LOW, "auto", 100);
    const actions: Action[] = [];
    for (let g = 1; g <= PENDING_GROUPS + 1; g++) {
      actions.push(...group(s, HIGH, g).actions);
      s.released(g);
      expect(s.object(LOW, g, 0, 0).play).toBe(false); // always a group too late
    }
    expect(actions).toEqual([{ kind: "unsubscribe", track: LOW }]);
    expect(s.target).toBe(HIGH);
    expect(s.switches).toBe(0);
  });

  it("a new session resubscribes the target only, from its first group", () => {
    const s = new RenditionSwitcher(HIGH);
    group(s, HIGH, 40);
    s.want(LOW, "auto", 100);
    expect(s.restart()).toBe(LOW);
    expect(s.subscribed).toEqual([LOW]);
    // Group IDs start wherever the new session finds the broadcast.
    expect(s.object(LOW, 3, 0, 0).play).toBe(true);
    expect(s.streamEnded(LOW, 3).forBuffer).toBe(true);
  });

  it("keeps the last switches only", () => {
    const s = new RenditionSwitcher(HIGH);
    let g = 0;
    for (let i = 0; i < 14; i++) {
      const from = s.playing;
      const to = from === HIGH ? LOW : HIGH;
      group(s, from, g++);
      s.want(to, "auto", i);
      s.object(to, g, 0, i);
      s.released(g++);
    }
    expect(s.switches).toBe(14);
    expect(s.log.length).toBe(10);
    expect(s.log[9]?.estimateKbps).toBe(13);
  });
});
