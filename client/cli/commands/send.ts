/** `parley send --to device:ID --to identity:ID TEXT…` (or --file PATH, or - for stdin). */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { Recipient } from "../../relay.js";
import { loadProfile, printJson, relayClient, UsageError } from "../context.js";

function recipient(spec: string, acc: Recipient[] = []): Recipient[] {
  const m = /^(device|identity):(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--to '${spec}' must look like device:ID or identity:ID`);
  acc.push(m[1] === "device" ? { deviceId: m[2]! } : { identityId: m[2]! });
  return acc;
}

export function register(program: Command): void {
  program
    .command("send [text...]")
    .description("send a message; acknowledged once the relay has committed it")
    .option("--to <recipient>", "device:ID or identity:ID (repeatable)", recipient)
    .option("--file <path>", "send the file's bytes ('-' for stdin)")
    .option("--id <messageId>", "message id (resending with the same id delivers once)")
    .option("--content-type <type>", "content type", "text/plain")
    .option("--json", "print the receipt as JSON")
    .action(async (text: string[], opts: { to?: Recipient[]; file?: string; id?: string; contentType: string; json?: boolean }, cmd: Command) => {
      if (!opts.to?.length) throw new UsageError("name at least one recipient with --to device:ID or --to identity:ID");
      if (opts.file && text.length) throw new UsageError("give either text or --file, not both");
      const payload = opts.file ? readFileSync(opts.file === "-" ? 0 : opts.file) : Buffer.from(text.join(" "), "utf8");
      const relay = relayClient(loadProfile(cmd));
      try {
        const receipt = await relay.send({ to: opts.to, payload, messageId: opts.id, contentType: opts.contentType });
        if (opts.json) printJson(receipt);
        else console.log(`${receipt.duplicate ? "already sent" : "sent"} ${receipt.messageId} to ${receipt.queued.length} queue(s)`);
      } finally {
        relay.close();
      }
    });
}
