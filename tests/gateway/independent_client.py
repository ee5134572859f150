#!/usr/bin/env python3
"""A client of the modern exchange's version 2 written from docs/protocol-modern.md alone
(and shared/protocol.md for the frames it points to), with Python's hashlib and the
Debian package python3-cryptography: none of the gateway's code.

  independent_client.py --doc docs/protocol-modern.md
      checks the page's test vectors;
  ... --port P --gateway-key FILE.pub [--udid NAME]
      logs in over version 2 against a gateway pinned to FILE.pub and runs one echo
      (proto 1001 -> 1002) through its game service;
  ... --mitm-port Q
      connects through a man in the middle, and must detect it at the ack.

Exit status 0 when every step asked for did what the page says; 1 otherwise.
"""

import argparse
import hashlib
import hmac
import os
import re
import socket
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LABEL = b"gatehouse modern v2"
KEY_EXCHANGE2_REQ, KEY_EXCHANGE2_ACK = 34, 35
USER_LOGIN_REQ, USER_LOGIN_SUCCEED_ACK = 10, 11
HEART_BEAT_REQ, HEART_BEAT_ACK = 0, 1


class Mismatch(Exception):
    """The ack does not prove the pinned key."""


# ------------------------------------------------------------------ the page's formulas

def public_of(secret):
    key = X25519PrivateKey.from_private_bytes(secret).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519(secret, peer):
    shared = X25519PrivateKey.from_private_bytes(secret).exchange(
        X25519PublicKey.from_public_bytes(peer))
    if shared == bytes(32):
        raise Mismatch("an all-zero X25519 result (a low-order point)")
    return shared


def key_id(gateway_static):
    return hashlib.blake2b(gateway_static).digest()[:8]


def derive(ee, es, gateway_static, client_ephemeral, aead_asked, gateway_ephemeral, aead):
    transcript = (LABEL + gateway_static + key_id(gateway_static) + client_ephemeral
                  + bytes([aead_asked]) + gateway_ephemeral + bytes([aead]))
    th = hashlib.blake2b(transcript).digest()
    prk = hashlib.blake2b(th, key=ee + es).digest()

    def expand(label):
        return hashlib.blake2b(label, digest_size=32, key=prk).digest()

    return {"transcript": transcript, "th": th, "prk": prk,
            "key_to_client": expand(b"to-client"), "key_to_gateway": expand(b"to-gateway"),
            "confirm": expand(b"confirm")}


def nonce(n):
    return bytes(4) + struct.pack(">Q", n)


def frame(payload):
    return struct.pack(">H", len(payload)) + payload


class Direction:
    """One direction of a sealed session: payload n under nonce(n), ChaCha20-Poly1305."""

    def __init__(self, key):
        self.aead = ChaCha20Poly1305(key)
        self.n = 0

    def seal(self, plain):
        sealed = self.aead.encrypt(nonce(self.n), plain, None)
        self.n += 1
        return sealed

    def open(self, sealed):
        plain = self.aead.decrypt(nonce(self.n), sealed, None)
        self.n += 1
        return plain


# ------------------------------------------------------------------ test vectors

def check_vectors(doc_path):
    text = open(doc_path, encoding="utf-8").read()
    block = re.search(r"<!-- kx-vectors begin.*?-->(.*?)<!-- kx-vectors end -->", text, re.S)
    if not block:
        raise SystemExit("no test vectors block in " + doc_path)
    v = {}
    for line in block.group(1).splitlines():
        m = re.match(r"\s{4}(.+?)\s{2,}([0-9a-f]+)$", line)
        if m:
            v[m.group(1).strip()] = bytes.fromhex(m.group(2))
    s, e_c, e_s = v["s (gateway static secret)"], v["e_c (client secret)"], v["e_s (gateway secret)"]
    S, E_c, E_s = public_of(s), public_of(e_c), public_of(e_s)
    got = {"S": S, "E_c": E_c, "E_s": E_s, "key_id": key_id(S)}
    got["key_exchange2_req frame"] = frame(struct.pack(">IH", 1, KEY_EXCHANGE2_REQ)
                                           + E_c + key_id(S) + bytes([0]))
    ee, es = x25519(e_c, E_s), x25519(e_c, S)
    if ee != x25519(e_s, E_c) or es != x25519(s, E_c):
        raise SystemExit("vectors: the two sides' X25519 disagree")
    got.update({"ee": ee, "es": es})
    got.update(derive(ee, es, S, E_c, 0, E_s, 0))
    got["key_exchange2_ack frame"] = frame(struct.pack(">H", KEY_EXCHANGE2_ACK) + E_s
                                           + bytes([0]) + got["confirm"])
    to_gateway, to_client = Direction(got["key_to_gateway"]), Direction(got["key_to_client"])
    got["client frame 0 (beat 7)"] = frame(
        to_gateway.seal(struct.pack(">IHi", 2, HEART_BEAT_REQ, 7)))
    got["gateway frame 0 (ack 7)"] = frame(to_client.seal(struct.pack(">Hi", HEART_BEAT_ACK, 7)))
    bad = [name for name, value in got.items() if v.get(name) != value]
    if bad:
        raise SystemExit("vectors differ from the page: " + ", ".join(bad))
    print("vectors: %d values match the page" % len(got))


