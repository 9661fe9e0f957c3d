// Load-generator side of the chat benchmark: many chat sessions over a few
// gRPC connections per channel instance, with tokens minted from the bench's
// own relay key (the bench plays the relay), and latency recording from the
// send time stamped into each message's text.

import * as grpc from "@grpc/grpc-js";
import * as pb from "../../generated/parley/v1/chat.js";
import { systemClock } from "../../services/common/clock.js";
import { TokenIssuer } from "../../services/common/tokens.js";
import { LatencyRecorder, nowMs } from "../support/stats.js";

export class TokenMint {
  private readonly issuer: TokenIssuer;
  constructor(privateKeyPem: string) {
    this.issuer = new TokenIssuer("bench-relay", privateKeyPem, systemClock, 3_600_000);
  }
  metadata(user: string): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${this.issuer.issue(`${user}-dev`, user).token}`);
    return md;
  }
}

/** A few HTTP/2 connections per instance; sessions are spread over them. */
export class Connections {
  readonly clients: pb.ChannelClient[];
  private next = 0;
  constructor(address: string, count: number) {
    // Distinct options give distinct subchannels, hence distinct connections.
    this.clients = Array.from({ length: count }, (_, i) => new pb.ChannelClient(address, grpc.credentials.createInsecure(), { "bench.connection": i, "grpc.max_receive_message_length": 64 * 1024 * 1024 }));
  }
  pick(): pb.ChannelClient {
    return this.clients[this.next++ % this.clients.length]!;
  }
  close(): void {
    for (const c of this.clients) c.close();
  }
}

export interface DeliveryStats {
  latency: LatencyRecorder;
  deliveries: number;
  lastAtMs: number;
}

export function newStats(): DeliveryStats {
  return { latency: new LatencyRecorder(1 << 16), deliveries: 0, lastAtMs: 0 };
}

/** Message texts carry "b <sendMs>": the receiver records now - sendMs. */
export const stampText = () => `b ${nowMs()}`;

/** Opens a live session subscribed (live only) to rooms; resolves once caught up in all. */
export function openSession(conn: pb.ChannelClient, md: grpc.Metadata, rooms: string[], stats: () => DeliveryStats): Promise<grpc.ClientDuplexStream<pb.ClientCommand, pb.ServerEvent>> {
  return new Promise((resolve, reject) => {
    const call = conn.session(md);
    let waiting = rooms.length;
    call.on("data", (ev: pb.ServerEvent) => {
      const e = ev.event;
      if (e?.$case === "message") {
        const s = stats();
        const sent = Number(e.value.text.slice(2));
        s.latency.record(nowMs() - sent);
        s.deliveries++;
        s.lastAtMs = nowMs();
      } else if (e?.$case === "caughtUp" && --waiting === 0) resolve(call);
      else if (e?.$case === "error") reject(new Error(`${e.value.code}: ${e.value.message}`));
    });
    call.on("error", (err) => (waiting > 0 ? reject(err) : undefined));
    for (const roomId of rooms) call.write({ command: { $case: "subscribe", value: { roomId, afterSeq: 0, liveOnly: true } } });
  });
}

export function unary<T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

/** Runs `total` posts at `rate` per second (open loop); resolves with post→ack latencies. */
export async function postAtRate(rate: number, seconds: number, post: (i: number) => Promise<unknown>): Promise<{ posted: number; failed: number; ack: LatencyRecorder; startMs: number }> {
  const total = Math.round(rate * seconds);
  const ack = new LatencyRecorder(total);
  const startMs = nowMs();
  let failed = 0;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = startMs + (i * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = nowMs();
    inflight.push(post(i).then(() => void ack.record(nowMs() - t0), () => void failed++));
  }
  await Promise.all(inflight);
  return { posted: total - failed, failed, ack, startMs };
}
