// GatehouseClient against a gateway played by the test through a fake
// WebSocket (webSocketFactory): the heartbeat, the read deadline, kicks,
// reconnection with backoff, key rotation, a key mismatch, a refused login.
// The gateway's side of the exchange is built from the SDK's derivation and
// @noble's X25519; the real gateway is the integration tests' business.
import assert from "node:assert/strict";
import { test } from "node:test";

import { x25519 } from "@noble/curves/ed25519";

import {
  BodyReader,
  BodyWriter,
  ClientClosedError,
  concat,
  derive,
  GatehouseClient,
  GatewayKeyMismatchError,
  LoginRefusedError,
  NotConnectedError,
  SealedDirection,
} from "../../dist/index.js";

const gatewaySecret = new Uint8Array(32).fill(1);
const gatewayKey = x25519.getPublicKey(gatewaySecret);
const otherKey = x25519.getPublicKey(new Uint8Array(32).fill(2));

/** Resolves when `predicate()` holds, polling; fails after `ms` (generous: a busy machine). */
async function until(predicate, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function event(client, name) {
  return new Promise((resolve) => client.once(name, resolve));
}

/**
 * One connection's gateway side. `behaviour` decides: { secret } for the
 * exchange (default the gateway's), { silentAfterLogin }, { refuseLogin },
 * { closeBeforeAck }, { uid }.
 */
class FakeSocket {
  constructor(url, behaviour, log) {
    this.url = url;
    this.behaviour = behaviour;
    this.log = log;
    this.readyState = 0;
    this.binaryType = "blob";
    this.received = [];  // { seq, proto, body } as the gateway read them
    this.rx = undefined;
    this.tx = undefined;
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
    }, 1);
  }

  send(data) {
    assert.equal(this.binaryType, "arraybuffer");
    const plain = this.rx ? this.rx.open(data) : data;
    const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
    const msg = { seq: view.getUint32(0), proto: view.getInt16(4), body: plain.subarray(6) };
    this.received.push(msg);
    this.log.push(msg.proto);
    queueMicrotask(() => this.answer(msg));
  }

  answer({ proto, body }) {
    const b = this.behaviour;
    if (proto === 34) {
      if (b.closeBeforeAck) return this.closeFromGateway(1000, "unknown_gateway_key");
      const clientPublic = body.subarray(0, 32);
      const aeadAsked = body[40];
      const ephemeral = new Uint8Array(32).fill(5);
      const gatewayEphemeral = x25519.getPublicKey(ephemeral);
      const secret = b.secret ?? gatewaySecret;
      const d = derive({
        gatewayKey: x25519.getPublicKey(secret),
        clientPublic,
        aeadAsked,
        gatewayEphemeral,
        aead: 0,
        ee: x25519.getSharedSecret(ephemeral, clientPublic),
        es: x25519.getSharedSecret(secret, clientPublic),
      });
      this.push(35, concat(gatewayEphemeral, Uint8Array.of(0), d.confirm));
      this.rx = new SealedDirection(0, d.keyToGateway);
      this.tx = new SealedDirection(0, d.keyToClient);
    } else if (proto === 10) {
      const udid = new BodyReader(body.subarray(4)).string();
      if (b.refuseLogin) return this.push(12, new Uint8Array());
      this.udid = udid;
      this.push(11, new BodyWriter().int32(b.uid ?? 42).finish());
    } else if (proto === 0) {
      if (!b.silentAfterLogin) this.push(1, body);
    } else if (proto === 1001) {
      this.push(1002, body);
    }
  }

  push(proto, body) {
    if (this.readyState !== 1) return;
    const plain = concat(Uint8Array.of(proto >> 8, proto & 0xff), body);
    const out = this.tx ? this.tx.seal(plain) : plain;
    setTimeout(() => this.onmessage?.({ data: out.buffer.slice(out.byteOffset, out.byteOffset + out.length) }), 1);
  }

  closeFromGateway(code, reason) {
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason, wasClean: code === 1000 }), 1);
  }

  close() {
    this.readyState = 3;
  }
}

