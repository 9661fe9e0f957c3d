/**
 * How an endpoint reaches its peers: through relays. A peer is addressed
 * by its device id at one of the relays holding its device queue; this
 * endpoint fetches its own device queue from each relay it is registered
 * at (a second, local relay plays the seed's "hub"). Whether a relay is
 * reachable right now is a predicate, so a test can take an endpoint off
 * the Internet while it keeps its hub.
 *
 *   const t = RelayTransport.create({ device, relays: ["10.0.0.1:50051"], clock });
 *   await t.send([{ endpointId: "bob-laptop", relays: [...], payload, contentType }]);
 *   await t.receive((m) => engine.handle(m));
 */
import * as grpc from "@grpc/grpc-js";
import type { Clock } from "../../services/common/clock.js";
import * as pb from "../../generated/parley/v1/workspace.js";
import { fromServiceError, ParleyClientError } from "../errors.js";
import { RelayClient, type DeviceCredentials } from "../relay.js";

export interface Outbound {
  endpointId: string;
  relays: string[];
  payload: Uint8Array;
  contentType: string;
}

export interface SendResult {
  /** Indexes of the messages a relay committed. */
  delivered: number[];
  /** Endpoints a relay refused because they are suspended in the workspace. */
  refused: Map<string, string>;
  /** Indexes not sent: no relay of the recipient reachable. */
  unreachable: number[];
}

export interface Inbound {
  senderEndpoint: string;
  senderMember: string;
  payload: Uint8Array;
  contentType: string;
  relay: string;
}

/** The transport the engine needs; tests and benchmarks may plug another. */
export interface SyncTransport {
  readonly endpointId: string;
  readonly memberId: string;
  /** Relays holding this endpoint's device queue, preferred first. */
  readonly relays: string[];
  send(messages: Outbound[]): Promise<SendResult>;
  /** Drains this endpoint's queued messages once (acknowledged after handler returns). */
  receive(handler: (m: Inbound) => void | Promise<void>): Promise<number>;
  /** Streams this endpoint's messages as they arrive until signal aborts (optional). */
  listen?(handler: (m: Inbound) => void | Promise<void>, signal: AbortSignal): Promise<void>;
  /** The directory of the preferred relay, when reachable. */
  directory(): DirectoryClient | undefined;
  close(): void;
}

const SUSPENDED = /endpoint '([^']+)' is suspended in workspace/;
const MAX_BATCH = 200;

export interface RelayTransportOptions {
  device: DeviceCredentials;
  relays: string[];
  clock: Clock;
  /** Defaults to every relay reachable. */
  reachable?: (relay: string) => boolean;
  relayPublicKeys?: Record<string, Uint8Array>;
  /** The relay whose workspace directory this endpoint keeps up to date (default: the first). */
  directoryRelay?: string;
}

export class RelayTransport implements SyncTransport {
  private readonly clients = new Map<string, RelayClient>();
  private readonly sessions = new Map<string, { token: string; expiresAtMs: number }>();
  private readonly directoryStubs = new Map<string, pb.WorkspaceDirectoryClient>();
  reachable: (relay: string) => boolean;

  private constructor(private readonly opts: RelayTransportOptions) {
    this.reachable = opts.reachable ?? (() => true);
  }

  static create(opts: RelayTransportOptions): RelayTransport {
    return new RelayTransport(opts);
  }

  get endpointId(): string {
    return this.opts.device.deviceId;
  }

  get memberId(): string {
    return this.opts.device.identityId;
  }

  get relays(): string[] {
    return this.opts.relays;
  }

  /** A signed-in client for the relay; the session is renewed on the (possibly simulated) relay clock. */
  async client(relay: string): Promise<RelayClient> {
    let c = this.clients.get(relay);
    if (!c) {
      c = RelayClient.create({ addresses: [relay], device: this.opts.device, relayPublicKey: this.opts.relayPublicKeys?.[relay], deadlineMs: 10_000, maxAttempts: 3 });
      this.clients.set(relay, c);
    }
    if ((this.sessions.get(relay)?.expiresAtMs ?? 0) - 60_000 <= this.opts.clock.now()) {
      const s = await c.authenticate();
      this.sessions.set(relay, { token: s.token, expiresAtMs: s.expiresAtMs });
    }
    return c;
  }

