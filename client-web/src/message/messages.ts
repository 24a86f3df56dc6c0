/**
 * Control messages (draft-18 §10) and their framing, mirroring `banyan_moq::message`:
 *
 * ```text
 * MOQT Control Message { Message Type (vi64), Message Length (16), Message Payload (..) }
 * ```
 *
 * Each message is a plain object tagged by `type` (the spec's name). Several payloads end with a
 * field whose length is "the rest of the message" (Track Properties, GOAWAY's optional Request ID,
 * SETUP's options), so payload decoders get a Reader bounded to exactly the payload.
 */
import {
  DecodeError,
  EncodeError,
  Reader,
  decodeKvps,
  decodeLocation,
  decodeNamespace,
  decodeTrack,
  encodeKvps,
  encodeLocation,
  encodeNamespace,
  encodeWith,
  incompleteAs,
  utf8,
  Writer,
  type KeyValuePair,
  type Location,
  type TrackNamespace,
} from "../coding";
import {
  MAX_MESSAGE_SIZE,
  decodeParameters,
  decodeToken,
  encodeParameters,
  encodeToken,
  type Parameters,
  type Token,
} from "./params";

export const MAX_REASON_PHRASE_LEN = 1024;
export const MAX_NEW_SESSION_URI_LEN = 8192;
/** PUBLISH_DONE's "unknown" stream count, 2^62 - 1. */
export const UNKNOWN_STREAM_COUNT = (1n << 62n) - 1n;

export const SetupOption = {
  Path: 0x01,
  AuthorizationToken: 0x03,
  MaxAuthTokenCacheSize: 0x04,
  Authority: 0x05,
  MoqtImplementation: 0x07,
} as const;

export interface Setup {
  type: "SETUP";
  path?: string;
  authorizationTokens?: Token[];
  maxAuthTokenCacheSize?: bigint;
  authority?: string;
  moqtImplementation?: Uint8Array;
  /** Unknown options (including grease), kept so they round-trip. */
  unknownOptions?: KeyValuePair[];
}
export interface Goaway {
  type: "GOAWAY";
  newSessionUri: string;
  timeout: number;
  requestId?: number;
}
export interface RequestOk {
  type: "REQUEST_OK";
  parameters: Parameters;
  trackProperties: KeyValuePair[];
}
export interface Redirect {
  connectUri: string;
  trackNamespace: TrackNamespace;
  trackName: Uint8Array;
}
export interface RequestError {
  type: "REQUEST_ERROR";
  /** REQUEST_ERROR code (draft-18 §9.8); unknown codes are kept. */
  errorCode: bigint;
  retryInterval: number;
  errorReason: string;
  redirect?: Redirect;
}
export interface RequestUpdate {
  type: "REQUEST_UPDATE";
  requestId: number;
  parameters: Parameters;
}
export interface Subscribe {
  type: "SUBSCRIBE";
  requestId: number;
  trackNamespace: TrackNamespace;
  trackName: Uint8Array;
  parameters: Parameters;
}
export interface SubscribeOk {
  type: "SUBSCRIBE_OK";
  trackAlias: number;
  parameters: Parameters;
  trackProperties: KeyValuePair[];
}
export interface Publish {
  type: "PUBLISH";
  requestId: number;
  trackNamespace: TrackNamespace;
  trackName: Uint8Array;
  trackAlias: number;
  parameters: Parameters;
  trackProperties: KeyValuePair[];
}
export interface PublishOk {
  type: "PUBLISH_OK";
  parameters: Parameters;
}
export interface PublishDone {
  type: "PUBLISH_DONE";
  statusCode: bigint;
  streamCount: bigint;
  errorReason: string;
}
export type FetchType =
  | { kind: "standalone"; trackNamespace: TrackNamespace; trackName: Uint8Array; start: Location; end: Location }
  | { kind: "relative-joining" | "absolute-joining"; joiningRequestId: number; joiningStart: number };
