export {
  type ClientEvents,
  type ClientOptions,
  ClientClosedError,
  GatehouseClient,
  LoginRefusedError,
  NotConnectedError,
  reconnectable,
  type ReconnectOptions,
} from "./client.js";
export { Emitter, type Listener } from "./events.js";
export {
  Aead,
  type AeadByte,
  derive,
  type Derivation,
  GatewayKeyMismatchError,
  KeyExchange2,
  keyId,
  nonce,
  parsePublicKeys,
  SealedDirection,
  type SessionKeys,
} from "./modern.js";
export { type NodeWebSocketOptions, type WebSocketFactory, type WebSocketLike } from "./transport.js";
export {
  BodyReader,
  BodyWriter,
  clientPayload,
  concat,
  fromHex,
  type GatewayMessage,
  hex,
  type LoginRequest,
  loginBody,
  MAX_GATEWAY_PROTO,
  parseGatewayPayload,
  Proto,
  ProtocolError,
} from "./wire.js";
export { DemoProto, chatSay, parseChatHear } from "./demo.js";
