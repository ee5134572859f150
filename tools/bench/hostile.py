#!/usr/bin/env python3
"""Hostile clients against a running gateway, for docs/security.md: each mode
plays one attack of issue 20 over loopback and prints what the gateway let it
do (connections still open, bytes it took, when it was closed).

  tools/bench/hostile.py trickle  --port 8888 --conns 300 --seconds 20
  tools/bench/hostile.py prelogin --port 8888 --conns 2000 --seconds 20
  tools/bench/hostile.py connect  --port 8888 --seconds 5 --gateway-key run/gateway.key.pub
                                   [--players 20] [--from 127.0.0.2] [--procs 3]
  tools/bench/hostile.py hoard    --port 8888 --seconds 30   (these two need a game:
  tools/bench/hostile.py kicked   --port 8888 --seconds 30    examples/demo-game)
  tools/bench/hostile.py bigchat  --port 8888 [--receivers 5] [--metrics URL] [--bin-dir DIR]
  tools/bench/hostile.py broadcast --port 8888 [--players 80] [--metrics URL] [--log FILE]
  tools/bench/hostile.py udid     --port 8888 --log FILE   (gateway with --login tokens:FILE)
  tools/bench/hostile.py limitflood --port 8888 --conns 2800 --log FILE [--metrics URL]
  tools/bench/hostile.py metrics-idle --metrics URL --conns 2 [--seconds 60]
(bigchat and broadcast need the demo game, broadcast on the batched contract:
--backend batch:HOST:PORT; --log FILE is the gateway's stderr; hostile-all.sh
starts game and gateway for every mode.)

trickle:  each connection declares a 100-byte frame and sends it 1 byte/s.
prelogin: each connection sends a heartbeat every 5 s and never logs in.
connect:  opens connections from one address as fast as it can, each sending a
          modern key_exchange2_req (version 2, naming the gateway's key: the gateway
          does both of its X25519); counts those answered and those refused.
hoard:    logs in, has 120 pings of 60 KB echoed, never reads, and keeps the
          read deadline alive; reports when the gateway closed it.
kicked:   logs in, sends 60 KB pings as fast as the socket takes them and never
          reads (the rpm limit kicks it); reports what it sent and when closed.
bigchat:  modern-crypto receivers (gatehouse-client --modern) and one clear
          sender whose chat_say is too large for a sealed frame; reports who
          the gateway closed and whether a later small chat reached everybody.
broadcast: logged-in players, then three 60 KB chats broadcast to all of them;
          reports how many heard all three and how often the game link failed.
udid:     a refused login whose 60 KB open_udid carries a forged log line and
          a terminal escape; reports what the gateway's log took from it.
limitflood: holds --max-connections with logged-in players, then opens
          --conns more; reports the refusals and the log lines written for them.
metrics-idle: holds --conns idle TCP connections to the metrics port and
          times three scrapes.
"""
import argparse
import hashlib
import os
import re
import select
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request


