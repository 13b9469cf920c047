// go-to-ts: KeyPackages for ts-mls members (prepare) and replay of a
// transcript made by another implementation (verify).

import * as mls from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { HarnessError, bytesEqual, fromHex, toHex } from "./util.mjs";
import {
  CUSTOM_PROPOSAL_TYPE,
  SELF_REMOVE_PROPOSAL_TYPE,
  decodeKeyPackageMessage,
  encodeKeyPackageMessage,
  loadSuite,
  newMember,
  privateFromJson,
  privateToJson,
} from "./suite.mjs";
import { checkGroupInfo, decodeMessage, decodeRatchetTreeHex, expectWireformat, ratchetTreeHex } from "./wire.mjs";

export const GO_TO_TS_MEMBERS = ["dave", "erin"];

// extra.proposals / extra.extensions: additional capability entries, e.g.
// GroupContext extension types the Go side's groups use (ts-mls refuses to
// join a group whose non-default GroupContext extensions it does not list).
export async function prepareMembers(suite, extra = {}, names = GO_TO_TS_MEMBERS) {
  const proposals = [...new Set([CUSTOM_PROPOSAL_TYPE, SELF_REMOVE_PROPOSAL_TYPE, ...(extra.proposals ?? [])])];
  const members = [];
  for (const name of names) {
    const m = await newMember(suite, name, proposals, extra.extensions ?? []);
    members.push({
      name,
      identity: new TextDecoder().decode(m.keyPackage.leafNode.credential.identity),
      key_package: toHex(encodeKeyPackageMessage(m.keyPackage)),
      private: privateToJson(m.privatePackage),
    });
  }
  return { cipher_suite: suite.id, members };
}

const STEP_OPS = new Set(["create", "commit", "proposal", "application"]);

function checkTranscriptShape(doc) {
  if (doc === null || typeof doc !== "object" || !Array.isArray(doc.steps)) {
    throw new HarnessError("transcript has no steps array");
  }
  if (!Number.isInteger(doc.cipher_suite)) throw new HarnessError("transcript has no integer cipher_suite");
  fromHex(doc.group_id, "transcript group_id");
  doc.steps.forEach((s, i) => {
    if (!STEP_OPS.has(s?.op)) throw new HarnessError(`step ${i}: unknown op ${JSON.stringify(s?.op)}`);
    if (typeof s.by !== "string") throw new HarnessError(`step ${i}: missing "by"`);
    if (!Number.isInteger(s.epoch)) throw new HarnessError(`step ${i}: missing integer "epoch"`);
  });
}

function messageEpoch(msg) {
  if (msg.wireformat === "mls_public_message") return Number(msg.publicMessage.content.epoch);
  return Number(msg.privateMessage.epoch);
}

// Compares the member's view after entering the epoch of a commit step with
// what the transcript claims, then records the epoch.
async function checkEpoch(result, step, state, cs) {
  const problems = [];
  const epoch = Number(state.groupContext.epoch);
  if (epoch !== step.epoch) problems.push(`member is at epoch ${epoch}, transcript says ${step.epoch}`);
  const ea = toHex(state.keySchedule.epochAuthenticator);
  if (ea !== step.epoch_authenticator) problems.push(`epoch_authenticator mismatch: member ${ea}, transcript ${step.epoch_authenticator}`);
  if (step.ratchet_tree != null && ratchetTreeHex(state) !== step.ratchet_tree) {
    problems.push("ratchet_tree in the transcript differs from the member's tree");
  }
  if (step.group_info != null) problems.push(...(await checkGroupInfo(step.group_info, state, cs)));
  result.epochs.push({ epoch, epoch_authenticator: ea });
  if (problems.length > 0) throw new HarnessError(problems.join("; "));
}

async function joinFromStep(m, step, cs) {
  if (step.op !== "commit" || step.welcome === null || step.welcome === undefined) return undefined;
  const welcome = expectWireformat(decodeMessage(step.welcome, "welcome"), ["mls_welcome"], "welcome").welcome;
  if (!welcome.secrets.some((s) => bytesEqual(s.newMember, m.ref))) return undefined;
  // The Welcome's GroupInfo may or may not carry ratchet_tree; ts-mls
  // prefers the extension and falls back to the transcript's tree.
  const tree = step.ratchet_tree ? decodeRatchetTreeHex(step.ratchet_tree, "ratchet_tree") : undefined;
  return mls.joinGroup(welcome, m.keyPackage, m.privatePackage, mls.emptyPskIndex, cs, tree);
}

