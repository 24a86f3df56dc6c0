import { DecodeError } from "./error";
import { MAX_VARINT_LEN, varintLenFromFirstByte } from "./varint";

const textDecoder = new TextDecoder("utf-8", { fatal: true });
const lossyDecoder = new TextDecoder("utf-8");

/**
 * A cursor over bytes. Every read throws {@link DecodeError} `incomplete` when the bytes end
 * inside the value; callers decode from a fresh Reader and commit (`pos`) only on success.
 */
export class Reader {
  pos = 0;

  constructor(
    readonly bytes: Uint8Array,
    pos = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  hasRemaining(): boolean {
    return this.pos < this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw DecodeError.incomplete();
    return this.bytes[this.pos++] ?? 0;
  }

  u16(): number {
    if (this.remaining < 2) throw DecodeError.incomplete();
    const v = ((this.bytes[this.pos] ?? 0) << 8) | (this.bytes[this.pos + 1] ?? 0);
    this.pos += 2;
    return v;
  }

  /** A varint as a bigint (any 64-bit value). */
  varintBig(): bigint {
    if (this.pos >= this.end) throw DecodeError.incomplete();
    const first = this.bytes[this.pos] ?? 0;
    const len = varintLenFromFirstByte(first);
    if (this.remaining < len) throw DecodeError.incomplete();
    this.pos++;
    let value = len >= MAX_VARINT_LEN ? 0n : BigInt(first & (0xff >> len));
    const rest = len >= MAX_VARINT_LEN ? 8 : len - 1;
    for (let i = 0; i < rest; i++) {
      value = (value << 8n) | BigInt(this.bytes[this.pos++] ?? 0);
    }
    return value;
  }

  /** A varint that must fit a JS number exactly (IDs, lengths, counts). */
  varint(what = "varint"): number {
    const v = this.varintBig();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw DecodeError.tooLarge(what, v, Number.MAX_SAFE_INTEGER);
    return Number(v);
  }

  /** Exactly `len` bytes, as a view (no copy). */
  bytesExact(len: number): Uint8Array {
    if (this.remaining < len) throw DecodeError.incomplete();
    const out = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** The rest of the bounded input. */
  rest(): Uint8Array {
    return this.bytesExact(this.remaining);
  }

  /** A varint length, refused above `limit` before anything is buffered, then the bytes. */
  lengthPrefixed(what: string, limit: number): Uint8Array {
    const len = this.varintBig();
    if (len > BigInt(limit)) throw DecodeError.tooLarge(what, len, limit);
    return this.bytesExact(Number(len));
  }

  /** A length-prefixed strict UTF-8 string. */
  string(what: string, limit: number): string {
    const bytes = this.lengthPrefixed(what, limit);
    try {
      return textDecoder.decode(bytes);
    } catch {
      throw DecodeError.invalid(what);
    }
  }

  /** A length-prefixed diagnostic string; invalid UTF-8 is replaced rather than refused. */
  lossyString(what: string, limit: number): string {
    return lossyDecoder.decode(this.lengthPrefixed(what, limit));
  }

  bool(what: string): boolean {
    const b = this.u8();
    if (b === 0) return false;
    if (b === 1) return true;
    throw DecodeError.invalid(what);
  }

  /** A sub-reader over the next `len` bytes (advancing this one past them). */
  sub(len: number): Reader {
    if (this.remaining < len) throw DecodeError.incomplete();
    const r = new Reader(this.bytes, this.pos, this.pos + len);
    this.pos += len;
    return r;
  }
}

/** Map "ran out of bytes" to a malformed error where the length was already known. */
export function incompleteAs<T>(f: () => T, error: () => DecodeError): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof DecodeError && e.incomplete) throw error();
    throw e;
  }
}
