// The transcript recorder and the in-process group simulation.
//
// A Group holds the ts-mls state of every ts-mls member taking part and
// delivers each message to all of them, so a transcript is only written if
// ts-mls itself accepts every step: all members agree on the epoch
// authenticator after each commit and every application message decrypts
// to its plaintext. Members not simulated here (the Go member) only appear
// through their KeyPackage.

import * as mls from "ts-mls";
import { HarnessError, bytesEqual, toHex } from "./util.mjs";
import { encodeMessage, groupInfoMessage, ratchetTreeHex, installLeafPrivateKey } from "./wire.mjs";

export class Transcript {
  constructor(suite, groupId) {
    this.doc = { cipher_suite: suite.id, group_id: toHex(groupId), steps: [] };
  }
  push(step) {
    this.doc.steps.push(step);
    return this.doc.steps.length - 1;
  }
}

export class Group {
  constructor(suite, transcript) {
    this.suite = suite;
    this.cs = suite.cs;
    this.t = transcript;
    this.members = new Map(); // name -> ts-mls ClientState, insertion-ordered
    this.removed = new Set();
    // Private keys of Update proposals not yet committed: name -> key.
    this.pendingLeafKeys = new Map();
  }

  state(name) {
    const s = this.members.get(name);
    if (s === undefined) throw new HarnessError(`${name} is not an active member`);
    return s;
  }

  epoch(name) {
    return Number(this.state(name).groupContext.epoch);
  }

  async create(name, groupId, member, extensions = []) {
    const state = await mls.createGroup(groupId, member.keyPackage, member.privatePackage, extensions, this.cs);
    this.members.set(name, state);
    this.t.push({
      op: "create",
      by: name,
      epoch: 0,
      group_info: toHex(await groupInfoMessage(state, this.cs)),
      ratchet_tree: ratchetTreeHex(state),
      epoch_authenticator: toHex(state.keySchedule.epochAuthenticator),
    });
  }

  // Delivers an encoded handshake/application message, decoded from its
  // bytes as a remote client would, to every active member but the sender,
  // and keeps their new states. Members removed by a commit leave the group.
  async deliver(sender, bytes, expectApplication) {
    const [msg] = mls.decodeMlsMessage(bytes, 0);
    for (const [name, state] of [...this.members]) {
      if (name === sender) continue;
      let s = state;
      if (this.pendingLeafKeys.has(name) && msg.wireformat === "mls_public_message" && msg.publicMessage.content.contentType === "commit") {
        s = installLeafPrivateKey(s, this.pendingLeafKeys.get(name));
        this.pendingLeafKeys.delete(name);
      }
      let res;
      try {
        res = await mls.processMessage(msg, s, mls.emptyPskIndex, mls.acceptAll, this.cs);
      } catch (e) {
        throw new HarnessError(`${name} rejected a message from ${sender}: ${e.message}`);
      }
      if (expectApplication !== undefined) {
        if (res.kind !== "applicationMessage" || !bytesEqual(res.message, expectApplication)) {
          throw new HarnessError(`${name} did not decrypt ${sender}'s application message to its plaintext`);
        }
      }
      if (res.newState.groupActiveState.kind === "removedFromGroup") {
        this.members.delete(name);
        this.removed.add(name);
      } else {
        this.members.set(name, res.newState);
      }
    }
  }

  async application(sender, text) {
    const plaintext = new TextEncoder().encode(text);
    const res = await mls.createApplicationMessage(this.state(sender), plaintext, this.cs);
    this.members.set(sender, res.newState);
    const bytes = encodeMessage({ wireformat: "mls_private_message", privateMessage: res.privateMessage });
    await this.deliver(sender, bytes, plaintext);
    this.t.push({ op: "application", by: sender, epoch: this.epoch(sender), message: toHex(bytes), plaintext: toHex(plaintext) });
  }

