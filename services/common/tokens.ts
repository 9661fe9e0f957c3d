/**
 * Session tokens: issued by a relay after challenge-response, signed with the
 * relay's Ed25519 key, verified by any service holding the relay's public key
 * without a database round trip.
 *
 *   pt1.<base64url(JSON claims)>.<base64url(signature)>
 */
import type { Clock } from "./clock.js";
import { signBytes, statement, verifyBytes } from "./crypto.js";
import { UnauthenticatedError } from "./errors.js";
import { RecentMap } from "./recent.js";

export interface SessionClaims {
  /** Device the session belongs to. */
  sub: string;
  /** Identity owning the device. */
  idn: string;
  /** Relay that issued the token. */
  iss: string;
  iat: number;
  exp: number;
}

const PREFIX = "pt1";
const signedPart = (payload: string) => statement("parley.v1.session-token", payload);

export class TokenIssuer {
  constructor(
    private readonly relayId: string,
    private readonly privateKeyPem: string,
    private readonly clock: Clock,
    private readonly ttlMs: number,
  ) {}

  issue(deviceId: string, identityId: string): { token: string; claims: SessionClaims } {
    const now = this.clock.now();
    const claims: SessionClaims = { sub: deviceId, idn: identityId, iss: this.relayId, iat: now, exp: now + this.ttlMs };
    const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
    const sig = Buffer.from(signBytes(this.privateKeyPem, signedPart(payload))).toString("base64url");
    return { token: `${PREFIX}.${payload}.${sig}`, claims };
  }
}

export class TokenVerifier {
  /** Tokens whose signature was checked: a session makes many calls with one token. */
  private readonly verified = new RecentMap<SessionClaims>(10_000);

  constructor(
    private readonly relayPublicKey: Uint8Array,
    private readonly clock: Clock,
  ) {}

  verify(token: string): SessionClaims {
    const known = this.verified.get(token);
    if (known) {
      if (known.exp <= this.clock.now()) throw new UnauthenticatedError("session token expired; authenticate again");
      return known;
    }
    const claims = this.check(token);
    this.verified.set(token, claims);
    return claims;
  }

  private check(token: string): SessionClaims {
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== PREFIX) throw new UnauthenticatedError("malformed session token");
    const [, payload, sig] = parts as [string, string, string];
    if (!verifyBytes(this.relayPublicKey, signedPart(payload), Buffer.from(sig, "base64url"))) {
      throw new UnauthenticatedError("session token signature is not valid for this relay");
    }
    let claims: SessionClaims;
    try {
      claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as SessionClaims;
    } catch {
      throw new UnauthenticatedError("malformed session token");
    }
    if (typeof claims.exp !== "number" || claims.exp <= this.clock.now()) {
      throw new UnauthenticatedError("session token expired; authenticate again");
    }
    return claims;
  }
}
