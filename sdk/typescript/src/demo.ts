// The demo game's protocol (examples/demo-game/README.md), for examples and
// tests: a game of one's own defines its protos the same way.
import { BodyReader, BodyWriter } from "./wire.js";

export const DemoProto = {
  /** anything; answered with echoAck and the same body */
  echoReq: 1001,
  echoAck: 1002,
  /** text string; every player hears chatHear | uid int32 | text string | */
  chatSay: 1003,
  chatHear: 1004,
  /** the game kicks the sender */
  kickMe: 1005,
} as const;

export function chatSay(text: string): Uint8Array {
  return new BodyWriter().string(text).finish();
}

export function parseChatHear(body: Uint8Array): { uid: number; text: string } {
  const r = new BodyReader(body);
  return { uid: r.int32(), text: r.string() };
}
