// Checks Kubernetes manifests offline against the Kubernetes API schema, in two passes:
// 1. each document with the validator kubernetes-models generated from the API's OpenAPI schema
//    (types, required fields, enums, formats such as quantities);
// 2. each document as a TypeScript object literal of that kind's generated interface, so that an
//    unknown or misspelled field anywhere is an error (the OpenAPI schema allows extra fields;
//    the API server drops them, which hides typos), checked by tsc.
// usage: node validate_kubernetes.mjs --modules NODE_MODULES FILE.yaml...   (exit 1: invalid)
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

function usage(text) {
  process.stderr.write(`validate_kubernetes: ${text}\nusage: node validate_kubernetes.mjs --modules DIR FILE.yaml...\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let modules = null;
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === "--modules") modules = args[++i];
  else files.push(args[i]);
}
if (!modules || files.length === 0) usage("need --modules and at least one file");
if (!fs.existsSync(path.join(modules, "kubernetes-models", "package.json")))
  usage(`no kubernetes-models in ${modules} (scripts/setup.sh installs it)`);

const require = createRequire(path.join(modules, "..", "package.json"));
const yaml = require(path.join(modules, "js-yaml"));
const models_version = JSON.parse(fs.readFileSync(path.join(modules, "kubernetes-models", "package.json"))).version;

// apiVersion "apps/v1" kind "DaemonSet" -> kubernetes-models/apps/v1/DaemonSet.js; core "v1" -> v1/.
function model_path(doc) {
  if (typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") return null;
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(doc.apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(doc.kind)) return null;
  const file = path.join(modules, "kubernetes-models", doc.apiVersion, doc.kind + ".js");
  return fs.existsSync(file) ? file : null;
}

function describe(err) {
  if (Array.isArray(err.errors))
    return err.errors.map((e) => `${e.instancePath || "/"} ${e.message || e.keyword}`).join("; ");
  return err.message;
}

let failures = 0;
let checked = 0;
const typed = [];  // documents for the second pass: [where, module path, interface, document]
for (const file of files) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, "utf8"));
  } catch (e) {
    console.log(`${file}: not YAML: ${e.message}`);
    ++failures;
    continue;
  }
  docs.forEach((doc, index) => {
    if (doc === null || doc === undefined) return;  // an empty document between two ---
    const where = `${path.basename(file)}#${index} ${doc.kind ?? "?"}/${doc.metadata?.name ?? "?"}`;
    const model = model_path(doc);
    if (!model) {
      console.log(`${where}: unknown apiVersion/kind ${doc.apiVersion}/${doc.kind}`);
      ++failures;
      return;
    }
    typed.push([where, model, doc]);
  });
}

// Pass 1: the generated OpenAPI validators.
for (const [where, model, doc] of typed) {
  const mod = await import(pathToFileURL(model).href);
  const cls = mod[doc.kind];
  try {
    new cls(doc).validate();
    ++checked;
  } catch (e) {
    console.log(`${where}: schema: ${describe(e)}`);
    ++failures;
  }
}

// Pass 2: unknown fields, with tsc's excess-property check on each document's literal.
if (typed.length > 0) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "poolshim-k8s-"));
  try {
    fs.symlinkSync(path.resolve(modules), path.join(dir, "node_modules"));
    let ts = "";
    const lines = [];  // source line of each document's literal -> where
    typed.forEach(([where, model, doc], i) => {
      const rel = path.relative(path.join(modules, "kubernetes-models"), model).replace(/\.js$/, "");
      ts += `import type { I${doc.kind} as T${i} } from "kubernetes-models/${rel}";\n`;
    });
    typed.forEach(([where, , doc], i) => {
      lines.push([ts.split("\n").length, where]);
      ts += `export const d${i}: T${i} = ${JSON.stringify(doc, null, 1)};\n`;
    });
    fs.writeFileSync(path.join(dir, "manifests.ts"), ts);
    const tsc = path.join(modules, "typescript", "bin", "tsc");
    const r = spawnSync(process.execPath,
                        [tsc, "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution",
                         "nodenext", "--target", "es2022", "manifests.ts"],
                        {cwd: dir, encoding: "utf8"});
    if (r.status !== 0) {
      for (const l of (r.stdout + r.stderr).split("\n").filter((x) => x.trim())) {
        const m = /^manifests\.ts\((\d+),\d+\): (.*)$/.exec(l);
        let where = "tsc";
        if (m) {
          for (const [start, w] of lines)
            if (start <= Number(m[1])) where = w;
        }
        console.log(`${where}: fields: ${m ? m[2] : l}`);
      }
      failures += 1;
    }
  } finally {
    fs.rmSync(dir, {recursive: true, force: true});
  }
}

console.log(`validate_kubernetes: ${checked} document(s) of ${files.length} file(s) against the Kubernetes API ` +
            `schema (kubernetes-models ${models_version}), ${failures ? "INVALID" : "valid"}`);
process.exit(failures ? 1 : 0);