  // A standalone proposal, sent as PublicMessage. pendingLeafKey is the new
  // HPKE private key when the proposal is the sender's own Update.
  async proposal(sender, proposal, note, pendingLeafKey) {
    const res = await mls.createProposal(this.state(sender), true, proposal, this.cs);
    this.members.set(sender, res.newState);
    if (pendingLeafKey !== undefined) this.pendingLeafKeys.set(sender, pendingLeafKey);
    const bytes = encodeMessage(res.message);
    await this.deliver(sender, bytes, undefined);
    this.t.push({ op: "proposal", by: sender, sender_type: "member", epoch: this.epoch(sender), proposal: toHex(bytes), note });
  }

  // A member commit (PublicMessage) covering every pending proposal by
  // reference plus `inline` by value. `joiners` are ts-mls members expected
  // in the Welcome; `cs` lets the caller pass a shimmed CiphersuiteImpl.
  async commit(sender, { inline = [], joiners = [], note, cs = this.cs }) {
    // A member cannot commit its own Update (RFC 9420 12.2).
    if (this.pendingLeafKeys.has(sender)) throw new HarnessError(`${sender} cannot commit while its own Update is pending`);
    const res = await mls.createCommit(
      { state: this.state(sender), cipherSuite: cs },
      { wireAsPublicMessage: true, extraProposals: inline, ratchetTreeExtension: true },
    );
    const state = res.newState;
    this.members.set(sender, state);
    const commitBytes = encodeMessage(res.commit);
    await this.deliver(sender, commitBytes, undefined);
    const welcomeBytes = res.welcome === undefined ? null : encodeMessage({ wireformat: "mls_welcome", welcome: res.welcome });
    for (const j of joiners) {
      // Join from the decoded bytes, as a remote client would.
      const [w] = mls.decodeMlsMessage(welcomeBytes, 0);
      const joined = await mls.joinGroup(w.welcome, j.keyPackage, j.privatePackage, mls.emptyPskIndex, this.cs);
      this.members.set(j.name, joined);
    }
    await this.recordCommit(sender, "member", state, commitBytes, welcomeBytes, note);
  }

  async externalJoin(joiner, groupInfo, cs, note) {
    const { publicMessage, newState } = await mls.joinGroupExternal(
      groupInfo,
      joiner.keyPackage,
      joiner.privatePackage,
      false,
      cs,
    );
    const bytes = encodeMessage({ wireformat: "mls_public_message", publicMessage });
    this.members.set(joiner.name, newState);
    await this.deliver(joiner.name, bytes, undefined);
    await this.recordCommit(joiner.name, "new_member_commit", newState, bytes, null, note);
  }

  async recordCommit(sender, senderType, state, commitBytes, welcomeBytes, note) {
    this.assertAgreement(sender, state);
    this.t.push({
      op: "commit",
      by: sender,
      sender_type: senderType,
      epoch: Number(state.groupContext.epoch),
      commit: toHex(commitBytes),
      group_info: toHex(await groupInfoMessage(state, this.cs)),
      ratchet_tree: ratchetTreeHex(state),
      welcome: welcomeBytes === null ? null : toHex(welcomeBytes),
      epoch_authenticator: toHex(state.keySchedule.epochAuthenticator),
      note,
    });
  }

  // Every remaining ts-mls member must now be in the committer's epoch with
  // the same epoch authenticator and the same tree.
  assertAgreement(sender, state) {
    const tree = ratchetTreeHex(state);
    for (const [name, s] of this.members) {
      if (s.groupContext.epoch !== state.groupContext.epoch) {
        throw new HarnessError(`${name} is at epoch ${s.groupContext.epoch} after ${sender}'s commit to ${state.groupContext.epoch}`);
      }
      if (!bytesEqual(s.keySchedule.epochAuthenticator, state.keySchedule.epochAuthenticator)) {
        throw new HarnessError(`${name} and ${sender} disagree on the epoch authenticator of epoch ${state.groupContext.epoch}`);
      }
      if (ratchetTreeHex(s) !== tree) throw new HarnessError(`${name} and ${sender} disagree on the ratchet tree`);
    }
  }
}
