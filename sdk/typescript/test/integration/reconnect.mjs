// A player whose connection breaks under it (the test kills the gateway's
// frontend, which the supervisor restarts): the SDK reconnects with backoff,
// logs in again on a new session and echoes (run by
// tests/sdk-typescript/typescript_sdk_integration_test.cc):
//   node reconnect.mjs URL GATEWAY_KEY_PUB
// Prints "ready uid=U" once logged in and echoing, then "ok reconnected ..."
// after the new session's echo; otherwise a FAIL line and status 1.
import { readFileSync } from "node:fs";

import { DemoProto, GatehouseClient } from "@gatehouse/client";

const [url, keyFile] = process.argv.slice(2);
const patience = 60000;
const timer = setTimeout(() => fail(`not done within ${patience} ms`), patience);

function fail(message) {
  console.log(`FAIL ${message}`);
  process.exit(1);
}

const client = new GatehouseClient({
  url,
  gatewayKeys: readFileSync(keyFile, "utf8"),
  login: { openUdid: "reconnecting-player" },
  heartbeatIntervalMs: 1000,
  reconnect: { initialDelayMs: 100, maxDelayMs: 2000 },
});
const disconnects = [];
client.on("disconnect", (d) => disconnects.push(d));
client.on("error", (e) => console.log(`error: ${e.message}`));

async function echo(text) {
  const got = new Promise((resolve) => {
    const off = client.on("message", ({ proto, body }) => {
      if (proto !== DemoProto.echoAck) return;
      off();
      resolve(new TextDecoder().decode(body));
    });
  });
  client.send(DemoProto.echoReq, text);
  if ((await got) !== text) fail(`the echo of "${text}" differs`);
}

const uid = await client.connect();
await echo("before");
const relogin = new Promise((resolve) => client.on("login", resolve));
console.log(`ready uid=${uid}`);

const again = await relogin;
if (!again.reconnected || again.uid !== uid) fail(`logged in again as ${JSON.stringify(again)}`);
await echo("after");
const first = disconnects[0];
if (first === undefined || first.reconnectInMs === null) fail(`disconnects ${JSON.stringify(disconnects)}`);
console.log(`ok reconnected reason=${first.reason} disconnects=${disconnects.length}`);
clearTimeout(timer);
client.close();
