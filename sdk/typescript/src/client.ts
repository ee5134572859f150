// GatehouseClient: one player's connection to the gateway over WebSocket,
// kept up across network losses. Each connection is a new gateway session
// (docs/protocol-modern.md, "What a kick looks like"): a fresh key exchange,
// seq from 1, a new login; nothing of the previous connection carries over.
import { Emitter } from "./events.js";
import {
  Aead,
  type AeadByte,
  GatewayKeyMismatchError,
  KeyExchange2,
  parsePublicKeys,
  SealedDirection,
} from "./modern.js";
import {
  messageBytes,
  type NodeWebSocketOptions,
  type WebSocketFactory,
  type WebSocketLike,
  webSocketFactory,
} from "./transport.js";
import {
  BodyReader,
  clientPayload,
  fromHex,
  int32Body,
  type LoginRequest,
  loginBody,
  MAX_GATEWAY_PROTO,
  MAX_PAYLOAD,
  parseGatewayPayload,
  Proto,
  ProtocolError,
} from "./wire.js";

export interface ReconnectOptions {
  /** Reconnect after a connection is lost (default true). */
  enabled?: boolean;
  /** The first delay (default 500 ms); each failed attempt multiplies it by `factor` (2). */
  initialDelayMs?: number;
  factor?: number;
  /** The largest delay (default 30 s). */
  maxDelayMs?: number;
  /** Each delay is shortened by up to this share at random (default 0.25), so that
   *  clients the gateway dropped together do not come back together. */
  jitter?: number;
  /** Attempts in a row without a login before the client gives up (default: no limit). */
  maxAttempts?: number;
  /** Whether a connection that ended for `reason` is worth another (default: reconnectable()). */
  shouldReconnect?: (reason: string) => boolean;
}

export interface ClientOptions {
  /** ws://host:port/ or wss://host:port/ (any path: the gateway does not check it). */
  url: string;
  /**
   * The pinned gateway public keys (32 bytes, or 64 hex digits each, or the
   * text of a `gatehouse keygen` FILE.pub): the modern exchange, version 2.
   * The first is named first; the next one only when the gateway closes
   * without an ack (a rotation, docs/protocol-modern.md). Leave it out only
   * for a listener that allows clear sessions (development).
   */
  gatewayKeys?: (Uint8Array | string)[] | string;
  /** The AEAD to ask for (default ChaCha20-Poly1305; the gateway may answer it instead). */
  aead?: "chacha20-poly1305" | "aes-256-gcm";
  /** The login (a function is called for every connection: a fresh token each time). */
  login: LoginRequest | (() => LoginRequest | Promise<LoginRequest>);
  /** A heart_beat_req this often once logged in (default 5 s). */
  heartbeatIntervalMs?: number;
  /** The connection is dead when nothing arrives for this long (default 15 s). */
  readTimeoutMs?: number;
  /** Open, key exchange and login within this (default 15 s). */
  connectTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  /** Node only: options for the `ws` package (e.g. `{ ca }` for a private CA). */
  nodeWebSocketOptions?: NodeWebSocketOptions;
  /** Another WebSocket (tests, or a platform's own). */
  webSocketFactory?: WebSocketFactory;
}

export interface ClientEvents {
  /** Logged in: the first time, and after each reconnection. */
  login: { uid: number; reconnected: boolean };
  /** A message the game pushed (or answered): proto > 1000 and its body. */
  message: { proto: number; body: Uint8Array };
  /** The gateway ended the session with a close frame; `reason` is the gateway's close
   *  reason (`kicked_by_game`, `replaced`, `shutdown`, ...; docs/websocket.md), or
   *  "closed_by_gateway" from a gateway that does not name it. */
  kick: { reason: string; code: number };
  /** The connection ended; `reconnectInMs` is null when the client will not reconnect. */
  disconnect: { reason: string; code: number; reconnectInMs: number | null };
  /** Something failed: a mismatched gateway key, a refused login, a protocol error. */
  error: Error;
  /** The client stopped for good: close(), or an end it does not reconnect after. */
  close: { reason: string };
}

/** The gateway answered user_login_faild_ack (12): the credential was refused. */
export class LoginRefusedError extends Error {
  override name = "LoginRefusedError";
}

/** send() while no session is logged in. */
export class NotConnectedError extends Error {
  override name = "NotConnectedError";
}