  async send(messages: Outbound[]): Promise<SendResult> {
    const result: SendResult = { delivered: [], refused: new Map(), unreachable: [] };
    const byRelay = new Map<string, number[]>();
    messages.forEach((m, i) => {
      const relay = m.relays.find((r) => this.reachable(r));
      if (!relay) return void result.unreachable.push(i);
      byRelay.set(relay, [...(byRelay.get(relay) ?? []), i]);
    });
    for (const [relay, indexes] of byRelay) {
      let todo = indexes.filter((i) => !result.refused.has(messages[i]!.endpointId));
      while (todo.length) {
        const part = todo.slice(0, MAX_BATCH);
        try {
          const c = await this.client(relay);
          await c.sendBatch(part.map((i) => ({ to: [{ deviceId: messages[i]!.endpointId }], payload: messages[i]!.payload, contentType: messages[i]!.contentType })));
          result.delivered.push(...part);
          todo = todo.slice(part.length);
        } catch (err) {
          // A batch is all or none: drop the suspended endpoint's messages and retry the rest.
          const e = fromServiceError(err);
          const m = e instanceof ParleyClientError && e.code === grpc.status.FAILED_PRECONDITION ? SUSPENDED.exec(e.message) : null;
          if (!m) throw e;
          result.refused.set(m[1]!, e.message);
          todo = todo.filter((i) => messages[i]!.endpointId !== m[1]);
        }
      }
    }
    return result;
  }

  async receive(handler: (m: Inbound) => void | Promise<void>): Promise<number> {
    let n = 0;
    for (const relay of this.opts.relays) {
      if (!this.reachable(relay)) continue;
      const c = await this.client(relay);
      await c.inbox(async (m) => {
        n++;
        await handler({ senderEndpoint: m.senderDeviceId, senderMember: m.senderIdentityId, payload: m.payload, contentType: m.contentType, relay });
      });
    }
    return n;
  }

  async listen(handler: (m: Inbound) => void | Promise<void>, signal: AbortSignal): Promise<void> {
    await Promise.all(
      this.opts.relays.filter((r) => this.reachable(r)).map(async (relay) => {
        const c = await this.client(relay);
        await c.inbox(
          (m) => handler({ senderEndpoint: m.senderDeviceId, senderMember: m.senderIdentityId, payload: m.payload, contentType: m.contentType, relay }),
          { follow: true, signal },
        );
      }),
    );
  }

  directory(): DirectoryClient | undefined {
    const relay = this.opts.directoryRelay ?? this.opts.relays[0];
    if (!relay || !this.reachable(relay)) return undefined;
    let stub = this.directoryStubs.get(relay);
    if (!stub) this.directoryStubs.set(relay, (stub = new pb.WorkspaceDirectoryClient(relay, grpc.credentials.createInsecure())));
    return new DirectoryClient(stub, async () => {
      await this.client(relay);
      return this.sessions.get(relay)!.token;
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    for (const d of this.directoryStubs.values()) d.close();
  }
}

/** parley.v1.WorkspaceDirectory with the device's session. */
export class DirectoryClient {
  constructor(
    private readonly stub: pb.WorkspaceDirectoryClient,
    private readonly token: () => Promise<string>,
  ) {}

  private async call<Req, Res>(method: string, req: Req): Promise<Res> {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${await this.token()}`);
    const stub = this.stub as unknown as Record<string, (r: Req, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>;
    return new Promise<Res>((resolve, reject) =>
      stub[method]!.call(this.stub, req, md, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(fromServiceError(e)) : resolve(r))),
    );
  }

  register(workspaceId: string) {
    return this.call<pb.RegisterWorkspaceRequest, pb.WorkspaceInfo>("registerWorkspace", { workspaceId });
  }
  setMember(workspaceId: string, identityId: string, role: "manager" | "participant") {
    const r = role === "manager" ? pb.WorkspaceRole.WORKSPACE_ROLE_MANAGER : pb.WorkspaceRole.WORKSPACE_ROLE_PARTICIPANT;
    return this.call<pb.SetMemberRequest, pb.WorkspaceInfo>("setMember", { workspaceId, identityId, role: r });
  }
  addEndpoint(workspaceId: string) {
    return this.call<pb.AddEndpointRequest, pb.WorkspaceInfo>("addEndpoint", { workspaceId });
  }
  suspend(workspaceId: string, deviceId: string, reason: "auto" | "manager") {
    const r = reason === "auto" ? pb.SuspensionReason.SUSPENSION_REASON_AUTO : pb.SuspensionReason.SUSPENSION_REASON_MANAGER;
    return this.call<pb.SuspendEndpointRequest, pb.WorkspaceInfo>("suspendEndpoint", { workspaceId, deviceId, reason: r });
  }
  resume(workspaceId: string, deviceId: string) {
    return this.call<pb.ResumeEndpointRequest, pb.WorkspaceInfo>("resumeEndpoint", { workspaceId, deviceId });
  }
  get(workspaceId: string) {
    return this.call<pb.GetWorkspaceRequest, pb.WorkspaceInfo>("getWorkspace", { workspaceId });
  }
  report(req: pb.ReportFiguresRequest) {
    return this.call<pb.ReportFiguresRequest, pb.ReportFiguresResponse>("reportFigures", req);
  }
}
