import { encodeVarint } from "./varint";

const textEncoder = new TextEncoder();

/** A growable byte buffer that the encoders append to. */
export class Writer {
  private buf = new Uint8Array(64);
  private len = 0;

  get length(): number {
    return this.len;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf[this.len++] = (v >> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  varint(v: number | bigint): this {
    return this.bytes(encodeVarint(v));
  }

  bytes(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  lengthPrefixed(b: Uint8Array): this {
    return this.varint(b.length).bytes(b);
  }

  string(s: string): this {
    return this.lengthPrefixed(textEncoder.encode(s));
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Encode with a fresh writer. */
export function encodeWith(f: (w: Writer) => void): Uint8Array {
  const w = new Writer();
  f(w);
  return w.finish();
}

export function utf8(s: string): Uint8Array {
  return textEncoder.encode(s);
}
