/**
 * A viewer's likes, comments and gifts for one broadcast, over the tracks docs/interactions.md
 * defines:
 * - up: PUBLISH `(B, "interact")` on the session; each like is an OBJECT_DATAGRAM carrying this
 *   publication's cumulative total (repeated once a window later, and sent once more on a
 *   subgroup stream when the viewer stops liking, so a lost datagram never loses a like);
 *   comments are the objects of one subgroup stream (kept in order); each gift attempt is a
 *   stream of its own, retried with the same client id until `events` shows it;
 * - down: SUBSCRIBE `likes` (the broadcast's total), `viewers` (its live viewer count), `chat/<room>` (comment `seq` is object
 *   `seq % 64` of group `seq / 64`) with the last N comments FETCHed on join, `events`, and `mod` (each
 *   moderation action with the whole state after it: deleted comments, bans, timeouts, slow mode, gate).
 *
 * The owner (the Player) calls {@link Interactions.attach} with each new session; a reconnect
 * starts a new publication with a new like source (as the relay expects), and the comment
 * history is fetched again and merged by sequence number.
 */
import type { Publication, SubgroupWriter } from "../session/publication";
import type { Session, Subscription, TrackObject } from "../session/session";
import {
  CHAT_GROUP,
  decodeChat,
  decodeGiftEvent,
  decodeModUpdate,
  decodeTotal,
  encodeUp,
  refusalLabel,
  type GiftEvent,
  type ModAction,
  type ModState,
  type ModUpdate,
} from "./payload";

export interface InteractionsOptions {
  /** The broadcast's namespace, e.g. `live/demo`. */
  broadcast: string;
  /** The chat room the control plane assigned (`chat_room`), default `"0"`. */
  room?: string;
  /** How many earlier comments to FETCH on joining a room (default 50). */
  history?: number;
  /** The most comments kept in {@link Interactions.comments} (default 200). */
  keep?: number;
  /** This viewer's name in its token (`sub` of `/v1/watch`), to know its own timeout or ban. */
  sub?: string;
}

/** One comment of the room, as the origin ordered it. */
export interface ChatComment {
  /** The comment's number in its room (0, 1, …): the origin's order. */
  seq: number;
  /** When the origin accepted it, ms since the Unix epoch. */
  acceptedMs: number;
  text: string;
  /** Its author (the viewer token's `sub`; empty without auth): whom a moderator times out or bans. */
  author: string;
  /** A moderator deleted it ("message removed"). */
  removed?: boolean;
}

/** A refused or failed interaction; `refusal` is the edge's label (`rate_limited`, …) when it gave one. */
export class InteractionError extends Error {
  override readonly name = "InteractionError";
  constructor(
    message: string,
    readonly refusal?: string,
  ) {
    super(message);
  }
}

/** How long after a like its total is repeated as a datagram (one like window). */
const REPEAT_MS = 100;
/** How long without a like before the final total goes out on a (reliable) stream. */
const FINAL_MS = 500;
/** How long a comment may take to appear in the room before `comment()` gives up. */
const COMMENT_TIMEOUT_MS = 10_000;
/** After the edge stops the comment stream, how long a comment written on it may still appear. */
const STOP_GRACE_MS = 2_000;
/** How long a gift attempt waits for its `events` announcement before it is sent again. */
const GIFT_RETRY_MS = 2_000;

export class Interactions {
  readonly broadcast: string;
  readonly room: string;
  /** The broadcast's like total, as last read from the `likes` track (undefined before the first). */
  likes: number | undefined;
  /** The broadcast's live viewer count, as last read from the `viewers` track (undefined before the first). */
  viewers: number | undefined;
  /** Likes this viewer sent (over every session). */
  likesSent = 0;
  /** How many comments the last history FETCH (on joining the room) returned. */
  historyFetched = 0;
  /** The room's comments known so far, in the origin's order (history and live). */
  readonly comments: ChatComment[] = [];
  /** Called when the `likes` track shows a new total. */
  onLikes: (total: number) => void = () => {};
  /** Called when the `viewers` track shows a new count. */
  onViewers: (count: number) => void = () => {};
  /** Called for each comment not seen before (history included), in arrival order. */
  onComment: (comment: ChatComment) => void = () => {};
  /** Called for each gift announcement on `events` (deduplicated by `seq`). */
  onGift: (event: GiftEvent) => void = () => {};
  /** The broadcast's moderation state, from the latest `mod` object (undefined before the first). */
  moderation: ModState | undefined;
  /** Called for each `mod` object: an action (undefined in the first) and the state after it. */
  onModeration: (update: ModUpdate) => void = () => {};
  /** Called when a comment already shown was deleted by a moderator. */
  onRemoved: (comment: ChatComment) => void = () => {};
  /** Called when something fails in the background (a refused like or comment, a failed subscription). */
  onError: (message: string) => void = () => {};