async function replayStep(m, result, state, step, index, cs) {
  const field = { commit: "commit", proposal: "proposal", application: "message" }[step.op];
  if (field === undefined) throw new HarnessError(`unexpected ${step.op} step after the member joined`);
  const msg = expectWireformat(
    decodeMessage(step[field], step.op),
    ["mls_public_message", "mls_private_message"],
    step.op,
  );
  // A commit step records the epoch it creates; its message is framed in
  // the epoch before. Proposals and application messages carry the current.
  const framedEpoch = step.op === "commit" ? step.epoch - 1 : step.epoch;
  if (messageEpoch(msg) !== framedEpoch) {
    throw new HarnessError(`message is framed for epoch ${messageEpoch(msg)}, expected ${framedEpoch} from the step`);
  }
  const res = await mls.processMessage(msg, state, mls.emptyPskIndex, mls.acceptAll, cs);
  if (step.op === "application") {
    if (res.kind !== "applicationMessage") throw new HarnessError("message did not decrypt to application data");
    const got = toHex(res.message);
    result.plaintexts.push({ step: index, plaintext: got });
    if (got !== step.plaintext) throw new HarnessError(`plaintext mismatch: member ${got}, transcript ${step.plaintext}`);
    return res.newState;
  }
  if (res.kind !== "newState") throw new HarnessError(`${step.op} was processed as application data`);
  if (step.op === "commit") {
    if (res.newState.groupActiveState.kind === "removedFromGroup") {
      result.removed_epoch = step.epoch;
      return res.newState;
    }
    await checkEpoch(result, step, res.newState, cs);
  }
  return res.newState;
}

async function verifyMember(suite, entry, doc) {
  const result = { name: entry.name, joined_epoch: null, removed_epoch: null, epochs: [], plaintexts: [], errors: [] };
  const cs = suite.cs;
  const m = {
    keyPackage: decodeKeyPackageMessage(entry.key_package, `${entry.name}.key_package`),
    privatePackage: privateFromJson(entry.private, entry.name),
  };
  m.ref = await makeKeyPackageRef(m.keyPackage, cs.hash);
  let state;
  for (const [index, step] of doc.steps.entries()) {
    // A ts-mls member cannot process its own messages, and the Go side
    // cannot send on its behalf; tolerate them for self-made transcripts.
    if (step.by === entry.name) continue;
    try {
      if (state === undefined) {
        state = await joinFromStep(m, step, cs);
        if (state !== undefined) {
          result.joined_epoch = Number(state.groupContext.epoch);
          if (toHex(state.groupContext.groupId) !== doc.group_id) throw new HarnessError("Welcome is for another group_id");
          await checkEpoch(result, step, state, cs);
        }
        continue;
      }
      state = await replayStep(m, result, state, step, index, cs);
    } catch (e) {
      // The state is unusable after a failure; report and stop this member.
      result.errors.push(`step ${index} (${step.op} by ${step.by}): ${e.message}`);
      return result;
    }
    if (result.removed_epoch !== null) return result;
  }
  if (state === undefined) result.errors.push("never joined: no Welcome in the transcript is addressed to this member's KeyPackageRef");
  return result;
}

export async function runVerify(membersDoc, transcriptDoc) {
  checkTranscriptShape(transcriptDoc);
  if (!Array.isArray(membersDoc?.members) || membersDoc.members.length === 0) throw new HarnessError("members file lists no members");
  if (membersDoc.cipher_suite !== transcriptDoc.cipher_suite) {
    throw new HarnessError(`members are for suite ${membersDoc.cipher_suite}, transcript uses ${transcriptDoc.cipher_suite}`);
  }
  const suite = await loadSuite(transcriptDoc.cipher_suite);
  const members = [];
  for (const entry of membersDoc.members) members.push(await verifyMember(suite, entry, transcriptDoc));
  return { cipher_suite: suite.id, members };
}

export function verifyFailures(results) {
  return results.members.flatMap((m) => m.errors.map((e) => `${m.name}: ${e}`));
}
