/** How chat commands reach the pool: lookup replicas (default: the relay addresses, as `parley up` serves all on one port) or one channel. */
import type { Command } from "commander";
import { ChatClient } from "../chat.js";
import { loadProfile, relayClient } from "./context.js";

export interface RouteOptions {
  lookup?: string;
  channel?: string;
  filesUrl?: string;
}

export function withRoute(cmd: Command): Command {
  return cmd
    .option("--lookup <addresses>", "lookup address(es), comma-separated (default $PARLEY_LOOKUP, else the relay address)")
    .option("--channel <address>", "use this channel instance instead of asking lookup (default $PARLEY_CHANNEL)")
    .option("--files-url <url>", "file service base URL, when the channel names none (default $PARLEY_FILES_URL)");
}

export function chatClient(cmd: Command): { chat: ChatClient; userId: string; filesUrl: string | undefined; close(): void } {
  const profile = loadProfile(cmd);
  const o = cmd.opts<RouteOptions>();
  const relay = relayClient(profile);
  const lookup = (o.lookup ?? process.env.PARLEY_LOOKUP)?.split(",").map((s) => s.trim()).filter(Boolean) ?? profile.data.relay;
  const chat = ChatClient.create({ relay, lookup, channel: o.channel ?? process.env.PARLEY_CHANNEL });
  return {
    chat,
    userId: profile.device().identityId,
    filesUrl: o.filesUrl ?? process.env.PARLEY_FILES_URL,
    close: () => {
      chat.close();
      relay.close();
    },
  };
}
