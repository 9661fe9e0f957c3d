#!/usr/bin/env node
/**
 * The `kubectl parley` plugin (bin/kubectl-parley runs this file). Thin:
 * parses arguments and calls the logic in promote.ts.
 *
 *   kubectl parley promote west -n parley [--timeout 2m] [--kubeconfig FILE] [--context NAME]
 */
import { Command } from "commander";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../kube/client.js";
import { promote, PromoteError } from "./promote.js";

function durationMs(raw: string): number {
  const m = /^(\d+)(s|m)?$/.exec(raw);
  if (!m) throw new PromoteError(`--timeout: "${raw}" is not a duration like 90s or 2m`);
  return Number(m[1]) * (m[2] === "m" ? 60_000 : 1000);
}

async function main(argv: string[]): Promise<void> {
  const program = new Command("kubectl parley").description("Parley operator helpers").showHelpAfterError();
  program
    .command("promote")
    .argument("<name>", "the RelayServer to make the primary of its pair")
    .description("switch a relay pair over to NAME (sets status.targetPrimary) and wait until it is primary")
    .option("-n, --namespace <namespace>", "namespace of the RelayServer (default: the kubeconfig context's)")
    .option("--kubeconfig <file>", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    .option("--context <name>", "kubeconfig context")
    .option("--timeout <duration>", "how long to wait for the switchover", "2m")
    .action(async (name: string, opts: { namespace?: string; kubeconfig?: string; context?: string; timeout: string }) => {
      const kc = new KubeConfig();
      if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
      else kc.loadFromDefault();
      if (opts.context) kc.setCurrentContext(opts.context);
      const namespace = opts.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
      const kube = await KubeClient.fromKubeConfig(kc);
      await promote(kube, { namespace, name, timeoutMs: durationMs(opts.timeout), progress: (line) => console.log(line) });
    });
  await program.parseAsync(argv, { from: "user" });
}

main(process.argv.slice(2)).catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exit(err instanceof PromoteError ? 2 : 1);
});