export interface Fetch {
  type: "FETCH";
  requestId: number;
  fetchType: FetchType;
  parameters: Parameters;
}
export interface FetchOk {
  type: "FETCH_OK";
  endOfTrack: boolean;
  endLocation: Location;
  parameters: Parameters;
  trackProperties: KeyValuePair[];
}
export interface TrackStatus {
  type: "TRACK_STATUS";
  requestId: number;
  trackNamespace: TrackNamespace;
  trackName: Uint8Array;
  parameters: Parameters;
}
export interface PublishNamespace {
  type: "PUBLISH_NAMESPACE";
  requestId: number;
  trackNamespace: TrackNamespace;
  parameters: Parameters;
}
export interface Namespace {
  type: "NAMESPACE";
  trackNamespaceSuffix: TrackNamespace;
}
export interface NamespaceDone {
  type: "NAMESPACE_DONE";
  trackNamespaceSuffix: TrackNamespace;
}
export interface SubscribeNamespace {
  type: "SUBSCRIBE_NAMESPACE";
  requestId: number;
  trackNamespacePrefix: TrackNamespace;
  parameters: Parameters;
}
export interface SubscribeTracks {
  type: "SUBSCRIBE_TRACKS";
  requestId: number;
  trackNamespacePrefix: TrackNamespace;
  parameters: Parameters;
}
export interface PublishBlocked {
  type: "PUBLISH_BLOCKED";
  trackNamespaceSuffix: TrackNamespace;
  trackName: Uint8Array;
}

/** Any draft-18 control message. */
export type Message =
  | Setup
  | Goaway
  | RequestOk
  | RequestError
  | RequestUpdate
  | Subscribe
  | SubscribeOk
  | Publish
  | PublishOk
  | PublishDone
  | Fetch
  | FetchOk
  | TrackStatus
  | PublishNamespace
  | Namespace
  | NamespaceDone
  | SubscribeNamespace
  | SubscribeTracks
  | PublishBlocked;

export type MessageName = Message["type"];

/** Message Type on the wire, per name. */
export const MESSAGE_TYPES: Record<MessageName, number> = {
  SETUP: 0x2f00,
  GOAWAY: 0x10,
  REQUEST_OK: 0x7,
  REQUEST_ERROR: 0x5,
  REQUEST_UPDATE: 0x2,
  SUBSCRIBE: 0x3,
  SUBSCRIBE_OK: 0x4,
  PUBLISH: 0x1d,
  PUBLISH_OK: 0x1e,
  PUBLISH_DONE: 0xb,
  FETCH: 0x16,
  FETCH_OK: 0x18,
  TRACK_STATUS: 0xd,
  PUBLISH_NAMESPACE: 0x6,
  NAMESPACE: 0x8,
  NAMESPACE_DONE: 0xe,
  SUBSCRIBE_NAMESPACE: 0x50,
  SUBSCRIBE_TRACKS: 0x51,
  PUBLISH_BLOCKED: 0xf,
};

const NAMES_BY_TYPE = new Map<number, MessageName>(
  Object.entries(MESSAGE_TYPES).map(([name, ty]) => [ty, name as MessageName]),
);

export function messageName(typeId: number): MessageName | undefined {
  return NAMES_BY_TYPE.get(typeId);
}

