/**
 * A profile directory on the user's machine: which relay to use (and its
 * pinned key), the identity, and this machine's device. Private keys are
 * PEM files readable only by the owner and never leave this directory.
 *
 *   <dir>/profile.json       relay addresses, pinned relay key, identity and device ids
 *   <dir>/identity.pem       identity private key
 *   <dir>/devices/<id>.pem   device private keys
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { DeviceCredentials } from "./relay.js";

export interface ProfileData {
  relay: string[];
  relayId?: string;
  /** base64 of the relay's raw Ed25519 public key, pinned on first contact. */
  relayPublicKey?: string;
  identityId?: string;
  deviceId?: string;
}

export class ProfileError extends Error {
  override name = "ProfileError";
}

export function defaultProfileDir(): string {
  return process.env.PARLEY_PROFILE ?? join(homedir(), ".parley");
}

export class Profile {
  private constructor(
    readonly dir: string,
    public data: ProfileData,
  ) {}

  static load(dir: string, relayOverride?: string): Profile {
    const file = join(dir, "profile.json");
    let data: ProfileData = { relay: ["127.0.0.1:50051"] };
    if (existsSync(file)) {
      try {
        data = JSON.parse(readFileSync(file, "utf8")) as ProfileData;
      } catch (err) {
        throw new ProfileError(`profile ${file} is not valid JSON: ${(err as Error).message}`);
      }
    }
    if (relayOverride) data.relay = relayOverride.split(",").map((s) => s.trim()).filter(Boolean);
    return new Profile(dir, data);
  }

  save(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, "profile.json");
    writeFileSync(`${file}.tmp`, JSON.stringify(this.data, null, 2) + "\n", { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  get relayPublicKey(): Uint8Array | undefined {
    return this.data.relayPublicKey ? new Uint8Array(Buffer.from(this.data.relayPublicKey, "base64")) : undefined;
  }

  pinRelay(relayId: string, key: Uint8Array): void {
    this.data.relayId = relayId;
    this.data.relayPublicKey = Buffer.from(key).toString("base64");
    this.save();
  }

  writeKey(relPath: string, pem: string): void {
    const path = join(this.dir, relPath);
    if (existsSync(path)) throw new ProfileError(`${path} already exists; refusing to overwrite a private key`);
    mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
    writeFileSync(path, pem, { mode: 0o600, flag: "wx" });
    chmodSync(path, 0o600);
  }

  readKey(relPath: string): string {
    const path = join(this.dir, relPath);
    if (!existsSync(path)) throw new ProfileError(`no key at ${path}`);
    return readFileSync(path, "utf8");
  }

  identityKey(): string {
    if (!this.data.identityId) throw new ProfileError(`no identity in profile ${this.dir}; run 'parley identity create NAME' first`);
    return this.readKey("identity.pem");
  }

  device(): DeviceCredentials {
    const { identityId, deviceId } = this.data;
    if (!identityId || !deviceId) throw new ProfileError(`no device in profile ${this.dir}; run 'parley device add NAME' first`);
    return { identityId, deviceId, privateKeyPem: this.readKey(join("devices", `${deviceId}.pem`)) };
  }
}
