/**
 * A buffered reader over a WebTransport receive stream: decoders run against the buffered bytes
 * and, on "need more bytes", the next chunk is read and the decode retried from the same place.
 */
import { DecodeError, Reader } from "../coding";

export class StreamReader {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  private eof = false;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    /** The most bytes held at once (a header or object larger than this is refused). */
    private readonly maxBuffered: number,
  ) {}

  /**
   * Decode one value. Returns `undefined` when the stream ended cleanly at a value boundary;
   * throws a malformed DecodeError, or an "ended inside a value" error when the stream stops
   * mid-value.
   */
  async decode<T>(f: (r: Reader) => T): Promise<T | undefined> {
    return this.run(f, true);
  }

  /** Like {@link decode}, but leaves the bytes in place for the next decode. */
  async peek<T>(f: (r: Reader) => T): Promise<T | undefined> {
    return this.run(f, false);
  }

  private async run<T>(f: (r: Reader) => T, commit: boolean): Promise<T | undefined> {
    for (;;) {
      if (this.end > this.start) {
        const r = new Reader(this.buf, this.start, this.end);
        try {
          const value = f(r);
          if (commit) this.start = r.pos;
          return value;
        } catch (e) {
          if (!(e instanceof DecodeError && e.incomplete)) throw e;
        }
      }
      if (this.eof) {
        if (this.end === this.start) return undefined;
        throw DecodeError.invalid("stream ended inside a value");
      }
      await this.fill();
    }
  }

  /** True when the stream ended and every byte was consumed. */
  async finished(): Promise<boolean> {
    while (this.end === this.start && !this.eof) await this.fill();
    return this.end === this.start && this.eof;
  }

  async cancel(reason?: unknown): Promise<void> {
    this.eof = true;
    try {
      await this.reader.cancel(reason);
    } catch {
      // already closed or errored
    }
  }

  private async fill(): Promise<void> {
    const { value, done } = await this.reader.read();
    if (done) {
      this.eof = true;
      return;
    }
    if (!value || value.length === 0) return;
    if (this.end - this.start + value.length > this.maxBuffered) {
      throw DecodeError.tooLarge("buffered stream bytes", this.end - this.start + value.length, this.maxBuffered);
    }
    if (this.end + value.length > this.buf.length) {
      const live = this.end - this.start;
      const size = Math.max(this.buf.length, 1024, (live + value.length) * 2);
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.start = 0;
      this.end = live;
    }
    this.buf.set(value, this.end);
    this.end += value.length;
  }
}
