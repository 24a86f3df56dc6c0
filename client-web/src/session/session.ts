/**
 * A MoQT draft-18 client session over WebTransport (the browser's `WebTransport`), or over
 * QMux on a WebSocket (`@moq/qmux`, WebTransport-shaped: see `transport.ts`), unchanged.
 *
 * What the Rust server (`moq/src/session/`) expects, and what this does:
 * - WebTransport CONNECT to `https://host:port/path`, offering `WT-Available-Protocols: moqt-18`
 *   through the `protocols` option (a server that gets none assumes draft-18).
 * - Each side opens a unidirectional control stream that starts with SETUP (type 0x2F00). Over
 *   WebTransport the client's SETUP carries no PATH or AUTHORITY (the CONNECT URL has them).
 * - Every request (SUBSCRIBE, FETCH, ...) is its own bidirectional stream; the answer and later
 *   messages (SUBSCRIBE_OK, PUBLISH_DONE) come back on it.
 * - Objects arrive on unidirectional subgroup streams (and datagrams) tagged with the Track Alias
 *   from SUBSCRIBE_OK.
 * - GOAWAY arrives on the server's control stream.
 * - PUBLISH (this client as a publisher, e.g. the `interact` track of docs/interactions.md): its
 *   own request stream, answered by REQUEST_OK (or the legacy PUBLISH_OK); objects leave as
 *   OBJECT_DATAGRAMs or on unidirectional subgroup streams tagged with the alias PUBLISH chose.
 * - PUBLISH_NAMESPACE (`publishNamespace`, what `publish()` uses): answered by REQUEST_OK; FIN on
 *   its request stream withdraws it. The relay then opens request streams of its own: SUBSCRIBEs
 *   go to `onSubscribe` (see `serve.ts`), anything else is refused with NOT_SUPPORTED.
 *
 * Any malformed input closes the whole session with PROTOCOL_VIOLATION (or the code the
 * DecodeError maps to) and rejects `closed`; nothing is retried in a loop here — reconnecting
 * is the caller's job (see `player/resilient.ts`).
 */
import { DecodeError, SessionErrorCode, namespaceFromPath, utf8, type KeyValuePair } from "../coding";
import {
  FetchStream,
  SETUP_STREAM,
  SubgroupStream,
  decodeDatagram,
  decodeSubgroupHeaderAfterType,
  streamTypeFromCode,
  type FetchGroupOrder,
  type ObjectStatus,
} from "../data";
import {
  decodeFrame,
  encodeFrame,
  type Goaway,
  type Message,
  type Parameters,
  type PublishDone,
  RequestErrorCode,
  type RequestError,
  type Setup,
  type SubscriptionFilter,
} from "../message";
import { Publication } from "./publication";
import { IncomingSubscribe, NamespacePublication, refuse } from "./serve";
import { StreamReader } from "./stream";
import { MOQT_VERSION, hexToBytes, openTransport, transportOfUrl, type TransportKind } from "./transport";

export { MOQT_VERSION, hexToBytes, type TransportKind };

/** The parameters of a SUBSCRIBE asked for with `options` (throws RangeError on a bad value). */
export function subscribeParameters(options: SubscribeOptions): Parameters {
  const parameters: Parameters = { forward: true };
  if (options.subscriberPriority !== undefined) parameters.subscriberPriority = options.subscriberPriority;
  if (options.filter) parameters.subscriptionFilter = options.filter;
  if (options.groupOrder) parameters.groupOrder = options.groupOrder;
  const wait = options.rendezvousTimeoutMs;
  if (wait !== undefined) {
    if (!Number.isSafeInteger(wait) || wait < 0) {
      throw new RangeError(`rendezvousTimeoutMs must be a whole number of ms ≥ 0, not ${wait}`);
    }
    // 0 and absent mean the same (no wait); leave it out.
    if (wait > 0) parameters.rendezvousTimeout = wait;
  }
  return parameters;
}
const IMPLEMENTATION = "banyan-client-web/0.1";

export interface ConnectOptions {
  /** SHA-256 hashes (hex, colons allowed) of development certificates to accept. */
  serverCertificateHashes?: string[];
  /** The largest object payload accepted (default 8 MiB, as the relay). */
  maxObjectSize?: number;
  /** How long to wait for the server's SETUP (default 10 s). */
  setupTimeoutMs?: number;
  /** A JWT for the relay, sent in SETUP as an AUTHORIZATION TOKEN (USE_VALUE, type 0). */
  token?: string;
  /** Abandon the attempt: closes the transport if SETUP has not completed (a lost race). */
  signal?: AbortSignal;
}

