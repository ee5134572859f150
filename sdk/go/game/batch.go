// The batched contract (proto/batch.proto): links, acknowledgements,
// re-sends, de-duplication, re-attachment and bounds.
//
// State: sessions are kept per gateway-id (a gatewayState: the call's
// `gateway-id` metadata); one link (one Batches call) is the gateway-id's
// current link, and a new link of that gateway-id replaces it. A call
// without gateway-id gets a private gatewayState whose sessions end with the
// link (LinkLost).
//
// Our events (MESSAGE, KICK) are numbered per session: seq = epoch << 32 | n,
// n from 1, epoch drawn per process. An event is queued on its session's
// link (out), then written (written, counted by link index) and kept until
// the gateway's Batch.ack covers it. When the link ends, whatever the
// gateway had not acknowledged goes back to the front of its session's
// pending queue, in order and with its seq, and the link's sessions are
// detached; an OPEN of a known session on the gateway-id's current link
// re-attaches it and queues its pending events before anything new (the
// gateway drops those it had, by seq). A detached session ends after
// Options.ReattachGrace (Expired).
//
// Their events: OPEN of a new session opens it (OnOpen); OPEN of a session
// closed within the grace is ignored; MESSAGE whose seq is not above the
// session's last is dropped (sent again after a bridge restart); CLOSE ends
// the session (ClientLeft) and remembers its id. We acknowledge how many
// events of the link we have read, after dispatching each read Batch, in the
// next write (an ack alone when nothing else goes).
//
// A kicked session stays (a zombie: its KICK is replayed on re-attach) until
// the gateway acknowledges the KICK. A session whose pending overflows while
// detached ends here only (Overflow, no KICK): a later OPEN of it is a new
// session, and its numbering goes on from the old one's so that the
// gateway's de-duplication keeps taking its events.
//
// Locks: gatewayState.mu guards the gateway's sessions, their batched
// fields and its links' queues; Server.mu the registry; never the handler's
// calls, which run with no lock held.
package game

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"gatehouse.dev/sdk/go/batchpb"
)

// batchEventBytes: what a Batch leaves for its events (4 MiB less
// Batch.ack's tag and varint).
const batchEventBytes = 4<<20 - 11

type gatewayState struct {
	id      string // "" when private
	private bool

	mu         sync.Mutex
	sessions   map[uint64]*Session  // by the gateway's session id
	tombstones map[uint64]time.Time // closed sessions, until their expiry
	forgotten  map[uint64]forgotten // ended here only: their numbering
	link       *link                // the current link; nil between links
	toClose    []*Session           // ended under mu: OnClose once it is released (unlock)
}

type forgotten struct {
	sent   uint64
	expiry time.Time
}

type link struct {
	gw       *gatewayState
	wake     chan struct{} // the writer has something to do
	finished chan struct{} // closed once detached: the call ends

	// Guarded by gw.mu.
	out          []*batchpb.Event // queued, not written
	written      []*batchpb.Event // written, not acknowledged; written[0] has index writtenFirst
	writtenFirst uint64
	read         uint64 // the gateway's events read (and dispatched)
	ackSent      uint64 // the last ack written
	corked       bool   // a read Batch is being dispatched: its answers leave together
	ending       bool   // nothing more is taken; the writer detaches and returns
	detached     bool
	cancelled    bool // ending as a slow consumer, or replaced
}

func (l *link) nextIndex() uint64 { return l.writtenFirst + uint64(len(l.written)) }

func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

type batchService struct {
	batchpb.UnimplementedBatchGameServiceServer
	srv *Server

	mu       sync.Mutex
	gateways map[string]*gatewayState // shared ones, by gateway-id
	private  map[*gatewayState]struct{}
}

func newBatchService(srv *Server) *batchService {
	return &batchService{srv: srv, gateways: make(map[string]*gatewayState), private: make(map[*gatewayState]struct{})}
}

