/**
 * This client as a publisher of a namespace (draft-18 §10.11, PUBLISH_NAMESPACE): the relay
 * learns the broadcast is here and sends a SUBSCRIBE (on a bidirectional stream it opens) for
 * each track a viewer wants, once per track, which the application answers with SUBSCRIBE_OK
 * (choosing the Track Alias) and subgroup streams, or REQUEST_ERROR. Mirrors
 * `banyan_moq::session::{NamespacePublication, SubscribeRequest}`.
 */
import { namespaceToPath, type KeyValuePair } from "../coding";
import { RequestErrorCode, decodeFrame, encodeFrame, type Parameters, type Subscribe } from "../message";
import { Publication, type PublicationTransport } from "./publication";
import type { StreamReader } from "./stream";

/** A namespace this session publishes; `done()` ends the publication (FIN on its request stream). */
export class NamespacePublication {
  /** Settles when the relay ends the publication or the session closes. */
  readonly ended: Promise<void>;
  private finished = false;
  /** The REQUEST_UPDATE awaiting its answer, if any. */
  private pendingUpdate: { resolve: () => void; reject: (e: Error) => void } | undefined;

  constructor(
    readonly namespace: string,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    reader: StreamReader,
    private readonly takeRequestId: () => number = () => 0,
  ) {
    this.ended = this.read(reader);
  }

  /**
   * Present a fresh token (same subject, same or wider scope) for the session: REQUEST_UPDATE
   * with AUTHORIZATION TOKEN on the PUBLISH_NAMESPACE stream. Resolves on REQUEST_OK; rejects
   * on REQUEST_ERROR (the relay then ends the publication).
   */
  async refresh(token: string): Promise<void> {
    if (this.pendingUpdate) throw new Error("a REQUEST_UPDATE is already in flight");
    const answered = new Promise<void>((resolve, reject) => (this.pendingUpdate = { resolve, reject }));
    try {
      await this.writer.write(
        encodeFrame({
          type: "REQUEST_UPDATE",
          requestId: this.takeRequestId(),
          parameters: { authorizationTokens: [{ aliasType: "use-value", tokenType: 0, tokenValue: new TextEncoder().encode(token) }] },
        }),
      );
    } catch (e) {
      this.pendingUpdate = undefined;
      throw e instanceof Error ? e : new Error(String(e));
    }
    return answered;
  }

  /** Read the request stream until the relay ends it: answers to REQUEST_UPDATE, GOAWAY. */
  private async read(reader: StreamReader): Promise<void> {
    try {
      for (;;) {
        const m = await reader.decode((r) => decodeFrame(r));
        if (m === undefined) return;
        if (m.type === "GOAWAY" || m.type === "REQUEST_UPDATE") continue;
        if ((m.type === "REQUEST_OK" || m.type === "REQUEST_ERROR") && this.pendingUpdate) {
          const { resolve, reject } = this.pendingUpdate;
          this.pendingUpdate = undefined;
          if (m.type === "REQUEST_OK") resolve();
          else reject(new Error(`REQUEST_UPDATE on ${this.namespace} refused: code 0x${m.errorCode.toString(16)} ${m.errorReason}`));
          continue;
        }
        return;
      }
    } catch {
      return;
    } finally {
      this.pendingUpdate?.reject(new Error(`the publication of ${this.namespace} ended`));
      this.pendingUpdate = undefined;
    }
  }

  /** Withdraw the namespace: FIN on the request stream (what dropping Rust's publication does). */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.writer.close().catch(() => {});
  }
}

/** What an IncomingSubscribe needs from its session. */
export interface SubscribeHost extends PublicationTransport {
  /** The next Track Alias this side assigns (shared with PUBLISH). */
  takeTrackAlias(): number;
  /** Remember the publication until it ends (the session ends it when it closes). */
  adopt(publication: Publication, requestStream: StreamReader): void;
}

/** A SUBSCRIBE from the peer, waiting for `accept` or `reject`. */
export class IncomingSubscribe {
  /** The namespace as `a/b/c`. */
  readonly namespace: string;
  /** The track name (UTF-8, lossy). */
  readonly name: string;
  private answered = false;

  constructor(
    readonly message: Subscribe,
    private readonly host: SubscribeHost,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly reader: StreamReader,
  ) {
    this.namespace = namespaceToPath(message.trackNamespace);
    this.name = new TextDecoder().decode(message.trackName);
  }

  get parameters(): Parameters {
    return this.message.parameters;
  }

  /**
   * SUBSCRIBE_OK with a Track Alias of ours and `trackProperties`; the returned Publication
   * sends the track's objects and ends (`done`) when the subscriber cancels.
   */
  async accept(trackProperties: KeyValuePair[] = []): Promise<Publication> {
    if (this.answered) throw new Error(`SUBSCRIBE ${this.namespace}/${this.name} was already answered`);
    this.answered = true;
    const trackAlias = this.host.takeTrackAlias();
    await this.writer.write(encodeFrame({ type: "SUBSCRIBE_OK", trackAlias, parameters: {}, trackProperties }));
    const publication = new Publication(this.namespace, this.name, trackAlias, this.host, this.writer);
    this.host.adopt(publication, this.reader);
    return publication;
  }

  /** REQUEST_ERROR (`code`, default DOES_NOT_EXIST) and FIN. */
  async reject(code: bigint = RequestErrorCode.DoesNotExist, reason = ""): Promise<void> {
    if (this.answered) return;
    this.answered = true;
    await refuse(this.writer, code, reason);
  }
}

/** Answer a request stream with REQUEST_ERROR and FIN it (errors ignored: the peer may be gone). */
export async function refuse(writer: WritableStreamDefaultWriter<Uint8Array>, code: bigint, reason: string): Promise<void> {
  try {
    await writer.write(encodeFrame({ type: "REQUEST_ERROR", errorCode: code, retryInterval: 0, errorReason: reason }));
    await writer.close();
  } catch {
    // the stream or session is already gone
  }
}
