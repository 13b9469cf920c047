// Wire-level glue around ts-mls 1.6.4: MLSMessage (de)serialisation,
// RFC-conformant GroupInfo construction and checking, and the narrowly
// scoped shims that work around ts-mls defects. Every shim wraps the
// CiphersuiteImpl passed to one single ts-mls call; nothing is patched
// globally.

import * as mls from "ts-mls";
import { createGroupInfo } from "ts-mls/createCommit.js";
import { encodeRatchetTree, decodeRatchetTree } from "ts-mls/ratchetTree.js";
import { encodeGroupContext, decodeGroupContext } from "ts-mls/groupContext.js";
import { verifyGroupInfoSignature } from "ts-mls/groupInfo.js";
import { encodeLeafNodeTBS } from "ts-mls/leafNode.js";
import { getOwnLeafNode } from "ts-mls/clientState.js";
import { signWithLabel } from "ts-mls/crypto/signature.js";
import { varLenDataEncoder, decodeVarLenData } from "ts-mls/codec/variableLength.js";
import { encode, composeBufferEncoders } from "ts-mls/codec/tlsEncoder.js";
import { leafToNodeIndex, toLeafIndex } from "ts-mls/treemath.js";
import { HarnessError, bytesEqual, decodeExact, fromHex, toHex } from "./util.mjs";

const encodeOpaque = encode(varLenDataEncoder);
const encodeEncryptContext = encode(composeBufferEncoders([varLenDataEncoder, varLenDataEncoder]));

// ---------------------------------------------------------------- MLSMessage

export function encodeMessage(msg) {
  return mls.encodeMlsMessage({ version: "mls10", ...msg });
}

export function decodeMessage(hex, what) {
  return decodeExact(mls.decodeMlsMessage, fromHex(hex, what), what);
}

export function expectWireformat(msg, wireformats, what) {
  if (!wireformats.includes(msg.wireformat)) {
    throw new HarnessError(`${what} is a ${msg.wireformat}, expected ${wireformats.join(" or ")}`);
  }
  return msg;
}

// Re-encoding what we decoded must reproduce the input byte for byte; run
// over every message of a transcript this catches codec asymmetries early.
export function assertRoundTrip(hex, what) {
  const msg = decodeMessage(hex, what);
  const again = toHex(mls.encodeMlsMessage(msg));
  if (again !== hex) throw new HarnessError(`${what} does not re-encode to the same bytes`);
  return msg;
}

// ------------------------------------------------------------- ratchet tree

export function ratchetTreeHex(state) {
  // ts-mls strips trailing blank nodes here, as RFC 9420 12.4.3.3 requires.
  return toHex(encodeRatchetTree(state.ratchetTree));
}

export function decodeRatchetTreeHex(hex, what) {
  return decodeExact(decodeRatchetTree, fromHex(hex, what), what);
}

// --------------------------------------------------------------- GroupInfo

// ts-mls 1.6.4 writes the external_pub extension_data as the bare HPKE key.
// RFC 9420 12.4.3.2 defines it as struct { HPKEPublicKey external_pub; },
// i.e. the key inside an opaque<V>. These two convert between the forms.
export function externalPubExtensionData(rawKey) {
  return encodeOpaque(rawKey);
}

export function externalPubFromExtensionData(data) {
  return decodeExact(decodeVarLenData, data, "external_pub extension_data");
}

async function externalPubKey(state, cs) {
  const kp = await cs.hpke.deriveKeyPair(state.keySchedule.externalSecret);
  return cs.hpke.exportPublicKey(kp.publicKey);
}

// GroupInfo for the signer's current epoch, signed by it, carrying an
// RFC-form external_pub and the ratchet_tree. We cannot use ts-mls'
// createGroupInfoWithExternalPubAndRatchetTree because of the external_pub
// encoding above, so we assemble the same thing through createGroupInfo.
export async function groupInfoMessage(state, cs) {
  const extensions = [
    { extensionType: "external_pub", extensionData: externalPubExtensionData(await externalPubKey(state, cs)) },
    { extensionType: "ratchet_tree", extensionData: encodeRatchetTree(state.ratchetTree) },
  ];
  const groupInfo = await createGroupInfo(state.groupContext, state.confirmationTag, state, extensions, cs);
  return encodeMessage({ wireformat: "mls_group_info", groupInfo });
}