  private readonly history: number;
  private readonly keep: number;
  private readonly seen = new Set<number>();
  private readonly gifts = new Set<number>();
  private session: Session | undefined;
  private sessionWaiters: ((s: Session) => void)[] = [];
  private publication: Promise<Publication> | undefined;
  /** The like source of the current publication (random 62 bits) and its running total. */
  private source = randomSource();
  private sourceTotal = 0;
  /** Likes clicked while no session was open: they go out on the next one. */
  private unsent = 0;
  private nextGroup = 0;
  private commentStream: Promise<SubgroupWriter> | undefined;
  private nextCommentObject = 0;
  private commentChain: Promise<unknown> = Promise.resolve();
  private repeatTimer: ReturnType<typeof setTimeout> | undefined;
  private finalTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly commentWaiters = new Set<(c: ChatComment) => void>();
  private readonly giftWaiters = new Map<string, (e: GiftEvent) => void>();
  private stopped = false;
  private lastModSeq = -1;
  private readonly modWaiters = new Set<(u: ModUpdate) => void>();

  constructor(options: InteractionsOptions) {
    this.broadcast = options.broadcast;
    this.room = options.room ?? "0";
    this.history = options.history ?? 50;
    this.keep = options.keep ?? 200;
    this.sub = options.sub;
  }

  /** This viewer's name (`sub`), when known. */
  readonly sub: string | undefined;

  /** This viewer's own standing: banned, timed out until (ms), or free to comment. */
  standing(now = Date.now()): { banned: boolean; timedOutUntil: number | undefined } {
    const state = this.moderation;
    if (!state || !this.sub) return { banned: false, timedOutUntil: undefined };
    const until = state.timeouts.get(this.sub);
    return { banned: state.bans.includes(this.sub), timedOutUntil: until !== undefined && until > now ? until : undefined };
  }

