/** The README's configuration reference is the code's: every service's table appears verbatim. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { SERVICE_SPECS, specOf, type ServiceName } from "../../client/cli/service-specs.js";
import { describeConfig } from "../../services/common/config.js";

describe("README", () => {
  const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
  for (const name of Object.keys(SERVICE_SPECS) as ServiceName[]) {
    it(`documents every option of ${SERVICE_SPECS[name].title} as the code declares it`, () => {
      assert.ok(readme.includes(describeConfig(SERVICE_SPECS[name].title, specOf(name))), `regenerate with: parley config-reference`);
    });
  }
});