function harness(behaviours) {
  const sockets = [];
  const log = [];
  const factory = (url) => {
    const s = new FakeSocket(url, behaviours[Math.min(sockets.length, behaviours.length - 1)], log);
    sockets.push(s);
    return s;
  };
  return { sockets, log, factory };
}

const fast = { initialDelayMs: 10, factor: 2, maxDelayMs: 1000, jitter: 0 };

test("logs in with a pinned key, heartbeats with seq counting every frame, echoes", async () => {
  const h = harness([{ uid: 77 }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "alice" },
    heartbeatIntervalMs: 20,
    webSocketFactory: h.factory,
  });
  assert.throws(() => client.send(1001, "early"), NotConnectedError);
  const login = event(client, "login");
  assert.equal(await client.connect(), 77);
  assert.deepEqual(await login, { uid: 77, reconnected: false });
  const s = h.sockets[0];
  assert.equal(s.udid, "alice");
  await until(() => s.received.filter((m) => m.proto === 0).length >= 3, "three heartbeats");
  const echoed = event(client, "message");
  client.send(1001, "hello");
  const m = await echoed;
  assert.equal(m.proto, 1002);
  assert.equal(new TextDecoder().decode(m.body), "hello");
  assert.deepEqual(s.received.map((r) => r.seq), s.received.map((_, i) => i + 1));
  assert.equal(s.received[0].proto, 34);
  assert.equal(s.received[1].proto, 10);
  assert.throws(() => client.send(10, "x"), RangeError, "gateway protos are not the game's");
  client.close();
  assert.equal(client.connected, false);
});

test("a silent gateway trips the read deadline; the client reconnects and logs in again", async () => {
  const h = harness([{ silentAfterLogin: true, uid: 1 }, { uid: 2 }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: () => ({ openUdid: `try-${h.sockets.length}` }),
    heartbeatIntervalMs: 20,
    readTimeoutMs: 150,
    reconnect: fast,
    webSocketFactory: h.factory,
  });
  const disconnects = [];
  client.on("disconnect", (d) => disconnects.push(d));
  const logins = [];
  client.on("login", (l) => logins.push(l));
  assert.equal(await client.connect(), 1);
  await until(() => logins.length === 2, "the second login");
  assert.deepEqual(logins[1], { uid: 2, reconnected: true });
  assert.equal(disconnects[0].reason, "read_timeout");
  assert.equal(disconnects[0].reconnectInMs, 10);
  assert.equal(h.sockets[1].udid, "try-1", "the login function runs for each connection");
  assert.equal(h.sockets[1].received[0].seq, 1, "a new connection counts seq from 1");
  client.close();
});

test("a kick names its reason; after kicked_by_game the client does not reconnect", async () => {
  const h = harness([{}]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "k" },
    reconnect: fast,
    webSocketFactory: h.factory,
  });
  await client.connect();
  const kick = event(client, "kick");
  const disconnect = event(client, "disconnect");
  const closed = event(client, "close");
  h.sockets[0].closeFromGateway(1000, "kicked_by_game");
  assert.deepEqual(await kick, { reason: "kicked_by_game", code: 1000 });
  assert.deepEqual(await disconnect, { reason: "kicked_by_game", code: 1000, reconnectInMs: null });
  assert.deepEqual(await closed, { reason: "kicked_by_game" });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.sockets.length, 1);
});

