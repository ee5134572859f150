// gonet2's contract (proto/game.proto): one Stream call per session, with
// metadata `userid` (decimal int32) and, from Gatehouse, `gateway-id` and
// `login-seq`. Message frames are the session's messages; a Ping is answered
// with a Ping carrying the same bytes; the game ends a session with a Kick
// frame and then OK; the gateway ends one by half-closing (ClientLeft).
//
// A stream reads on a goroutine of its own and writes on another, one frame
// after the other from a queue bounded by Options.MaxQueued (a gateway that
// stops reading has its stream cancelled: Overflow); the call's goroutine
// waits for the stream to finish and returns its status.
package game

import (
	"io"
	"strconv"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"gatehouse.dev/sdk/go/gamepb"
)

type gonet2Service struct {
	gamepb.UnimplementedGameServiceServer
	srv *Server

	mu      sync.Mutex
	streams map[*stream]struct{}
}

type stream struct {
	srv      *Server
	session  *Session
	call     gamepb.GameService_StreamServer
	wake     chan struct{}
	finished chan struct{} // closed once the call's status is decided

	mu        sync.Mutex
	queue     []*gamepb.Game_Frame
	writing   bool  // the writer took frames and is sending them
	ended     bool  // the session ended: no more messages are taken
	finishing bool  // status is decided; finished closes once flushed (or at once)
	status    error // the call's status
	closedFin bool
}

func (g *gonet2Service) frameTypes() (kick, ping gamepb.Game_FrameType) {
	if g.srv.opts.Numbering == Later {
		return 2, 3
	}
	return gamepb.Game_Kick, gamepb.Game_Ping
}

// Stream serves one session.
func (g *gonet2Service) Stream(call gamepb.GameService_StreamServer) error {
	md, _ := metadata.FromIncomingContext(call.Context())
	first := func(key string) string {
		if v := md.Get(key); len(v) != 0 {
			return v[0]
		}
		return ""
	}
	userID, err := strconv.ParseInt(first("userid"), 10, 32)
	if err != nil {
		return status.Error(codes.InvalidArgument, "metadata 'userid' must be a decimal int32")
	}
	loginSeq, _ := strconv.ParseUint(first("login-seq"), 10, 64)
	s := g.srv.newSession(Gonet2Stream, userID, first("gateway-id"), loginSeq)
	if s == nil {
		return status.Error(codes.Unavailable, "gatehouse: server stopping")
	}
	t := &stream{srv: g.srv, session: s, call: call, wake: make(chan struct{}, 1), finished: make(chan struct{})}
	s.stream = t
	g.mu.Lock()
	if g.streams == nil {
		g.streams = make(map[*stream]struct{})
	}
	g.streams[t] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.streams, t)
		g.mu.Unlock()
	}()
	s.serial.add(func() { g.srv.handler.OnOpen(s) })
	s.serial.drain()
	go g.readLoop(t)
	go t.writeLoop()
	select {
	case <-t.finished:
	case <-call.Context().Done():
		t.end(LinkLost, status.Error(codes.Canceled, "gatehouse: call cancelled"), false)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

func (g *gonet2Service) readLoop(t *stream) {
	_, ping := g.frameTypes()
	for {
		f, err := t.call.Recv()
		if err == io.EOF {
			t.end(ClientLeft, nil, true) // the gateway's client left
			return
		}
		if err != nil {
			t.end(LinkLost, err, false)
			return
		}
		switch f.Type {
		case gamepb.Game_Message:
			t.mu.Lock()
			if !t.ended {
				g.srv.message(t.session, f.Message)
			}
			t.mu.Unlock()
			t.session.serial.drain()
		case ping:
			t.push(&gamepb.Game_Frame{Type: ping, Message: f.Message}, true)
		default: // anything else from the gateway means nothing to a game
		}
	}
}

// push queues f; a control frame (Ping) goes even when the session ended,
// as long as the call lasts. A full queue ends the session (Overflow).
func (t *stream) push(f *gamepb.Game_Frame, control bool) error {
	if t.srv.opts.Numbering == Later {
		f.UserId = int32(t.session.userID)
	}
	t.mu.Lock()
	if t.finishing || (t.ended && !control) {
		t.mu.Unlock()
		return ErrClosed
	}
	if len(t.queue) >= t.srv.opts.MaxQueued {
		t.mu.Unlock()
		t.end(Overflow, status.Error(codes.ResourceExhausted, "gatehouse: the gateway does not read"), false)
		return ErrClosed
	}
	t.queue = append(t.queue, f)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return nil
}

func (t *stream) send(message []byte) error {
	return t.push(&gamepb.Game_Frame{Type: gamepb.Game_Message, Message: message}, false)
}

// kick: a Kick frame, then OK once it is written; the caller delivers
// OnClose when it returns true.
func (t *stream) kick() bool {
	kick, _ := t.srv.gonet2.frameTypes()
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return false
	}
	f := &gamepb.Game_Frame{Type: kick}
	if t.srv.opts.Numbering == Later {
		f.UserId = int32(t.session.userID)
	}
	t.queue = append(t.queue, f)
	t.ended = true
	t.finishLocked(nil, true)
	t.mu.Unlock()
	return true
}

// end ends the session (OnClose with reason, unless it had ended) and
// decides the call's status: after what is queued is written (flush) or at
// once.
func (t *stream) end(reason CloseReason, st error, flush bool) {
	t.mu.Lock()
	wasEnded := t.ended
	t.ended = true
	t.mu.Unlock()
	// OnClose first (unless another goroutine's callback of the session is
	// running), then the status: the gateway sees the stream end after it.
	if !wasEnded {
		t.srv.closed(t.session, reason)
	}
	t.mu.Lock()
	t.finishLocked(st, flush)
	t.mu.Unlock()
}

func (t *stream) finishLocked(st error, flush bool) {
	if !t.finishing {
		t.finishing = true
		t.status = st
	}
	if !t.closedFin && (!flush || (len(t.queue) == 0 && !t.writing)) {
		t.closedFin = true
		close(t.finished)
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *stream) writeLoop() {
	for {
		t.mu.Lock()
		if t.closedFin {
			t.mu.Unlock()
			return
		}
		if len(t.queue) == 0 {
			if t.finishing {
				t.finishLocked(t.status, true)
			}
			t.mu.Unlock()
			select {
			case <-t.wake:
			case <-t.finished:
			}
			continue
		}
		frames := t.queue
		t.queue = nil
		t.writing = true
		t.mu.Unlock()
		for _, f := range frames {
			if err := t.call.Send(f); err != nil {
				t.mu.Lock()
				t.writing = false
				t.mu.Unlock()
				t.end(LinkLost, err, false)
				return
			}
		}
		t.mu.Lock()
		t.writing = false
		t.mu.Unlock()
	}
}

// stop ends every stream UNAVAILABLE, after what is queued to it.
func (g *gonet2Service) stop() {
	g.mu.Lock()
	streams := make([]*stream, 0, len(g.streams))
	for t := range g.streams {
		streams = append(streams, t)
	}
	g.mu.Unlock()
	for _, t := range streams {
		t.end(ServerStopped, status.Error(codes.Unavailable, "gatehouse: game service stopping"), true)
	}
}
