import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Reader } from "../src/coding";
import { SubgroupStream, decodeDatagram, decodeSubgroupHeader } from "../src/data";
import { hex } from "./helpers";
import { Interactions, decodeUp, encodeChat, encodeTotal, type Up } from "../src/interact";
import { Publication } from "../src/session/publication";
import type { FetchedObject, Session, TrackObject } from "../src/session/session";

/** A stand-in for Session: records what Interactions asks of it. */
class FakeSession {
  isOpen = true;
  readonly subs = new Map<string, { onObject: (o: TrackObject) => void; largest?: { group: number; object: number } }>();
  readonly fetches: { name: string; start: unknown; end: unknown }[] = [];
  readonly datagrams: Up[] = [];
  /** Per stream: its objects' payloads; `stop` makes the peer STOP_SENDING it. */
  readonly streams: { group: number; bytes: Uint8Array[]; stop: (code: number) => void }[] = [];
  history: FetchedObject[] = [];
  chatLargest: { group: number; object: number } | undefined;

  async subscribe(_ns: string, name: string) {
    const sub: { onObject: (o: TrackObject) => void; largest?: { group: number; object: number } } = {
      onObject: () => {},
    };
    if (name.startsWith("chat/") && this.chatLargest) sub.largest = this.chatLargest;
    this.subs.set(name, sub);
    return sub;
  }

  async fetch(_ns: string, name: string, start: unknown, end: unknown) {
    this.fetches.push({ name, start, end });
    return this.history;
  }

  async publish(ns: string, name: string) {
    const transport = {
      sendDatagram: (b: Uint8Array) => {
        const d = decodeDatagram(b);
        if (d.kind === "object") this.datagrams.push(decodeUp(d.object.payload));
        return true;
      },
      createUnidirectionalStream: async () => {
        const bytes: Uint8Array[] = [];
        let stop!: (code: number) => void;
        const stream = new WritableStream<Uint8Array>({
          start: (controller) => {
            stop = (code) => controller.error({ streamErrorCode: code });
          },
          write: (c) => void bytes.push(c),
        });
        this.streams.push({ group: -1, bytes, stop });
        return stream;
      },
    };
    return new Publication(ns, name, 0, transport, new WritableStream<Uint8Array>().getWriter());
  }

  /** The objects written on stream `i`, decoded. */
  objects(i: number): { id: number; up: Up }[] {
    const chunks = this.streams[i]?.bytes ?? [];
    const r = new Reader(new Uint8Array(chunks.flatMap((c) => [...c])));
    const state = new SubgroupStream(decodeSubgroupHeader(r));
    const out = [];
    while (r.hasRemaining()) {
      const o = state.decodeObject(r, 1 << 16);
      out.push({ id: o.objectId, up: decodeUp(o.payload) });
    }
    return out;
  }

