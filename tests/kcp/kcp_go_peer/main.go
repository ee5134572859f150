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
//	kcp_go_peer gonet2 ADDR ECHOES SEED
//	    a gonet2 client of the gateway over KCP (shared/protocol.md, clear
//	    traffic): logs in (proto 10, open_udid "kcp-SEED"), then sends
//	    ECHOES proto_ping_req (1001) frames of 1..1000 pseudo-random bytes,
//	    up to 16 unanswered, with a heartbeat (proto 0) every 20th, and
//	    checks that every proto_ping_ack (1002) and heartbeat ack (1) comes
//	    back once, byte for byte, in order among its kind (the gateway
//	    answers heartbeats, the game the pings); then waits 300 ms for
//	    strays.
//	    Prints "gonet2: uid U, N echoes in order" and exits 0, else 1.
//	kcp_go_peer gonet2-kicked ADDR ECHOES SEED
//	    as gonet2, then prints "gonet2: uid U, N echoes in order, waiting
//	    for the kick" and reads until the game's last push, a 1002 "last
//	    words" (the test pushes it, then kicks the session: KCP has no
//	    close, so the push is what this client can see); prints "gonet2:
//	    the last words before the kick" and exits 0.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"sync"
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

// frame is | size u16 | seq u32 | proto i16 | body |, big-endian.
func frame(seq uint32, proto int16, body []byte) []byte {
	out := make([]byte, 8+len(body))
	binary.BigEndian.PutUint16(out, uint16(6+len(body)))
	binary.BigEndian.PutUint32(out[2:], seq)
	binary.BigEndian.PutUint16(out[6:], uint16(proto))
	copy(out[8:], body)
	return out
}

func str(s string) []byte {
	out := make([]byte, 2+len(s))
	binary.BigEndian.PutUint16(out, uint16(len(s)))
	copy(out[2:], s)
	return out
}

func i32(v int32) []byte {
	out := make([]byte, 4)
	binary.BigEndian.PutUint32(out, uint32(v))
	return out
}

// readPayload reads one gateway frame: | size u16 | proto i16 | body |.
func readPayload(r io.Reader) (int16, []byte, error) {
	var size [2]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return 0, nil, err
	}
	payload := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if len(payload) < 2 {
		return 0, nil, fmt.Errorf("a payload of %d bytes", len(payload))
	}
	return int16(binary.BigEndian.Uint16(payload)), payload[2:], nil
}

func gonet2(addr string, echoes int, seed int64, kicked bool) {
	conn, err := kcp.DialWithOptions(addr, nil, 0, 0)
	if err != nil {
		fail("dial %s: %v", addr, err)
	}
	configure(conn)
	conn.SetWriteDelay(false)
	conn.SetDeadline(time.Now().Add(90 * time.Second))

	var seq uint32
	send := func(proto int16, body []byte) {
		seq++
		if _, err := conn.Write(frame(seq, proto, body)); err != nil {
			fail("write: %v", err)
		}
	}
	var login []byte
	login = append(login, i32(0)...)
	login = append(login, str(fmt.Sprintf("kcp-%d", seed))...)
	login = append(login, str("")...)
	login = append(login, i32(1)...)
	for _, s := range []string{"en", "kcp", "linux", "test", "device"} {
		login = append(login, str(s)...)
	}
	login = append(login, i32(0)...)
	login = append(login, str("")...)
	send(10, login)
	proto, body, err := readPayload(conn)
	if err != nil || proto != 11 || len(body) != 4 {
		fail("login: proto %d, %d bytes, %v", proto, len(body), err)
	}
	uid := int32(binary.BigEndian.Uint32(body))

	// What comes back, in order within each kind (the gateway answers
	// heartbeats itself, the game the pings, so the two interleave freely):
	// each ping's body, and each heartbeat's id.
	var mu sync.Mutex
	outstanding := map[int16][][]byte{}
	expect := func(proto int16, body []byte) {
		mu.Lock()
		outstanding[proto] = append(outstanding[proto], body)
		mu.Unlock()
	}
	heartbeats := echoes / 20
	rng := rand.New(rand.NewSource(seed))
	window := make(chan struct{}, 16)
	go func() {
		for i := 0; i < echoes; i++ {
			window <- struct{}{}
			if i%20 == 19 {
				expect(1, i32(int32(i)))
				send(0, i32(int32(i)))
				window <- struct{}{}
			}
			msg := make([]byte, 1+rng.Intn(1000))
			rng.Read(msg)
			msg = append(msg, i32(int32(i))...)
			expect(1002, msg)
			send(1001, msg)
		}
	}()
	for received := 0; received < echoes+heartbeats; received++ {
		proto, body, err := readPayload(conn)
		if err != nil {
			fail("after %d replies: %v", received, err)
		}
		mu.Lock()
		queue := outstanding[proto]
		if len(queue) == 0 || !bytes.Equal(body, queue[0]) {
			mu.Unlock()
			fail("reply %d: proto %d (%d bytes) is not the next expected of its kind (%d waiting): out of order, lost or duplicated",
				received, proto, len(body), len(queue))
		}
		outstanding[proto] = queue[1:]
		mu.Unlock()
		<-window
	}
	if kicked {
		fmt.Printf("gonet2: uid %d, %d echoes in order, waiting for the kick\n", uid, echoes)
		os.Stdout.Sync()
		for {
			proto, body, err := readPayload(conn)
			if err != nil {
				fail("waiting for the last words: %v", err)
			}
			if proto == 1002 && string(body) == "last words" {
				break
			}
		}
		fmt.Printf("gonet2: the last words before the kick\n")
		os.Stdout.Sync()
		conn.Close()
		return
	}
	// Nothing more: a duplicate would be here.
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if proto, body, err := readPayload(conn); err == nil {
		fail("a stray reply after the last: proto %d, %d bytes", proto, len(body))
	}
	fmt.Printf("gonet2: uid %d, %d echoes in order\n", uid, echoes)
	os.Stdout.Sync()
	conn.Close()
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "server" {
		server()
		return
	}
	if len(os.Args) == 5 && (os.Args[1] == "gonet2" || os.Args[1] == "gonet2-kicked") {
		echoes, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail("echoes: %v", err)
		}
		seed, err := strconv.ParseInt(os.Args[4], 10, 64)
		if err != nil {
			fail("seed: %v", err)
		}
		gonet2(os.Args[2], echoes, seed, os.Args[1] == "gonet2-kicked")
		return
	}
	if len(os.Args) != 5 || os.Args[1] != "client" {
		fail("usage: kcp_go_peer client ADDR MESSAGES SEED | server | gonet2[-kicked] ADDR ECHOES SEED")
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
