/** A RelayAdmin client with the test admin token, closed at harness cleanup. */
import * as grpc from "@grpc/grpc-js";
import { RelayAdminClient, StatsOrder, type RelayStats } from "../../generated/parley/v1/relay.js";
import { bearer, DEFAULT_RELAY_OPTIONS, type Harness } from "./harness.js";

export function adminClient(h: Harness, address: string, token = DEFAULT_RELAY_OPTIONS.adminToken) {
  const c = new RelayAdminClient(address, grpc.credentials.createInsecure());
  h.defer(() => c.close());
  const md = bearer(token);
  const call = <T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void) => new Promise<T>((res, rej) => fn((e, r) => (e ? rej(e) : res(r))));
  return {
    stats: (top = 20, order = StatsOrder.STATS_ORDER_DEPTH) => call<RelayStats>((cb) => c.getStats({ top, order }, md, cb)),
    raw: c,
    md,
  };
}

