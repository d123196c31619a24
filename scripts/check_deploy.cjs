// firebase.json and the index file checked by firebase-tools' own code (the schema and the validator that
// `firebase deploy` runs), offline. Prints a JSON report; exits 1 when either is refused.
//   node scripts/check_deploy.cjs [firebase.json] [firestore.indexes.json]
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const configPath = path.resolve(process.argv[2] || path.join(root, "firebase.json"));
const indexesPath = path.resolve(process.argv[3] || path.join(root, "firestore.indexes.json"));
const tools = path.join(root, "node_modules", "firebase-tools", "lib");
if (!fs.existsSync(tools)) {
  console.error("firebase-tools is not installed: run `make node` (npm ci)");
  process.exit(3);
}
const { getValidator, getErrorMessage } = require(path.join(tools, "firebaseConfigValidate.js"));
const { FirestoreApi } = require(path.join(tools, "firestore", "api.js"));

const report = { config: configPath, configErrors: [], indexes: indexesPath, indexErrors: [], indexCount: 0 };
const validate = getValidator();
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
if (!validate(config)) report.configErrors = validate.errors.map(getErrorMessage);
try {
  const spec = JSON.parse(fs.readFileSync(indexesPath, "utf8"));
  new FirestoreApi().validateSpec(spec);
  report.indexCount = spec.indexes.length;
} catch (e) {
  report.indexErrors.push(String(e.message || e));
}
console.log(JSON.stringify(report, null, 2));
process.exit(report.configErrors.length || report.indexErrors.length ? 1 : 0);