export interface SubscribeOptions {
  subscriberPriority?: number;
  filter?: SubscriptionFilter;
  groupOrder?: 1 | 2;
  /**
   * How long (ms) the relay may hold the SUBSCRIBE while nobody publishes the track, waiting
   * for a publisher (RENDEZVOUS_TIMEOUT, draft-18 parameter 0x04; the relay may cap it and
   * answers REQUEST_ERROR TIMEOUT when it runs out). Absent or 0: the relay refuses at once
   * with DOES_NOT_EXIST when there is no publisher.
   */
  rendezvousTimeoutMs?: number;
}

/** One object of a subscribed track, as delivered to the application. */
export interface TrackObject {
  groupId: number;
  subgroupId: number;
  objectId: number;
  status: ObjectStatus;
  properties: KeyValuePair[];
  payload: Uint8Array;
  /** `performance.now()` when the object was fully received. */
  receivedAt: number;
}

export interface FetchedObject {
  groupId: number;
  objectId: number;
  payload: Uint8Array;
  properties: KeyValuePair[];
}

export interface SessionClosed {
  code: number;
  reason: string;
  /** True when we closed it ourselves without an error. */
  local: boolean;
}

export class MoqtError extends Error {
  override readonly name = "MoqtError";
  constructor(
    message: string,
    readonly code?: bigint | number,
  ) {
    super(message);
  }
}

/**
 * How a subgroup stream ended: `finished` (FIN: every object it had was delivered), `reset` (the
 * relay reset it, e.g. to skip a group it could not deliver in time) or `cancelled` (by us:
 * {@link Subscription.cancelGroupsBefore} or unsubscribing).
 */
export type StreamEnd = "finished" | "reset" | "cancelled";