/** Decode the payload of a message of `name` from a reader bounded to exactly the payload. */
export function decodePayload(name: MessageName, r: Reader): Message {
  switch (name) {
    case "SETUP":
      return decodeSetup(r);
    case "GOAWAY": {
      const newSessionUri = r.string("New Session URI", MAX_NEW_SESSION_URI_LEN);
      const timeout = r.varint("timeout");
      const m: Goaway = { type: name, newSessionUri, timeout };
      if (r.hasRemaining()) m.requestId = r.varint("request id");
      return m;
    }
    case "REQUEST_OK":
      return { type: name, parameters: decodeParameters(r, "request-ok"), trackProperties: decodeKvps(r) };
    case "REQUEST_ERROR": {
      const errorCode = r.varintBig();
      const retryInterval = r.varint("retry interval");
      const errorReason = r.lossyString("reason phrase", MAX_REASON_PHRASE_LEN);
      const m: RequestError = { type: name, errorCode, retryInterval, errorReason };
      if (errorCode === RequestErrorCode.Redirect) {
        const connectUri = r.string("Connect URI", MAX_MESSAGE_SIZE);
        const { namespace, name: trackName } = decodeTrack(r);
        m.redirect = { connectUri, trackNamespace: namespace, trackName };
      }
      return m;
    }
    case "REQUEST_UPDATE":
      return { type: name, requestId: r.varint("request id"), parameters: decodeParameters(r, "request-update") };
    case "SUBSCRIBE":
    case "TRACK_STATUS": {
      const requestId = r.varint("request id");
      const { namespace, name: trackName } = decodeTrack(r);
      const scope = name === "SUBSCRIBE" ? "subscribe" : "track-status";
      return { type: name, requestId, trackNamespace: namespace, trackName, parameters: decodeParameters(r, scope) };
    }
    case "SUBSCRIBE_OK":
      return {
        type: name,
        trackAlias: r.varint("track alias"),
        parameters: decodeParameters(r, "subscribe-ok"),
        trackProperties: decodeKvps(r),
      };
    case "PUBLISH": {
      const requestId = r.varint("request id");
      const { namespace, name: trackName } = decodeTrack(r);
      return {
        type: name,
        requestId,
        trackNamespace: namespace,
        trackName,
        trackAlias: r.varint("track alias"),
        parameters: decodeParameters(r, "publish"),
        trackProperties: decodeKvps(r),
      };
    }
    case "PUBLISH_OK": {
      const parameters = decodeParameters(r, "publish-ok");
      if (r.hasRemaining()) throw DecodeError.invalid("Track Properties in PUBLISH_OK");
      return { type: name, parameters };
    }
    case "PUBLISH_DONE":
      return {
        type: name,
        statusCode: r.varintBig(),
        streamCount: r.varintBig(),
        errorReason: r.lossyString("reason phrase", MAX_REASON_PHRASE_LEN),
      };
    case "FETCH":
      return decodeFetch(r);
    case "FETCH_OK":
      return {
        type: name,
        endOfTrack: r.bool("End Of Track must be 0 or 1"),
        endLocation: decodeLocation(r),
        parameters: decodeParameters(r, "fetch-ok"),
        trackProperties: decodeKvps(r),
      };
    case "PUBLISH_NAMESPACE":
      return {
        type: name,
        requestId: r.varint("request id"),
        trackNamespace: decodeNamespace(r),
        parameters: decodeParameters(r, "publish-namespace"),
      };
    case "NAMESPACE":
    case "NAMESPACE_DONE":
      return { type: name, trackNamespaceSuffix: decodeNamespace(r) };
    case "SUBSCRIBE_NAMESPACE":
    case "SUBSCRIBE_TRACKS":
      return {
        type: name,
        requestId: r.varint("request id"),
        trackNamespacePrefix: decodeNamespace(r),
        parameters: decodeParameters(r, name === "SUBSCRIBE_NAMESPACE" ? "subscribe-namespace" : "subscribe-tracks"),
      };
    case "PUBLISH_BLOCKED": {
      const trackNamespaceSuffix = decodeNamespace(r);
      return { type: name, trackNamespaceSuffix, trackName: r.lengthPrefixed("track name", 4096) };
    }
  }
}