# ------------------------------------------------------------------ a live session

class Session:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.seq = 0
        self.send_dir = None
        self.receive_dir = None

    def read_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("the gateway closed the connection")
            out += chunk
        return out

    def read_payload(self):
        (size,) = struct.unpack(">H", self.read_exact(2))
        payload = self.read_exact(size)
        return self.receive_dir.open(payload) if self.receive_dir else payload

    def send(self, proto, body):
        self.seq += 1
        plain = struct.pack(">IH", self.seq, proto) + body
        self.sock.sendall(frame(self.send_dir.seal(plain) if self.send_dir else plain))

    def exchange(self, pinned, aead_asked=0):
        e_c = os.urandom(32)  # a fresh X25519 secret (X25519 clamps it)
        E_c = public_of(e_c)
        self.send(KEY_EXCHANGE2_REQ, E_c + key_id(pinned) + bytes([aead_asked]))
        ack = self.read_payload()
        (proto,) = struct.unpack(">h", ack[:2])
        if proto != KEY_EXCHANGE2_ACK or len(ack) < 2 + 65:
            raise SystemExit("expected key_exchange2_ack, got %r" % ack[:2])
        E_s, aead, confirm = ack[2:34], ack[34], ack[35:67]
        if aead not in (aead_asked, 0):
            raise Mismatch("the ack names an AEAD not asked for")
        if aead != 0:
            raise SystemExit("this client speaks ChaCha20-Poly1305 only")
        d = derive(x25519(e_c, E_s), x25519(e_c, pinned), pinned, E_c, aead_asked, E_s, aead)
        if not hmac.compare_digest(d["confirm"], confirm):
            raise Mismatch("gateway key mismatch: the ack does not prove the pinned key")
        self.send_dir = Direction(d["key_to_gateway"])
        self.receive_dir = Direction(d["key_to_client"])

    def login(self, udid):
        def string(s):
            return struct.pack(">H", len(s)) + s.encode()
        body = (struct.pack(">i", 0) + string(udid) + string("") + struct.pack(">i", 1)
                + string("en") + string("independent") + string("python") + string("box")
                + string("dev") + struct.pack(">i", 0) + string("127.0.0.1"))
        self.send(USER_LOGIN_REQ, body)
        reply = self.read_payload()
        (proto, uid) = struct.unpack(">hi", reply[:6])
        if proto != USER_LOGIN_SUCCEED_ACK:
            raise SystemExit("login refused: proto %d" % proto)
        return uid


def read_pinned(path):
    for line in open(path, encoding="ascii"):
        line = line.strip()
        if line and not line.startswith("#"):
            return bytes.fromhex(line)
    raise SystemExit("no key in " + path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--doc", required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--mitm-port", type=int)
    p.add_argument("--gateway-key")
    p.add_argument("--udid", default="independent")
    a = p.parse_args()
    check_vectors(a.doc)
    if a.port:
        s = Session(a.port)
        s.exchange(read_pinned(a.gateway_key))
        print("live: key_exchange2_ack proves the pinned key")
        print("live: logged in as uid %d" % s.login(a.udid))
        s.send(1001, b"independent echo")
        reply = s.read_payload()
        if reply != struct.pack(">h", 1002) + b"independent echo":
            raise SystemExit("live: no echo, got %r" % reply)
        print("live: echo through the game service")
        s.send(HEART_BEAT_REQ, struct.pack(">i", 9))
        if s.read_payload() != struct.pack(">hi", HEART_BEAT_ACK, 9):
            raise SystemExit("live: no heart_beat_ack")
        print("live: heartbeat")
    if a.mitm_port:
        try:
            Session(a.mitm_port).exchange(read_pinned(a.gateway_key))
        except Mismatch as e:
            print("mitm: detected (%s)" % e)
        else:
            raise SystemExit("mitm: the substituted key was NOT detected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
