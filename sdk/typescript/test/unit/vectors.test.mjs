// The SDK's modern exchange against the test vectors of
// docs/protocol-modern.md, read from the page itself (the page is checked
// against the gateway's own code by kx_vectors_match_the_page).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { x25519 } from "@noble/curves/ed25519";

import {
  clientPayload,
  derive,
  fromHex,
  GatewayKeyMismatchError,
  hex,
  KeyExchange2,
  keyId,
  nonce,
  parseGatewayPayload,
  ProtocolError,
  SealedDirection,
} from "../../dist/index.js";

const page = readFileSync(new URL("../../../../docs/protocol-modern.md", import.meta.url), "utf8");
const block = page.split("<!-- kx-vectors begin")[1].split("<!-- kx-vectors end")[0];
const v = {};
for (const line of block.split("\n")) {
  const m = /^ {4}(.+?)\s{2,}(.+)$/.exec(line);
  if (m) v[m[1]] = m[2];
}
const b = (name) => {
  assert.ok(name in v, `the page has no "${name}"`);
  return fromHex(v[name]);
};
const framed = (payload) => {
  const out = new Uint8Array(2 + payload.length);
  new DataView(out.buffer).setUint16(0, payload.length);
  out.set(payload, 2);
  return out;
};

test("the page has the vectors", () => {
  assert.ok(Object.keys(v).length >= 20, `only ${Object.keys(v).length} values read`);
  assert.equal(v["aead asked, granted"], "00, 00");
});

test("key id, E_c and key_exchange2_req", () => {
  assert.equal(hex(keyId(b("S"))), v["key_id"]);
  const kx = new KeyExchange2(b("S"), 0, b("e_c (client secret)"));
  assert.equal(hex(kx.clientPublic), v["E_c"]);
  assert.equal(hex(framed(clientPayload(1, 34, kx.request()))), v["key_exchange2_req frame"]);
});

test("the derivation, value by value", () => {
  const ee = x25519.getSharedSecret(b("e_c (client secret)"), b("E_s"));
  const es = x25519.getSharedSecret(b("e_c (client secret)"), b("S"));
  assert.equal(hex(ee), v["ee"]);
  assert.equal(hex(es), v["es"]);
  const d = derive({
    gatewayKey: b("S"),
    clientPublic: b("E_c"),
    aeadAsked: 0,
    gatewayEphemeral: b("E_s"),
    aead: 0,
    ee,
    es,
  });
  assert.equal(hex(d.transcript), v["transcript"]);
  assert.equal(hex(d.th), v["th"]);
  assert.equal(hex(d.prk), v["prk"]);
  assert.equal(hex(d.keyToClient), v["key_to_client"]);
  assert.equal(hex(d.keyToGateway), v["key_to_gateway"]);
  assert.equal(hex(d.confirm), v["confirm"]);
});

test("the ack checks out and the first sealed frames match both ways", () => {
  const kx = new KeyExchange2(b("S"), 0, b("e_c (client secret)"));
  const ackFrame = b("key_exchange2_ack frame");
  const ack = parseGatewayPayload(ackFrame.subarray(2));
  assert.equal(ack.proto, 35);
  const keys = kx.finish(ack.body);
  assert.equal(keys.aead, 0);
  assert.equal(hex(keys.keyToClient), v["key_to_client"]);
  assert.equal(hex(keys.keyToGateway), v["key_to_gateway"]);

  const tx = new SealedDirection(keys.aead, keys.keyToGateway);
  const beat = clientPayload(2, 0, Uint8Array.of(0, 0, 0, 7));
  assert.equal(hex(framed(tx.seal(beat))), v["client frame 0 (beat 7)"]);

  const rx = new SealedDirection(keys.aead, keys.keyToClient);
  const reply = parseGatewayPayload(rx.open(b("gateway frame 0 (ack 7)").subarray(2)));
  assert.equal(reply.proto, 1);
  assert.equal(hex(reply.body), "00000007");
});

test("a confirm that differs is a gateway key mismatch", () => {
  const body = b("key_exchange2_ack frame").subarray(4);
  body[body.length - 1] ^= 1;
  const kx = new KeyExchange2(b("S"), 0, b("e_c (client secret)"));
  assert.throws(() => kx.finish(body), GatewayKeyMismatchError);
  // The same ack checked against another pinned key: also a mismatch.
  const other = new KeyExchange2(x25519.getPublicKey(new Uint8Array(32).fill(9)), 0);
  assert.throws(() => other.finish(b("key_exchange2_ack frame").subarray(4)), GatewayKeyMismatchError);
});

test("an AEAD not asked for, a low-order key and a short ack are refused", () => {
  const good = b("key_exchange2_ack frame").subarray(4);
  const kx = () => new KeyExchange2(b("S"), 0, b("e_c (client secret)"));
  const aead = Uint8Array.from(good);
  aead[32] = 1;  // AES asked for by nobody
  assert.throws(() => kx().finish(aead), ProtocolError);
  const zero = Uint8Array.from(good);
  zero.fill(0, 0, 32);  // E_s = 0: a low-order point
  assert.throws(() => kx().finish(zero), ProtocolError);
  assert.throws(() => kx().finish(good.subarray(0, 64)), ProtocolError);
  // Asking for AES, a gateway may grant ChaCha20-Poly1305 (0): the AEAD check passes,
  // and then the transcript (aead_asked = 1) no longer matches the page's confirm.
  assert.throws(() => new KeyExchange2(b("S"), 1, b("e_c (client secret)")).finish(good),
                GatewayKeyMismatchError);
});

test("nonces count each direction from 0; a replayed or altered payload does not open", () => {
  assert.equal(hex(nonce(0n)), "000000000000000000000000");
  assert.equal(hex(nonce(258n)), "000000000000000000000102");
  for (const aead of [0, 1]) {
    const key = new Uint8Array(32).fill(3);
    const tx = new SealedDirection(aead, key);
    const rx = new SealedDirection(aead, key);
    const first = tx.seal(Uint8Array.of(1, 2, 3));
    const second = tx.seal(Uint8Array.of(1, 2, 3));
    assert.notEqual(hex(first), hex(second), "a fresh nonce for each payload");
    assert.equal(first.length, 3 + 16);
    assert.equal(hex(rx.open(first)), "010203");
    assert.throws(() => rx.open(first), ProtocolError, "a replay");
    const rx2 = new SealedDirection(aead, key);
    const altered = Uint8Array.from(first);
    altered[0] ^= 0x80;
    assert.throws(() => rx2.open(altered), ProtocolError, "a flipped bit");
  }
});
