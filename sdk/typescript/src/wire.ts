// The gonet2 framing as the gateway speaks it over WebSocket
// (shared/protocol.md section 1, docs/websocket.md): one binary message per
// frame, the message's length standing for the 2-byte size. A client payload
// is | seq u32 | proto i16 | body |, a gateway payload | proto i16 | body |,
// all integers big-endian.

/** The gateway's own protos (shared/protocol.md, docs/protocol-modern.md). */
export const Proto = {
  heartBeatReq: 0,
  heartBeatAck: 1,
  userLoginReq: 10,
  userLoginSucceedAck: 11,
  userLoginFailedAck: 12,
  keyExchange2Req: 34,
  keyExchange2Ack: 35,
} as const;

/** Protos above this go to the game service; the rest are the gateway's. */
export const MAX_GATEWAY_PROTO = 1000;

/** The largest WebSocket message (frame payload) the protocol allows. */
export const MAX_PAYLOAD = 65535;

export function clientPayload(seq: number, proto: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(6 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, seq);
  view.setInt16(4, proto);
  out.set(body, 6);
  return out;
}

export interface GatewayMessage {
  proto: number;
  body: Uint8Array;
}

export function parseGatewayPayload(payload: Uint8Array): GatewayMessage {
  if (payload.length < 2) throw new ProtocolError(`a gateway payload of ${payload.length} bytes`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { proto: view.getInt16(0), body: payload.subarray(2) };
}

/** Thrown when the gateway sends what the protocol does not allow. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** Builds a body of the gateway's encodings: int32 (4 bytes), string (| len u16 | UTF-8 |). */
export class BodyWriter {
  private parts: Uint8Array[] = [];

  int32(value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, value);
    return this.push(b);
  }

  string(value: string): this {
    const bytes = new TextEncoder().encode(value);
    if (bytes.length > 0xffff) throw new RangeError(`a string of ${bytes.length} bytes`);
    const b = new Uint8Array(2 + bytes.length);
    new DataView(b.buffer).setUint16(0, bytes.length);
    b.set(bytes, 2);
    return this.push(b);
  }

  bytes(value: Uint8Array): this {
    return this.push(value);
  }

  finish(): Uint8Array {
    return concat(...this.parts);
  }

  private push(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }
}

/** Reads a body of the gateway's encodings; throws ProtocolError past its end. */
export class BodyReader {
  private at = 0;
  private readonly view: DataView;

  constructor(private readonly body: Uint8Array) {
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }

  int32(): number {
    this.need(4);
    const v = this.view.getInt32(this.at);
    this.at += 4;
    return v;
  }

  string(): string {
    this.need(2);
    const n = this.view.getUint16(this.at);
    this.at += 2;
    this.need(n);
    const s = new TextDecoder().decode(this.body.subarray(this.at, this.at + n));
    this.at += n;
    return s;
  }

  /** What is left. */
  rest(): Uint8Array {
    const r = this.body.subarray(this.at);
    this.at = this.body.length;
    return r;
  }

  private need(n: number): void {
    if (this.at + n > this.body.length) {
      throw new ProtocolError(`a body of ${this.body.length} bytes read past its end`);
    }
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * user_login_req's fields (shared/protocol.md): `clientCertificate` is the
 * credential (a signed token, docs/login.md; empty for `login = any`, which
 * derives the user id from `openUdid`).
 */
export interface LoginRequest {
  openUdid: string;
  clientCertificate?: string;
  loginWay?: number;
  clientVersion?: number;
  userLang?: string;
  appId?: string;
  osVersion?: string;
  deviceName?: string;
  deviceId?: string;
  deviceIdType?: number;
  loginIp?: string;
}

export function loginBody(r: LoginRequest): Uint8Array {
  return new BodyWriter()
    .int32(r.loginWay ?? 0)
    .string(r.openUdid)
    .string(r.clientCertificate ?? "")
    .int32(r.clientVersion ?? 0)
    .string(r.userLang ?? "")
    .string(r.appId ?? "")
    .string(r.osVersion ?? "")
    .string(r.deviceName ?? "")
    .string(r.deviceId ?? "")
    .int32(r.deviceIdType ?? 0)
    .string(r.loginIp ?? "")
    .finish();
}

export function int32Body(value: number): Uint8Array {
  return new BodyWriter().int32(value).finish();
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new RangeError("not an even number of hex digits");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; ++i) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
