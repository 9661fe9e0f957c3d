/** `parley inbox [--follow] [--json] [--no-ack]`: what is queued for this device. */
import type { Command } from "commander";
import type { InboxMessage } from "../../relay.js";
import { loadProfile, printJson, relayClient } from "../context.js";

function show(m: InboxMessage, json: boolean): void {
  if (json) {
    printJson({ ...m, text: m.contentType.startsWith("text/") ? Buffer.from(m.payload).toString("utf8") : undefined });
    return;
  }
  const body = m.contentType.startsWith("text/") || !m.contentType ? Buffer.from(m.payload).toString("utf8") : `<${m.payload.length} bytes ${m.contentType}>`;
  console.log(`[${new Date(m.enqueuedAtMs).toISOString()}] ${m.senderIdentityId}/${m.senderDeviceId} → ${m.queue}: ${body}`);
}

export function register(program: Command): void {
  program
    .command("inbox")
    .description("print queued messages (and acknowledge them); --follow keeps streaming live ones")
    .option("--follow", "keep the stream open for live messages")
    .option("--json", "one JSON object per line")
    .option("--no-ack", "leave the messages queued")
    .action(async (opts: { follow?: boolean; json?: boolean; ack: boolean }, cmd: Command) => {
      const relay = relayClient(loadProfile(cmd));
      const ctl = new AbortController();
      const stop = () => ctl.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        await relay.inbox((m) => show(m, !!opts.json), { follow: !!opts.follow, ack: opts.ack, signal: ctl.signal });
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        relay.close();
      }
    });
}
