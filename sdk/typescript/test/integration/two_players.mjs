// Two players through the real gateway and the demo game (run by
// tests/sdk-typescript/typescript_sdk_integration_test.cc):
//   node two_players.mjs URL GATEWAY_KEY_PUB TOKEN_A UID_A TOKEN_B UID_B
// Each step prints "ok ..." or ends the process with a message and status 1.
import { readFileSync } from "node:fs";

import { chatSay, DemoProto, GatehouseClient, parseChatHear } from "@gatehouse/client";

const [url, keyFile, tokenA, uidA, tokenB, uidB] = process.argv.slice(2);
const patience = 30000;

function fail(message) {
  console.log(`FAIL ${message}`);
  process.exit(1);
}

/** The first event `name` for which `match` holds, within the patience. */
function next(client, name, what, match = () => true) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`no ${what} within ${patience} ms`), patience);
    const off = client.on(name, (event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

const player = (udid, token) =>
  new GatehouseClient({
    url,
    gatewayKeys: readFileSync(keyFile, "utf8"),
    login: { openUdid: udid, clientCertificate: token },
    heartbeatIntervalMs: 1000,
  });
const alice = player("alice", tokenA);
const bob = player("bob", tokenB);
for (const [name, c] of [["alice", alice], ["bob", bob]]) {
  c.on("error", (e) => console.log(`${name} error: ${e.message}`));
}

const [a, b] = await Promise.all([alice.connect(), bob.connect()]);
if (a !== Number(uidA) || b !== Number(uidB)) fail(`logged in as ${a} and ${b}`);
console.log(`ok login ${a} ${b}`);

const text = (body) => new TextDecoder().decode(body);
const echo = next(alice, "message", "echo", (m) => m.proto === DemoProto.echoAck);
alice.send(DemoProto.echoReq, "hello through the gateway");
if (text((await echo).body) !== "hello through the gateway") fail("the echo differs");
console.log("ok echo");

const heard = (c) =>
  next(c, "message", "chat_hear", (m) => m.proto === DemoProto.chatHear).then((m) => parseChatHear(m.body));
const [bobHeard, aliceHeard] = [heard(bob), heard(alice)];
alice.send(DemoProto.chatSay, chatSay("hi bob"));
for (const h of [await bobHeard, await aliceHeard]) {
  if (h.uid !== a || h.text !== "hi bob") fail(`heard ${JSON.stringify(h)}`);
}
console.log("ok chat");

const kick = next(bob, "kick", "kick");
const closed = next(bob, "close", "close");
bob.send(DemoProto.kickMe);
const k = await kick;
const c = await closed;
if (k.reason !== "kicked_by_game" || c.reason !== "kicked_by_game" || bob.connected) {
  fail(`kick ${JSON.stringify(k)}, close ${JSON.stringify(c)}`);
}
console.log(`ok kick reason=${k.reason}`);

// Alice is still there: bob's kick ended bob's session only.
const again = next(alice, "message", "echo", (m) => m.proto === DemoProto.echoAck);
alice.send(DemoProto.echoReq, "still here");
if (text((await again).body) !== "still here") fail("the second echo differs");
console.log("ok alice unaffected");
alice.close();