def frame(seq, proto, body=b""):
    payload = struct.pack(">Ih", seq, proto) + body
    return struct.pack(">H", len(payload)) + payload


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def login_body(udid, certificate=None):
    """certificate: the token of --login tokens:FILE (default: the udid)."""
    cert = udid if certificate is None else certificate
    return b"".join([struct.pack(">I", 1), string(udid), string(cert), struct.pack(">I", 7),
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


def players(port, count, seconds, out):
    """`count` logged-in players (clear), each pinging the demo game every
    0.3 s (inside the default 200-a-minute bucket) for `seconds`; puts their
    round trips in ms on `out`. Runs in a process of its own, so that the
    flood's loop does not delay its clock."""
    conns = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(frame(1, 10, login_body(f"player-{i}")))
        conns.append(s)
    time.sleep(0.5)
    for s in conns:
        s.settimeout(0.2)
        try:
            while s.recv(65536):
                pass
        except (socket.timeout, BlockingIOError):
            pass
        s.settimeout(5)
    rtts = []
    seq = 2
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        tick = time.monotonic()
        for s in conns:
            sent = time.monotonic()
            s.sendall(frame(seq, 1001, b"rtt"))
            got = b""
            while len(got) < 2 or len(got) < 2 + struct.unpack(">H", got[:2])[0]:
                got += s.recv(65536)
            rtts.append((time.monotonic() - sent) * 1000)
        seq += 1
        time.sleep(max(0.0, 0.3 - (time.monotonic() - tick)))
    out.put(rtts)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def key_exchanges(args, counts):
    """One flooding process of connect_flood(): puts (answered, refused).
    Each connection asks for a modern key exchange, version 2, naming the
    gateway's key (a fixed public key: no crypto on this side), reads the
    ack, and closes."""
    with open(args.gateway_key) as f:
        pinned = bytes.fromhex(next(l for l in f if l.strip() and not l.startswith("#")).strip())
    key_id = hashlib.blake2b(pinned).digest()[:8]  # docs/protocol-modern.md
    request = frame(1, 34, bytes(range(1, 33)) + key_id + b"\0")
    answered = refused = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", args.port),
                                         source_address=(args.source, 0))
            s.settimeout(2)
            s.sendall(request)
            if len(s.recv(64)) > 0:
                answered += 1
            else:
                refused += 1
        except OSError:
            refused += 1
        finally:
            if s is not None:
                s.close()
    counts.put((answered, refused))


def connect_flood(args):
    """Each connection asks for a modern key exchange (a fixed public key:
    no crypto on this side), reads the ack, and closes; from --from, which
    by default is not one of the loopback addresses exempt from the
    per-address limits (127.0.0.1, ::1). --players measure what real
    players see meanwhile."""
    import multiprocessing
    rtt_queue = multiprocessing.Queue()
    watcher = None
    if args.players:
        watcher = multiprocessing.Process(target=players,
                                          args=(args.port, args.players, args.seconds, rtt_queue))
        watcher.start()
        time.sleep(1.0)  # logged in before the flood
    counts = multiprocessing.Queue()
    floods = [multiprocessing.Process(target=key_exchanges, args=(args, counts))
              for _ in range(args.procs)]
    for f in floods:
        f.start()
    answered = refused = 0
    for _ in floods:
        a, r = counts.get()
        answered += a
        refused += r
    for f in floods:
        f.join()
    print(f"{args.seconds} s: {answered} key exchanges answered ({answered / args.seconds:.0f}/s), "
          f"{refused} connections refused")
    if watcher:
        rtts = rtt_queue.get()
        watcher.join()
        print(f"players: {len(rtts)} pings, round trip p50 {percentile(rtts, 0.5):.2f} ms, "
              f"p99 {percentile(rtts, 0.99):.2f} ms, max {max(rtts):.2f} ms")


PING, ECHO, CHAT_SAY, CHAT_HEAR = 1001, 1002, 1003, 1004  # examples/demo-game
LOGIN_OK, LOGIN_FAILED = 11, 12


class Player:
    """A clear client (no key exchange) that logs in and keeps what the
    gateway sends it: frames | size u16 | proto i16 | body |."""

    def __init__(self, port, udid, certificate=None):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.seq = 0
        self.inbox = bytearray()
        self.received = []  # (proto, body)
        self.closed = False
        self.send(10, login_body(udid, certificate))

    def send(self, proto, body):
        self.seq += 1
        self.sock.sendall(frame(self.seq, proto, body))

    def read(self):
        """Takes what has arrived, without blocking."""
        self.sock.settimeout(0)
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    self.closed = True
                    break
                self.inbox += data
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
        self.sock.settimeout(None)
        while len(self.inbox) >= 2:
            size = struct.unpack_from(">H", self.inbox)[0]
            if len(self.inbox) < 2 + size:
                break
            self.received.append((struct.unpack_from(">h", self.inbox, 2)[0],
                                  bytes(self.inbox[4:2 + size])))
            del self.inbox[:2 + size]

    def got(self, proto):
        return [body for p, body in self.received if p == proto]


def pump_until(players, done, seconds):
    """Reads every player until done(player) holds for each open one, or for
    `seconds`; returns the time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        waiting = [p for p in players if not p.closed and not done(p)]
        if not waiting:
            break
        readable, _, _ = select.select([p.sock for p in waiting], [], [], 0.1)
        for p in waiting:
            if p.sock in readable:
                p.read()
    return time.monotonic() - t0


def logged_in_players(port, prefix, count):
    """`count` clear players, each answered (11 or 12) or given up after 10 s."""
    players = [Player(port, f"{prefix}-{i}") for i in range(count)]
    pump_until(players, lambda p: p.got(LOGIN_OK) or p.got(LOGIN_FAILED), 10)
    return players


def scrape(url):
    """The samples of a Prometheus text page: {'name{labels}': value}."""
    samples = {}
    with urllib.request.urlopen(url, timeout=10) as page:
        for line in page.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
    return samples


def print_metrics(url, prefixes):
    """The samples of those metrics, and the kicks (closes other than the
    client's own) by reason."""
    if not url:
        return
    samples = scrape(url)
    shown = [f"{k} {v:g}" for k, v in samples.items() if k.startswith(tuple(prefixes))]
    kicks = [f"{k.split('reason=')[1][1:-2]} {v:g}" for k, v in samples.items()
             if k.startswith("gatehouse_connections_closed_total{") and v
             and "client_closed" not in k]
    print("metrics: " + "; ".join(shown + ["kicks: " + (", ".join(kicks) or "none")]))


def heard_text(body):
    """chat_hear's text: | uid i32 | len u16 | text |."""
    return body[6:]


RECEIVER_LISTEN_S = 5  # receivers stay idle this long: under the 15 s read deadline


def bigchat(args):
    """Modern receivers (the client binary does the X25519 + AEAD exchange),
    then a clear sender's chat whose | proto | body | is --say-bytes (65,527:
    the demo game's broadcast adds 4, over the 65,519 a sealed frame holds),
    then a small chat that every connected receiver must hear."""
    client = os.path.join(args.bin_dir, "gatehouse-client")
    # Each echoes a ping first: an echo comes back through the game, so the
    # game has the receiver's stream before anybody chats.
    receivers = [subprocess.Popen([client, "--modern", "--gateway-key", args.gateway_key,
                                   "--udid", f"r{i}", "--echo", "ready",
                                   "--listen", str(RECEIVER_LISTEN_S), f"127.0.0.1:{args.port}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for i in range(args.receivers)]
    outputs = {r.stdout.fileno(): bytearray() for r in receivers}
    running = set(outputs)

    def read_outputs(seconds, done):
        t0 = time.monotonic()
        while running and time.monotonic() - t0 < seconds and not done():
            readable, _, _ = select.select(list(running), [], [], 0.1)
            for fd in readable:
                data = os.read(fd, 1 << 20)
                outputs[fd] += data
                if not data:  # the receiver exited
                    running.discard(fd)

    read_outputs(10, lambda: all(b"<- 1002 " in out for out in outputs.values()))
    ready = sum(b"<- 1002 " in out for out in outputs.values())
    sender = logged_in_players(args.port, "bigchat-sender", 1)[0]
    sender.send(PING, b"ready")
    pump_until([sender], lambda p: p.got(ECHO), 5)
    sender.send(CHAT_SAY, string("a" * (args.say_bytes - 4)))
    sender.send(CHAT_SAY, string("after"))
    pump_until([sender], lambda p: any(heard_text(b) == b"after" for b in p.got(CHAT_HEAR)), 5)
    read_outputs(RECEIVER_LISTEN_S + 10, lambda: False)
    for r in receivers:
        r.wait(timeout=10)
    time.sleep(0.2)
    sender.read()
    outs = list(outputs.values())
    kicked = sum(b"connection closed by gateway" in out for out in outs)
    # Served to the end: listened its while, not closed, exit status 0.
    connected = sum(r.returncode == 0 and b"connection closed by gateway" not in out
                    for r, out in zip(receivers, outs))
    big = sum(any(len(line) > 60000 for line in out.split(b"\n")) for out in outs)
    after = sum(b'"after"' in out for out in outs)
    sender_heard = [len(heard_text(b)) for b in sender.got(CHAT_HEAR)]
    print(f"{args.receivers} modern receivers ({ready} echoed first), one clear sender of a "
          f"{args.say_bytes}-byte | proto | body | chat: {kicked} receivers kicked, "
          f"{connected} still connected; {big} heard the large chat, "
          f"{after} heard the small one after it; sender "
          f"{'kicked' if sender.closed else 'still connected'}, heard texts of "
          f"{sender_heard} bytes")
    print_metrics(args.metrics, ["gatehouse_client_messages_too_large_total",
                                 "gatehouse_game_messages_too_large_total"])


def broadcast(args):
    """Three 60 KB chats from three players, each broadcast by the demo game to
    every player: on the batched contract, 14.4 MB of game -> gateway events
    that must be cut into gRPC messages under 4 MiB."""
    count = args.players or 80
    players = logged_in_players(args.port, "bcast", count)
    # An echo comes back through the game: once every player has one, the
    # game knows every session and will broadcast to all of them.
    for p in players:
        p.send(PING, b"ready")
    pump_until(players, lambda p: p.got(ECHO), 10)
    ready = sum(bool(p.got(ECHO)) for p in players)
    text = "x" * 60000

    def heard_all(p):
        return sum(len(heard_text(b)) == len(text) for b in p.got(CHAT_HEAR)) >= 3

    for i in range(3):
        players[i % count].send(CHAT_SAY, string(text))
    took = pump_until(players, heard_all, args.seconds)
    served = sum(heard_all(p) for p in players)
    kicked = sum(p.closed for p in players)
    print(f"{count} players ({ready} echoed first): {served} heard all 3 chats of 60 KB "
          f"within {args.seconds:g} s (waited {took:.1f} s), {kicked} closed by the gateway")
    failures = ""
    if args.log:
        with open(args.log, "rb") as f:
            log = f.read()
        failures = (f"; log: {log.count(b'batched link ended')} 'batched link ended', "
                    f"{log.count(b'batched link failed')} 'batched link failed' lines")
    if args.metrics:
        samples = scrape(args.metrics)
        print(f"link failures: gatehouse_game_streams_failed_total "
              f"{samples.get('gatehouse_game_streams_failed_total', float('nan')):g}, "
              f"gatehouse_game_batches_received_total "
              f"{samples.get('gatehouse_game_batches_received_total', float('nan')):g}" + failures)
    elif failures:
        print("link failures" + failures)


def log_size(path):
    return os.path.getsize(path) if path else 0


def log_since(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def wait_log(path, offset, done, seconds):
    """The log's bytes after `offset` once done(bytes) holds or after `seconds`."""
    t0 = time.monotonic()
    new = log_since(path, offset)
    while not done(new) and time.monotonic() - t0 < seconds:
        time.sleep(0.05)
        new = log_since(path, offset)
    return new


FORGED = "2026-12-06T03:00:00.000 info  [worker-0] login conn=0x1 remote=10.0.0.9:1 FORGED"


def udid(args):
    """A login refused by --login tokens:FILE (wrong token) whose open_udid is
    60 KB: a quote, a newline and a forged log line, ESC[2J, padding. Prints
    what the gateway's log (its stderr, --log) took from it."""
    open_udid = "mallory'\n" + FORGED + "\x1b[2J\r\n"
    open_udid += "A" * (60 * 1024 - len(open_udid))
    offset = log_size(args.log)
    p = Player(args.port, open_udid, certificate="wrong-token")
    pump_until([p], lambda q: q.closed, 10)
    answer = [proto for proto, _ in p.received]
    new = wait_log(args.log, offset, lambda b: b"reason=" in b, 5)
    time.sleep(0.3)  # anything the gateway still writes for it
    new = log_since(args.log, offset)
    lines = new.splitlines()
    forged = sum(line.startswith(FORGED[:30].encode()) for line in lines)
    escapes = new.count(b"\x1b")
    print(f"60 KB open_udid: gateway answered {answer or 'nothing'}, "
          f"{'closed' if p.closed else 'still open'}; the log took {len(new)} bytes in "
          f"{len(lines)} lines (longest {max(map(len, lines), default=0)}), "
          f"{escapes} ESC bytes, {forged} forged lines")
    for line in lines:
        shown = line if len(line) <= 300 else line[:300] + b"...(%d more)" % (len(line) - 300)
        print("  log:", shown.decode("utf-8", "backslashreplace"))


def limit_flood(args):
    """--hold logged-in players fill --max-connections; then --conns more
    connections, each refused at accept. Counts the log lines the refusals
    wrote (a line, or a '(N similar suppressed)' count)."""
    holders = logged_in_players(args.port, "holder", args.hold)
    offset = log_size(args.log)
    refused, admitted = 0, []
    t0 = time.monotonic()
    for _ in range(args.conns):
        s = socket.create_connection(("127.0.0.1", args.port))
        s.settimeout(1)
        try:
            if s.recv(1) == b"":
                refused += 1
        except socket.timeout:
            admitted.append(s)
            continue
        except OSError:
            refused += 1
        s.close()
    flood_s = time.monotonic() - t0

    def counted(new):
        """The lines, and the refusals they account for: a line naming the
        address is one (plus its count of those suppressed before it); a
        flush line carries only a count."""
        lines = [line for line in new.splitlines() if b"connection limit" in line]
        return lines, sum(b"connection from" in line for line in lines) + sum(
            int(n) for n in re.findall(rb"connection limit.*\((\d+) similar suppressed\)", new))

    # A count of suppressed lines is flushed once its second is over.
    new = wait_log(args.log, offset, lambda b: counted(b)[1] >= refused, 5)
    lines, accounted = counted(new)
    for p in holders:
        p.read()
    holders_open = sum(not p.closed for p in holders)
    print(f"{args.conns} connections over the limit in {flood_s:.1f} s: {refused} refused, "
          f"{len(admitted)} admitted; {len(lines)} log lines about refusals "
          f"(accounting for {accounted}); the log grew {len(new)} bytes; "
          f"{holders_open} of {args.hold} held players still connected")
    for line in lines[:5]:
        print("  log:", line.decode("utf-8", "backslashreplace")[:300])
    print_metrics(args.metrics, ['gatehouse_connections_refused_total{reason="connection_limit"}'])
    for s in admitted:
        s.close()


def metrics_idle(args):
    """--conns idle TCP connections to the metrics endpoint (connected, never
    a byte), then three scrapes timed, each given --seconds."""
    where = urllib.parse.urlsplit(args.metrics)
    idle = [socket.create_connection((where.hostname, where.port)) for _ in range(args.conns)]
    t_idle = time.monotonic()
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(args.metrics, timeout=args.seconds) as page:
                page.read()
            times.append(f"{time.monotonic() - t0:.2f} s")
        except OSError as e:
            times.append(f"failed after {time.monotonic() - t0:.1f} s ({e})")
    t_scrapes = time.monotonic()
    for s in idle:
        s.setblocking(False)
    # How long the endpoint lets an idle connection stay (up to 10 s more).
    still = list(idle)
    while still and time.monotonic() - t_scrapes < 10:
        still = [s for s in still if not closed(s)]
        time.sleep(0.05)
    held = time.monotonic() - t_idle
    print(f"{args.conns} idle connections to the metrics port: 3 scrapes took "
          f"{', '.join(times)}; the endpoint closed {len(idle) - len(still)} of the idle "
          f"connections" + (f" (all within {held:.1f} s of connecting)" if not still else
                            f", {len(still)} still open after {held:.1f} s"))
    for s in idle:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["trickle", "prelogin", "connect", "hoard", "kicked", "bigchat",
                                    "broadcast", "udid", "limitflood", "metrics-idle"])
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--conns", type=int, default=300)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--from", dest="source", default="127.0.0.2",
                   help="connect: the flood's source address")
    p.add_argument("--procs", type=int, default=1,
                   help="connect: flooding processes")
    p.add_argument("--players", type=int, default=0,
                   help="connect: logged-in players timing pings meanwhile (needs the demo game); "
                        "broadcast: players (0 = 80)")
    p.add_argument("--receivers", type=int, default=5, help="bigchat: modern receivers")
    p.add_argument("--say-bytes", type=int, default=65527,
                   help="bigchat: the large chat_say's | proto | body | in bytes")
    p.add_argument("--hold", type=int, default=3,
                   help="limitflood: logged-in players that fill --max-connections")
    p.add_argument("--bin-dir", default="build/bin",
                   help="bigchat: where gatehouse-client is")
    p.add_argument("--metrics", help="the gateway's metrics URL (http://HOST:PORT/metrics)")
    p.add_argument("--log", help="the gateway's log file (its stderr)")
    p.add_argument("--gateway-key", help="connect, bigchat: the gateway's public key file (FILE.pub)")
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
    elif args.mode == "kicked":
        kicked(args)
    else:
        {"bigchat": bigchat, "broadcast": broadcast, "udid": udid, "limitflood": limit_flood,
         "metrics-idle": metrics_idle}[args.mode](args)


if __name__ == "__main__":
    main()