/** A track subscription: objects flow to `onObject`; `done` settles when the track ends. */
export class Subscription {
  /** Called for each object in stream order (per subgroup). */
  onObject: (object: TrackObject) => void = () => {};
  /** Called when a subgroup stream of `group` ends, after its last object. */
  onStreamEnd: (group: number, end: StreamEnd) => void = () => {};
  /** Called once when the publisher sends PUBLISH_DONE or the request stream ends. */
  readonly done: Promise<PublishDone | undefined>;
  private resolveDone!: (d: PublishDone | undefined) => void;
  private readonly streams = new Map<StreamReader, number>();
  /** Streams of groups below this are cancelled as they open. */
  private minGroup = 0;
  /** Bytes received on this subscription's data streams (payloads and headers). */
  bytesReceived = 0;
  /** The REQUEST_UPDATE awaiting its REQUEST_OK / REQUEST_ERROR, if any. */
  private pendingUpdate: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(
    readonly session: Session,
    readonly namespace: string,
    readonly name: string,
    readonly trackAlias: number,
    readonly largest: { group: number; object: number } | undefined,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly reader: StreamReader,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /**
   * Stop reading every subgroup stream of a group older than `group` (catch-up), and cancel any
   * that opens later (a relay sending the newest group first may open older ones after it).
   */
  cancelGroupsBefore(group: number): void {
    this.minGroup = Math.max(this.minGroup, group);
    for (const [stream, g] of this.streams) {
      if (g < group) {
        this.streams.delete(stream);
        void stream.cancel();
      }
    }
  }

  /**
   * Present a fresh token (same subject, same or wider scope) to keep the session alive past
   * the current token's expiry: REQUEST_UPDATE with AUTHORIZATION TOKEN on this subscription's
   * request stream (draft-18 §REQUEST_UPDATE). Resolves on REQUEST_OK; rejects with the
   * REQUEST_ERROR (a refused update also ends this subscription, with PUBLISH_DONE
   * UPDATE_FAILED). One update at a time.
   */
  async refresh(token: string): Promise<void> {
    if (this.pendingUpdate) throw new MoqtError("a REQUEST_UPDATE is already in flight");
    const answered = new Promise<void>((resolve, reject) => (this.pendingUpdate = { resolve, reject }));
    try {
      await this.writer.write(
        encodeFrame({
          type: "REQUEST_UPDATE",
          requestId: this.session.takeRequestId(),
          parameters: { authorizationTokens: [{ aliasType: "use-value", tokenType: 0, tokenValue: utf8(token) }] },
        }),
      );
    } catch (e) {
      this.pendingUpdate = undefined;
      throw new MoqtError(`REQUEST_UPDATE on ${this.namespace}/${this.name}: ${describe(e)}`);
    }
    return answered;
  }

  /** End the subscription: STOP_SENDING + FIN on the request stream, cancel data streams. */
  unsubscribe(): void {
    for (const stream of this.streams.keys()) void stream.cancel();
    this.streams.clear();
    void this.reader.cancel();
    this.writer.close().catch(() => {});
    this.session.forget(this);
    this.resolveDone(undefined);
  }

  /** @internal */
  async readRequestStream(): Promise<void> {
    const message = await this.reader.decode((r) => decodeFrame(r));
    if (message === undefined) {
      this.pendingUpdate?.reject(new MoqtError("subscription ended before the REQUEST_UPDATE was answered"));
      this.pendingUpdate = undefined;
      this.resolveDone(undefined);
      return;
    }
    if (message.type === "PUBLISH_DONE") {
      this.pendingUpdate?.reject(new MoqtError(`subscription ended: ${message.errorReason || "PUBLISH_DONE"}`));
      this.pendingUpdate = undefined;
      this.resolveDone(message);
      return;
    }
    if (message.type === "GOAWAY") return this.readRequestStream();
    if ((message.type === "REQUEST_OK" || message.type === "REQUEST_ERROR") && this.pendingUpdate) {
      const { resolve, reject } = this.pendingUpdate;
      this.pendingUpdate = undefined;
      if (message.type === "REQUEST_OK") resolve();
      else reject(requestError(`REQUEST_UPDATE on ${this.namespace}/${this.name}`, message));
      return this.readRequestStream();
    }
    throw new DecodeError("invalid", `unexpected ${message.type} on a subscription stream`);
  }

  /** @internal Read one subgroup stream's objects. */
  async readSubgroup(stream: StreamReader, state: SubgroupStream, maxObjectSize: number): Promise<void> {
    const group = state.header.groupId;
    if (group < this.minGroup) {
      void stream.cancel();
      this.onStreamEnd(group, "cancelled");
      return;
    }
    this.streams.set(stream, group);
    let end: StreamEnd = "cancelled";
    try {
      for (;;) {
        if (!this.streams.has(stream)) return;
        let size = 0;
        let object;
        try {
          object = await stream.decode((r) => {
            const start = r.pos;
            const o = state.decodeObject(r, maxObjectSize);
            size = r.pos - start;
            return o;
          });
        } catch (e) {
          // Cancelled by us mid-object: not the peer's fault. Malformed bytes are; anything else
          // (a WebTransportError) is the relay resetting the stream.
          if (!this.streams.has(stream)) return;
          if (e instanceof DecodeError) throw e;
          end = "reset";
          throw e;
        }
        if (object === undefined) {
          if (this.streams.has(stream)) end = "finished";
          return;
        }
        this.bytesReceived += size;
        this.onObject({
          groupId: group,
          subgroupId: state.subgroupId ?? 0,
          objectId: object.objectId,
          status: object.status,
          properties: object.properties,
          payload: object.payload,
          receivedAt: performance.now(),
        });
      }
    } finally {
      this.streams.delete(stream);
      this.onStreamEnd(group, end);
    }
  }
}

export class Session {
  /** The server's SETUP. */
  peerSetup: Setup | undefined;
  /** The GOAWAY the server sent, if any. */
  goaway: Goaway | undefined;
  /** Called when the server sends GOAWAY (move to `newSessionUri`, or reconnect, soon). */
  onGoaway: (goaway: Goaway) => void = () => {};
  /**
   * Called for each SUBSCRIBE the peer sends (a relay subscribing to a track of a namespace this
   * session published): answer it with `accept` or `reject`. Unset: refused (DOES_NOT_EXIST).
   */
  onSubscribe: ((request: IncomingSubscribe) => void) | undefined;
  /** Settles once when the session ends, for any reason. */
  readonly closed: Promise<SessionClosed>;
  private resolveClosed!: (c: SessionClosed) => void;
  private isClosed = false;
  private nextRequestId = 0;
  private nextPublishAlias = 0;
  private readonly publications = new Set<Publication>();
  private datagramWriter: WritableStreamDefaultWriter<Uint8Array> | undefined;
  private readonly byAlias = new Map<number, Subscription>();
  private readonly aliasWaiters = new Map<number, (() => void)[]>();
  private readonly maxObjectSize: number;