  push(track: string, groupId: number, objectId: number, payload: Uint8Array): void {
    this.subs.get(track)?.onObject({
      groupId,
      subgroupId: 0,
      objectId,
      status: 0,
      properties: [],
      payload,
      receivedAt: 0,
    });
  }
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("Interactions", () => {
  let session: FakeSession;
  let interactions: Interactions;

  beforeEach(async () => {
    session = new FakeSession();
    interactions = new Interactions({ broadcast: "live/show", room: "3", history: 50 });
  });
  afterEach(() => vi.useRealTimers());

  it("marks a deleted comment removed, now and in later history, and knows its own ban", async () => {
    const bob = new Interactions({ broadcast: "live/show", room: "3", sub: "bob" });
    await bob.attach(session as unknown as Session);
    const removed: number[] = [];
    bob.onRemoved = (c) => removed.push(c.seq);
    session.push("chat/3", 0, 0, encodeChat({ acceptedMs: 1, text: "spam", author: "" }));
    // seq 1 by "m": delete 3#0; state: no slow mode, open, bans ["bob"], deleted [3#0].
    session.push("mod", 1, 0, hex("0101016d010003000000010362" + "6f62" + "00010300"));
    expect(removed).toEqual([0]);
    expect(bob.comments[0]?.removed).toBe(true);
    expect(bob.standing()).toEqual({ banned: true, timedOutUntil: undefined });
    // A comment in the deleted set arriving later (a history FETCH) is removed at once.
    session.push("chat/3", 0, 0, encodeChat({ acceptedMs: 1, text: "spam", author: "" }));
    expect(bob.comments).toHaveLength(1);
  });

  it("subscribes to likes, chat/<room> and events; keeps the newest like total", async () => {
    await interactions.attach(session as unknown as Session);
    expect([...session.subs.keys()].sort()).toEqual(["chat/3", "events", "likes", "mod", "viewers"]);
    const seen: number[] = [];
    interactions.onLikes = (n) => seen.push(n);
    session.push("likes", 4, 0, encodeTotal(10));
    session.push("likes", 3, 0, encodeTotal(7)); // an older group arriving late
    session.push("likes", 5, 0, encodeTotal(12));
    expect(interactions.likes).toBe(12);
    expect(seen).toEqual([10, 12]);
  });

  it("follows the live viewer count up and down, ignoring late groups and bad objects", async () => {
    await interactions.attach(session as unknown as Session);
    const seen: number[] = [];
    const errors: string[] = [];
    interactions.onViewers = (n) => seen.push(n);
    interactions.onError = (e) => errors.push(e);
    expect(interactions.viewers).toBeUndefined();
    session.push("viewers", 0, 0, encodeTotal(1));
    session.push("viewers", 1, 0, encodeTotal(50));
    session.push("viewers", 0, 0, encodeTotal(1)); // an older group arriving late
    session.push("viewers", 2, 0, encodeTotal(50)); // unchanged: no callback
    session.push("viewers", 3, 0, encodeTotal(0)); // everyone left
    session.push("viewers", 4, 0, new Uint8Array([0x05, 0x00])); // trailing byte: malformed
    expect(interactions.viewers).toBe(0);
    expect(seen).toEqual([1, 50, 0]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^viewers: /);
  });

  it("fetches the last N comments before the largest and merges them in room order", async () => {
    session.chatLargest = { group: 1, object: 5 }; // comment 69
    session.history = [20, 21].map((seq) => ({
      groupId: Math.floor(seq / 64),
      objectId: seq % 64,
      payload: encodeChat({ acceptedMs: seq, text: `c${seq}`, author: "" }),
      properties: [],
    }));
    const attached = interactions.attach(session as unknown as Session);
    await settle();
    // A live comment that beats the history, and a duplicate of a fetched one.
    session.push("chat/3", 1, 6, encodeChat({ acceptedMs: 70, text: "c70", author: "" }));
    await attached;
    session.push("chat/3", 0, 21, encodeChat({ acceptedMs: 21, text: "c21", author: "" }));
    expect(session.fetches).toEqual([
      { name: "chat/3", start: { group: 0, object: 20 }, end: { group: 1, object: 6 } },
    ]);
    expect(interactions.comments.map((c) => c.seq)).toEqual([20, 21, 70]);
    expect(interactions.historyFetched).toBe(2);
  });

  it("sends each like as a datagram with a growing total, then the final total on a stream", async () => {
    vi.useFakeTimers();
    await interactions.attach(session as unknown as Session);
    expect(interactions.like()).toBe(1);
    expect(interactions.like()).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    const totals = session.datagrams.map((d) => (d.type === "like" ? d.total : -1));
    expect(totals.slice(0, 2)).toEqual([1, 2]);
    expect(totals.at(-1)).toBe(2); // repeated a window later
    const sources = new Set(session.datagrams.map((d) => (d.type === "like" ? d.source : -1n)));
    expect(sources.size).toBe(1);
    expect(session.objects(0)).toEqual([{ id: 0, up: { type: "like", source: [...sources][0], total: 2 } }]);
  });

  it("a new session starts a new like source from 0", async () => {
    await interactions.attach(session as unknown as Session);
    interactions.like();
    await settle();
    const second = new FakeSession();
    await interactions.attach(second as unknown as Session);
    interactions.like();
    await settle();
    const first = session.datagrams[0];
    const next = second.datagrams[0];
    if (first?.type !== "like" || next?.type !== "like") throw new Error("no like datagrams");
    expect(next.total).toBe(1);
    expect(next.source).not.toBe(first.source);
    expect(interactions.likesSent).toBe(2);
  });

  it("likes clicked while the session is down go out on the next session", async () => {
    vi.useFakeTimers();
    await interactions.attach(session as unknown as Session);
    interactions.like();
    await vi.advanceTimersByTimeAsync(1000);
    session.isOpen = false; // the relay went away; the player is reconnecting
    interactions.like();
    interactions.like();
    await vi.advanceTimersByTimeAsync(1000);
    expect(session.datagrams.every((d) => d.type === "like" && d.total === 1)).toBe(true);
    const second = new FakeSession();
    await interactions.attach(second as unknown as Session);
    await vi.advanceTimersByTimeAsync(1000);
    const next = second.datagrams[0];
    if (next?.type !== "like") throw new Error("no like datagram on the new session");
    expect(next.total).toBe(2);
    expect(second.objects(0)).toEqual([{ id: 0, up: { type: "like", source: next.source, total: 2 } }]);
    expect(interactions.likesSent).toBe(3);
  });

  it("writes comments in order on one stream and resolves each when the room shows it", async () => {
    await interactions.attach(session as unknown as Session);
    const one = interactions.comment("first");
    const two = interactions.comment("second");
    // Both are written at once, in call order; each resolves when the room shows it.
    await vi.waitFor(() => expect(session.objects(0)).toHaveLength(2));
    session.push("chat/3", 0, 0, encodeChat({ acceptedMs: 1, text: "first", author: "" }));
    await expect(one).resolves.toEqual({ seq: 0, acceptedMs: 1, text: "first", author: "" });
    session.push("chat/3", 0, 1, encodeChat({ acceptedMs: 2, text: "second", author: "" }));
    await expect(two).resolves.toMatchObject({ seq: 1 });
    expect(session.objects(0)).toEqual([
      { id: 0, up: { type: "comment", room: "3", text: "first" } },
      { id: 1, up: { type: "comment", room: "3", text: "second" } },
    ]);
  });

  it("on a stopped stream, rejects the comments that do not show up in the room", async () => {
    vi.useFakeTimers();
    await interactions.attach(session as unknown as Session);
    const flood = [0, 1, 2].map((i) => interactions.comment(`flood ${i}`));
    const outcomes = flood.map((c) => c.then(() => "ok", (e: { refusal?: string }) => e.refusal));
    await vi.waitFor(() => expect(session.objects(0)).toHaveLength(3));
    // The edge accepted flood 0, refused flood 1 (and stopped reading); flood 0 reaches the
    // room only after the STOP_SENDING.
    session.streams[0]?.stop(0x1001);
    await vi.advanceTimersByTimeAsync(10);
    session.push("chat/3", 0, 0, encodeChat({ acceptedMs: 1, text: "flood 0", author: "" }));
    await vi.advanceTimersByTimeAsync(2_500);
    expect(await Promise.all(outcomes)).toEqual(["ok", "rate_limited", "rate_limited"]);
  });

  it("rejects a refused comment with the relay's reason and uses a new stream afterwards", async () => {
    vi.useFakeTimers();
    await interactions.attach(session as unknown as Session);
    const refused = interactions.comment("spam");
    const outcome = refused.catch((e: unknown) => e);
    await vi.waitFor(() => expect(session.objects(0)).toHaveLength(1));
    session.streams[0]?.stop(0x1001);
    await vi.advanceTimersByTimeAsync(2_500);
    expect(await outcome).toMatchObject({ refusal: "rate_limited" });
    const next = interactions.comment("later");
    await vi.waitFor(() => expect(session.streams).toHaveLength(2));
    await vi.waitFor(() => expect(session.objects(1)).toEqual([{ id: 0, up: { type: "comment", room: "3", text: "later" } }]));
    session.push("chat/3", 0, 0, encodeChat({ acceptedMs: 3, text: "later", author: "" }));
    await expect(next).resolves.toMatchObject({ text: "later" });
  });
});
