#!/usr/bin/env node
// Interoperability harness between mimi-hub's Go MLS (mimi/mls) and ts-mls
// 1.6.4. See README.md for the commands and the file formats.
//
// Exit status: 0 success, 1 interop/harness failure, 2 usage error.

import { parseArgs } from "node:util";
import { HarnessError, UsageError, readJson, writeJson } from "./lib/util.mjs";
import { decodeKeyPackageMessage, loadSuite, parseSuiteArg, parseTypeList } from "./lib/suite.mjs";
import { runTsToGo } from "./lib/scenario.mjs";
import { prepareMembers, runVerify, verifyFailures } from "./lib/verify.mjs";
import { makeStandIn, runSelfTest } from "./lib/selftest.mjs";

const USAGE = `usage:
  node interop.mjs ts-to-go --member <go_member.json> --out <transcript.json> [--suite 1|2]
  node interop.mjs go-to-ts prepare --out <ts_members.json> [--suite 1|2] [--proposals <types>] [--extensions <types>]
  node interop.mjs go-to-ts verify --members <ts_members.json> --transcript <go_transcript.json> --out <results.json>
  node interop.mjs self-test [--suite 1|2] [--keep <dir>]
  node interop.mjs standin --out <go_member.json> --private-out <standin_members.json> [--suite 1|2]`;

const OPTIONS = {
  member: { type: "string" },
  members: { type: "string" },
  transcript: { type: "string" },
  out: { type: "string" },
  "private-out": { type: "string" },
  suite: { type: "string" },
  keep: { type: "string" },
  proposals: { type: "string" },
  extensions: { type: "string" },
  help: { type: "boolean", short: "h" },
};

function required(values, name) {
  if (values[name] === undefined) throw new UsageError(`--${name} is required`);
  return values[name];
}

async function tsToGo(values) {
  const member = readJson(required(values, "member"));
  const out = required(values, "out");
  const memberSuite = member.cipher_suite ?? 1;
  const suiteId = parseSuiteArg(values.suite) ?? memberSuite;
  if (suiteId !== memberSuite) throw new UsageError(`--suite ${suiteId} but the member file says cipher_suite ${memberSuite}`);
  const suite = await loadSuite(suiteId);
  const kp = decodeKeyPackageMessage(member.key_package, "go_member.json key_package");
  writeJson(out, await runTsToGo(suite, kp));
}

async function prepare(values) {
  const out = required(values, "out");
  const suite = await loadSuite(parseSuiteArg(values.suite) ?? 1);
  const extra = {
    proposals: parseTypeList(values.proposals, "--proposals"),
    extensions: parseTypeList(values.extensions, "--extensions"),
  };
  writeJson(out, await prepareMembers(suite, extra));
}

async function verify(values) {
  const members = readJson(required(values, "members"));
  const transcript = readJson(required(values, "transcript"));
  const out = required(values, "out");
  const results = await runVerify(members, transcript);
  writeJson(out, results);
  const failures = verifyFailures(results);
  if (failures.length > 0) throw new HarnessError(`verify failed:\n  ${failures.join("\n  ")}`);
}

// Testing aid: a ts-mls stand-in for the Go member, to produce a sample
// ts-to-go transcript and replay it with verify.
async function standin(values) {
  const out = required(values, "out");
  const privateOut = required(values, "private-out");
  const { goMember, members } = await makeStandIn(await loadSuite(parseSuiteArg(values.suite) ?? 1));
  writeJson(out, goMember);
  writeJson(privateOut, members);
}

async function main(argv) {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const cmd = positionals.join(" ");
  switch (cmd) {
    case "ts-to-go":
      return tsToGo(values);
    case "go-to-ts prepare":
      return prepare(values);
    case "go-to-ts verify":
      return verify(values);
    case "self-test":
      return runSelfTest(await loadSuite(parseSuiteArg(values.suite) ?? 1), values.keep);
    case "standin":
      return standin(values);
  }
  throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
}

try {
  await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError || e?.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    console.error(`interop: ${e.message}\n${USAGE}`);
    process.exitCode = 2;
  } else {
    console.error(`interop: ${e instanceof HarnessError ? e.message : e?.stack ?? e}`);
    process.exitCode = 1;
  }
}
