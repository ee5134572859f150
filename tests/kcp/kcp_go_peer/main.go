// kcp_go_peer: a real kcp-go (Debian's golang-github-xtaci-kcp-dev) peer
// for tests/kcp/kcp_interop_test.cc, set up as gonet2's agent used KCP: no
// packet encryption, no FEC, stream mode, NoDelay(1, 20, 1, 1), windows
// 32/32, mtu 1280.
//
//	kcp_go_peer client ADDR MESSAGES SEED
//	    dials ADDR, writes MESSAGES messages of 1..4000 pseudo-random bytes
//	    while reading, and exits 0 once everything came back, byte for byte
//	    and in order; 1 on a mismatch or after 60 s.
//	kcp_go_peer server
//	    listens on 127.0.0.1:0, prints "listening HOST:PORT", and echoes
//	    every session's bytes until killed.
package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"time"

	kcp "github.com/xtaci/kcp-go"
)

type session interface {
	SetStreamMode(bool)
	SetNoDelay(int, int, int, int)
	SetWindowSize(int, int)
	SetMtu(int) bool
}

// configure sets gonet2's settings (its agent's udp-sndwnd, udp-rcvwnd,
// udp-mtu and the nodelay line).
func configure(s session) {
	s.SetStreamMode(true)
	s.SetNoDelay(1, 20, 1, 1)
	s.SetWindowSize(32, 32)
	s.SetMtu(1280)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kcp_go_peer: "+format+"\n", args...)
	os.Exit(1)
}

func client(addr string, messages int, seed int64) {
	conn, err := kcp.DialWithOptions(addr, nil, 0, 0)
	if err != nil {
		fail("dial %s: %v", addr, err)
	}
	configure(conn)
	conn.SetWriteDelay(false)
	deadline := time.Now().Add(60 * time.Second)
	conn.SetDeadline(deadline)

	rng := rand.New(rand.NewSource(seed))
	var sent bytes.Buffer
	for i := 0; i < messages; i++ {
		msg := make([]byte, 1+rng.Intn(4000))
		rng.Read(msg)
		sent.Write(msg)
	}
	want := sent.Bytes()

	writeErr := make(chan error, 1)
	go func() {
		rest := want
		w := rand.New(rand.NewSource(seed + 1))
		for len(rest) > 0 {
			n := 1 + w.Intn(4000)
			if n > len(rest) {
				n = len(rest)
			}
			if _, err := conn.Write(rest[:n]); err != nil {
				writeErr <- err
				return
			}
			rest = rest[n:]
		}
		writeErr <- nil
	}()

	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		fail("read after %v: %v", time.Since(deadline.Add(-60*time.Second)), err)
	}
	if err := <-writeErr; err != nil {
		fail("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				fail("echo differs at byte %d of %d", i, len(want))
			}
		}
	}
	fmt.Printf("kcp_go_peer: %d messages, %d bytes echoed in order\n", messages, len(want))
	conn.Close()
}

func server() {
	l, err := kcp.ListenWithOptions("127.0.0.1:0", nil, 0, 0)
	if err != nil {
		fail("listen: %v", err)
	}
	fmt.Printf("listening %s\n", l.Addr().String())
	os.Stdout.Sync()
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fail("accept: %v", err)
		}
		configure(s)
		s.SetWriteDelay(false)
		go func() {
			defer s.Close()
			buf := make([]byte, 65536)
			for {
				n, err := s.Read(buf)
				if err != nil {
					return
				}
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "server" {
		server()
		return
	}
	if len(os.Args) != 5 || os.Args[1] != "client" {
		fail("usage: kcp_go_peer client ADDR MESSAGES SEED | kcp_go_peer server")
	}
	messages, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fail("messages: %v", err)
	}
	seed, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fail("seed: %v", err)
	}
	client(os.Args[2], messages, seed)
}
