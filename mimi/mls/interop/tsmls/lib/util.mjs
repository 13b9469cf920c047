// Small helpers shared by the harness: hex, byte comparison, JSON files,
// and a single error type so the CLI can tell harness failures (exit 1)
// from usage mistakes (exit 2).

import { readFileSync, writeFileSync } from "node:fs";

export class HarnessError extends Error {}
export class UsageError extends Error {}

export function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

export function fromHex(hex, what = "hex value") {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) {
    throw new HarnessError(`${what} is not a lowercase hex string`);
  }
  return new Uint8Array(Buffer.from(hex, "hex"));
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const utf8 = (s) => new TextEncoder().encode(s);

export function readJson(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read ${path}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HarnessError(`${path} is not valid JSON: ${e.message}`);
  }
}

export function writeJson(path, value) {
  writeFileSync(path, JSON.stringify(value, null, 2) + "\n");
}

// Runs a decoder from ts-mls and insists it consumed every byte: trailing
// garbage after a valid structure is an encoding bug we want to see.
export function decodeExact(decoder, bytes, what) {
  const res = decoder(bytes, 0);
  if (res === undefined) throw new HarnessError(`cannot decode ${what}`);
  const [value, end] = res;
  if (end !== bytes.length) throw new HarnessError(`${what}: ${bytes.length - end} trailing bytes after decoding`);
  return value;
}
