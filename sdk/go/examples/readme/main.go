// The example of sdk/go/README.md, word for word (the tests build it).
package main

import (
	"log"
	"net"

	"gatehouse.dev/sdk/go/game"
)

type echo struct{ srv *game.Server }

func (e *echo) OnOpen(s *game.Session) { log.Printf("user %d in", s.UserID()) }

func (e *echo) OnMessage(s *game.Session, proto int16, body []byte) {
	if proto == 1001 { // ping: answer 1002 with the same body
		_ = e.srv.Send(s, 1002, body)
	}
}

func (e *echo) OnClose(s *game.Session, reason game.CloseReason) {
	log.Printf("user %d out: %s", s.UserID(), reason)
}

func main() {
	e := &echo{}
	e.srv = game.NewServer(e, game.Options{})
	lis, err := net.Listen("tcp", "127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(e.srv.Serve(lis)) // point the gateway at it: --backend batch:127.0.0.1:50051
}
