/** `parley identity create NAME`, `parley device add NAME`: keys made here, public halves registered. */
import type { Command } from "commander";
import { generateKeyPair } from "../../../services/common/crypto.js";
import { loadProfile, relayClient, UsageError } from "../context.js";

export function register(program: Command): void {
  const identity = program.command("identity").description("your identity on the relay");
  identity
    .command("create <name>")
    .description("create an identity key pair in the profile and register it with the relay")
    .action(async (name: string, _opts, cmd: Command) => {
      const profile = loadProfile(cmd);
      if (profile.data.identityId) throw new UsageError(`profile ${profile.dir} already holds identity '${profile.data.identityId}'`);
      const keys = generateKeyPair();
      const relay = relayClient(profile, false);
      try {
        await relay.registerIdentity(name, keys);
      } finally {
        relay.close();
      }
      profile.writeKey("identity.pem", keys.privateKeyPem);
      profile.data.identityId = name;
      profile.save();
      console.log(`identity '${name}' registered with relay ${profile.data.relayId} at ${profile.data.relay.join(",")}`);
    });

  const device = program.command("device").description("this machine's device");
  device
    .command("add <name>")
    .description("create a device key pair, sign it with the identity key, register it, and make it this profile's device")
    .action(async (name: string, _opts, cmd: Command) => {
      const profile = loadProfile(cmd);
      const identityKey = profile.identityKey();
      const keys = generateKeyPair();
      const relay = relayClient(profile, false);
      try {
        await relay.registerDevice(profile.data.identityId!, identityKey, name, keys.publicKey);
      } finally {
        relay.close();
      }
      profile.writeKey(`devices/${name}.pem`, keys.privateKeyPem);
      profile.data.deviceId = name;
      profile.save();
      console.log(`device '${name}' of identity '${profile.data.identityId}' registered`);
    });
}