func newEpoch() uint64 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("gatehouse: no randomness for the epoch: " + err.Error())
		}
		if e := binary.LittleEndian.Uint32(b[:]); e != 0 {
			return uint64(e)
		}
	}
}

// gatewayOf returns the call's gatewayState, locked: taken before b.mu is
// released, so that the janitor cannot drop it as idle before the link is
// in it.
func (b *batchService) gatewayOf(md metadata.MD) *gatewayState {
	newState := func(id string, private bool) *gatewayState {
		return &gatewayState{id: id, private: private, sessions: make(map[uint64]*Session),
			tombstones: make(map[uint64]time.Time), forgotten: make(map[uint64]forgotten)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ids := md.Get("gateway-id"); len(ids) != 0 && ids[0] != "" {
		gw := b.gateways[ids[0]]
		if gw == nil {
			gw = newState(ids[0], false)
			b.gateways[ids[0]] = gw
		}
		gw.mu.Lock()
		return gw
	}
	gw := newState("", true)
	b.private[gw] = struct{}{}
	gw.mu.Lock()
	return gw
}

// Batches serves one link: reads and writes on goroutines of their own, and
// returns (which ends the call, and unblocks a write the gateway does not
// read) once the link is detached.
func (b *batchService) Batches(stream batchpb.BatchGameService_BatchesServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	b.srv.mu.Lock()
	stopping := b.srv.stopping
	b.srv.mu.Unlock()
	gw := b.gatewayOf(md)
	l := &link{gw: gw, wake: make(chan struct{}, 1), finished: make(chan struct{})}
	if gw.link != nil {
		// A bridge that restarted before its old call failed here: the old
		// link hands its sessions over before we read.
		gw.link.cancelled = true
		b.detachLocked(gw.link)
	}
	gw.link = l
	if stopping {
		b.detachLocked(l)
	}
	b.unlock(gw)
	go b.readLoop(l, stream)
	go b.writeLoop(l, stream)
	select {
	case <-l.finished:
	case <-stream.Context().Done():
		gw.mu.Lock()
		b.detachLocked(l)
		b.unlock(gw)
	}
	if gw.private {
		b.mu.Lock()
		delete(b.private, gw)
		b.mu.Unlock()
	}
	gw.mu.Lock()
	cancelled := l.cancelled
	gw.mu.Unlock()
	if cancelled {
		return status.Error(codes.Aborted, "gatehouse: link replaced, or the gateway stopped acknowledging")
	}
	return status.Error(codes.Unavailable, "gatehouse: link ended")
}

// unlock releases gw.mu, then delivers the OnClose of the sessions that
// ended meanwhile (a private gateway's, when its link was detached).
func (b *batchService) unlock(gw *gatewayState) {
	ended := gw.toClose
	gw.toClose = nil
	gw.mu.Unlock()
	for _, s := range ended {
		b.srv.closed(s, LinkLost)
	}
}

func (b *batchService) writeLoop(l *link, stream batchpb.BatchGameService_BatchesServer) {
	gw := l.gw
	for {
		gw.mu.Lock()
		if l.ending {
			b.detachLocked(l)
			b.unlock(gw)
			return
		}
		batch := l.takeLocked()
		gw.mu.Unlock()
		if batch == nil {
			select {
			case <-l.wake:
			case <-l.finished:
			}
			continue
		}
		if err := stream.Send(batch); err != nil {
			gw.mu.Lock()
			l.ending = true
			gw.mu.Unlock()
		}
	}
}

// takeLocked: the next Batch to write (events that fit one gRPC message, at
// least one, and the ack), or nil when there is nothing to say.
func (l *link) takeLocked() *batchpb.Batch {
	if l.corked || (len(l.out) == 0 && l.read <= l.ackSent) {
		return nil
	}
	used, n := 0, 0
	for _, e := range l.out {
		used += delimitedFieldBytes(proto.Size(e))
		if used > batchEventBytes && n > 0 {
			break
		}
		n++
	}
	events := make([]*batchpb.Event, n)
	copy(events, l.out)
	l.out = l.out[n:]
	l.written = append(l.written, events...)
	l.ackSent = l.read
	return &batchpb.Batch{Events: events, Ack: l.read}
}

// delimitedFieldBytes: a length-delimited field of `payload` bytes (field
// number below 16): tag, length varint, bytes.
func delimitedFieldBytes(payload int) int {
	n := 2
	for rest := payload >> 7; rest != 0; rest >>= 7 {
		n++
	}
	return n + payload
}

func (b *batchService) readLoop(l *link, stream batchpb.BatchGameService_BatchesServer) {
	gw := l.gw
	for {
		in, err := stream.Recv()
		if err != nil {
			gw.mu.Lock()
			b.detachLocked(l)
			b.unlock(gw)
			return
		}
		gw.mu.Lock()
		if l.ending {
			gw.mu.Unlock()
			return
		}
		b.takeAckLocked(l, in.Ack)
		l.corked = true
		gw.mu.Unlock()
		for _, e := range in.Events {
			b.dispatch(l, e)
		}
		gw.mu.Lock()
		l.corked = false
		l.read += uint64(len(in.Events))
		gw.mu.Unlock()
		l.poke()
	}
}

// takeAckLocked frees what the gateway acknowledged; the zombies whose KICK
// it covers go, their ids remembered.
func (b *batchService) takeAckLocked(l *link, ack uint64) {
	if l.detached || ack <= l.writtenFirst {
		return
	}
	upto := ack
	if next := l.nextIndex(); upto > next {
		upto = next
	}
	done := l.written[:upto-l.writtenFirst]
	expiry := time.Now().Add(b.srv.opts.ReattachGrace)
	for _, e := range done {
		if e.Kind != batchpb.Event_KICK {
			continue
		}
		if s := l.gw.sessions[e.Session]; s != nil && s.zombie {
			s.link = nil
			delete(l.gw.sessions, e.Session)
			l.gw.tombstones[e.Session] = expiry
		}
	}
	l.written = append([]*batchpb.Event(nil), l.written[len(done):]...)
	l.writtenFirst = upto
}

func (b *batchService) dispatch(l *link, e *batchpb.Event) {
	switch e.Kind {
	case batchpb.Event_OPEN:
		b.open(l, e)
	case batchpb.Event_MESSAGE:
		b.message(l, e)
	case batchpb.Event_CLOSE:
		b.close(l, e)
	default: // a KICK from the gateway means nothing
	}
}

func (b *batchService) open(l *link, e *batchpb.Event) {
	gw := l.gw
	gw.mu.Lock()
	if gw.link != l || l.ending {
		gw.mu.Unlock() // replaced: the gateway sends it again on the new link
		return
	}
	if _, closed := gw.tombstones[e.Session]; closed {
		gw.mu.Unlock() // a late OPEN of a closed session
		return
	}
	if s := gw.sessions[e.Session]; s != nil {
		// Re-attached after a bridge restart (a zombie too): what the
		// gateway has not had goes first.
		if s.link != l {
			if s.link != nil {
				s.link.cancelled = true
				b.detachLocked(s.link) // an older link still held it
			}
			s.link = l
			l.out = append(l.out, s.pending...)
			s.pending = nil
		}
		b.unlock(gw)
		l.poke()
		return
	}
	s := b.srv.newSession(Batched, e.UserId, gw.id, e.Seq)
	if s == nil {
		gw.mu.Unlock() // stopping
		return
	}
	s.gw = gw
	s.gwSession = e.Session
	s.link = l
	if f, ok := gw.forgotten[e.Session]; ok {
		s.sent = f.sent
		delete(gw.forgotten, e.Session)
	}
	gw.sessions[e.Session] = s
	// Queued before unlocking (a Kick from another goroutine comes after
	// OnOpen), run after.
	s.serial.add(func() { b.srv.handler.OnOpen(s) })
	gw.mu.Unlock()
	s.serial.drain()
}

func (b *batchService) message(l *link, e *batchpb.Event) {
	gw := l.gw
	gw.mu.Lock()
	s := gw.sessions[e.Session]
	if gw.link != l || l.ending || s == nil || s.ended {
		gw.mu.Unlock()
		return
	}
	if e.Seq != 0 {
		if e.Seq <= s.lastSeq {
			gw.mu.Unlock() // had it before the bridge restarted
			return
		}
		s.lastSeq = e.Seq
	}
	// Queued in order under the lock, run after it.
	b.srv.message(s, e.Message)
	gw.mu.Unlock()
	s.serial.drain()
}

func (b *batchService) close(l *link, e *batchpb.Event) {
	gw := l.gw
	gw.mu.Lock()
	if gw.link != l || l.ending {
		gw.mu.Unlock()
		return
	}
	s := gw.sessions[e.Session]
	delete(gw.sessions, e.Session)
	gw.tombstones[e.Session] = time.Now().Add(b.srv.opts.ReattachGrace)
	end := s != nil && !s.ended
	if s != nil {
		s.ended = true
		s.link = nil
		s.pending = nil
	}
	gw.mu.Unlock()
	if end {
		b.srv.closed(s, ClientLeft)
	}
}

// detachLocked stops l for good: what the gateway had not acknowledged goes
// back to the front of its sessions' pending, in order, and l's sessions are
// detached (or, on a private gateway, end: gw.toClose). The call ends.
func (b *batchService) detachLocked(l *link) {
	if l.detached {
		return
	}
	close(l.finished)
	l.detached = true
	l.ending = true
	gw := l.gw
	if gw.link == l {
		gw.link = nil
	}
	back := make(map[uint64][]*batchpb.Event)
	for _, list := range [][]*batchpb.Event{l.written, l.out} {
		for _, e := range list {
			back[e.Session] = append(back[e.Session], e)
		}
	}
	l.written, l.out = nil, nil
	now := time.Now()
	for id, s := range gw.sessions {
		if s.link != l {
			continue
		}
		s.link = nil
		s.detached = now
		s.pending = append(back[s.gwSession], s.pending...)
		if gw.private {
			delete(gw.sessions, id)
			s.pending = nil
			if !s.ended {
				s.ended = true
				gw.toClose = append(gw.toClose, s)
			}
		}
	}
}

func (b *batchService) closeAll(sessions []*Session, reason CloseReason) {
	for _, s := range sessions {
		b.srv.closed(s, reason)
	}
}

// enqueueLocked numbers an event and queues it on s's link, or in pending
// when detached; false when pending is full (unless force).
func (b *batchService) enqueueLocked(s *Session, kind batchpb.Event_Kind, message []byte, force bool) bool {
	max := b.srv.opts.MaxQueued
	l := s.link
	if l != nil && l.ending {
		l = nil
	}
	if !force && l == nil && len(s.pending) >= max {
		return false
	}
	s.sent++
	e := &batchpb.Event{Session: s.gwSession, Kind: kind, Message: message, Seq: b.srv.epoch<<32 | s.sent}
	if l != nil {
		if len(l.out)+len(l.written) >= max {
			// The gateway stopped reading or acknowledging: as C++'s
			// GameServer, the link is cancelled rather than trimmed; its
			// events go back to their sessions and the next link gets them.
			l.cancelled = true
			b.detachLocked(l)
		} else {
			l.out = append(l.out, e)
			if len(l.out) == 1 {
				l.poke()
			}
			return true
		}
	}
	s.pending = append(s.pending, e)
	return true
}

func (b *batchService) send(s *Session, message []byte) error {
	gw := s.gw
	gw.mu.Lock()
	if s.ended {
		gw.mu.Unlock()
		return ErrClosed
	}
	if b.enqueueLocked(s, batchpb.Event_MESSAGE, message, false) {
		b.unlock(gw)
		return nil
	}
	// Detached with a full queue: it ends here only.
	s.ended = true
	b.forgetLocked(s)
	b.unlock(gw)
	b.srv.closed(s, Overflow)
	return ErrClosed
}

// forgetLocked: s leaves its gateway without a KICK; a later OPEN of its id
// is a new session that numbers on from s.
func (b *batchService) forgetLocked(s *Session) {
	gw := s.gw
	if gw.sessions[s.gwSession] == s {
		delete(gw.sessions, s.gwSession)
	}
	gw.forgotten[s.gwSession] = forgotten{sent: s.sent, expiry: time.Now().Add(b.srv.opts.ReattachGrace)}
	s.link = nil
	s.pending = nil
}

func (b *batchService) kick(s *Session) bool {
	gw := s.gw
	gw.mu.Lock()
	if s.ended {
		gw.mu.Unlock()
		return false
	}
	s.ended = true
	s.zombie = true
	b.enqueueLocked(s, batchpb.Event_KICK, nil, true)
	b.unlock(gw)
	return true
}

// janitor ends the sessions detached for longer than the grace and forgets
// old ids, until done.
func (b *batchService) janitor(done <-chan struct{}) {
	period := b.srv.opts.ReattachGrace / 4
	if period > time.Second {
		period = time.Second
	}
	if period < 5*time.Millisecond {
		period = 5 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			b.expire(now)
		}
	}
}

func (b *batchService) expire(now time.Time) {
	b.mu.Lock()
	gws := make([]*gatewayState, 0, len(b.gateways))
	for _, gw := range b.gateways {
		gws = append(gws, gw)
	}
	b.mu.Unlock()
	grace := b.srv.opts.ReattachGrace
	for _, gw := range gws {
		var ended []*Session
		gw.mu.Lock()
		for id, s := range gw.sessions {
			if s.link != nil || now.Sub(s.detached) < grace {
				continue
			}
			delete(gw.sessions, id)
			gw.tombstones[id] = now.Add(grace)
			s.pending = nil
			if !s.ended {
				s.ended = true
				ended = append(ended, s)
			}
		}
		for id, expiry := range gw.tombstones {
			if !now.Before(expiry) {
				delete(gw.tombstones, id)
			}
		}
		for id, f := range gw.forgotten {
			if !now.Before(f.expiry) {
				delete(gw.forgotten, id)
			}
		}
		idle := gw.link == nil && len(gw.sessions) == 0 && len(gw.tombstones) == 0 && len(gw.forgotten) == 0
		gw.mu.Unlock()
		b.closeAll(ended, Expired)
		if idle {
			b.mu.Lock()
			gw.mu.Lock()
			if gw.link == nil && len(gw.sessions) == 0 && len(gw.tombstones) == 0 &&
				len(gw.forgotten) == 0 && b.gateways[gw.id] == gw {
				delete(b.gateways, gw.id)
			}
			gw.mu.Unlock()
			b.mu.Unlock()
		}
	}
}

// stop ends every link and every session here only (no KICK: the gateway
// keeps the clients and re-opens them on the next game process).
func (b *batchService) stop() {
	b.mu.Lock()
	gws := make([]*gatewayState, 0, len(b.gateways)+len(b.private))
	for _, gw := range b.gateways {
		gws = append(gws, gw)
	}
	for gw := range b.private {
		gws = append(gws, gw)
	}
	b.mu.Unlock()
	for _, gw := range gws {
		var ended []*Session
		gw.mu.Lock()
		if gw.link != nil {
			gw.link.cancelled = true
			b.detachLocked(gw.link)
		}
		for _, s := range gw.sessions {
			if !s.ended {
				s.ended = true
				ended = append(ended, s)
			}
			b.forgetLocked(s)
		}
		ended = append(ended, gw.toClose...)
		gw.toClose = nil
		gw.mu.Unlock()
		b.closeAll(ended, ServerStopped)
	}
}
