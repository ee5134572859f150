// node examples/chat.mjs URL GATEWAY_KEY_PUB TOKEN: logs in, echoes, chats, asks to be kicked.
import { readFileSync } from "node:fs";
import { chatSay, DemoProto, GatehouseClient, parseChatHear } from "@gatehouse/client";

const [url, keyFile, token] = process.argv.slice(2);
const client = new GatehouseClient({
  url, // ws://host:port/ or wss://host:port/
  gatewayKeys: readFileSync(keyFile, "utf8"), // the pinned gateway key (gatehouse keygen's FILE.pub)
  login: { openUdid: "example", clientCertificate: token }, // a signed token (docs/login.md)
});
client.on("message", ({ proto, body }) => {
  if (proto === DemoProto.echoAck) console.log("echo:", new TextDecoder().decode(body));
  if (proto === DemoProto.chatHear) {
    const { uid, text } = parseChatHear(body);
    console.log(`heard ${uid}: ${text}`);
    client.send(DemoProto.kickMe); // the demo game kicks whoever sends 1005
  }
});
client.on("kick", ({ reason }) => console.log("kicked:", reason));
client.on("close", ({ reason }) => {
  console.log("closed:", reason); // the session ended and the client will not reconnect
  process.exit(reason === "kicked_by_game" ? 0 : 1);
});
console.log("logged in as", await client.connect());
client.send(DemoProto.echoReq, "hello");
client.send(DemoProto.chatSay, chatSay("hi all"));
