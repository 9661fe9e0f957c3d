#!/usr/bin/env -S node --max-semi-space-size=8
/**
 * The `parley` command.
 *
 *   parley up                              # every service in one process
 *   parley identity create alice && parley device add laptop
 *   parley send --to identity:bob "hello"
 *   parley inbox --follow
 *   parley relay stats                     # maintenance (admin token)
 *   parley relay --database-url … --nats-url …   # run one relay instance
 */
import { Command } from "commander";
import { describeConfig, loadConfig } from "../../services/common/config.js";
import { runChannel } from "../../services/channel/main.js";
import { runCompliance } from "../../services/compliance/main.js";
import { runFiles } from "../../services/files/main.js";
import { runOperator } from "../../operator/main.js";
import { runLookup } from "../../services/lookup/main.js";
import { runRelay } from "../../services/relay/main.js";
import { upConfigSpec } from "../../services/up/config.js";
import { startUp } from "../../services/up/up.js";
import { describeError } from "./context.js";
import { SERVICE_SPECS, specOf, type ServiceName } from "./service-specs.js";
import * as identity from "./commands/identity.js";
import * as inbox from "./commands/inbox.js";
import * as compliance from "./commands/compliance.js";
import * as relayAdmin from "./commands/relay-admin.js";
import * as send from "./commands/send.js";
import * as chat from "./commands/chat.js";
import * as workspace from "./commands/workspace.js";

const COMMANDS = [identity, send, inbox, relayAdmin, chat, workspace, compliance];
/** `parley <service> <verb>` is a command; `parley <service> [--flags]` runs the service. */
const ADMIN_VERBS: Partial<Record<ServiceName, Set<string>>> = { relay: relayAdmin.ADMIN_VERBS, compliance: compliance.COMPLIANCE_VERBS };

/** Service commands take their validated flags straight from the config spec (service-specs.ts). */
const RUNNERS: Record<ServiceName, (argv: string[]) => Promise<unknown>> = {
  relay: runRelay,
  channel: runChannel,
  lookup: runLookup,
  files: runFiles,
  compliance: runCompliance,
  operator: runOperator,
  up: runUp,
};

async function runUp(argv: string[]): Promise<void> {
  const up = await startUp(loadConfig(upConfigSpec, argv));
  up.lifecycle.handleSignals();
  console.log(
    [
      `Parley is up (all services in one process; data in ${up.dataDir}).`,
      `  gRPC     ${up.grpcAddress}   relay '${up.relayId}', key ${Buffer.from(up.relayPublicKey).toString("base64")}`,
      `  HTTP     http://${up.httpAddress}/metrics  /healthz  /readyz`,
      `  admin    export PARLEY_ADMIN_TOKEN=${up.adminToken}`,
      "",
      "Try, in another terminal:",
      `  parley --relay ${up.grpcAddress} --profile /tmp/alice identity create alice`,
      `  parley --profile /tmp/alice device add alice-laptop`,
      `  parley --relay ${up.grpcAddress} --profile /tmp/bob identity create bob && parley --profile /tmp/bob device add bob-phone`,
      `  parley --profile /tmp/alice send --to identity:bob "hello bob"`,
      `  parley --profile /tmp/bob inbox`,
      "Stop with Ctrl-C.",
    ].join("\n"),
  );
}

function program(): Command {
  const p = new Command("parley")
    .description("Parley: relay, chat, files, compliance and workspace sync")
    .option("--profile <dir>", "profile directory (default $PARLEY_PROFILE or ~/.parley)")
    .option("--relay <address>", "relay address(es), comma-separated (saved in the profile)")
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
  p.command("up").description("run every service in one process on an embedded Postgres (parley up --help-config)");
  p.command("config-reference")
    .description("print the configuration reference (Markdown)")
    .action(() => {
      for (const name of Object.keys(SERVICE_SPECS) as ServiceName[]) console.log(describeConfig(SERVICE_SPECS[name].title, specOf(name)));
    });
  for (const c of COMMANDS) c.register(p);
  return p;
}

async function main(argv: string[]): Promise<void> {
  const [first, second] = argv;
  const service = first && Object.hasOwn(SERVICE_SPECS, first) ? (first as ServiceName) : undefined;
  if (service && !ADMIN_VERBS[service]?.has(second ?? "")) {
    if (second === "--help-config") return void console.log(describeConfig(SERVICE_SPECS[service].title, specOf(service)));
    await RUNNERS[service](argv.slice(1));
    return;
  }
  await program().parseAsync(argv, { from: "user" });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const { line, code } = describeError(err);
  process.stderr.write(`parley: ${line}\n`);
  process.exit(code);
});
