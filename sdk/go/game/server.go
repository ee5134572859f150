// Package game is Gatehouse's Go SDK for game services: a gRPC server that
// accepts the gateway's calls on both game-service contracts and hands the
// game three callbacks (Handler) and four calls (Send, Broadcast, Kick,
// Sessions).
//
//   - The batched contract (proto/batch.proto, service BatchGameService):
//     one link per gateway carrying every session's events. The SDK
//     acknowledges what it reads, keeps what the gateway has not
//     acknowledged and sends it again on the next link after a bridge
//     restart, drops the gateway's repeated events, re-attaches detached
//     sessions (per gateway-id) and bounds what it keeps (batch.go).
//   - gonet2's contract (proto/game.proto, service GameService): one stream
//     per session (stream.go).
//
// Both reach the same Handler, so one game serves either (or both at once).
//
// Callbacks of one session never overlap and come in order: OnOpen, then
// OnMessage..., then OnClose exactly once. Callbacks of different sessions
// may run at the same time on different goroutines. Send, Broadcast and Kick
// may be called from any goroutine, inside a callback too; a Kick inside a
// callback delivers its OnClose right after that callback returns.
package game

import (
	"encoding/binary"
	"errors"
	"log"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	"gatehouse.dev/sdk/go/batchpb"
	"gatehouse.dev/sdk/go/gamepb"
)

// Handler is the game: the SDK calls it for every session of both contracts.
type Handler interface {
	// OnOpen: a session was opened (a player logged in). Re-attaching a
	// session after a gateway bridge restart is not a new OnOpen.
	OnOpen(s *Session)
	// OnMessage: a client packet `| proto | body |` (the gateway stripped
	// its seq and decrypted it). body is the caller's to keep.
	OnMessage(s *Session, proto int16, body []byte)
	// OnClose: the session ended, for the reason given; nothing more is
	// delivered for it and Send to it fails.
	OnClose(s *Session, reason CloseReason)
}

// CloseReason says why a session ended.
type CloseReason int

const (
	// ClientLeft: the gateway closed it (the client left, or was kicked by
	// the gateway).
	ClientLeft CloseReason = iota
	// Kicked: the game called Kick.
	Kicked
	// Expired: detached (no link from its gateway) for longer than
	// Options.ReattachGrace.
	Expired
	// LinkLost: its gonet2 stream failed, or its batched link ended and
	// carried no gateway-id to re-attach it by.
	LinkLost
	// Overflow: more unsent messages than Options.MaxQueued.
	Overflow
	// ServerStopped: Stop was called.
	ServerStopped
)

func (r CloseReason) String() string {
	switch r {
	case ClientLeft:
		return "client left"
	case Kicked:
		return "kicked"
	case Expired:
		return "expired"
	case LinkLost:
		return "link lost"
	case Overflow:
		return "overflow"
	case ServerStopped:
		return "server stopped"
	}
	return "unknown"
}

// Numbering is the gonet2 contract's Game.FrameType numbering.
type Numbering int

const (
	// Gonet2: Message=0, Kick=1, Ping=2 (what the gonet2 gateway used).
	Gonet2 Numbering = iota
	// Later: Message=0, Register=1, Kick=2, Ping=3, and Frame.UserId set on
	// what the game sends (the later game-service generation).
	Later
)

// Options tune a Server; the zero value of each field picks its default.
type Options struct {
	// ReattachGrace: how long a session detached from its gateway (its
	// link broke) waits for a new link to re-attach it before it ends
	// (Expired); also how long a closed session's id is remembered, so
	// that the gateway's late OPEN of it is ignored. Default 60 s.
	ReattachGrace time.Duration
	// MaxQueued: messages one session may have waiting (batched and
	// detached; gonet2: not yet written), and events one batched link may
	// have unacknowledged, before the session ends (Overflow) or the link
	// is cancelled as a gateway that stopped reading. Default 65536.
	MaxQueued int
	// Numbering of the gonet2 contract's frame types. Default Gonet2.
	Numbering Numbering
	// Logf receives the SDK's log lines; nil: the standard logger.
	Logf func(format string, args ...any)
}

// MaxMessageBytes is the largest `| proto | body |` a Send carries: it
// must fit one gRPC message (4 MiB, set on both sides) with the fields
// around it. A larger one is refused (ErrTooLarge), never sent.
const MaxMessageBytes = 4<<20 - 64