/** The client stopped before it could log in: close(), or an end it does not reconnect after. */
export class ClientClosedError extends Error {
  override name = "ClientClosedError";
  constructor(readonly reason: string) {
    super(`the client stopped: ${reason}`);
  }
}

/**
 * Close reasons after which reconnecting would only repeat the end: the game
 * or an operator ended the session, another login of the user replaced it,
 * or the client itself broke the protocol.
 */
const FINAL_REASONS = new Set([
  "kicked_by_game",
  "kicked_by_admin",
  "replaced",
  "duplicate_login",
  "login_failed",
  "bad_seq",
  "unknown_proto",
  "not_logged_in",
  "bad_body",
  "frame_too_large",
  "crypto_refused",
  "decrypt_failed",
  "text_frame",
  "unknown_gateway_key",
  "gateway_key_mismatch",
  "protocol_error",
]);

/** The default reconnect rule: every end but those of FINAL_REASONS. */
export function reconnectable(reason: string): boolean {
  return !FINAL_REASONS.has(reason);
}

interface LinkEnd {
  reason: string;
  code: number;
  /** The gateway sent a close frame. */
  byGateway: boolean;
  /** Closed after key_exchange2_req, before its ack. */
  beforeAck: boolean;
  error?: Error;
}

const OPEN = 1;  // WebSocket.OPEN

/** One connection: its socket, seq, sealed directions and timers. */
class Link {
  private seq = 0;
  private tx?: SealedDirection;
  private rx?: SealedDirection;
  private exchange?: KeyExchange2;
  private phase: "opening" | "exchange" | "login" | "ready" | "ended" = "opening";
  private readTimer?: ReturnType<typeof setTimeout>;
  private connectTimer?: ReturnType<typeof setTimeout>;
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private heartbeatId = 0;

