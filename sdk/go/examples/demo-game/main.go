// gatehouse-demo-game-go: the demo game (examples/demo-game, same protocol)
// on the Go SDK, serving the batched contract and gonet2's on one port.
//
//	proto  name            body (big-endian)       the game answers
//	1001   proto_ping_req  anything                1002 proto_ping_ack, same body, to the sender
//	1003   chat_say        text string             1004 chat_hear | uid int32 | text string | to every session
//	1005   kick_me         anything                kicks the sender
//
// `string` = | len u16 | bytes |. Anything else is logged and ignored.
// Unlike the C++ demo it serves no demo user centre (Auth): it is the C++
// demo's --no-auth. Exit status: 0 after SIGINT/SIGTERM, 1 when it cannot
// listen, 2 on a usage error.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"gatehouse.dev/sdk/go/game"
)

const (
	pingReq  = 1001
	pingAck  = 1002
	chatSay  = 1003
	chatHear = 1004
	kickMe   = 1005
)

type demo struct {
	srv *game.Server
	log *log.Logger
}

func (d *demo) OnOpen(s *game.Session) {
	d.log.Printf("session %d open: user %d", s.ID(), s.UserID())
}

func (d *demo) OnMessage(s *game.Session, proto int16, body []byte) {
	switch proto {
	case pingReq:
		_ = d.srv.Send(s, pingAck, body)
	case chatSay:
		if len(body) < 2 || len(body) < 2+int(binary.BigEndian.Uint16(body)) {
			d.log.Printf("user %d: malformed chat_say", s.UserID())
			return
		}
		text := body[2 : 2+int(binary.BigEndian.Uint16(body))]
		hear := make([]byte, 4, 4+len(body))
		binary.BigEndian.PutUint32(hear, uint32(int32(s.UserID())))
		hear = append(hear, body[:2+len(text)]...)
		d.srv.Broadcast(nil, chatHear, hear)
	case kickMe:
		d.srv.Kick(s, "kick_me")
	default:
		d.log.Printf("user %d: ignoring proto %d", s.UserID(), proto)
	}
}

func (d *demo) OnClose(s *game.Session, reason game.CloseReason) {
	d.log.Printf("session %d end: user %d (%s)", s.ID(), s.UserID(), reason)
}

func main() {
	flags := flag.NewFlagSet("gatehouse-demo-game-go", flag.ContinueOnError)
	listen := flags.String("listen", "127.0.0.1:50051", "address to serve on (host:port; port 0 picks one)")
	numbering := flags.String("numbering", "gonet2", "gonet2 contract's frame types: gonet2 (Kick=1, Ping=2) or later (Kick=2, Ping=3)")
	maxQueued := flags.Int("max-queued-frames", 65536, "messages queued per session (and unacknowledged per batched link) before it is cancelled")
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	opts := game.Options{MaxQueued: *maxQueued}
	switch *numbering {
	case "gonet2":
	case "later":
		opts.Numbering = game.Later
	default:
		fmt.Fprintf(os.Stderr, "gatehouse-demo-game-go: --numbering must be gonet2 or later, not '%s'\n", *numbering)
		os.Exit(2)
	}
	logger := log.New(os.Stderr, "gatehouse-demo-game-go: ", 0)
	opts.Logf = logger.Printf
	d := &demo{log: logger}
	d.srv = game.NewServer(d, opts)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Print(err)
		os.Exit(1)
	}
	logger.Printf("listening on %s (numbering %s; auth off)", lis.Addr(), *numbering)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		logger.Print("shutting down")
		d.srv.Stop()
	}()
	if err := d.srv.Serve(lis); err != nil {
		logger.Print(err)
		os.Exit(1)
	}
}