test("a drain (shutdown) and a lost connection are reconnected, with growing delays", async () => {
  const h = harness([{ uid: 5 }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "d" },
    reconnect: { ...fast, maxAttempts: 3 },
    webSocketFactory: (url) => {
      const s = h.factory(url);
      // Every connection after the first is lost at once.
      if (h.sockets.length > 1) setTimeout(() => s.closeFromGateway(1006, ""), 2);
      return s;
    },
  });
  const kicks = [];
  client.on("kick", (k) => kicks.push(k.reason));
  const disconnects = [];
  client.on("disconnect", (d) => disconnects.push(d));
  await client.connect();
  const closed = event(client, "close");
  h.sockets[0].closeFromGateway(1000, "shutdown");
  assert.deepEqual(await closed, { reason: "connection_lost" });
  assert.deepEqual(kicks, ["shutdown"]);
  assert.deepEqual(
    disconnects.map((d) => [d.reason, d.reconnectInMs]),
    [["shutdown", 10], ["connection_lost", 20], ["connection_lost", 40], ["connection_lost", null]],
  );
  assert.equal(h.sockets.length, 4);
});

test("a gateway that closes before the ack: the next pinned key, on a new connection", async () => {
  const h = harness([{ closeBeforeAck: true }, {}]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [otherKey, gatewayKey],
    login: { openUdid: "r" },
    webSocketFactory: h.factory,
  });
  const kicks = [];
  client.on("kick", (k) => kicks.push(k));
  assert.equal(await client.connect(), 42);
  assert.equal(h.sockets.length, 2);
  const named = (s) => Buffer.from(s.received[0].body.subarray(32, 40)).toString("hex");
  assert.notEqual(named(h.sockets[0]), named(h.sockets[1]), "each connection names another key");
  assert.deepEqual(kicks, [], "no session was kicked");
  client.close();
});

test("a gateway without the pinned key's secret: gateway key mismatch, no retry", async () => {
  const h = harness([{ secret: new Uint8Array(32).fill(9) }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "m" },
    reconnect: fast,
    webSocketFactory: h.factory,
  });
  const errors = [];
  client.on("error", (e) => errors.push(e));
  await assert.rejects(client.connect(), GatewayKeyMismatchError);
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /gateway key mismatch/);
  assert.deepEqual(h.sockets[0].received.map((m) => m.proto), [34], "nothing sent after the request");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.sockets.length, 1);
});

test("a refused login rejects connect() and stops", async () => {
  const h = harness([{ refuseLogin: true }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "x", clientCertificate: "bad" },
    reconnect: fast,
    webSocketFactory: h.factory,
  });
  await assert.rejects(client.connect(), LoginRefusedError);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.sockets.length, 1);
});

test("close() while connecting rejects connect() with ClientClosedError", async () => {
  const h = harness([{}]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    login: { openUdid: "c" },
    webSocketFactory: h.factory,
  });
  const connecting = client.connect();
  client.close();
  await assert.rejects(connecting, ClientClosedError);
});

test("without pinned keys the session is clear: login is frame 1", async () => {
  const h = harness([{ uid: 9 }]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    login: { openUdid: "dev-player" },
    webSocketFactory: h.factory,
  });
  assert.equal(await client.connect(), 9);
  assert.equal(client.userId, 9);
  assert.deepEqual(h.sockets[0].received.map((m) => [m.seq, m.proto]), [[1, 10]]);
  assert.equal(h.sockets[0].udid, "dev-player");
  client.close();
});

test("a connection lost during the exchange is retried with the same key, not given up", async () => {
  const h = harness([{}]);
  const client = new GatehouseClient({
    url: "ws://gateway/",
    gatewayKeys: [gatewayKey],
    login: { openUdid: "l" },
    reconnect: fast,
    webSocketFactory: (url) => {
      const s = h.factory(url);
      // The first connection drops right after key_exchange2_req.
      if (h.sockets.length === 1) s.answer = () => s.closeFromGateway(1006, "");
      return s;
    },
  });
  const disconnects = [];
  client.on("disconnect", (d) => disconnects.push(d));
  assert.equal(await client.connect(), 42);
  assert.deepEqual(disconnects.map((d) => [d.reason, d.reconnectInMs]), [["connection_lost", 10]]);
  const named = (s) => Buffer.from(s.received[0].body.subarray(32, 40)).toString("hex");
  assert.equal(named(h.sockets[0]), named(h.sockets[1]));
  client.close();
});