  constructor(
    private readonly socket: WebSocketLike,
    private readonly o: {
      gatewayKey?: Uint8Array;
      aead: AeadByte;
      login: LoginRequest;
      heartbeatIntervalMs: number;
      readTimeoutMs: number;
      connectTimeoutMs: number;
    },
    private readonly hooks: {
      loggedIn: (uid: number) => void;
      message: (proto: number, body: Uint8Array) => void;
      ended: (end: LinkEnd) => void;
    },
  ) {
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.opened();
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) =>
      this.end({ reason: event.reason || "", code: event.code, byGateway: true });
    socket.onerror = () => {
      // onclose follows (1006) and ends the link.
    };
    this.connectTimer = setTimeout(
      () => this.end({ reason: "connect_timeout", code: 0, byGateway: false }),
      o.connectTimeoutMs,
    );
  }

  get ready(): boolean {
    return this.phase === "ready";
  }

  send(proto: number, body: Uint8Array): void {
    const sealedBytes = this.tx ? 16 : 0;
    if (6 + body.length + sealedBytes > MAX_PAYLOAD) {
      throw new RangeError(`a message of ${body.length} bytes does not fit in a frame`);
    }
    const plain = clientPayload(++this.seq, proto, body);
    this.socket.send(this.tx ? this.tx.seal(plain) : plain);
  }

  /** Ends the link from this side (close(), or a failure it detected). */
  end(end: Omit<LinkEnd, "beforeAck"> & { beforeAck?: boolean }): void {
    if (this.phase === "ended") return;
    const beforeAck = this.phase === "exchange";
    this.phase = "ended";
    clearTimeout(this.readTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    this.socket.onopen = this.socket.onmessage = this.socket.onclose = null;
    this.socket.onerror = () => {};
    if (!end.byGateway) this.closeSocket(end.reason === "client_closed");
    this.hooks.ended({ ...end, beforeAck: end.beforeAck ?? beforeAck });
  }

  private closeSocket(graceful: boolean): void {
    const s = this.socket as WebSocketLike & { terminate?: () => void };
    // A dead link's close handshake would never finish: `ws` can drop it at once.
    if (!graceful && typeof s.terminate === "function") s.terminate();
    else if (s.readyState <= OPEN) s.close(1000);
  }

  private opened(): void {
    this.armReadDeadline();
    if (this.o.gatewayKey) {
      this.exchange = new KeyExchange2(this.o.gatewayKey, this.o.aead);
      this.phase = "exchange";
      this.send(Proto.keyExchange2Req, this.exchange.request());
    } else {
      this.login();
    }
  }

  private login(): void {
    this.phase = "login";
    this.send(Proto.userLoginReq, loginBody(this.o.login));
  }

  private armReadDeadline(): void {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(
      () => this.end({ reason: "read_timeout", code: 0, byGateway: false }),
      this.o.readTimeoutMs,
    );
  }

  private received(data: unknown): void {
    if (this.phase === "ended") return;
    this.armReadDeadline();
    try {
      const bytes = messageBytes(data);
      if (bytes === undefined) throw new ProtocolError("a text message from the gateway");
      const { proto, body } = parseGatewayPayload(this.rx ? this.rx.open(bytes) : bytes);
      this.dispatch(proto, body);
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      const reason = e instanceof GatewayKeyMismatchError ? "gateway_key_mismatch" : "protocol_error";
      this.end({ reason, code: 0, byGateway: false, error: e, beforeAck: false });
    }
  }

  private dispatch(proto: number, body: Uint8Array): void {
    if (this.phase === "exchange") {
      if (proto !== Proto.keyExchange2Ack) {
        throw new ProtocolError(`proto ${proto} where key_exchange2_ack was due`);
      }
      const keys = this.exchange!.finish(body);
      this.tx = new SealedDirection(keys.aead, keys.keyToGateway);
      this.rx = new SealedDirection(keys.aead, keys.keyToClient);
      this.exchange = undefined;
      this.login();
    } else if (proto === Proto.userLoginSucceedAck && this.phase === "login") {
      const uid = new BodyReader(body).int32();
      this.phase = "ready";
      clearTimeout(this.connectTimer);
      this.heartbeatTimer = setInterval(() => {
        if (this.socket.readyState === OPEN) this.send(Proto.heartBeatReq, int32Body(++this.heartbeatId));
      }, this.o.heartbeatIntervalMs);
      this.hooks.loggedIn(uid);
    } else if (proto === Proto.userLoginFailedAck && this.phase === "login") {
      // The gateway closes the connection after it.
      this.end({
        reason: "login_failed",
        code: 0,
        byGateway: false,
        error: new LoginRefusedError("the gateway refused the login"),
      });
    } else if (proto > MAX_GATEWAY_PROTO) {
      this.hooks.message(proto, body);
    } else if (proto !== Proto.heartBeatAck) {
      throw new ProtocolError(`unexpected proto ${proto} from the gateway`);
    }
  }
}

/** A player's client: connect(), send(), events; see the README. */
export class GatehouseClient extends Emitter<ClientEvents> {
  private readonly keys: Uint8Array[];
  private keyIndex = 0;
  private link?: Link;
  private factory?: WebSocketFactory;
  private uid?: number;
  private loggedInOnce = false;
  private failures = 0;
  private stopped = true;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private waiters: { resolve: (uid: number) => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly options: ClientOptions) {
    super();
    const k = options.gatewayKeys;
    if (k === undefined) this.keys = [];
    else if (typeof k === "string") this.keys = parsePublicKeys(k);
    else this.keys = k.map((key) => (typeof key === "string" ? fromHex(key) : key));
    for (const key of this.keys) {
      if (key.length !== 32) throw new RangeError("a gateway public key is 32 bytes");
    }
  }

  /** The user id of the session logged in now, else undefined. */
  get userId(): number | undefined {
    return this.link?.ready ? this.uid : undefined;
  }

  get connected(): boolean {
    return this.link?.ready ?? false;
  }

