/** The relay's WorkspaceDirectory: who may do what, precise refusals, and the Prometheus figures. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { registry } from "../../services/common/metrics.js";
import { ParleyClientError } from "../../client/errors.js";
import { RelayTransport, type DirectoryClient } from "../../client/sync/transport.js";
import { systemClock } from "../../services/common/clock.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";

const rejectsWith = (p: Promise<unknown>, code: grpc.status, pattern: RegExp) =>
  assert.rejects(p, (e: unknown) => e instanceof ParleyClientError && e.code === code && pattern.test(e.message));

describe("relay workspace directory", () => {
  const h = new Harness();
  let relay: RelayInstance;
  const dirs: Record<string, DirectoryClient> = {};
  const ids: Record<string, string> = {};
  before(async () => {
    relay = await h.relay({ databaseUrl: await h.database("wsdir"), bus: await h.nats(), key: newRelayKey(), options: { relayId: unique("relay") } });
    const jane = await h.identityWithDevice([relay.address], unique("jane"), unique("jane-pc"));
    const fred = await h.identityWithDevice([relay.address], unique("fred"), unique("fred-pc"));
    const fredLaptop = await h.addDevice([relay.address], fred.identityId, fred.identityKeys, unique("fred-laptop"));
    for (const [name, device] of Object.entries({ jane, fred, fredLaptop })) {
      const t = RelayTransport.create({ device, relays: [relay.address], clock: systemClock });
      h.defer(() => t.close());
      dirs[name] = t.directory()!;
      ids[name] = device.deviceId;
    }
    ids.janeId = jane.identityId;
    ids.fredId = fred.identityId;
  });
  after(() => h.cleanup());

  it("enforces roles and the last-endpoint rule, and refuses bad input precisely", async () => {
    const ws = unique("ws");
    const info = await dirs.jane!.register(ws);
    assert.deepEqual(info.members.map((m) => m.identityId), [ids.janeId]);
    await rejectsWith(dirs.fred!.addEndpoint(ws), grpc.status.PERMISSION_DENIED, /is not a member/);
    await dirs.jane!.setMember(ws, ids.fredId!, "participant");
    await rejectsWith(dirs.fred!.setMember(ws, ids.fredId!, "manager"), grpc.status.PERMISSION_DENIED, /is not a manager/);
    await rejectsWith(dirs.fred!.register(ws), grpc.status.ALREADY_EXISTS, /already exists/);
    await rejectsWith(dirs.jane!.get(unique("nope")), grpc.status.NOT_FOUND, /unknown workspace/);
    await rejectsWith(dirs.jane!.setMember(ws, unique("ghost"), "participant"), grpc.status.NOT_FOUND, /unknown identity/);
    await dirs.fred!.addEndpoint(ws);
    await dirs.fredLaptop!.addEndpoint(ws);
    await dirs.jane!.addEndpoint(ws);
    // A participant may record an automatic suspension, never of a member's last active endpoint, never by choice.
    await rejectsWith(dirs.fred!.suspend(ws, ids.jane!, "manager"), grpc.status.PERMISSION_DENIED, /only a manager/);
    await dirs.fred!.suspend(ws, ids.fredLaptop!, "auto");
    await rejectsWith(dirs.fred!.suspend(ws, ids.fred!, "auto"), grpc.status.FAILED_PRECONDITION, /last active endpoint/);
    await rejectsWith(dirs.fred!.resume(ws, ids.fredLaptop!), grpc.status.PERMISSION_DENIED, /not a manager/);
    const after = await dirs.jane!.suspend(ws, ids.fred!, "manager");
    const fredEndpoints = after.members.find((m) => m.identityId === ids.fredId)!.endpoints;
    assert.ok(fredEndpoints.every((e) => e.suspended));
    // Nothing changed by the refused calls: Jane's own endpoint stays active.
    assert.equal(after.members.find((m) => m.identityId === ids.janeId)!.endpoints[0]!.suspended, false);
  });

  it("exports reported figures, alerts and suspensions per workspace", async () => {
    const ws = unique("ws");
    await dirs.jane!.register(ws);
    await dirs.jane!.setMember(ws, ids.fredId!, "participant");
    await dirs.jane!.report({ workspaceId: ws, workspaceBytes: 123, alertsRaised: 1, backlog: [{ identityId: ids.fredId!, outstandingChanges: 7, outstandingBytes: 700, oldestAgeSeconds: 21 * 86400 }] });
    await rejectsWith(
      dirs.jane!.report({ workspaceId: ws, workspaceBytes: 1, alertsRaised: 0, backlog: [{ identityId: ids.fredId!, outstandingChanges: 1, outstandingBytes: 1, oldestAgeSeconds: -1 }] }),
      grpc.status.INVALID_ARGUMENT,
      /oldest_age_seconds/,
    );
    const text = await registry.metrics();
    const line = (name: string) => text.split("\n").find((l) => l.startsWith(name) && l.includes(`workspace="${ws}"`));
    assert.match(line("parley_workspace_outstanding_changes") ?? "", / 7$/);
    assert.match(line("parley_workspace_oldest_outstanding_age_seconds") ?? "", / 1814400$/);
    assert.match(line("parley_workspace_alerts_total") ?? "", / 1$/);
  });
});
