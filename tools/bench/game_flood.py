#!/usr/bin/env python3
"""A game service that outruns the gateway, for docs/security.md ("Game links"):
the demo game floods every session (`--flood`), the gateway's one worker is
SIGSTOPped (its ring from the bridge fills up) and for --seconds the bridge's
and the game's RSS and the bridge's backlog metric are sampled once a second.
Then the worker goes on and the client reads what arrives for a few seconds.

  tools/bench/game_flood.py --bin build --seconds 20 [--batch] [-- gateway flags]

--bin is a build tree (BIN/bin/gatehouse, BIN/examples/gatehouse-demo-game);
another tree's gateway (main's, for "before") with --gateway-bin DIR/bin.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402  (its client wire helpers)


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid):
    """{comm: pid} of the supervisor's children (comm: the first 15 characters)."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{p}/comm") as f:
                    out[f.read().strip()] = int(p)
        except (OSError, ValueError, IndexError):
            pass
    return out


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="build")
    p.add_argument("--gateway-bin", help="directory of gatehouse (default BIN/bin)")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--rate", type=int, default=5000, help="flood messages a second")
    p.add_argument("--bytes", type=int, default=1000, help="bytes per flood message")
    p.add_argument("--batch", action="store_true", help="the batched contract")
    p.add_argument("--port", type=int, default=18888)
    p.add_argument("--game-port", type=int, default=15051)
    p.add_argument("--metrics-port", type=int, default=19477)
    p.add_argument("gateway_args", nargs="*")
    a = p.parse_args()
    gateway_bin = a.gateway_bin or os.path.join(a.bin, "bin")
    queued = a.rate * (a.seconds + 30)  # the game keeps what the gateway does not take
    game = subprocess.Popen([os.path.join(a.bin, "examples", "gatehouse-demo-game"),
                             "--listen", f"127.0.0.1:{a.game_port}", "--flood", str(a.rate),
                             "--flood-bytes", str(a.bytes), "--max-queued-frames", str(queued)],
                            stderr=subprocess.DEVNULL)
    backend = ("batch:" if a.batch else "") + f"127.0.0.1:{a.game_port}"
    gw = subprocess.Popen([os.path.join(gateway_bin, "gatehouse"), "--instance",
                           f"flood-{os.getpid()}", "--listen", f"127.0.0.1:{a.port}",
                           "--metrics-listen", f"127.0.0.1:{a.metrics_port}", "--backend", backend,
                           "--workers", "1", "--hang-timeout", "3600", "--read-timeout", "600",
                           # the client reads only at the end: not a slow consumer
                           "--txqueuelen", "1048576", "--txqueue-bytes", "1073741824", "--write-timeout", "600",
                           "--log-level", "warn"] + a.gateway_args)
    worker = None
    try:
        time.sleep(1.5)
        procs = children(gw.pid)
        worker, bridge = procs["gatehouse-worke"], procs["gatehouse-bridg"]
        s = socket.create_connection(("127.0.0.1", a.port))
        s.sendall(hostile.frame(1, 10, hostile.login_body("flooded")))
        time.sleep(1)
        print(f"bridge RSS at start {rss_mb(bridge):.1f} MB, game {rss_mb(game.pid):.1f} MB")
        os.kill(worker, signal.SIGSTOP)
        peak = 0.0
        for t in range(1, a.seconds + 1):
            time.sleep(1)
            peak = max(peak, rss_mb(bridge))
            print(f"{t:3d} s: bridge RSS {rss_mb(bridge):7.1f} MB  game RSS {rss_mb(game.pid):7.1f} MB"
                  f"  backlog {metric(a.metrics_port, 'gatehouse_game_backlog_bytes')} B"
                  f"  taken {metric(a.metrics_port, 'gatehouse_game_messages_received_total')}"
                  f"  paused {metric(a.metrics_port, 'gatehouse_game_reads_paused')}")
        os.kill(worker, signal.SIGCONT)
        worker = None
        got, t0 = 0, time.monotonic()
        s.settimeout(1)
        while time.monotonic() - t0 < 5:
            try:
                data = s.recv(1 << 16)
            except OSError:
                continue
            if not data:
                break
            got += len(data)
        print(f"bridge RSS peak {peak:.1f} MB, game RSS {rss_mb(game.pid):.1f} MB; after SIGCONT"
              f" the client read {got / 1e6:.1f} MB in 5 s")
    finally:
        if worker:
            os.kill(worker, signal.SIGCONT)
        gw.terminate()
        gw.wait()
        game.terminate()
        game.wait()


if __name__ == "__main__":
    main()