/** Write the payload (no type or length). */
export function encodePayload(w: Writer, m: Message): void {
  switch (m.type) {
    case "SETUP":
      encodeKvps(w, setupOptions(m));
      return;
    case "GOAWAY":
      w.string(m.newSessionUri).varint(m.timeout);
      if (m.requestId !== undefined) w.varint(m.requestId);
      return;
    case "REQUEST_OK":
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties);
      return;
    case "REQUEST_ERROR":
      w.varint(m.errorCode).varint(m.retryInterval).string(truncateReason(m.errorReason));
      if (m.errorCode === RequestErrorCode.Redirect) {
        const redirect = m.redirect ?? { connectUri: "", trackNamespace: [], trackName: new Uint8Array() };
        w.string(redirect.connectUri);
        encodeNamespace(w, redirect.trackNamespace);
        w.lengthPrefixed(redirect.trackName);
      }
      return;
    case "REQUEST_UPDATE":
      w.varint(m.requestId);
      encodeParameters(w, m.parameters);
      return;
    case "SUBSCRIBE":
    case "TRACK_STATUS":
      w.varint(m.requestId);
      encodeNamespace(w, m.trackNamespace);
      w.lengthPrefixed(m.trackName);
      encodeParameters(w, m.parameters);
      return;
    case "SUBSCRIBE_OK":
      w.varint(m.trackAlias);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties);
      return;
    case "PUBLISH":
      w.varint(m.requestId);
      encodeNamespace(w, m.trackNamespace);
      w.lengthPrefixed(m.trackName).varint(m.trackAlias);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties);
      return;
    case "PUBLISH_OK":
      encodeParameters(w, m.parameters);
      return;
    case "PUBLISH_DONE":
      w.varint(m.statusCode).varint(m.streamCount).string(truncateReason(m.errorReason));
      return;
    case "FETCH": {
      w.varint(m.requestId);
      const f = m.fetchType;
      if (f.kind === "standalone") {
        w.varint(1);
        encodeNamespace(w, f.trackNamespace);
        w.lengthPrefixed(f.trackName);
        encodeLocation(w, f.start);
        encodeLocation(w, f.end);
      } else {
        w.varint(f.kind === "relative-joining" ? 2 : 3).varint(f.joiningRequestId).varint(f.joiningStart);
      }
      encodeParameters(w, m.parameters);
      return;
    }
    case "FETCH_OK":
      w.u8(m.endOfTrack ? 1 : 0);
      encodeLocation(w, m.endLocation);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties);
      return;
    case "PUBLISH_NAMESPACE":
      w.varint(m.requestId);
      encodeNamespace(w, m.trackNamespace);
      encodeParameters(w, m.parameters);
      return;
    case "NAMESPACE":
    case "NAMESPACE_DONE":
      encodeNamespace(w, m.trackNamespaceSuffix);
      return;
    case "SUBSCRIBE_NAMESPACE":
    case "SUBSCRIBE_TRACKS":
      w.varint(m.requestId);
      encodeNamespace(w, m.trackNamespacePrefix);
      encodeParameters(w, m.parameters);
      return;
    case "PUBLISH_BLOCKED":
      encodeNamespace(w, m.trackNamespaceSuffix);
      w.lengthPrefixed(m.trackName);
      return;
  }
}

/**
 * Decode one framed control message from the front of `r`, advancing it only on success.
 *
 * - Any strict prefix of a valid frame is `incomplete`.
 * - A declared length above `maxSize` is `too-large` as soon as the header is readable.
 * - An unknown type is `unknown-message` as soon as the type is readable.
 * - The payload is decoded from exactly Message Length bytes: leftovers are `length-mismatch`;
 *   a payload that ends inside a field is malformed, never `incomplete`.
 */
export function decodeFrame(r: Reader, maxSize = MAX_MESSAGE_SIZE): Message {
  const peek = new Reader(r.bytes, r.pos, r.pos + r.remaining);
  const typeId = peek.varint("message type");
  const name = messageName(typeId);
  if (name === undefined) {
    throw new DecodeError("unknown-message", `unknown message type 0x${typeId.toString(16)}`);
  }
  const declared = peek.u16();
  const limit = Math.min(maxSize, MAX_MESSAGE_SIZE);
  if (declared > limit) throw DecodeError.tooLarge("control message", declared, limit);
  const payload = peek.sub(declared);
  const message = incompleteAs(
    () => decodePayload(name, payload),
    () => DecodeError.invalid("message payload ends inside a field"),
  );
  if (payload.hasRemaining()) {
    throw new DecodeError(
      "length-mismatch",
      `message length mismatch: declared ${declared}, used ${declared - payload.remaining}`,
    );
  }
  r.pos = peek.pos;
  return message;
}

/** The framed encoding: type, 16-bit length, payload. Throws EncodeError over 65535 bytes. */
export function encodeFrame(m: Message): Uint8Array {
  const payload = encodeWith((w) => encodePayload(w, m));
  if (payload.length > MAX_MESSAGE_SIZE) {
    throw new EncodeError(`control message of ${payload.length} bytes exceeds the limit of ${MAX_MESSAGE_SIZE}`);
  }
  return new Writer().varint(MESSAGE_TYPES[m.type]).u16(payload.length).bytes(payload).finish();
}

/** REQUEST_ERROR codes (draft-18 §9.8) this client interprets. */
export const RequestErrorCode = {
  InternalError: 0x0n,
  Unauthorized: 0x1n,
  Timeout: 0x2n,
  NotSupported: 0x3n,
  GoingAway: 0x6n,
  DoesNotExist: 0x10n,
  Redirect: 0x34n,
} as const;