var (
	// ErrClosed: the session has ended.
	ErrClosed = errors.New("gatehouse: session closed")
	// ErrTooLarge: the message exceeds MaxMessageBytes.
	ErrTooLarge = errors.New("gatehouse: message over MaxMessageBytes")
)

// Contract says which contract a session came over.
type Contract int

const (
	// Batched: proto/batch.proto.
	Batched Contract = iota
	// Gonet2Stream: proto/game.proto, one stream per session.
	Gonet2Stream
)

// Session is one logged-in session. Its methods are safe from any goroutine.
type Session struct {
	id        uint64
	userID    int64
	gatewayID string
	loginSeq  uint64
	contract  Contract
	srv       *Server
	serial    serializer
	closed    bool // OnClose ran; touched only inside serial

	// Batched contract; the fields below id are guarded by gw.mu.
	gw        *gatewayState
	gwSession uint64
	link      *link // attached to; nil while detached
	detached  time.Time
	pending   []*batchpb.Event // for the gateway once attached, in order
	sent      uint64           // n of the last event numbered for the gateway
	lastSeq   uint64           // of the last MESSAGE taken from the gateway
	ended     bool             // OnClose is due or done
	zombie    bool             // kicked; its KICK not acknowledged yet

	// gonet2 contract.
	stream *stream
}

// ID identifies the session within this process; never reused.
func (s *Session) ID() uint64 { return s.id }

// UserID is the user the login resolved to.
func (s *Session) UserID() int64 { return s.userID }

// GatewayID names the gateway (and, batched, its backend index) the session
// is on: docs/game-services.md.
func (s *Session) GatewayID() string { return s.gatewayID }

// LoginSeq orders the logins of one gateway (later logins larger; 0 when
// the gateway did not say).
func (s *Session) LoginSeq() uint64 { return s.loginSeq }

// Contract is the contract the session came over.
func (s *Session) Contract() Contract { return s.contract }

// Server serves both game-service contracts to one Handler.
type Server struct {
	handler Handler
	opts    Options
	epoch   uint64 // high 32 bits of our batched seqs: new per process
	batch   *batchService
	gonet2  *gonet2Service

	mu       sync.Mutex
	sessions map[uint64]*Session // live (not ended) sessions
	nextID   uint64
	stopping bool
	grpcSrv  *grpc.Server // when Serve made it
	done     chan struct{}
}

// NewServer makes a Server for h; it serves once registered (Register) or
// given a listener (Serve).
func NewServer(h Handler, opts Options) *Server {
	if opts.ReattachGrace <= 0 {
		opts.ReattachGrace = 60 * time.Second
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 65536
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	s := &Server{
		handler:  h,
		opts:     opts,
		epoch:    newEpoch(),
		sessions: make(map[uint64]*Session),
		done:     make(chan struct{}),
	}
	s.batch = newBatchService(s)
	s.gonet2 = &gonet2Service{srv: s}
	go s.batch.janitor(s.done)
	return s
}

// Register adds both services (BatchGameService and GameService) to g; set
// g's message limits to 4 MiB both ways (grpc.MaxRecvMsgSize,
// grpc.MaxSendMsgSize), as ServerOptions does.
func (s *Server) Register(g *grpc.Server) {
	batchpb.RegisterBatchGameServiceServer(g, s.batch)
	gamepb.RegisterGameServiceServer(g, s.gonet2)
}

// ServerOptions are the gRPC server options the contracts need (the 4 MiB
// message limit, explicit both ways as on the gateway).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20), grpc.MaxSendMsgSize(4 << 20)}
}

// Serve serves both contracts on lis until Stop; extra registers more
// services (say, the studio's own) on the same gRPC server.
func (s *Server) Serve(lis net.Listener, extra ...func(*grpc.Server)) error {
	g := grpc.NewServer(ServerOptions()...)
	s.Register(g)
	for _, f := range extra {
		f(g)
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return errors.New("gatehouse: server stopped")
	}
	s.grpcSrv = g
	s.mu.Unlock()
	return g.Serve(lis)
}

