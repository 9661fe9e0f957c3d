import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bool, bytes, ConfigError, describeConfig, duration, int, loadConfig, oneOf, option, str, url } from "../../services/common/config.js";

const spec = {
  port: option("--port", "T_PORT", int({ min: 0, max: 65535 }), 50051, "port"),
  retention: option("--retention", "T_RETENTION", duration({ min: 60_000 }), 30 * 86_400_000, "retention"),
  size: option("--size", "T_SIZE", bytes(), 1024, "size"),
  db: option("--db", "T_DB", url(["postgres"]), undefined, "database", true),
  mode: option("--mode", "T_MODE", oneOf("a", "b"), "a", "mode"),
  debug: option("--debug", "T_DEBUG", bool(), false, "debug"),
  name: option("--name", "T_NAME", str({ pattern: /^[a-z]+$/ }), "x", "name"),
};

describe("config", () => {
  it("takes flags over environment over defaults", () => {
    const cfg = loadConfig(spec, ["--port", "7000", "--size=64KiB", "--db", "postgres://h/d"], { T_PORT: "1", T_RETENTION: "12h", T_DEBUG: "yes" });
    assert.deepEqual(cfg, { port: 7000, retention: 12 * 3_600_000, size: 65536, db: "postgres://h/d", mode: "a", debug: true, name: "x" });
  });

  it("parses durations and sizes in every unit", () => {
    const d = duration();
    assert.deepEqual(["500ms", "30s", "15m", "12h", "30d", "1.5h"].map(d), [500, 30_000, 900_000, 43_200_000, 2_592_000_000, 5_400_000]);
    const b = bytes();
    assert.deepEqual(["1024", "64KiB", "1MiB", "1GB", "2kb"].map(b), [1024, 65536, 1_048_576, 1_000_000_000, 2000]);
  });

  it("names every bad value in one error, hiding secrets", () => {
    let err: ConfigError | undefined;
    try {
      loadConfig(spec, ["--port", "-1", "--retention", "10s", "--bogus", "1", "--mode", "c", "stray"], { T_DB: "mysql://secret@h/d", T_NAME: "UPPER" });
    } catch (e) {
      err = e as ConfigError;
    }
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, [
      "unknown option --bogus",
      "unexpected argument 'stray'",
      "--port: expected an integer ≥ 0 ≤ 65535, got '-1'",
      "--retention: expected a duration like 500ms, 30s, 15m, 12h or 30d, got '10s'",
      "T_DB: expected a URL (postgres), got (hidden)",
      "--mode: expected one of a, b, got 'c'",
      "T_NAME: expected a string, got 'UPPER'",
    ]);
    assert.doesNotMatch(err.message, /secret/);
  });

  it("requires options without a default", () => {
    assert.throws(() => loadConfig(spec, [], {}), /--db \(or T_DB\) is required: database/);
    assert.throws(() => loadConfig(spec, ["--db"], {}), /--db needs a value/);
  });

  it("documents every option", () => {
    const doc = describeConfig("test", spec);
    assert.match(doc, /\| `--port` \| `T_PORT` \| `50051` \| port \(an integer ≥ 0 ≤ 65535\) \|/);
    assert.match(doc, /\| `--db` \| `T_DB` \| \(required\) \|/);
    assert.match(doc, /\| `--retention` \| `T_RETENTION` \| `30d` \|/);
    assert.match(doc, /\| `--size` \| `T_SIZE` \| `1KiB` \|/);
  });
});
