// The ts-to-go scenario: a group run entirely by ts-mls members (alice, bob,
// carol) that adds one member whose private keys live elsewhere (the Go
// member, or a stand-in in self-test). See README "ts-to-go" for the steps.

import * as mls from "ts-mls";
import { HarnessError, utf8 } from "./util.mjs";
import { CUSTOM_PROPOSAL_TYPE, newMember } from "./suite.mjs";
import { Group, Transcript } from "./transcript.mjs";
import { decodeMessage, expectWireformat, makeUpdateProposal, withProvisionalExtensions, withRfcExternalPub } from "./wire.mjs";

export const GO_MEMBER_NAME = "go";
export const CUSTOM_PROPOSAL_BODY = "mimi-hub interop: private-use proposal 0xf001";

// The GroupContextExtensions step sets required_capabilities demanding the
// custom proposal type; every member lists it, so the proposal is valid.
export function requiredCapabilitiesExtensions() {
  return [
    {
      extensionType: "required_capabilities",
      extensionData: mls.encodeRequiredCapabilities({
        extensionTypes: [],
        proposalTypes: [CUSTOM_PROPOSAL_TYPE],
        credentialTypes: ["basic"],
      }),
    },
  ];
}

export function checkForeignKeyPackage(suite, kp, who) {
  if (kp.cipherSuite !== suite.name) {
    throw new HarnessError(`${who} KeyPackage is for ${kp.cipherSuite}, the group uses ${suite.name}`);
  }
  if (!kp.leafNode.capabilities.proposals.includes(CUSTOM_PROPOSAL_TYPE)) {
    throw new HarnessError(`${who} KeyPackage does not list proposal type 0xf001 in capabilities.proposals`);
  }
}

function lastGroupInfo(t) {
  const steps = t.doc.steps;
  for (let i = steps.length - 1; i >= 0; i--) if (steps[i].group_info) return [i, steps[i].group_info];
  throw new HarnessError("no group_info recorded yet");
}

export async function runTsToGo(suite, goKeyPackage) {
  checkForeignKeyPackage(suite, goKeyPackage, "the Go member's");
  const groupId = crypto.getRandomValues(new Uint8Array(16));
  const t = new Transcript(suite, groupId);
  const g = new Group(suite, t);
  const proposals = [CUSTOM_PROPOSAL_TYPE];
  const alice = await newMember(suite, "alice", proposals);
  const bob = await newMember(suite, "bob", proposals);
  const carol = await newMember(suite, "carol", proposals);
  const add = (kp) => ({ proposalType: "add", add: { keyPackage: kp } });

  // 1. alice creates the group.
  await g.create("alice", groupId, alice);

  // 2. one commit adds bob and the Go member; one Welcome for both.
  await g.commit("alice", {
    inline: [add(bob.keyPackage), add(goKeyPackage)],
    joiners: [bob],
    note: "alice adds bob (leaf 1) and the Go member (leaf 2) by value; one Welcome for both, its GroupInfo carries ratchet_tree",
  });

  // 3. application messages.
  await g.application("alice", "alice: hello, epoch 1");
  await g.application("bob", "bob: hello, epoch 1");

  // 4. a standalone Update proposal by bob, committed by reference.
  const update1 = await makeUpdateProposal(g.state("bob"), suite.cs);
  await g.proposal("bob", update1.proposal, "bob's Update proposal (fresh leaf HPKE key)", update1.hpkePrivateKey);
  await g.commit("alice", { note: "alice commits bob's Update by reference; UpdatePath present" });
  await g.application("bob", "bob: after my update, epoch 2");

  // 5. a private-use proposal, committed inline.
  await g.commit("alice", {
    inline: [{ proposalType: CUSTOM_PROPOSAL_TYPE, proposalData: utf8(CUSTOM_PROPOSAL_BODY) }],
    note: "custom proposal 0xf001 by value (uint16 type + opaque<V> body); no UpdatePath",
  });
  await g.application("alice", "alice: after the custom proposal, epoch 3");

  // 6. an empty commit: UpdatePath only.
  await g.commit("bob", { note: "bob's empty commit (no proposals, UpdatePath present)" });

  // 7. carol joins by external commit from the GroupInfo just recorded.
  const [giStep, giHex] = lastGroupInfo(t);
  const gi = expectWireformat(decodeMessage(giHex, "group_info"), ["mls_group_info"], "group_info").groupInfo;
  await g.externalJoin(
    carol,
    gi,
    withRfcExternalPub(suite.cs, gi),
    `carol joins by external commit (ExternalInit + UpdatePath) from the group_info of step ${giStep} (external_pub + ratchet_tree)`,
  );
  await g.application("carol", "carol: joined externally, epoch 5");
  await g.application("alice", "alice: welcome carol, epoch 5");

  // 8. alice removes carol; traffic continues without her.
  const carolLeaf = g.state("carol").privatePath.leafIndex;
  await g.commit("alice", {
    inline: [{ proposalType: "remove", remove: { removed: carolLeaf } }],
    note: `alice removes carol (leaf ${carolLeaf}) by value; UpdatePath present`,
  });
  if (!g.removed.has("carol")) throw new HarnessError("carol did not see her own removal");
  await g.application("alice", "alice: carol is gone, epoch 6");
  await g.application("bob", "bob: indeed, epoch 6");

  // 9. GroupContextExtensions. A GCE-only commit from ts-mls 1.6.4 omits the
  // UpdatePath RFC 9420 requires, so bob's second Update (by reference)
  // forces one; the shim fixes the provisional GroupContext for the path.
  const exts = requiredCapabilitiesExtensions();
  const update2 = await makeUpdateProposal(g.state("bob"), suite.cs);
  await g.proposal("bob", update2.proposal, "bob's second Update proposal, bundled with the GroupContextExtensions commit", update2.hpkePrivateKey);
  await g.commit("alice", {
    inline: [{ proposalType: "group_context_extensions", groupContextExtensions: { extensions: exts } }],
    cs: withProvisionalExtensions(suite.cs, exts),
    note: "alice commits bob's Update by reference + GroupContextExtensions(required_capabilities: proposal 0xf001, credential basic) by value; UpdatePath present",
  });
  await g.application("alice", "alice: new extensions, epoch 7");
  await g.application("bob", "bob: last word, epoch 7");

  return t.doc;
}
