/** RecentMap: the last N entries are always kept, old ones eventually dropped. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecentMap } from "../../services/common/recent.js";

describe("RecentMap", () => {
  it("keeps at least the last `size` entries set, whatever came before", () => {
    const r = new RecentMap<number>(100);
    for (let i = 0; i < 1234; i++) {
      r.set(`k${i}`, i);
      for (let back = 0; back < 100 && back <= i; back += 7) assert.equal(r.get(`k${i - back}`), i - back, `k${i - back} dropped after k${i}`);
    }
  });

  it("drops an entry once twice `size` newer ones were set, and never had one not set", () => {
    const r = new RecentMap<true>(100);
    r.set("old", true);
    for (let i = 0; i < 200; i++) r.set(`k${i}`, true);
    assert.equal(r.has("old"), false);
    assert.equal(r.has("never"), false);
    assert.equal(r.get("never"), undefined);
  });
});
