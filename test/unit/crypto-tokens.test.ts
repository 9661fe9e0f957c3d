import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock, MINUTE } from "../../services/common/clock.js";
import { generateKeyPair, publicKeyFromPem, signBytes, statement, Statements, verifyBytes } from "../../services/common/crypto.js";
import { TokenIssuer, TokenVerifier } from "../../services/common/tokens.js";

describe("crypto", () => {
  it("signs and verifies with raw 32-byte public keys", () => {
    const k = generateKeyPair();
    assert.equal(k.publicKey.length, 32);
    assert.deepEqual(publicKeyFromPem(k.privateKeyPem), k.publicKey);
    const data = Statements.authenticate("dev", new Uint8Array([1, 2, 3]));
    const sig = signBytes(k.privateKeyPem, data);
    assert.equal(sig.length, 64);
    assert.ok(verifyBytes(k.publicKey, data, sig));
    assert.ok(!verifyBytes(generateKeyPair().publicKey, data, sig));
    assert.ok(!verifyBytes(k.publicKey, Statements.authenticate("dev2", new Uint8Array([1, 2, 3])), sig));
    assert.ok(!verifyBytes(new Uint8Array(5), data, sig), "a malformed key is a failed check, not a crash");
    assert.ok(!verifyBytes(k.publicKey, data, new Uint8Array(3)));
  });

  it("keeps statements unambiguous and separated by purpose", () => {
    assert.notDeepEqual(statement("t", "ab", "c"), statement("t", "a", "bc"));
    const k = generateKeyPair();
    const sig = signBytes(k.privateKeyPem, Statements.registerIdentity("alice", k.publicKey));
    // A registration signature cannot pass as an authentication answer.
    assert.ok(!verifyBytes(k.publicKey, Statements.authenticate("alice", k.publicKey), sig));
  });
});

describe("session tokens", () => {
  const relay = generateKeyPair();
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const issuer = new TokenIssuer("relay-1", relay.privateKeyPem, clock, 15 * MINUTE);
  const verifier = new TokenVerifier(relay.publicKey, clock);

  it("carries device, identity, issuer and expiry", () => {
    const { token, claims } = issuer.issue("laptop", "alice");
    assert.deepEqual(verifier.verify(token), claims);
    assert.equal(claims.exp - claims.iat, 15 * MINUTE);
  });

  it("expires", () => {
    const { token } = issuer.issue("laptop", "alice");
    clock.advance(15 * MINUTE);
    assert.throws(() => verifier.verify(token), /expired/);
  });

  it("rejects tokens from another relay, edited tokens and garbage", () => {
    const other = new TokenIssuer("relay-1", generateKeyPair().privateKeyPem, clock, MINUTE).issue("laptop", "alice").token;
    assert.throws(() => verifier.verify(other), /signature is not valid/);
    const [p, body, sig] = issuer.issue("laptop", "alice").token.split(".");
    const edited = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body!, "base64url").toString()), sub: "phone" })).toString("base64url");
    assert.throws(() => verifier.verify(`${p}.${edited}.${sig}`), /signature is not valid/);
    assert.throws(() => verifier.verify("x.y"), /malformed/);
  });
});
