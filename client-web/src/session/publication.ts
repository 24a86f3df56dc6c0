/**
 * The publisher side of a track this client PUBLISHed (draft-18 §10.7), or of a SUBSCRIBE it
 * accepted (`IncomingSubscribe.accept`, the relay subscribing to a track of a broadcast this
 * client publishes): objects go out as OBJECT_DATAGRAMs or on unidirectional subgroup streams
 * tagged with the Track Alias this side chose. Mirrors `banyan_moq::session::TrackWriter` for
 * what a browser needs (the `interact` track of docs/interactions.md, `publish()`'s media
 * tracks): no caching; a subgroup may carry a publisher priority and object properties.
 */
import { Writer, type KeyValuePair } from "../coding";
import { ObjectStatus, SubgroupStream, encodeDatagram, encodeSubgroupHeader, type SubgroupHeader } from "../data";
import { PublishDoneCode, encodeFrame } from "../message";

/** What a Publication needs from its session. */
export interface PublicationTransport {
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
  /** Queue one datagram; false when the session cannot send it. */
  sendDatagram(bytes: Uint8Array): boolean;
}

export class Publication {
  /** Settles when the subscriber (the relay) cancels the publication or the session ends. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private ended = false;
  private streamsOpened = 0;

  constructor(
    readonly namespace: string,
    readonly name: string,
    readonly trackAlias: number,
    private readonly transport: PublicationTransport,
    private readonly request: WritableStreamDefaultWriter<Uint8Array>,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get isOpen(): boolean {
    return !this.ended;
  }

  /** Send one object as a datagram (default priority, no properties). False if it could not be queued. */
  sendDatagram(groupId: number, objectId: number, payload: Uint8Array): boolean {
    if (this.ended) return false;
    const bytes = encodeDatagram({
      kind: "object",
      object: {
        trackAlias: this.trackAlias,
        groupId,
        objectId,
        properties: [],
        endOfGroup: false,
        status: ObjectStatus.Normal,
        payload,
      },
    });
    return this.transport.sendDatagram(bytes);
  }

  /**
   * Open a stream for one subgroup (Subgroup ID 0). By default: the default priority and no
   * object properties; `priority` sets the header's Publisher Priority, `properties` a stream
   * type whose objects carry properties (LOC media).
   */
  async openSubgroup(groupId: number, options: SubgroupOptions = {}): Promise<SubgroupWriter> {
    if (this.ended) throw new Error(`publication ${this.namespace}/${this.name} has ended`);
    const header: SubgroupHeader = {
      trackAlias: this.trackAlias,
      groupId,
      subgroupId: { mode: "zero" },
      properties: options.properties ?? false,
      endOfGroup: false,
      firstObject: false,
    };
    if (options.priority !== undefined) header.publisherPriority = options.priority;
    this.streamsOpened++;
    const stream = await this.transport.createUnidirectionalStream();
    const writer = stream.getWriter();
    const w = new Writer();
    encodeSubgroupHeader(w, header);
    const sub = new SubgroupWriter(groupId, writer, new SubgroupStream(header));
    await sub.send(w.finish());
    return sub;
  }

  /**
   * End the publication: PUBLISH_DONE (Track Ended, with the number of subgroup streams opened,
   * as `banyan_moq` counts them) and FIN on the request stream.
   */
  finish(): void {
    if (this.ended) return;
    const done = encodeFrame({
      type: "PUBLISH_DONE",
      statusCode: PublishDoneCode.TrackEnded,
      streamCount: BigInt(this.streamsOpened),
      errorReason: "",
    });
    this.request
      .write(done)
      .then(() => this.request.close())
      .catch(() => {});
    this.end();
  }

  /** @internal The subscriber ended it, or the session closed. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.resolveDone();
  }
}

/** How a subgroup stream is opened (see {@link Publication.openSubgroup}). */
export interface SubgroupOptions {
  /** Publisher Priority in the header (0 most urgent); absent: the track's default. */
  priority?: number;
  /** Whether objects carry properties (e.g. LOC's capture timestamp). */
  properties?: boolean;
}

/** One subgroup stream being written: objects in increasing Object ID order. */
export class SubgroupWriter {
  /**
   * Settles when the stream is done: `undefined` after a clean finish, or the peer's
   * STOP_SENDING / reset code (for the `interact` track, a refusal code such as 0x1001).
   */
  readonly closed: Promise<number | undefined>;
  private failed = false;

  constructor(
    readonly groupId: number,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly state: SubgroupStream,
  ) {
    this.closed = writer.closed.then(
      () => undefined,
      (e: unknown) => {
        this.failed = true;
        return streamErrorCode(e);
      },
    );
  }

  /** True once the peer stopped the stream (or it failed). */
  get isStopped(): boolean {
    return this.failed;
  }

  /**
   * Write one object (with `properties` on a stream opened with `properties: true`); resolves
   * when the bytes are queued on the stream.
   */
  async write(objectId: number, payload: Uint8Array, properties: KeyValuePair[] = []): Promise<void> {
    const w = new Writer();
    this.state.encodeObject(w, { objectId, properties, status: ObjectStatus.Normal, payload });
    await this.send(w.finish());
  }

  /** FIN the stream. */
  async finish(): Promise<void> {
    await this.writer.close();
  }

  /** Reset the stream (no more objects, the peer may drop what is in flight). */
  abort(): void {
    this.writer.abort().catch(() => {});
  }

  /** @internal */
  async send(bytes: Uint8Array): Promise<void> {
    await this.writer.write(bytes);
  }
}

/** The application error code of a WebTransport stream error (STOP_SENDING / RESET_STREAM), if any. */
export function streamErrorCode(e: unknown): number {
  if (typeof e === "object" && e !== null && "streamErrorCode" in e) {
    const code = (e as { streamErrorCode: unknown }).streamErrorCode;
    if (typeof code === "number") return code;
  }
  return -1;
}
