// The modern key exchange, version 2, and its sealed payloads
// (docs/protocol-modern.md): X25519, BLAKE2b, ChaCha20-Poly1305 or
// AES-256-GCM, all from the @noble libraries; nothing here is a primitive of
// its own, only the protocol's composition of them.
import { gcm } from "@noble/ciphers/aes";
import { chacha20poly1305 } from "@noble/ciphers/chacha";
import { equalBytes } from "@noble/ciphers/utils";
import { x25519 } from "@noble/curves/ed25519";
import { blake2b } from "@noble/hashes/blake2";
import { randomBytes } from "@noble/hashes/utils";

import { concat, fromHex, ProtocolError } from "./wire.js";

/** The AEAD byte of the exchange. */
export const Aead = { chacha20Poly1305: 0, aes256Gcm: 1 } as const;
export type AeadByte = (typeof Aead)[keyof typeof Aead];

const TRANSCRIPT_LABEL = new TextEncoder().encode("gatehouse modern v2");
const ack2BodyBytes = 32 + 1 + 32;
const tagBytes = 16;

/** The key id naming a gateway public key on the wire: BLAKE2b-512(S)[0..8). */
export function keyId(gatewayPublicKey: Uint8Array): Uint8Array {
  return blake2b(gatewayPublicKey, { dkLen: 64 }).slice(0, 8);
}

/**
 * The public keys of a key file as `gatehouse keygen` writes FILE.pub:
 * lines starting with `#` are comments, a key is 64 hex digits on a line of
 * its own (several keys: one a line, the first one preferred).
 */
export function parsePublicKeys(text: string): Uint8Array[] {
  const keys: Uint8Array[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!/^[0-9a-fA-F]{64}$/.test(line)) throw new RangeError(`not a gateway public key: "${line}"`);
    keys.push(fromHex(line));
  }
  if (keys.length === 0) throw new RangeError("no gateway public key in the text");
  return keys;
}

/** The whole derivation, step by step (the test vectors check each value). */
export interface Derivation {
  transcript: Uint8Array;
  th: Uint8Array;
  prk: Uint8Array;
  keyToClient: Uint8Array;
  keyToGateway: Uint8Array;
  confirm: Uint8Array;
}

export function derive(p: {
  gatewayKey: Uint8Array;
  clientPublic: Uint8Array;
  aeadAsked: number;
  gatewayEphemeral: Uint8Array;
  aead: number;
  ee: Uint8Array;
  es: Uint8Array;
}): Derivation {
  const transcript = concat(
    TRANSCRIPT_LABEL,
    p.gatewayKey,
    keyId(p.gatewayKey),
    p.clientPublic,
    Uint8Array.of(p.aeadAsked),
    p.gatewayEphemeral,
    Uint8Array.of(p.aead),
  );
  const th = blake2b(transcript, { dkLen: 64 });
  const prk = blake2b(th, { dkLen: 64, key: concat(p.ee, p.es) });
  const label = (s: string) => blake2b(new TextEncoder().encode(s), { dkLen: 32, key: prk });
  return {
    transcript,
    th,
    prk,
    keyToClient: label("to-client"),
    keyToGateway: label("to-gateway"),
    confirm: label("confirm"),
  };
}

/** The gateway did not prove that it holds the pinned key's private half. */
export class GatewayKeyMismatchError extends Error {
  override name = "GatewayKeyMismatchError";
  constructor() {
    super("gateway key mismatch: the gateway does not hold the private half of the pinned key");
  }
}

export interface SessionKeys {
  aead: AeadByte;
  keyToClient: Uint8Array;
  keyToGateway: Uint8Array;
}

/** One connection's exchange, client side: a fresh X25519 pair per instance. */
export class KeyExchange2 {
  readonly clientPublic: Uint8Array;
  private readonly secret: Uint8Array;

  /** `secret` is for the test vectors only; a client leaves it out. */
  constructor(
    readonly gatewayKey: Uint8Array,
    readonly aeadAsked: AeadByte,
    secret?: Uint8Array,
  ) {
    if (gatewayKey.length !== 32) throw new RangeError("a gateway key is 32 bytes");
    this.secret = secret ?? randomBytes(32);
    this.clientPublic = x25519.getPublicKey(this.secret);
  }

  /** key_exchange2_req's body: E_c | key_id | aead_asked. */
  request(): Uint8Array {
    return concat(this.clientPublic, keyId(this.gatewayKey), Uint8Array.of(this.aeadAsked));
  }

  /**
   * Checks key_exchange2_ack's body in the page's order (the AEAD, then the
   * two X25519 results, then `confirm` in constant time) and gives the
   * session keys. Throws ProtocolError or GatewayKeyMismatchError.
   */
  finish(ack: Uint8Array): SessionKeys {
    if (ack.length < ack2BodyBytes) throw new ProtocolError(`key_exchange2_ack of ${ack.length} bytes`);
    const gatewayEphemeral = ack.subarray(0, 32);
    const aead = ack[32];
    const confirm = ack.subarray(33, 65);
    if (aead !== this.aeadAsked && aead !== Aead.chacha20Poly1305) {
      throw new ProtocolError(`the gateway granted AEAD ${aead}, asked for ${this.aeadAsked}`);
    }
    const ee = this.shared(gatewayEphemeral);
    const es = this.shared(this.gatewayKey);
    const d = derive({
      gatewayKey: this.gatewayKey,
      clientPublic: this.clientPublic,
      aeadAsked: this.aeadAsked,
      gatewayEphemeral,
      aead,
      ee,
      es,
    });
    if (!equalBytes(d.confirm, confirm)) throw new GatewayKeyMismatchError();
    return { aead: aead as AeadByte, keyToClient: d.keyToClient, keyToGateway: d.keyToGateway };
  }

  private shared(peer: Uint8Array): Uint8Array {
    let out: Uint8Array;
    try {
      out = x25519.getSharedSecret(this.secret, peer);
    } catch {
      // noble refuses an all-zero result (a low-order point) itself.
      throw new ProtocolError("a low-order X25519 key from the gateway");
    }
    if (out.every((b) => b === 0)) throw new ProtocolError("a low-order X25519 key from the gateway");
    return out;
  }
}

/** nonce(n) = | 00 00 00 00 | n as u64 big-endian |. */
export function nonce(n: bigint): Uint8Array {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, n);
  return out;
}

/** One direction's sealed payloads, numbered from 0. */
export class SealedDirection {
  private count = 0n;

  constructor(
    private readonly aead: AeadByte,
    private readonly key: Uint8Array,
  ) {}

  seal(plaintext: Uint8Array): Uint8Array {
    return this.cipher().encrypt(plaintext);
  }

  /** Throws when the payload does not open (tampered, dropped, reordered). */
  open(sealed: Uint8Array): Uint8Array {
    if (sealed.length < tagBytes) throw new ProtocolError(`a sealed payload of ${sealed.length} bytes`);
    try {
      return this.cipher().decrypt(sealed);
    } catch {
      throw new ProtocolError("a sealed payload from the gateway does not open");
    }
  }

  private cipher() {
    const n = nonce(this.count++);
    return this.aead === Aead.aes256Gcm ? gcm(this.key, n) : chacha20poly1305(this.key, n);
  }
}
