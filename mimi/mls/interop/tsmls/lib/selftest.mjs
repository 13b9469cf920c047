// self-test: proves the harness against itself, before any Go code exists.
//
//  A. ts-to-go with a ts-mls stand-in for the Go member, then verify of that
//     transcript by the stand-in (it joins from the first Welcome and must
//     follow every later step, including the external join, the removal and
//     the GroupContextExtensions commit).
//  B. go-to-ts prepare (dave, erin), a ts-mls "gopher" playing the Go side
//     (adds dave and erin in separate commits, custom proposal, removes dave
//     together with a GroupContextExtensions), then verify by dave and erin.
//  C. verify must reject tampered transcripts (wrong plaintext, wrong epoch
//     authenticator).

import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HarnessError, toHex, utf8, writeJson } from "./util.mjs";
import { CUSTOM_PROPOSAL_TYPE, decodeKeyPackageMessage, encodeKeyPackageMessage, newMember, privateToJson } from "./suite.mjs";
import { GO_MEMBER_NAME, CUSTOM_PROPOSAL_BODY, requiredCapabilitiesExtensions, runTsToGo } from "./scenario.mjs";
import { Group, Transcript } from "./transcript.mjs";
import { assertRoundTrip, withProvisionalExtensions } from "./wire.mjs";
import { prepareMembers, runVerify, verifyFailures } from "./verify.mjs";

// A stand-in for the Go member: its public half in go_member.json form,
// its private half in ts_members.json form so verify can play it.
export async function makeStandIn(suite) {
  const m = await newMember(suite, GO_MEMBER_NAME, [CUSTOM_PROPOSAL_TYPE]);
  const keyPackage = toHex(encodeKeyPackageMessage(m.keyPackage));
  return {
    goMember: { cipher_suite: suite.id, key_package: keyPackage },
    members: { cipher_suite: suite.id, members: [{ name: GO_MEMBER_NAME, key_package: keyPackage, private: privateToJson(m.privatePackage) }] },
  };
}

// Every hex MLSMessage in a transcript must decode and re-encode exactly.
export function checkTranscriptEncodings(doc) {
  for (const [i, s] of doc.steps.entries()) {
    for (const field of ["commit", "proposal", "message", "welcome", "group_info"]) {
      if (typeof s[field] === "string") assertRoundTrip(s[field], `step ${i} ${field}`);
    }
  }
}

// Plays the Go side of go-to-ts with ts-mls, to exercise prepare + verify.
async function simulateGoSide(suite, membersDoc) {
  const groupId = crypto.getRandomValues(new Uint8Array(16));
  const t = new Transcript(suite, groupId);
  const g = new Group(suite, t);
  const gopher = await newMember(suite, "gopher", [CUSTOM_PROPOSAL_TYPE]);
  const kps = membersDoc.members.map((m) => decodeKeyPackageMessage(m.key_package, m.name));
  const add = (kp) => ({ proposalType: "add", add: { keyPackage: kp } });
  await g.create("gopher", groupId, gopher);
  await g.commit("gopher", { inline: [add(kps[0])], note: "adds dave" });
  await g.application("gopher", "gopher: hi dave");
  await g.commit("gopher", { inline: [add(kps[1])], note: "adds erin" });
  await g.application("gopher", "gopher: hi erin");
  await g.commit("gopher", { inline: [{ proposalType: CUSTOM_PROPOSAL_TYPE, proposalData: utf8(CUSTOM_PROPOSAL_BODY) }], note: "custom 0xf001" });
  await g.commit("gopher", { note: "empty commit" });
  const exts = requiredCapabilitiesExtensions();
  await g.commit("gopher", {
    inline: [{ proposalType: "remove", remove: { removed: 1 } }, { proposalType: "group_context_extensions", groupContextExtensions: { extensions: exts } }],
    cs: withProvisionalExtensions(suite.cs, exts),
    note: "removes dave + GroupContextExtensions",
  });
  await g.application("gopher", "gopher: bye dave");
  return t.doc;
}

function expect(cond, what) {
  if (!cond) throw new HarnessError(`self-test: ${what}`);
  console.error(`ok   ${what}`);
}

function expectVerifyOk(results, what) {
  const failures = verifyFailures(results);
  if (failures.length > 0) throw new HarnessError(`self-test: ${what}:\n  ${failures.join("\n  ")}`);
  console.error(`ok   ${what}`);
}

export async function runSelfTest(suite, keepDir) {
  const dir = keepDir ?? mkdtempSync(join(tmpdir(), "tsmls-interop-"));
  mkdirSync(dir, { recursive: true });
  console.error(`self-test: suite ${suite.id} (${suite.name}), files in ${dir}`);

  // A.
  const standIn = await makeStandIn(suite);
  const doc = await runTsToGo(suite, decodeKeyPackageMessage(standIn.goMember.key_package, "stand-in"));
  writeJson(join(dir, "go_member.json"), standIn.goMember);
  writeJson(join(dir, "standin_members.json"), standIn.members);
  writeJson(join(dir, "transcript.json"), doc);
  checkTranscriptEncodings(doc);
  expect(true, `ts-to-go: ${doc.steps.length} steps, every message re-encodes identically`);
  const resA = await runVerify(standIn.members, doc);
  writeJson(join(dir, "standin_results.json"), resA);
  expectVerifyOk(resA, "verify: stand-in Go member follows the ts-to-go transcript");
  const commits = doc.steps.filter((s) => s.op === "commit");
  const apps = doc.steps.filter((s, i) => s.op === "application" && i > doc.steps.indexOf(commits[0]));
  const r = resA.members[0];
  expect(r.joined_epoch === 1 && r.epochs.length === commits.length, `stand-in saw all ${commits.length} epochs`);
  expect(r.plaintexts.length === apps.length, `stand-in decrypted all ${apps.length} application messages`);

  // B.
  const members = await prepareMembers(suite);
  writeJson(join(dir, "ts_members.json"), members);
  const goDoc = await simulateGoSide(suite, members);
  writeJson(join(dir, "go_transcript.json"), goDoc);
  checkTranscriptEncodings(goDoc);
  const resB = await runVerify(members, goDoc);
  writeJson(join(dir, "results.json"), resB);
  expectVerifyOk(resB, "verify: dave and erin follow a simulated Go transcript");
  const [dave, erin] = resB.members;
  expect(dave.joined_epoch === 1 && erin.joined_epoch === 2, "dave joined at epoch 1, erin at epoch 2");
  expect(dave.removed_epoch === 5 && erin.epochs.at(-1)?.epoch === 5, "dave saw his removal, erin reached epoch 5");

  // C.
  const tampered = structuredClone(goDoc);
  const app = tampered.steps.findLast((s) => s.op === "application");
  app.plaintext = app.plaintext.replace(/^../, (b) => (b === "00" ? "01" : "00"));
  expect(verifyFailures(await runVerify(members, tampered)).length > 0, "verify rejects a wrong plaintext");
  const tampered2 = structuredClone(goDoc);
  const commit = tampered2.steps.findLast((s) => s.op === "commit");
  commit.epoch_authenticator = "00".repeat(commit.epoch_authenticator.length / 2);
  expect(verifyFailures(await runVerify(members, tampered2)).length > 0, "verify rejects a wrong epoch authenticator");

  console.error("self-test: PASS");
}