// Checks a transcript GroupInfo against the state of a member who has just
// entered that epoch: same GroupContext, same confirmation tag, valid
// signature by the claimed signer, and (if present) an RFC-form external_pub
// matching the epoch's external_secret. Returns a list of problems.
export async function checkGroupInfo(hex, state, cs) {
  const problems = [];
  const msg = expectWireformat(decodeMessage(hex, "group_info"), ["mls_group_info"], "group_info");
  const gi = msg.groupInfo;
  if (!bytesEqual(encodeGroupContext(gi.groupContext), encodeGroupContext(state.groupContext))) {
    problems.push(`group_info GroupContext (epoch ${gi.groupContext.epoch}) differs from the member's (epoch ${state.groupContext.epoch})`);
  }
  if (!bytesEqual(gi.confirmationTag, state.confirmationTag)) problems.push("group_info confirmation_tag differs from the member's");
  const signer = state.ratchetTree[leafToNodeIndex(toLeafIndex(gi.signer))];
  if (signer?.nodeType !== "leaf") {
    problems.push(`group_info signer ${gi.signer} is not a member`);
  } else if (!(await verifyGroupInfoSignature(gi, signer.leaf.signaturePublicKey, cs.signature))) {
    problems.push("group_info signature does not verify");
  }
  const ext = gi.extensions.find((e) => e.extensionType === "external_pub");
  if (ext !== undefined) {
    let key;
    try {
      key = externalPubFromExtensionData(ext.extensionData);
    } catch (e) {
      problems.push(`group_info external_pub is not an opaque<V> HPKE key (RFC 9420 12.4.3.2): ${e.message}`);
    }
    if (key !== undefined && !bytesEqual(key, await externalPubKey(state, cs))) {
      problems.push("group_info external_pub does not match the epoch's external_secret");
    }
  }
  return problems;
}

// ------------------------------------------------------------------- shims

// For joinGroupExternal: ts-mls feeds the external_pub extension_data
// straight to importPublicKey, expecting the bare key. Map exactly the
// RFC-form bytes of this GroupInfo to the bare key; every other key (tree
// nodes) passes through untouched.
export function withRfcExternalPub(cs, groupInfo) {
  const ext = groupInfo.extensions.find((e) => e.extensionType === "external_pub");
  if (ext === undefined) throw new HarnessError("GroupInfo has no external_pub extension");
  const wrapped = ext.extensionData;
  const bare = externalPubFromExtensionData(wrapped);
  return {
    ...cs,
    hpke: {
      ...cs.hpke,
      importPublicKey: (k) => cs.hpke.importPublicKey(bytesEqual(k, wrapped) ? bare : k),
    },
  };
}

// For a commit carrying GroupContextExtensions: ts-mls' createUpdatePath
// encrypts path secrets under a provisional GroupContext holding the *old*
// extensions, but RFC 9420 12.4.2 (and ts-mls' own receiver) use the *new*
// ones. Rewrite the context inside the HPKE info of UpdatePathNode
// encryptions only.
export function withProvisionalExtensions(cs, newExtensions) {
  const label = new TextEncoder().encode("MLS 1.0 UpdatePathNode");
  return {
    ...cs,
    hpke: {
      ...cs.hpke,
      seal: (publicKey, plaintext, info, aad) => {
        const [infoLabel, offset] = decodeVarLenData(info, 0);
        if (bytesEqual(infoLabel, label)) {
          const context = decodeExact(decodeVarLenData, info.subarray(offset), "EncryptContext.context");
          const gc = decodeExact(decodeGroupContext, context, "provisional GroupContext");
          info = encodeEncryptContext([infoLabel, encodeGroupContext({ ...gc, extensions: newExtensions })]);
        }
        return cs.hpke.seal(publicKey, plaintext, info, aad);
      },
    },
  };
}

// ------------------------------------------------------- Update proposals

// ts-mls 1.6.4 can process Update proposals but has no API to create one.
// Build the LeafNode (source=update, RFC 9420 7.2 / 12.1.2) from the
// member's current leaf with a fresh HPKE key, signed over LeafNodeTBS with
// group_id and leaf_index. Returns the proposal and the new HPKE private
// key, which the caller must install once the Update is committed.
export async function makeUpdateProposal(state, cs) {
  const own = getOwnLeafNode(state);
  const kp = await cs.hpke.generateKeyPair();
  const data = {
    hpkePublicKey: await cs.hpke.exportPublicKey(kp.publicKey),
    signaturePublicKey: own.signaturePublicKey,
    credential: own.credential,
    capabilities: own.capabilities,
    leafNodeSource: "update",
    extensions: own.extensions,
  };
  const tbs = { ...data, groupId: state.groupContext.groupId, leafIndex: state.privatePath.leafIndex };
  const signature = await signWithLabel(state.signaturePrivateKey, "LeafNodeTBS", encodeLeafNodeTBS(tbs), cs.signature);
  return {
    proposal: { proposalType: "update", update: { leafNode: { ...data, signature } } },
    hpkePrivateKey: await cs.hpke.exportPrivateKey(kp.privateKey),
  };
}

// ts-mls keeps the private key of a member's own leaf in privatePath; when
// that member's Update is committed it does not swap in the new key, so it
// could not decrypt the committer's UpdatePath. Install it just before the
// member processes the commit.
export function installLeafPrivateKey(state, hpkePrivateKey) {
  const node = leafToNodeIndex(toLeafIndex(state.privatePath.leafIndex));
  return {
    ...state,
    privatePath: { ...state.privatePath, privateKeys: { ...state.privatePath.privateKeys, [node]: hpkePrivateKey } },
  };
}