// Stop ends every session (ServerStopped: the batched ones without a KICK,
// so that the gateway keeps their clients and re-opens them on the next game
// process; gonet2 streams end UNAVAILABLE) and stops the server Serve made.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	g := s.grpcSrv
	close(s.done)
	s.mu.Unlock()
	s.batch.stop()
	s.gonet2.stop()
	if g != nil {
		g.Stop()
	}
}

// Send queues `| proto | body |` to s's client. It never blocks: what the
// gateway has not taken waits in the SDK, bounded by Options.MaxQueued.
func (srv *Server) Send(s *Session, proto int16, body []byte) error {
	return srv.sendMessage(s, encode(proto, body))
}

// Broadcast sends `| proto | body |` to each of sessions, or to every live
// session when sessions is nil; returns how many took it.
func (srv *Server) Broadcast(sessions []*Session, proto int16, body []byte) int {
	if sessions == nil {
		sessions = srv.Sessions()
	}
	message := encode(proto, body)
	n := 0
	for _, s := range sessions {
		if srv.sendMessage(s, message) == nil {
			n++
		}
	}
	return n
}

// Kick ends s from the game's side: the gateway closes its client (reason
// kicked_by_game). The contracts carry no reason: `reason` goes to the log.
// OnClose(s, Kicked) follows (after the current callback, from inside one).
func (srv *Server) Kick(s *Session, reason string) {
	var kicked bool
	if s.contract == Batched {
		kicked = srv.batch.kick(s)
	} else {
		kicked = s.stream.kick()
	}
	if kicked {
		srv.opts.Logf("gatehouse: kicked session %d (user %d): %s", s.id, s.userID, reason)
		srv.closed(s, Kicked)
	}
}

// Sessions returns the live sessions.
func (srv *Server) Sessions() []*Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]*Session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		out = append(out, s)
	}
	return out
}

func (srv *Server) sendMessage(s *Session, message []byte) error {
	if len(message) > MaxMessageBytes {
		return ErrTooLarge
	}
	if s.contract == Batched {
		return srv.batch.send(s, message)
	}
	return s.stream.send(message)
}

// newSession registers a session; nil once stopping.
func (srv *Server) newSession(c Contract, userID int64, gatewayID string, loginSeq uint64) *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.stopping {
		return nil
	}
	srv.nextID++
	s := &Session{id: srv.nextID, userID: userID, gatewayID: gatewayID, loginSeq: loginSeq, contract: c, srv: srv}
	srv.sessions[s.id] = s
	return s
}

// message queues OnMessage for s (the caller drains s.serial, with no lock
// held).
func (srv *Server) message(s *Session, message []byte) {
	if len(message) < 2 {
		srv.opts.Logf("gatehouse: session %d (user %d): message shorter than a proto", s.id, s.userID)
		return
	}
	proto := int16(binary.BigEndian.Uint16(message))
	body := message[2:]
	s.serial.add(func() {
		if !s.closed {
			srv.handler.OnMessage(s, proto, body)
		}
	})
}

// closed takes s out of the registry and delivers OnClose; its caller
// decided, once, that s ended.
func (srv *Server) closed(s *Session, reason CloseReason) {
	srv.mu.Lock()
	delete(srv.sessions, s.id)
	srv.mu.Unlock()
	s.serial.add(func() {
		s.closed = true
		srv.handler.OnClose(s, reason)
	})
	s.serial.drain()
}

// encode is `| proto i16 BE | body |`, the message of an Event or a Frame.
func encode(proto int16, body []byte) []byte {
	m := make([]byte, 2+len(body))
	binary.BigEndian.PutUint16(m, uint16(proto))
	copy(m[2:], body)
	return m
}

// serializer runs one session's callbacks one at a time, in the order they
// were added, without a goroutine of its own: drain runs what was added
// unless another goroutine is draining, which then runs it too. So a
// callback that kicks its own session (or one whose callback runs elsewhere)
// queues the OnClose instead of waiting for itself. add may be called under
// a lock (it fixes the order); drain must not (it runs the handler).
type serializer struct {
	mu      sync.Mutex
	running bool
	queue   []func()
}

func (q *serializer) add(f func()) {
	q.mu.Lock()
	q.queue = append(q.queue, f)
	q.mu.Unlock()
}

func (q *serializer) drain() {
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	for len(q.queue) != 0 {
		f := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.mu.Unlock()
		f()
		q.mu.Lock()
	}
	q.running = false
	q.mu.Unlock()
}
