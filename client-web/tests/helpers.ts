import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DecodeError } from "../src/coding";

/** One entry of moq/vectors/{control,data}.json, read from the Rust crate (never copied). */
export interface Vector {
  name: string;
  hex: string;
  fields: string;
  message?: string;
  kind?: string;
}

export function loadVectors(file: "control" | "data"): Vector[] {
  const path = fileURLToPath(new URL(`../../moq/vectors/${file}.json`, import.meta.url));
  const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!Array.isArray(parsed)) throw new Error(`${path} is not an array`);
  return parsed as Vector[];
}

export function hex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The DecodeError `f` throws, or undefined; any other exception fails the test. */
export function catchDecode(f: () => unknown): DecodeError | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) return e;
    throw e;
  }
  return undefined;
}
