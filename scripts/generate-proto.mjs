// Generates TypeScript from proto/parley/v1 with ts-proto, using the protoc
// binary shipped in the `protoc` npm package (no download at build time).
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "generated");
const protoDir = join(root, "proto");
const files = readdirSync(join(protoDir, "parley/v1"))
  .filter((f) => f.endsWith(".proto"))
  .map((f) => join("parley/v1", f));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const bin = join(root, "node_modules/.bin");
execFileSync(
  join(bin, "protoc"),
  [
    `--plugin=protoc-gen-ts_proto=${join(bin, "protoc-gen-ts_proto")}`,
    `--ts_proto_out=${out}`,
    "--ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,env=both,forceLong=number,useOptionals=none,oneof=unions-value",
    `-I${protoDir}`,
    ...files,
  ],
  { stdio: "inherit" },
);
console.log(`generated ${files.length} proto files into generated/`);