  private constructor(
    readonly url: string,
    /** What the session runs on: WebTransport, or QMux over WebSocket. */
    readonly transportKind: TransportKind,
    private readonly transport: WebTransport,
    options: ConnectOptions,
  ) {
    this.maxObjectSize = options.maxObjectSize ?? 8 << 20;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    transport.closed.then(
      (info) => this.finish({ code: info.closeCode ?? 0, reason: info.reason ?? "", local: false }),
      (e: unknown) => this.finish({ code: SessionErrorCode.InternalError, reason: describe(e), local: false }),
    );
  }

  /**
   * Open a session to `url` and exchange SETUP: WebTransport to an `https://` URL, QMux over
   * WebSocket to a `ws://`/`wss://` one (see `transport.ts`). Aborting `options.signal` before
   * SETUP completes closes the transport and rejects.
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<Session> {
    const kind = transportOfUrl(url);
    const name = kind === "websocket" ? "WebSocket" : "WebTransport";
    const signal = options.signal;
    if (signal?.aborted) throw new MoqtError(`${name} to ${url}: aborted`);
    let transport: WebTransport;
    try {
      transport = openTransport(url, options);
    } catch (e) {
      throw new MoqtError(`${name} to ${url} failed: ${describe(e)}`);
    }
    // `closed` rejects too when `ready` does; the Session observes it once constructed.
    transport.closed.catch(() => {});
    const abort = () => {
      try {
        transport.close({ closeCode: SessionErrorCode.NoError, reason: "aborted" });
      } catch {
        // not open yet or already closed: `ready` or SETUP fails either way
      }
    };
    signal?.addEventListener("abort", abort, { once: true });
    try {
      try {
        await transport.ready;
      } catch (e) {
        throw new MoqtError(`${name} to ${url} failed: ${describe(e)}`);
      }
      if (signal?.aborted) throw new MoqtError(`${name} to ${url}: aborted`);
      const negotiated = (transport as WebTransport & { protocol?: string }).protocol;
      if (negotiated && negotiated !== MOQT_VERSION) {
        transport.close({ closeCode: SessionErrorCode.VersionNegotiationFailed, reason: "no common version" });
        throw new MoqtError(`server chose protocol ${negotiated}, not ${MOQT_VERSION}`);
      }
      const session = new Session(url, kind, transport, options);
      try {
        await session.setup(options.setupTimeoutMs ?? 10_000, options.token);
      } catch (e) {
        session.fail(e);
        throw e instanceof MoqtError ? e : new MoqtError(`SETUP with ${url} failed: ${describe(e)}`);
      }
      if (signal?.aborted) {
        session.close(SessionErrorCode.NoError, "aborted");
        throw new MoqtError(`${name} to ${url}: aborted`);
      }
      return session;
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  /** SUBSCRIBE to `namespace/name`; resolves on SUBSCRIBE_OK, rejects with REQUEST_ERROR. */
  async subscribe(namespace: string, name: string, options: SubscribeOptions = {}): Promise<Subscription> {
    const parameters = subscribeParameters(options);
    const requestId = this.takeRequestId();
    const { writer, reader } = await this.openRequest({
      type: "SUBSCRIBE",
      requestId,
      trackNamespace: namespaceFromPath(namespace),
      trackName: utf8(name),
      parameters,
    });
    const answer = await this.answer(reader);
    if (answer.type === "REQUEST_ERROR") {
      writer.close().catch(() => {});
      throw requestError(`SUBSCRIBE ${namespace}/${name}`, answer);
    }
    if (answer.type !== "SUBSCRIBE_OK") throw this.violation(`${answer.type} in answer to SUBSCRIBE`);
    if (this.byAlias.has(answer.trackAlias)) {
      throw this.fail(new MoqtError("duplicate track alias", SessionErrorCode.DuplicateTrackAlias));
    }
    const sub = new Subscription(
      this,
      namespace,
      name,
      answer.trackAlias,
      answer.parameters.largestObject,
      writer,
      reader,
    );
    this.byAlias.set(answer.trackAlias, sub);
    for (const wake of this.aliasWaiters.get(answer.trackAlias) ?? []) wake();
    this.aliasWaiters.delete(answer.trackAlias);
    sub.readRequestStream().catch((e: unknown) => this.fail(e));
    return sub;
  }