  /**
   * Send a moderation action (needs a token with the `mod` claim); resolves with the `mod` update
   * that carries it, rejects when the edge refuses it (`not_moderator`, …) or it does not show in 10 s.
   */
  async moderate(action: ModAction): Promise<ModUpdate> {
    const since = this.lastModSeq;
    const shown = new Promise<ModUpdate>((resolve) => {
      const waiter = (u: ModUpdate) => {
        if (u.seq > since && u.action && JSON.stringify(u.action) === JSON.stringify(action)) {
          this.modWaiters.delete(waiter);
          resolve(u);
        }
      };
      this.modWaiters.add(waiter);
    });
    const publication = await this.currentPublication();
    const stream = await publication.openSubgroup(this.nextGroup++);
    await stream.write(0, encodeUp({ type: "moderate", action }));
    await stream.finish();
    const refused = stream.closed.then((code) =>
      code === undefined ? new Promise<never>(() => {}) : Promise.reject(refusalError("moderation", code)),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new InteractionError("moderation action not applied within 10 s")), COMMENT_TIMEOUT_MS);
    });
    try {
      return await Promise.race([shown, refused, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Use `session` from now on: subscribe to `likes`, `viewers`, `chat/<room>` and `events`, fetch the
   * room's recent comments. Resolves once the subscriptions are set up.
   */
  async attach(session: Session): Promise<void> {
    if (this.stopped) return;
    // A new session is a new source: its count starts with the likes clicked while there was
    // no open session (before the first one, or since the last one closed), which are sent now.
    this.sourceTotal = this.unsent;
    this.unsent = 0;
    this.session = session;
    this.publication = undefined;
    this.commentStream = undefined;
    this.source = randomSource();
    for (const wake of this.sessionWaiters.splice(0)) wake(session);
    if (this.sourceTotal > 0) this.sendLikes(session);
    await Promise.all([
      this.followNumber(session, "likes", (total) => {
        if (total === this.likes) return;
        this.likes = total;
        this.onLikes(total);
      }),
      this.followNumber(session, "viewers", (count) => {
        if (count === this.viewers) return;
        this.viewers = count;
        this.onViewers(count);
      }),
      this.subscribeChat(session),
      this.subscribeEvents(session),
      this.subscribeModeration(session),
    ]);
  }

  /** Stop: end the publication, forget the session. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.repeatTimer);
    clearTimeout(this.finalTimer);
    void this.publication?.then((p) => p.finish()).catch(() => {});
    this.session = undefined;
  }

  /**
   * Send one like: a datagram with this publication's new cumulative total, repeated a window
   * later, and the final total on a stream once likes pause. Returns the likes this viewer sent.
   */
  like(): number {
    this.likesSent++;
    this.sourceTotal++;
    // Without an open session the like waits for the next one (see `attach`).
    if (!this.session?.isOpen) this.unsent++;
    else this.sendLikes(this.session);
    return this.likesSent;
  }

  /** The current total as a datagram now and a window later, and on a stream once likes pause. */
  private sendLikes(session: Session): void {
    void this.sendLikeTotal(session, "datagram", this.sourceTotal);
    clearTimeout(this.repeatTimer);
    clearTimeout(this.finalTimer);
    this.repeatTimer = setTimeout(() => void this.sendLikeTotal(session, "datagram"), REPEAT_MS);
    this.finalTimer = setTimeout(() => void this.sendLikeTotal(session, "stream"), FINAL_MS);
  }

  /**
   * Send a comment to the room; resolves with it once it appears on `chat/<room>` (the origin
   * accepted and ordered it), rejects with an {@link InteractionError} when the edge refuses it
   * (`rate_limited`, `too_large`, `invalid_utf8`, `bad_room`) or it does not appear within 10 s.
   */
  comment(text: string): Promise<ChatComment> {
    // Writes are serialised (object ids in call order); the waits for the room are not.
    const written = this.commentChain.then(() => this.writeComment(text));
    this.commentChain = written.catch(() => {});
    return written.then((w) => this.confirmComment(w));
  }

  /**
   * Send a gift; resolves once the origin has recorded it (its client id appears on `events`),
   * retrying with the same client id (over whatever session is current) until then or until
   * `timeoutMs` (default 30 s). An origin without a gift ledger refuses it as `unavailable`.
   */
  async gift(kind = 1, amount = 1, timeoutMs = 30_000): Promise<GiftEvent> {
    const clientId = randomClientId();
    const payload = encodeUp({ type: "gift", clientId, kind, amount });
    const deadline = performance.now() + timeoutMs;
    const recorded = new Promise<GiftEvent>((resolve) => this.giftWaiters.set(clientId, resolve));
    let lastRefusal: string | undefined;
    try {
      while (performance.now() < deadline) {
        let stopped: Promise<number | undefined> = new Promise(() => {});
        try {
          const publication = await this.currentPublication();
          const stream = await publication.openSubgroup(this.nextGroup++);
          stopped = stream.closed;
          await stream.write(0, payload);
          await stream.finish();
        } catch (e) {
          lastRefusal = describe(e);
        }
        const wait = Math.min(GIFT_RETRY_MS, Math.max(0, deadline - performance.now()));
        const outcome = await Promise.race([
          recorded,
          stopped.then((code) => (code !== undefined ? code : new Promise<never>(() => {}))),
          sleep(wait).then(() => "retry" as const),
        ]);
        if (typeof outcome === "object") return outcome;
        if (typeof outcome === "number") {
          lastRefusal = refusalLabel(outcome);
          // Anything but "unavailable" (no ledger yet) will not change on a retry.
          if (outcome !== 0x1006) throw new InteractionError(`gift refused: ${lastRefusal}`, lastRefusal);
          await sleep(Math.min(GIFT_RETRY_MS, Math.max(0, deadline - performance.now())));
        }
      }
      throw new InteractionError(`gift not recorded within ${timeoutMs} ms (last: ${lastRefusal ?? "no answer"})`);
    } finally {
      this.giftWaiters.delete(clientId);
    }
  }

  // ---- up ----

  private waitSession(): Promise<Session> {
    if (this.session?.isOpen) return Promise.resolve(this.session);
    return new Promise((resolve) => this.sessionWaiters.push(resolve));
  }

  /** The `interact` publication on the current session (PUBLISHed on first use). */
  private async currentPublication(): Promise<Publication> {
    const session = await this.waitSession();
    if (!this.publication) {
      const publishing = session.publish(this.broadcast, "interact");
      this.publication = publishing;
      publishing.then(
        (p) => void p.done.then(() => this.publication === publishing && (this.publication = undefined)),
        () => this.publication === publishing && (this.publication = undefined),
      );
    }
    return this.publication;
  }

  /** Send `total` (default: the latest) of the current source, unless the session changed meanwhile. */
  private async sendLikeTotal(session: Session | undefined, how: "datagram" | "stream", total?: number): Promise<void> {
    try {
      const publication = await this.currentPublication();
      // A new session means a new source starting from 0: totals of the old one are done.
      if (session !== undefined && this.session !== session) return;
      const payload = encodeUp({ type: "like", source: this.source, total: total ?? this.sourceTotal });
      // A transport without datagrams (a QMux peer that advertised none) gets the total on a
      // stream instead.
      if (how === "datagram" && publication.sendDatagram(this.nextGroup++, 0, payload)) return;
      const stream = await publication.openSubgroup(this.nextGroup++);
      await stream.write(0, payload);
      await stream.finish();
    } catch (e) {
      this.onError(`like: ${describe(e)}`);
    }
  }

  /** Write one comment on the comment stream; the waiter is registered before the write. */
  private async writeComment(text: string): Promise<PendingComment> {
    const payload = encodeUp({ type: "comment", room: this.room, text });
    const since = this.comments.length > 0 ? (this.comments[this.comments.length - 1]?.seq ?? -1) : -1;
    let appeared!: (c: ChatComment) => void;
    const seen = new Promise<ChatComment>((resolve) => (appeared = resolve));
    const waiter = (c: ChatComment) => {
      if (c.text === text && c.seq > since) appeared(c);
    };
    this.commentWaiters.add(waiter);
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const candidate = await this.commentWriter();
        if (candidate.isStopped) {
          this.commentStream = undefined;
          continue;
        }
        try {
          await candidate.write(this.nextCommentObject++, payload);
          return { stream: candidate, seen, waiter };
        } catch {
          this.commentStream = undefined;
        }
      }
    } catch (e) {
      this.commentWaiters.delete(waiter);
      throw e;
    }
    this.commentWaiters.delete(waiter);
    throw new InteractionError("comment: could not open a stream to the relay");
  }

  /** Wait until a written comment shows in the room, its stream is refused, or the timeout. */
  private async confirmComment({ stream, seen, waiter }: PendingComment): Promise<ChatComment> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      // The edge stops the stream at the first comment it refuses: those before it were accepted
      // and are on their way to the room, so a comment is refused only if it does not show up
      // within a grace period after the stop.
      const refused = stream.closed.then((code) =>
        code === undefined
          ? new Promise<never>(() => {})
          : sleep(STOP_GRACE_MS).then(() => Promise.reject(refusalError("comment", code))),
      );
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new InteractionError(`comment did not appear in room ${this.room} within ${COMMENT_TIMEOUT_MS} ms`)),
          COMMENT_TIMEOUT_MS,
        );
      });
      return await Promise.race([seen, refused, timeout]);
    } finally {
      clearTimeout(timer);
      this.commentWaiters.delete(waiter);
    }
  }

  /** The stream this viewer's comments go on, in order; a new one after a refusal stopped it. */
  private commentWriter(): Promise<SubgroupWriter> {
    if (!this.commentStream) {
      const opening = this.currentPublication().then((p) => p.openSubgroup(this.nextGroup++));
      this.commentStream = opening;
      this.nextCommentObject = 0;
      opening.then(
        (s) =>
          void s.closed.then((code) => {
            if (this.commentStream === opening) this.commentStream = undefined;
            if (code !== undefined) this.onError(refusalError("comment", code).message);
          }),
        () => this.commentStream === opening && (this.commentStream = undefined),
      );
    }
    return this.commentStream;
  }

  // ---- down ----

  /**
   * Follow a track whose objects are one number each (`likes`, `viewers`): one group per new
   * value, so an older group arriving late is ignored; `onValue` hears each newer value.
   */
  private async followNumber(session: Session, track: string, onValue: (value: number) => void): Promise<void> {
    const sub = await this.trySubscribe(session, track);
    if (!sub) return;
    let lastGroup = -1;
    sub.onObject = (o) => {
      if (o.payload.length === 0 || o.groupId < lastGroup) return;
      try {
        const value = decodeTotal(o.payload);
        lastGroup = o.groupId;
        onValue(value);
      } catch (e) {
        this.onError(`${track}: ${describe(e)}`);
      }
    };
  }

  private async subscribeChat(session: Session): Promise<void> {
    const track = `chat/${this.room}`;
    const sub = await this.trySubscribe(session, track);
    if (!sub) return;
    sub.onObject = (o) => this.chatObject(o.groupId, o.objectId, o.payload);
    // The subscription starts at the current group; FETCH the last N before the largest.
    const largest = sub.largest;
    if (!largest || this.history <= 0) return;
    const last = largest.group * CHAT_GROUP + largest.object;
    const first = Math.max(0, last - this.history + 1);
    try {
      const objects = await session.fetch(
        this.broadcast,
        track,
        { group: Math.floor(first / CHAT_GROUP), object: first % CHAT_GROUP },
        { group: largest.group, object: largest.object + 1 },
      );
      this.historyFetched = objects.length;
      for (const o of objects) this.chatObject(o.groupId, o.objectId, o.payload);
    } catch (e) {
      this.onError(`chat history: ${describe(e)}`);
    }
  }

  private async subscribeEvents(session: Session): Promise<void> {
    const sub = await this.trySubscribe(session, "events");
    if (!sub) return;
    sub.onObject = (o: TrackObject) => {
      if (o.payload.length === 0) return;
      try {
        const event = decodeGiftEvent(o.payload);
        this.giftWaiters.get(event.clientId)?.(event);
        if (this.gifts.has(event.seq)) return;
        this.gifts.add(event.seq);
        this.onGift(event);
      } catch (e) {
        this.onError(`events: ${describe(e)}`);
      }
    };
  }

  private async subscribeModeration(session: Session): Promise<void> {
    const sub = await this.trySubscribe(session, "mod");
    if (!sub) return;
    sub.onObject = (o: TrackObject) => {
      if (o.payload.length === 0) return;
      let update: ModUpdate;
      try {
        update = decodeModUpdate(o.payload);
      } catch (e) {
        this.onError(`mod: ${describe(e)}`);
        return;
      }
      this.lastModSeq = Math.max(this.lastModSeq, update.seq);
      this.moderation = update.state;
      for (const c of this.comments) {
        if (!c.removed && update.state.deleted.has(`${this.room}#${c.seq}`)) {
          c.removed = true;
          this.onRemoved(c);
        }
      }
      for (const waiter of [...this.modWaiters]) waiter(update);
      this.onModeration(update);
    };
  }

  /**
   * No RENDEZVOUS_TIMEOUT here: the broadcast's origin relay publishes `likes`, `chat/<room>`
   * and `events` itself (an edge gets them from its parent), so there is no publisher to wait
   * for, and the player attaches only once the broadcast's media is subscribed.
   */
  private async trySubscribe(session: Session, track: string): Promise<Subscription | undefined> {
    try {
      return await session.subscribe(this.broadcast, track, { subscriberPriority: 3 });
    } catch (e) {
      if (session.isOpen) this.onError(`${track}: ${describe(e)}`);
      return undefined;
    }
  }

  private chatObject(group: number, object: number, payload: Uint8Array): void {
    if (payload.length === 0) return;
    const seq = group * CHAT_GROUP + object;
    if (this.seen.has(seq)) return;
    // At capacity, comments older than the oldest kept are not wanted (a re-fetched history).
    if (this.comments.length >= this.keep && seq < (this.comments[0]?.seq ?? 0)) return;
    let chat;
    try {
      chat = decodeChat(payload);
    } catch (e) {
      this.onError(`chat: ${describe(e)}`);
      return;
    }
    this.seen.add(seq);
    const comment: ChatComment = { seq, acceptedMs: chat.acceptedMs, text: chat.text, author: chat.author };
    if (this.moderation?.deleted.has(`${this.room}#${seq}`)) comment.removed = true;
    // Insert in sequence order (history may arrive after live comments).
    let at = this.comments.length;
    while (at > 0 && (this.comments[at - 1]?.seq ?? -1) > seq) at--;
    this.comments.splice(at, 0, comment);
    if (this.comments.length > this.keep) this.comments.splice(0, this.comments.length - this.keep);
    for (const waiter of this.commentWaiters) waiter(comment);
    this.onComment(comment);
  }
}

/** A comment written on the stream, not yet seen in the room. */
interface PendingComment {
  stream: SubgroupWriter;
  seen: Promise<ChatComment>;
  waiter: (c: ChatComment) => void;
}

function refusalError(what: string, code: number): InteractionError {
  const label = code >= 0 ? refusalLabel(code) : "stream failed";
  return new InteractionError(`${what} refused: ${label}`, code >= 0 ? label : undefined);
}

/** A random 62-bit like source. */
function randomSource(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0] ?? 0) & 0x3fffffffn) << 32n) | BigInt(words[1] ?? 0);
}

/** A random gift client id: 32 hex characters. */
function randomClientId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
