// Cipher suites, capabilities and KeyPackages for harness members.
//
// Every KeyPackage is built with generateKeyPackageWithKey and a signature
// key pair we generate ourselves, for two reasons:
//   * ts-mls 1.6.4's own P-256 keygen returns a *compressed* SEC1 point,
//     while RFC 9420 section 5.1.1 requires the uncompressed form; so for
//     suite 2 we derive the public key with @noble/curves ourselves.
//   * for Ed25519 the WebCrypto keygen used by ts-mls hands back a PKCS#8
//     blob; we keep the 32-byte seed instead (ts-mls signs with either), so
//     the private JSON holds the RFC 8032 form any implementation can read.

import * as mls from "ts-mls";
import { getCiphersuiteNameFromId } from "ts-mls/crypto/ciphersuite.js";
import { p256 } from "@noble/curves/nist.js";
import { HarnessError, UsageError, fromHex, toHex, utf8, decodeExact } from "./util.mjs";

// The private-use proposal type exercised by the scenario (RFC 9420 17.4,
// 0xF000-0xFFFF). ts-mls and the Go side both carry it as uint16 type +
// opaque<V> body.
export const CUSTOM_PROPOSAL_TYPE = 0xf001;
// SelfRemove, draft-ietf-mls-extensions. Listed only in the capabilities of
// the go-to-ts members (see README: ts-mls cannot actually decode it).
export const SELF_REMOVE_PROPOSAL_TYPE = 0x000a;

export const SUPPORTED_SUITES = [1, 2];

export async function loadSuite(id) {
  if (!SUPPORTED_SUITES.includes(id)) {
    throw new UsageError(`cipher suite ${id} is not supported by this harness (supported: ${SUPPORTED_SUITES.join(", ")})`);
  }
  const name = getCiphersuiteNameFromId(id);
  const cs = await mls.getCiphersuiteImpl(mls.getCiphersuiteFromName(name));
  return { id, name, cs };
}

export function parseSuiteArg(value) {
  if (value === undefined) return undefined;
  const id = Number(value);
  if (!Number.isInteger(id)) throw new UsageError(`--suite must be a number, got ${value}`);
  return id;
}

// Explicit capabilities instead of defaultCapabilities(): the latter adds
// random GREASE values, which would make runs differ for no benefit.
export function capabilities(suite, proposals, extensions = []) {
  return {
    versions: ["mls10"],
    ciphersuites: [suite.name],
    extensions: [...extensions],
    proposals: [...proposals],
    credentials: ["basic"],
  };
}

// "0xf002,7" -> [0xf002, 7]; for extra capability entries on the command line.
export function parseTypeList(value, flag) {
  if (value === undefined) return [];
  return value.split(",").map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new UsageError(`${flag}: ${JSON.stringify(part)} is not a uint16`);
    return n;
  });
}

// A lifetime that any validator accepts now; ts-mls' default spans
// 0..2^63-1, which some implementations treat as suspicious. 28 days stays
// under the (not yet enforced) one-month maximumTotalLifetime of ts-mls.
export function lifetimeAroundNow() {
  const now = BigInt(Math.floor(Date.now() / 1000));
  return { notBefore: now - 3600n, notAfter: now + 28n * 86400n };
}

export function identityFor(name) {
  return `mimi://a.example/u/${name}`;
}

async function signatureKeyPair(suite) {
  switch (suite.id) {
    case 1: {
      const kp = await suite.cs.signature.keygen();
      // WebCrypto export: PKCS#8 (16-byte header + 32-byte seed).
      const seed = kp.signKey.length === 48 ? kp.signKey.slice(16) : kp.signKey;
      if (seed.length !== 32) throw new HarnessError(`unexpected Ed25519 private key length ${kp.signKey.length}`);
      return { signKey: seed, publicKey: kp.publicKey };
    }
    case 2: {
      const signKey = p256.utils.randomSecretKey();
      return { signKey, publicKey: p256.getPublicKey(signKey, false) };
    }
  }
  throw new HarnessError(`no signature key generation for suite ${suite.id}`);
}

// Returns { name, keyPackage, privatePackage } for a fresh member.
export async function newMember(suite, name, proposals, extensions = []) {
  const credential = { credentialType: "basic", identity: utf8(identityFor(name)) };
  const keys = await signatureKeyPair(suite);
  const { publicPackage, privatePackage } = await mls.generateKeyPackageWithKey(
    credential,
    capabilities(suite, proposals, extensions),
    lifetimeAroundNow(),
    [],
    keys,
    suite.cs,
  );
  return { name, keyPackage: publicPackage, privatePackage };
}

export function encodeKeyPackageMessage(kp) {
  return mls.encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp });
}

export function decodeKeyPackageMessage(hex, what) {
  const msg = decodeExact(mls.decodeMlsMessage, fromHex(hex, what), what);
  if (msg.wireformat !== "mls_key_package") throw new HarnessError(`${what} is a ${msg.wireformat}, not an mls_key_package`);
  return msg.keyPackage;
}

// The "private" object of ts_members.json: exactly what joinGroup needs
// besides the public KeyPackage.
export function privateToJson(pp) {
  return {
    init_private_key: toHex(pp.initPrivateKey),
    hpke_private_key: toHex(pp.hpkePrivateKey),
    signature_private_key: toHex(pp.signaturePrivateKey),
  };
}

export function privateFromJson(obj, what) {
  if (obj === null || typeof obj !== "object") throw new HarnessError(`${what}: "private" must be an object`);
  return {
    initPrivateKey: fromHex(obj.init_private_key, `${what}.init_private_key`),
    hpkePrivateKey: fromHex(obj.hpke_private_key, `${what}.hpke_private_key`),
    signaturePrivateKey: fromHex(obj.signature_private_key, `${what}.signature_private_key`),
  };
}

export function suiteIdOfName(name) {
  const id = mls.ciphersuites[name];
  if (id === undefined) throw new HarnessError(`unknown cipher suite ${name}`);
  return id;
}
