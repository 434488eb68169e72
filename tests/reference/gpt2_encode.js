#!/usr/bin/env node
// Reference GPT-2 encodings from the gpt-3-encoder npm package's own JavaScript.
// Input: a JSON array of strings, from the file named by the first argument or from stdin.
// Output (stdout): a JSON array with, for each string, the array of its token ids.
// The package is looked up in $LOOM_NPM_DIR, else <repo>/.deps/npm/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

const npmDir = process.env.LOOM_NPM_DIR ||
    path.join(__dirname, '..', '..', '.deps', 'npm', 'node_modules');
const packageDir = path.join(npmDir, 'gpt-3-encoder');
if (!fs.existsSync(packageDir)) {
  process.stderr.write(`gpt2_encode.js: ${packageDir} not found; run ci/setup.sh or set LOOM_NPM_DIR\n`);
  process.exit(2);
}
const { encode } = require(packageDir);

const source = process.argv[2] || 'stdin';
let texts;
try {
  texts = JSON.parse(fs.readFileSync(process.argv[2] || 0, 'utf-8'));
} catch (e) {
  process.stderr.write(`gpt2_encode.js: cannot read a JSON array from ${source}: ${e.message}\n`);
  process.exit(2);
}
if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) {
  process.stderr.write('gpt2_encode.js: input must be a JSON array of strings\n');
  process.exit(2);
}
process.stdout.write(JSON.stringify(texts.map((t) => encode(t))) + '\n');