/** PUBLISH_DONE status codes (draft-18 §9.12). */
export const PublishDoneCode = {
  InternalError: 0x0n,
  Unauthorized: 0x1n,
  TrackEnded: 0x2n,
  SubscriptionEnded: 0x3n,
  GoingAway: 0x4n,
  TooFarBehind: 0x5n,
  Expired: 0x6n,
} as const;

function decodeSetup(r: Reader): Setup {
  const setup: Setup = { type: "SETUP" };
  const unknown: KeyValuePair[] = [];
  const once = (present: unknown, key: number) => {
    if (present !== undefined) {
      throw new DecodeError("duplicate-parameter", `duplicate parameter 0x${key.toString(16)}`);
    }
  };
  const text = (v: Uint8Array, what: string) => {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(v);
    } catch {
      throw DecodeError.invalid(what);
    }
  };
  for (const option of decodeKvps(r)) {
    const { key, value } = option;
    if (typeof value === "bigint") {
      if (key === SetupOption.MaxAuthTokenCacheSize) {
        once(setup.maxAuthTokenCacheSize, key);
        setup.maxAuthTokenCacheSize = value;
      } else unknown.push(option);
      continue;
    }
    switch (key) {
      case SetupOption.Path:
        once(setup.path, key);
        setup.path = text(value, "PATH");
        break;
      case SetupOption.Authority:
        once(setup.authority, key);
        setup.authority = text(value, "AUTHORITY");
        break;
      case SetupOption.MoqtImplementation:
        once(setup.moqtImplementation, key);
        setup.moqtImplementation = value;
        break;
      case SetupOption.AuthorizationToken: {
        const token = decodeToken(new Reader(value));
        if (token.aliasType === "delete" || token.aliasType === "use-alias") {
          throw DecodeError.invalid("DELETE or USE_ALIAS token in SETUP");
        }
        (setup.authorizationTokens ??= []).push(token);
        break;
      }
      default:
        unknown.push(option);
    }
  }
  if (unknown.length > 0) setup.unknownOptions = unknown;
  return setup;
}

function setupOptions(s: Setup): KeyValuePair[] {
  const options: KeyValuePair[] = [...(s.unknownOptions ?? [])];
  if (s.path !== undefined) options.push({ key: SetupOption.Path, value: utf8(s.path) });
  for (const token of s.authorizationTokens ?? []) {
    options.push({ key: SetupOption.AuthorizationToken, value: encodeWith((w) => encodeToken(w, token)) });
  }
  if (s.authority !== undefined) options.push({ key: SetupOption.Authority, value: utf8(s.authority) });
  if (s.moqtImplementation !== undefined) {
    options.push({ key: SetupOption.MoqtImplementation, value: s.moqtImplementation });
  }
  if (s.maxAuthTokenCacheSize !== undefined) {
    options.push({ key: SetupOption.MaxAuthTokenCacheSize, value: s.maxAuthTokenCacheSize });
  }
  return options;
}

function decodeFetch(r: Reader): Fetch {
  const requestId = r.varint("request id");
  const kind = r.varint("fetch type");
  let fetchType: FetchType;
  if (kind === 1) {
    const { namespace, name } = decodeTrack(r);
    fetchType = {
      kind: "standalone",
      trackNamespace: namespace,
      trackName: name,
      start: decodeLocation(r),
      end: decodeLocation(r),
    };
  } else if (kind === 2 || kind === 3) {
    fetchType = {
      kind: kind === 2 ? "relative-joining" : "absolute-joining",
      joiningRequestId: r.varint("joining request id"),
      joiningStart: r.varint("joining start"),
    };
  } else {
    throw DecodeError.invalid("fetch type");
  }
  return { type: "FETCH", requestId, fetchType, parameters: decodeParameters(r, "fetch") };
}

/** Reason phrases are at most 1024 bytes; cut at a character boundary. */
function truncateReason(s: string): string {
  let bytes = utf8(s);
  if (bytes.length <= MAX_REASON_PHRASE_LEN) return s;
  let cut = MAX_REASON_PHRASE_LEN;
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  bytes = bytes.subarray(0, cut);
  return new TextDecoder().decode(bytes);
}