  /**
   * A standalone FETCH of `[start, end)`; resolves with the objects once the stream ends.
   * Used for the catalog's latest group when a subscription alone would wait.
   */
  async fetch(
    namespace: string,
    name: string,
    start: { group: number; object: number },
    end: { group: number; object: number },
  ): Promise<FetchedObject[]> {
    const requestId = this.takeRequestId();
    // Registered before the request goes out: the objects come on their own stream, which can
    // arrive (and end) before FETCH_OK is read from the request stream.
    const waiter = this.waitFetch(requestId);
    const { writer, reader } = await this.openRequest({
      type: "FETCH",
      requestId,
      fetchType: {
        kind: "standalone",
        trackNamespace: namespaceFromPath(namespace),
        trackName: utf8(name),
        start,
        end,
      },
      parameters: {},
    });
    try {
      const answer = await this.answer(reader);
      writer.close().catch(() => {});
      if (answer.type === "REQUEST_ERROR") throw requestError(`FETCH ${namespace}/${name}`, answer);
      if (answer.type !== "FETCH_OK") throw this.violation(`${answer.type} in answer to FETCH`);
    } catch (e) {
      this.fetchWaiters.delete(requestId);
      throw e;
    }
    return waiter.promise;
  }

  /**
   * PUBLISH `namespace/name` (this session as its publisher); resolves on REQUEST_OK (or the
   * legacy PUBLISH_OK), rejects with the REQUEST_ERROR. The Track Alias is ours to choose: one
   * per publication on this session.
   */
  async publish(namespace: string, name: string): Promise<Publication> {
    const requestId = this.takeRequestId();
    const trackAlias = this.nextPublishAlias++;
    const { writer, reader } = await this.openRequest({
      type: "PUBLISH",
      requestId,
      trackNamespace: namespaceFromPath(namespace),
      trackName: utf8(name),
      trackAlias,
      parameters: {},
      trackProperties: [],
    });
    const answer = await this.answer(reader);
    if (answer.type === "REQUEST_ERROR") {
      writer.close().catch(() => {});
      throw requestError(`PUBLISH ${namespace}/${name}`, answer);
    }
    if (answer.type !== "REQUEST_OK" && answer.type !== "PUBLISH_OK") {
      throw this.violation(`${answer.type} in answer to PUBLISH`);
    }
    const publication = new Publication(namespace, name, trackAlias, this.publicationTransport(), writer);
    this.adopt(publication, reader);
    return publication;
  }

  private publicationTransport() {
    return {
      createUnidirectionalStream: () => this.transport.createUnidirectionalStream(),
      sendDatagram: (bytes: Uint8Array) => this.sendDatagram(bytes),
    };
  }

  /** Keep `publication` until its request stream ends (the subscriber's FIN, STOP_SENDING or reset). */
  private adopt(publication: Publication, reader: StreamReader): void {
    this.publications.add(publication);
    void this.readPublishStream(reader).finally(() => {
      publication.end();
      this.publications.delete(publication);
    });
  }

  /**
   * PUBLISH_NAMESPACE `namespace`: resolves on REQUEST_OK, rejects with the REQUEST_ERROR. The
   * relay's SUBSCRIBEs for its tracks then arrive at `onSubscribe`.
   */
  async publishNamespace(namespace: string): Promise<NamespacePublication> {
    const requestId = this.takeRequestId();
    const { writer, reader } = await this.openRequest({
      type: "PUBLISH_NAMESPACE",
      requestId,
      trackNamespace: namespaceFromPath(namespace),
      parameters: {},
    });
    const answer = await this.answer(reader);
    if (answer.type === "REQUEST_ERROR") {
      writer.close().catch(() => {});
      throw requestError(`PUBLISH_NAMESPACE ${namespace}`, answer);
    }
    if (answer.type !== "REQUEST_OK") throw this.violation(`${answer.type} in answer to PUBLISH_NAMESPACE`);
    return new NamespacePublication(namespace, writer, reader, () => this.takeRequestId());
  }

