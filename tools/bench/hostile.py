#!/usr/bin/env python3
"""Hostile clients against a running gateway, for docs/security.md: each mode
plays one attack of issue 20 over loopback and prints what the gateway let it
do (connections still open, bytes it took, when it was closed).

  tools/bench/hostile.py trickle  --port 8888 --conns 300 --seconds 20
  tools/bench/hostile.py prelogin --port 8888 --conns 2000 --seconds 20
  tools/bench/hostile.py connect  --port 8888 --seconds 5 --gateway-key run/gateway.key.pub
  tools/bench/hostile.py hoard    --port 8888 --seconds 30   (these two need a game:
  tools/bench/hostile.py kicked   --port 8888 --seconds 30    examples/demo-game)

trickle:  each connection declares a 100-byte frame and sends it 1 byte/s.
prelogin: each connection sends a heartbeat every 5 s and never logs in.
connect:  opens connections from one address as fast as it can, each sending a
          modern key_exchange2_req (version 2, naming the gateway's key: the gateway
          does both of its X25519); counts those answered and those refused.
hoard:    logs in, has 120 pings of 60 KB echoed, never reads, and keeps the
          read deadline alive; reports when the gateway closed it.
kicked:   logs in, sends 60 KB pings as fast as the socket takes them and never
          reads (the rpm limit kicks it); reports what it sent and when closed.
"""
import argparse
import hashlib
import select
import socket
import struct
import time


def frame(seq, proto, body=b""):
    payload = struct.pack(">Ih", seq, proto) + body
    return struct.pack(">H", len(payload)) + payload


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def login_body(udid):
    return b"".join([struct.pack(">I", 1), string(udid), string(udid), struct.pack(">I", 7),
                     string("en"), string("app"), string("linux"), string("box"),
                     string("dev-1"), struct.pack(">I", 2), string("10.0.0.1")])


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    return s


def closed(s):
    """True once the peer closed (EOF or reset); drains what it sent."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def run_open_count(args, start_bytes, each_tick, tick_s):
    conns = []
    for _ in range(args.conns):
        try:
            s = connect(args.port)
            if start_bytes:
                s.send(start_bytes)
            conns.append(s)
        except OSError as e:
            print("connect failed:", e)
            break
    t0 = time.monotonic()
    open_conns, closed_at = list(conns), []
    next_tick, tick = t0 + tick_s, 0
    while time.monotonic() - t0 < args.seconds and open_conns:
        time.sleep(0.05)
        still = []
        for s in open_conns:
            if closed(s):
                closed_at.append(time.monotonic() - t0)
                s.close()
            else:
                still.append(s)
        open_conns = still
        if time.monotonic() >= next_tick:
            next_tick += tick_s
            tick += 1
            for s in open_conns:
                try:
                    s.send(each_tick(tick))
                except OSError:
                    pass
    print(f"{len(conns)} connections, after {args.seconds} s: {len(open_conns)} still open, "
          f"{len(closed_at)} closed" +
          (f" (first at {min(closed_at):.1f} s, last at {max(closed_at):.1f} s)"
           if closed_at else ""))


def logged_in(port, name):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(frame(1, 10, login_body(name)))
    time.sleep(0.5)
    s.setblocking(False)
    return s


def peer_closed(s):
    """Peeks for the gateway's FIN without reading what it sent."""
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def send_some(s, data, wait=0.2):
    """Sends what the socket takes; -1 once the gateway is gone."""
    try:
        return s.send(data)
    except BlockingIOError:
        select.select([], [s], [], wait)
        return 0
    except OSError:
        return -1


def hoard(args):
    """120 pings of 60 KB echoed to a client that never reads (under the
    128-frame txqueuelen), then one byte every 2 s to keep the read deadline."""
    s = logged_in(args.port, "hostile-hoard")
    body = struct.pack(">H", 60000) + b"x" * 60000
    for seq in range(2, 122):
        data = frame(seq, 1001, body)
        while data:
            n = send_some(s, data)
            if n < 0:
                print("closed while sending the pings")
                return
            data = data[n:]
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        if peer_closed(s) or send_some(s, struct.pack(">H", 60000) if int(time.monotonic() - t0) == 0
                                       else b"\0") < 0:
            print(f"closed {time.monotonic() - t0:.1f} s after the pings")
            return
        time.sleep(2)
    print(f"still open {args.seconds} s after the pings")


def kicked(args):
    """Sends 8 KB pings as fast as the socket takes them and never reads:
    the rpm limit kicks it (run the gateway with --rpm-limit 20, so that the
    kick comes before the 128-frame txqueuelen); how long is it read after?"""
    s = logged_in(args.port, "hostile-kicked")
    sent, seq, t0 = 0, 2, time.monotonic()
    body = struct.pack(">H", 8000) + b"x" * 8000
    pending = b""
    while time.monotonic() - t0 < args.seconds:
        if not pending:
            pending = frame(seq, 1001, body)
            seq += 1
        n = send_some(s, pending)
        if n < 0 or peer_closed(s):
            print(f"sent {sent / 1e6:.1f} MB in {seq - 2} frames; "
                  f"closed after {time.monotonic() - t0:.1f} s")
            return
        sent += n
        pending = pending[n:]
    print(f"sent {sent / 1e6:.1f} MB in {seq - 2} frames; still open after {args.seconds} s")


def connect_flood(args):
    """Each connection asks for a modern key exchange, version 2, naming the
    gateway's key (a fixed public key: no crypto on this side), reads the ack,
    and closes."""
    with open(args.gateway_key) as f:
        pinned = bytes.fromhex(next(l for l in f if l.strip() and not l.startswith("#")).strip())
    key_id = hashlib.blake2b(pinned).digest()[:8]  # docs/protocol-modern.md
    request = frame(1, 34, bytes(range(1, 33)) + key_id + b"\0")
    answered = refused = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        try:
            s = socket.create_connection(("127.0.0.1", args.port))
            s.settimeout(2)
            s.sendall(request)
            if len(s.recv(64)) > 0:
                answered += 1
            else:
                refused += 1
        except OSError:
            refused += 1
        finally:
            s.close()
    print(f"{args.seconds} s: {answered} key exchanges answered ({answered / args.seconds:.0f}/s), "
          f"{refused} connections refused")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["trickle", "prelogin", "connect", "hoard", "kicked"])
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--conns", type=int, default=300)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--gateway-key", help="connect: the gateway's public key file (FILE.pub)")
    args = p.parse_args()
    if args.mode == "connect" and not args.gateway_key:
        p.error("connect needs --gateway-key FILE.pub")
    if args.mode == "trickle":
        run_open_count(args, struct.pack(">H", 100), lambda _: b"x", 1.0)
    elif args.mode == "prelogin":
        run_open_count(args, frame(1, 0, struct.pack(">i", 1)), lambda k: frame(k + 1, 0, struct.pack(">i", 1)), 5.0)
    elif args.mode == "connect":
        connect_flood(args)
    elif args.mode == "hoard":
        hoard(args)
    else:
        kicked(args)


if __name__ == "__main__":
    main()
