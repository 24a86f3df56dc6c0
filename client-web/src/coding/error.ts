/**
 * Decode errors, mirroring `banyan_moq::coding::DecodeError`.
 *
 * `incomplete` is not a failure: the input ended early and the caller should read more.
 * Every other kind is malformed input and maps to a session error code.
 */
export type DecodeErrorKind =
  | "incomplete"
  | "too-large"
  | "unknown-message"
  | "unknown-stream-type"
  | "unknown-datagram-type"
  | "unknown-parameter"
  | "duplicate-parameter"
  | "key-value-format"
  | "length-mismatch"
  | "invalid";

/** Session termination codes (draft-18 §3.4) that this client sends or interprets. */
export const SessionErrorCode = {
  NoError: 0x0,
  InternalError: 0x1,
  Unauthorized: 0x2,
  ProtocolViolation: 0x3,
  InvalidRequestId: 0x4,
  DuplicateTrackAlias: 0x5,
  KeyValueFormattingError: 0x6,
  InvalidPath: 0x8,
  MalformedPath: 0x9,
  GoawayTimeout: 0x10,
  ControlMessageTimeout: 0x11,
  DataStreamTimeout: 0x12,
  VersionNegotiationFailed: 0x15,
} as const;

export class DecodeError extends Error {
  override readonly name = "DecodeError";

  constructor(
    readonly kind: DecodeErrorKind,
    message: string,
  ) {
    super(message);
  }

  /** True when more input could complete the value. */
  get incomplete(): boolean {
    return this.kind === "incomplete";
  }

  /** The session termination code a receiver closes with for this error. */
  get sessionCode(): number {
    return this.kind === "key-value-format"
      ? SessionErrorCode.KeyValueFormattingError
      : SessionErrorCode.ProtocolViolation;
  }

  static incomplete(): DecodeError {
    return new DecodeError("incomplete", "need more bytes");
  }

  static tooLarge(what: string, size: bigint | number, limit: bigint | number): DecodeError {
    return new DecodeError("too-large", `${what} of ${size} exceeds the limit of ${limit}`);
  }

  static invalid(what: string): DecodeError {
    return new DecodeError("invalid", `invalid ${what}`);
  }

  static kvpFormat(key: number | bigint): DecodeError {
    return new DecodeError("key-value-format", `badly formatted key-value pair 0x${key.toString(16)}`);
  }
}

/** Why a value could not be encoded (e.g. a control message over 65535 bytes). */
export class EncodeError extends Error {
  override readonly name = "EncodeError";
}

/** True when `e` is the "need more bytes" decode error. */
export function isIncomplete(e: unknown): boolean {
  return e instanceof DecodeError && e.incomplete;
}
