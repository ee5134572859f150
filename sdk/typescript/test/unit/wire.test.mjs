import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BodyReader,
  chatSay,
  clientPayload,
  hex,
  loginBody,
  parseChatHear,
  parseGatewayPayload,
  parsePublicKeys,
  ProtocolError,
} from "../../dist/index.js";

test("a client payload is | seq u32 | proto i16 | body |, big-endian", () => {
  assert.equal(hex(clientPayload(0x01020304, 1003, Uint8Array.of(9))), "0102030403eb09");
  assert.equal(hex(clientPayload(1, -2, new Uint8Array())), "00000001fffe");
});

test("a gateway payload is | proto i16 | body |", () => {
  const m = parseGatewayPayload(Uint8Array.of(0x03, 0xea, 1, 2));
  assert.equal(m.proto, 1002);
  assert.equal(hex(m.body), "0102");
  assert.throws(() => parseGatewayPayload(Uint8Array.of(1)), ProtocolError);
});

test("user_login_req's body: int32s and | len u16 | UTF-8 | strings in the table's order", () => {
  const body = loginBody({ openUdid: "bob", clientCertificate: "tok", clientVersion: 3, userLang: "é" });
  assert.equal(
    hex(body),
    "00000000" + "0003626f62" + "0003746f6b" + "00000003" + "0002c3a9" +
      "0000".repeat(4) + "00000000" + "0000",
  );
});

test("chat bodies of the demo game; a short body is a protocol error", () => {
  assert.equal(hex(chatSay("hi")), "00026869");
  assert.deepEqual(parseChatHear(Uint8Array.of(0, 0, 3, 0xe9, 0, 2, 0x68, 0x69)), { uid: 1001, text: "hi" });
  assert.throws(() => new BodyReader(Uint8Array.of(0, 5, 1)).string(), ProtocolError);
  assert.throws(() => new BodyReader(Uint8Array.of(0, 0, 1)).int32(), ProtocolError);
});

test("public key files as gatehouse keygen writes them", () => {
  const a = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
  const keys = parsePublicKeys(`# gatehouse gateway public key\n${a}\n\n${"ab".repeat(32)}\n`);
  assert.equal(keys.length, 2);
  assert.equal(hex(keys[0]), a);
  assert.throws(() => parsePublicKeys("# nothing\n"), RangeError);
  assert.throws(() => parsePublicKeys("1234\n"), RangeError);
});