  /**
   * Connects and logs in (reconnecting on the way as the options allow);
   * resolves with the user id. Rejects with GatewayKeyMismatchError,
   * LoginRefusedError or ClientClosedError.
   */
  connect(): Promise<number> {
    if (this.link?.ready && this.uid !== undefined) return Promise.resolve(this.uid);
    const logged = new Promise<number>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.stopped) {
      this.stopped = false;
      this.failures = 0;
      void this.open();
    }
    return logged;
  }

  /** Sends a message to the game (proto > 1000); throws NotConnectedError when not logged in. */
  send(proto: number, body: Uint8Array | string = new Uint8Array()): void {
    if (!Number.isInteger(proto) || proto <= MAX_GATEWAY_PROTO || proto > 0x7fff) {
      throw new RangeError(`proto ${proto}: game protos are 1001..32767`);
    }
    if (!this.link?.ready) throw new NotConnectedError("no session is logged in");
    this.link.send(proto, typeof body === "string" ? new TextEncoder().encode(body) : body);
  }

  /** Ends the session (a close frame) and stops reconnecting. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const link = this.link;
    this.link = undefined;
    link?.end({ reason: "client_closed", code: 1000, byGateway: false });
    this.finish("client_closed");
  }

  private async open(): Promise<void> {
    this.reconnectTimer = undefined;
    let socket: WebSocketLike;
    let login: LoginRequest;
    try {
      this.factory ??= this.options.webSocketFactory ?? (await webSocketFactory(this.options.nodeWebSocketOptions));
      const l = this.options.login;
      login = typeof l === "function" ? await l() : l;
      if (this.stopped) return;
      socket = this.factory(this.options.url);
    } catch (error) {
      this.emit("error", error instanceof Error ? error : new Error(String(error)));
      this.linkEnded({ reason: "connect_failed", code: 0, byGateway: false, beforeAck: false });
      return;
    }
    const aead = this.options.aead === "aes-256-gcm" ? Aead.aes256Gcm : Aead.chacha20Poly1305;
    const link: Link = new Link(
      socket,
      {
        gatewayKey: this.keys[this.keyIndex],
        aead,
        login,
        heartbeatIntervalMs: this.options.heartbeatIntervalMs ?? 5000,
        readTimeoutMs: this.options.readTimeoutMs ?? 15000,
        connectTimeoutMs: this.options.connectTimeoutMs ?? 15000,
      },
      {
        loggedIn: (uid) => {
          this.uid = uid;
          this.failures = 0;
          const reconnected = this.loggedInOnce;
          this.loggedInOnce = true;
          this.emit("login", { uid, reconnected });
          for (const w of this.waiters.splice(0)) w.resolve(uid);
        },
        message: (proto, body) => this.emit("message", { proto, body }),
        ended: (end) => {
          if (this.link !== link) return;  // close() ended it
          this.link = undefined;
          this.linkEnded(end);
        },
      },
    );
    this.link = link;
  }

  private linkEnded(end: LinkEnd): void {
    let reason = end.reason;
    if (end.byGateway) {
      // A close frame (1000) from the gateway is a kick; 1006 is a lost connection.
      if (end.code === 1000) {
        reason ||= "closed_by_gateway";
        if (!end.beforeAck) this.emit("kick", { reason, code: end.code });
      } else {
        reason ||= "connection_lost";
      }
    }
    if (end.error) this.emit("error", end.error);
    // A gateway that does not hold the key named closes (a close frame)
    // before the ack: the next pinned key, on a new connection, at once. A
    // connection lost meanwhile (1006) says nothing about the key.
    if (end.beforeAck && end.byGateway && end.code === 1000 && this.keys.length > 0) {
      reason = end.reason || "unknown_gateway_key";
      if (this.keyIndex + 1 < this.keys.length) {
        this.keyIndex += 1;
        this.emit("disconnect", { reason, code: end.code, reconnectInMs: 0 });
        void this.open();
        return;
      }
      this.keyIndex = 0;
    }
    const r = this.options.reconnect ?? {};
    this.failures += 1;
    const again =
      !this.stopped &&
      (r.enabled ?? true) &&
      this.failures <= (r.maxAttempts ?? Infinity) &&
      (r.shouldReconnect ?? reconnectable)(reason);
    if (!again) {
      this.emit("disconnect", { reason, code: end.code, reconnectInMs: null });
      if (!this.stopped) {
        this.stopped = true;
        this.finish(reason, end.error);
      }
      return;
    }
    const base = Math.min(
      r.maxDelayMs ?? 30000,
      (r.initialDelayMs ?? 500) * (r.factor ?? 2) ** (this.failures - 1),
    );
    const delay = Math.round(base * (1 - (r.jitter ?? 0.25) * Math.random()));
    this.emit("disconnect", { reason, code: end.code, reconnectInMs: delay });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  private finish(reason: string, error?: Error): void {
    this.uid = undefined;
    const e = error ?? new ClientClosedError(reason);
    for (const w of this.waiters.splice(0)) w.reject(e);
    this.emit("close", { reason });
  }
}