  /** Close the session (code 0 = no error). */
  close(code: number = SessionErrorCode.NoError, reason = ""): void {
    if (this.isClosed) return;
    try {
      this.transport.close({ closeCode: code, reason: reason.slice(0, 1024) });
    } catch {
      // already closed
    }
    this.finish({ code, reason, local: code === SessionErrorCode.NoError });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** @internal */
  forget(sub: Subscription): void {
    if (this.byAlias.get(sub.trackAlias) === sub) this.byAlias.delete(sub.trackAlias);
  }

  // ---- internals ----

  /** FETCHes sent and not yet answered by their data stream, by Request ID. */
  private readonly fetchWaiters = new Map<
    number,
    { promise: Promise<FetchedObject[]>; resolve: (v: FetchedObject[]) => void; reject: (e: Error) => void }
  >();

  private waitFetch(requestId: number) {
    let resolve!: (v: FetchedObject[]) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<FetchedObject[]>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    // A session that closes before FETCH_OK rejects this before fetch() awaits it (fetch()
    // then throws the request stream's error instead): that rejection is not unhandled.
    promise.catch(() => {});
    const waiter = { promise, resolve, reject };
    this.fetchWaiters.set(requestId, waiter);
    return waiter;
  }

  /** @internal The next Request ID of this (client) session. */
  takeRequestId(): number {
    // Client-initiated requests use even IDs (draft-18 §10.1).
    const id = this.nextRequestId;
    this.nextRequestId += 2;
    return id;
  }

  private async setup(timeoutMs: number, token: string | undefined): Promise<void> {
    const control = await this.transport.createUnidirectionalStream();
    const writer = control.getWriter();
    const setup: Setup = { type: "SETUP", moqtImplementation: utf8(IMPLEMENTATION) };
    if (token) setup.authorizationTokens = [{ aliasType: "use-value", tokenType: 0, tokenValue: utf8(token) }];
    await writer.write(encodeFrame(setup));
    writer.releaseLock();
    const incoming = this.transport.incomingUnidirectionalStreams.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MoqtError("timed out waiting for the server's SETUP")), timeoutMs);
    });
    // Data streams that beat the server's control stream are held (at most 16) and read after.
    const early: StreamReader[] = [];
    try {
      for (;;) {
        const next = await Promise.race([incoming.read(), timeout]);
        if (next.done) throw new MoqtError("session closed before SETUP");
        const stream = new StreamReader(next.value.getReader(), 1 << 20);
        // SETUP's message type doubles as the stream type: peek it, then decode the frame.
        const type = await Promise.race([stream.peek((r) => r.varint("stream type")), timeout]);
        if (type === SETUP_STREAM) {
          const setup = await Promise.race([stream.decode((r) => decodeFrame(r)), timeout]);
          if (setup?.type !== "SETUP") throw new DecodeError("invalid", "control stream did not start with SETUP");
          if (setup.path !== undefined || setup.authority !== undefined) {
            throw new MoqtError("a server must not send PATH or AUTHORITY", SessionErrorCode.InvalidPath);
          }
          this.peerSetup = setup;
          this.readControl(stream).catch((e: unknown) => this.fail(e));
          for (const s of early) this.handleDataStream(s).catch((e: unknown) => this.fail(e));
          this.acceptStreams(incoming).catch((e: unknown) => this.fail(e));
          this.acceptRequests().catch((e: unknown) => this.fail(e));
          this.readDatagrams().catch((e: unknown) => {
            if (e instanceof DecodeError) this.fail(e);
          });
          return;
        }
        if (early.length < 16) early.push(stream);
        else void stream.cancel();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** The server's control stream after SETUP: only GOAWAY may follow, once. */
  private async readControl(control: StreamReader): Promise<void> {
    for (;;) {
      const m = await control.decode((r) => decodeFrame(r));
      if (m === undefined) {
        throw new MoqtError("the server closed its control stream", SessionErrorCode.ProtocolViolation);
      }
      if (m.type !== "GOAWAY") throw new DecodeError("invalid", `${m.type} is not allowed on the control stream`);
      if (this.goaway) throw new DecodeError("invalid", "second GOAWAY on the control stream");
      this.goaway = m;
      this.onGoaway(m);
    }
  }

  private async acceptStreams(incoming: ReadableStreamDefaultReader<ReadableStream<Uint8Array>>): Promise<void> {
    for (;;) {
      const next = await incoming.read().catch(() => ({ done: true as const, value: undefined }));
      if (next.done) return;
      const stream = new StreamReader(next.value.getReader(), this.maxObjectSize + (1 << 20) + 64);
      this.handleDataStream(stream).catch((e: unknown) => this.fail(e));
    }
  }

  /** Request streams the peer opens (a relay's SUBSCRIBE to a namespace we published). */
  private async acceptRequests(): Promise<void> {
    // A transport without incoming bidirectional streams (a test double) gets no requests.
    const streams = (this.transport as Partial<WebTransport>).incomingBidirectionalStreams;
    if (!streams) return;
    const incoming = streams.getReader();
    for (;;) {
      const next = await incoming.read().catch(() => ({ done: true as const, value: undefined }));
      if (next.done) return;
      this.handleRequest(next.value).catch((e: unknown) => this.fail(e));
    }
  }

  private async handleRequest(bidi: WebTransportBidirectionalStream): Promise<void> {
    const reader = new StreamReader(bidi.readable.getReader(), 1 << 17);
    const writer = bidi.writable.getWriter();
    let message: Message | undefined;
    try {
      message = await reader.decode((r) => decodeFrame(r));
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      return; // reset before the request arrived
    }
    if (message === undefined) return;
    if (message.type === "SUBSCRIBE") {
      const request = new IncomingSubscribe(
        message,
        {
          ...this.publicationTransport(),
          takeTrackAlias: () => this.nextPublishAlias++,
          adopt: (publication, requestStream) => this.adopt(publication, requestStream),
        },
        writer,
        reader,
      );
      if (this.onSubscribe) this.onSubscribe(request);
      else await request.reject(RequestErrorCode.DoesNotExist, "this client publishes no tracks");
      return;
    }
    await refuse(writer, RequestErrorCode.NotSupported, `banyan-client-web does not answer ${message.type}`);
  }

  private async handleDataStream(stream: StreamReader): Promise<void> {
    let type;
    try {
      type = await stream.decode((r) => streamTypeFromCode(r.varint("stream type")));
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      return; // the stream was reset before its type arrived: nothing to read
    }
    if (type === undefined) return;
    try {
      if (type.kind === "subgroup") {
        const t = type.subgroup;
        const header = await stream.decode((r) => decodeSubgroupHeaderAfterType(t, r));
        if (header === undefined) return;
        const sub = await this.subscriptionFor(header.trackAlias);
        if (!sub) {
          void stream.cancel();
          return;
        }
        await sub.readSubgroup(stream, new SubgroupStream(header), this.maxObjectSize);
      } else if (type.kind === "fetch") {
        await this.readFetchStream(stream);
      } else if (type.kind === "padding") {
        await stream.cancel();
      } else {
        throw new DecodeError("invalid", "a second SETUP stream");
      }
    } catch (e) {
      // A reset stream (the relay skipping us ahead, a publisher going away) is not an error;
      // malformed bytes are.
      if (e instanceof DecodeError || e instanceof MoqtError) throw e;
    }
  }

  private async readFetchStream(stream: StreamReader): Promise<void> {
    const requestId = await stream.decode((r) => r.varint("request id"));
    if (requestId === undefined) return;
    const waiter = this.fetchWaiters.get(requestId);
    if (!waiter) throw new MoqtError(`a FETCH stream for request ${requestId}, which is no FETCH of ours`, SessionErrorCode.ProtocolViolation);
    const order: FetchGroupOrder = "ascending";
    const state = new FetchStream(order);
    const objects: FetchedObject[] = [];
    try {
      for (;;) {
        const item = await stream.decode((r) => state.decodeItem(r, this.maxObjectSize));
        if (item === undefined) break;
        if (item.kind === "object") {
          const o = item.object;
          objects.push({ groupId: o.groupId, objectId: o.objectId, payload: o.payload, properties: o.properties });
        }
      }
    } finally {
      waiter.resolve(objects);
      this.fetchWaiters.delete(requestId);
    }
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.transport.datagrams.readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (!value) continue;
      const d = decodeDatagram(value);
      if (d.kind !== "object") continue;
      const sub = this.byAlias.get(d.object.trackAlias);
      if (!sub) continue;
      const o = d.object;
      sub.onObject({
        groupId: o.groupId,
        subgroupId: 0,
        objectId: o.objectId,
        status: o.status,
        properties: o.properties,
        payload: o.payload,
        receivedAt: performance.now(),
      });
    }
  }

  /**
   * After PUBLISH's answer: REQUEST_UPDATEs are accepted and ignored; the subscriber's FIN,
   * STOP_SENDING or reset ends the publication.
   */
  private async readPublishStream(reader: StreamReader): Promise<void> {
    try {
      for (;;) {
        const m = await reader.decode((r) => decodeFrame(r));
        if (m === undefined) return;
        if (m.type !== "REQUEST_UPDATE" && m.type !== "GOAWAY") return;
      }
    } catch {
      return;
    }
  }

  /**
   * Queue one datagram; false when the session cannot send it: closed, or a transport that
   * says it carries no datagrams this large (`maxDatagramSize`; QMux reports 0 when the peer
   * advertised no datagram support, and would drop them silently).
   */
  private sendDatagram(bytes: Uint8Array): boolean {
    if (this.isClosed) return false;
    const max = (this.transport.datagrams as { maxDatagramSize?: unknown }).maxDatagramSize;
    if (typeof max === "number" && bytes.length > max) return false;
    try {
      if (!this.datagramWriter) {
        const datagrams = this.transport.datagrams as WebTransportDatagramDuplexStream & {
          createWritable?: () => WritableStream<Uint8Array>;
        };
        const writable = datagrams.createWritable ? datagrams.createWritable() : datagrams.writable;
        this.datagramWriter = writable.getWriter();
      }
      this.datagramWriter.write(bytes).catch(() => {});
      return true;
    } catch {
      return false;
    }
  }

  /** The subscription for a Track Alias, waiting briefly for a SUBSCRIBE_OK still in flight. */
  private async subscriptionFor(alias: number): Promise<Subscription | undefined> {
    const known = this.byAlias.get(alias);
    if (known || this.isClosed) return known;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      const list = this.aliasWaiters.get(alias) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.aliasWaiters.set(alias, list);
    });
    return this.byAlias.get(alias);
  }

  private async openRequest(m: Message): Promise<{
    writer: WritableStreamDefaultWriter<Uint8Array>;
    reader: StreamReader;
  }> {
    if (this.isClosed) throw new MoqtError("session is closed");
    const bidi = await this.transport.createBidirectionalStream();
    const writer = bidi.writable.getWriter();
    await writer.write(encodeFrame(m));
    return { writer, reader: new StreamReader(bidi.readable.getReader(), 1 << 17) };
  }

  private async answer(reader: StreamReader): Promise<Message> {
    let message: Message | undefined;
    try {
      message = await reader.decode((r) => decodeFrame(r));
    } catch (e) {
      throw this.fail(e);
    }
    if (message === undefined) throw new MoqtError("request stream ended without an answer");
    return message;
  }

  private violation(what: string): MoqtError {
    return this.fail(new MoqtError(what, SessionErrorCode.ProtocolViolation));
  }

  /** Close the session because of `e` (a DecodeError closes with its mapped code). */
  fail(e: unknown): MoqtError {
    const error = e instanceof MoqtError ? e : new MoqtError(describe(e));
    let code: number = SessionErrorCode.InternalError;
    if (e instanceof DecodeError) code = e.sessionCode;
    else if (e instanceof MoqtError && typeof e.code === "number") code = e.code;
    if (!this.isClosed) this.close(code, error.message);
    return error;
  }

  private finish(c: SessionClosed): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const sub of this.byAlias.values()) sub.unsubscribe();
    this.byAlias.clear();
    for (const publication of this.publications) publication.end();
    this.publications.clear();
    for (const waiter of this.fetchWaiters.values()) waiter.reject(new MoqtError("session closed before the FETCH was answered"));
    this.fetchWaiters.clear();
    this.resolveClosed(c);
  }
}

function requestError(what: string, e: RequestError): MoqtError {
  return new MoqtError(`${what} refused: code 0x${e.errorCode.toString(16)} ${e.errorReason}`, e.errorCode);
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null && "message" in e) return String((e as { message: unknown }).message);
  return String(e);
}

