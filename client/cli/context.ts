/** What every CLI command shares: global options, the profile, clients, output. */
import type { Command } from "commander";
import { RelayAdmin } from "../admin.js";
import { ParleyClientError } from "../errors.js";
import { defaultProfileDir, Profile } from "../profile.js";
import { RelayClient } from "../relay.js";

export interface GlobalOptions {
  profile?: string;
  relay?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function loadProfile(cmd: Command): Profile {
  const g = globals(cmd);
  const profile = Profile.load(g.profile ?? defaultProfileDir(), g.relay ?? process.env.PARLEY_RELAY);
  // --relay is remembered, so later commands reach the same relay without it.
  if (g.relay) profile.save();
  return profile;
}

/** A relay client for the profile; pins the relay key on first contact. */
export function relayClient(profile: Profile, withDevice = true): RelayClient {
  return RelayClient.create({
    addresses: profile.data.relay,
    device: withDevice ? profile.device() : undefined,
    relayPublicKey: profile.relayPublicKey,
    onRelayKey: (id, key) => profile.pinRelay(id, key),
    // A person waits at the terminal: say quickly that the relay is unreachable.
    deadlineMs: 10_000,
    retryBudgetMs: 5_000,
  });
}

/** Runs fn with client, then closes the client. */
export async function withClient<C extends { close(): void }, T>(client: C, fn: (client: C) => Promise<T>): Promise<T> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Runs fn with an admin client of the profile's relay (and the admin token), then closes it. */
export function withRelayAdmin<T>(cmd: Command, fn: (admin: RelayAdmin) => Promise<T>): Promise<T> {
  return withClient(RelayAdmin.create(loadProfile(cmd).data.relay[0]!, adminToken(cmd)), fn);
}

/** --admin-token or PARLEY_ADMIN_TOKEN. */
export function adminToken(cmd: Command): string {
  const token = (cmd.optsWithGlobals<{ adminToken?: string }>().adminToken ?? process.env.PARLEY_ADMIN_TOKEN ?? "").trim();
  if (!token) throw new UsageError("the admin token is missing: pass --admin-token or set PARLEY_ADMIN_TOKEN (parley up prints it)");
  return token;
}

export class UsageError extends Error {
  override name = "UsageError";
}

/** One line on stderr naming the problem, and the exit code. */
export function describeError(err: unknown): { line: string; code: number } {
  if (err instanceof ParleyClientError) return { line: `${err.message} (${err.codeName})`, code: 1 };
  if (err instanceof UsageError) return { line: err.message, code: 2 };
  const e = err as Error & { code?: string };
  if (e?.name === "ConfigError") return { line: e.message, code: 2 };
  return { line: e?.message ?? String(err), code: 1 };
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v)) + "\n");
}
