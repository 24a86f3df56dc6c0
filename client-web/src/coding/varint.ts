/**
 * draft-18 variable-length integers (§1.4.1): the count of leading 1 bits in the first byte
 * gives the length (1 to 9 bytes). Non-minimal encodings are valid on input; we always write
 * the shortest form. Unlike QUIC varints these cover the full 64-bit range.
 */
export const MAX_VARINT_LEN = 9;
export const U64_MAX = (1n << 64n) - 1n;

/** The number of bytes {@link encodeVarint} writes for `value`. */
export function varintLen(value: bigint | number): number {
  const v = BigInt(value);
  if (v < 0n || v > U64_MAX) throw new RangeError(`varint out of range: ${v}`);
  for (let len = 1; len <= 8; len++) {
    if (v < 1n << BigInt(7 * len)) return len;
  }
  return 9;
}

/** The encoding of `value` in its shortest form. */
export function encodeVarint(value: bigint | number): Uint8Array {
  const v = BigInt(value);
  const len = varintLen(v);
  const out = new Uint8Array(len);
  if (len === 9) {
    out[0] = 0xff;
    new DataView(out.buffer).setBigUint64(1, v);
    return out;
  }
  let rest = v;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  // Prefix of (len - 1) one bits then a zero, occupying the top of the first byte.
  const prefix = (0xff << (9 - len)) & 0xff;
  out[0] = (out[0] ?? 0) | prefix;
  return out;
}

/** The byte length of a varint from its first byte. */
export function varintLenFromFirstByte(first: number): number {
  let ones = 0;
  while (ones < 8 && (first & (0x80 >> ones)) !== 0) ones++;
  return ones + 1;
}
