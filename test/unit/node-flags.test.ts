/** Every way Parley's servers are started passes the same Node options (services/common/node-flags.ts). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { SERVER_NODE_FLAGS } from "../../services/common/node-flags.js";

const file = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), "utf8");

describe("server Node options", () => {
  const launchers: Array<[string, string]> = [
    ["the image's entrypoint (Dockerfile)", file("Dockerfile").split("\n").find((l) => l.startsWith("ENTRYPOINT"))!],
    ["make run (Makefile)", file("Makefile").split("\n").find((l) => l.startsWith("\t$(NODE)") && l.includes("dist/client/cli/main.js up"))!],
    ["npm run up (package.json)", (JSON.parse(file("package.json")) as { scripts: Record<string, string> }).scripts.up!],
    ["npm run parley (package.json)", (JSON.parse(file("package.json")) as { scripts: Record<string, string> }).scripts.parley!],
    ["the parley command's shebang (client/cli/main.ts)", file("client/cli/main.ts").split("\n")[0]!],
  ];
  for (const [what, line] of launchers) {
    it(`${what} starts node with ${SERVER_NODE_FLAGS.join(" ")}`, () => {
      assert.ok(line, `no launch line found for ${what}`);
      for (const flag of SERVER_NODE_FLAGS) assert.ok(line.includes(flag), `${what}: ${JSON.stringify(line)} lacks ${flag}`);
    });
  }
});
