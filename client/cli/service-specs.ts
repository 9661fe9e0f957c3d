/**
 * The options of every service command, in one place: `parley <service>`
 * validates its flags with them, `parley config-reference` prints them, and
 * a test keeps the README's configuration reference equal to them.
 */
import type { ConfigSpec } from "../../services/common/config.js";
import { channelConfigSpec } from "../../services/channel/config.js";
import { complianceConfigSpec } from "../../services/compliance/config.js";
import { filesConfigSpec } from "../../services/files/config.js";
import { lookupConfigSpec } from "../../services/lookup/config.js";
import { relayConfigSpec } from "../../services/relay/config.js";
import { upConfigSpec } from "../../services/up/config.js";
import { operatorConfigSpec } from "../../operator/config.js";

export const SERVICE_SPECS = {
  relay: { spec: relayConfigSpec, title: "parley relay" },
  channel: { spec: channelConfigSpec, title: "parley channel" },
  lookup: { spec: lookupConfigSpec, title: "parley lookup" },
  files: { spec: filesConfigSpec, title: "parley files" },
  compliance: { spec: complianceConfigSpec, title: "parley compliance" },
  operator: { spec: operatorConfigSpec, title: "parley operator" },
  up: { spec: upConfigSpec, title: "parley up" },
} satisfies Record<string, { spec: Record<string, unknown>; title: string }>;

export type ServiceName = keyof typeof SERVICE_SPECS;

/** The spec as loadConfig and describeConfig take it. */
export const specOf = (name: ServiceName) => SERVICE_SPECS[name].spec as unknown as ConfigSpec;
