// The SDK's rules, each against a Server on a real loopback port driven by
// a fake gateway written here (fakeLink: a Batches call; the gonet2 tests: a
// Stream call). Waits are for events, bounded by patience.
package game

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"gatehouse.dev/sdk/go/batchpb"
	"gatehouse.dev/sdk/go/gamepb"
)

// patience bounds every wait: generous, since the tests must hold on a
// loaded machine; a wait ends at its event.
const patience = 30 * time.Second

// recorder is the game: it records its callbacks as lines, and runs
// onMessage (when set) inside OnMessage.
type recorder struct {
	mu        sync.Mutex
	changed   chan struct{}
	lines     []string
	sessions  map[int64]*Session // by user id
	onMessage func(s *Session, proto int16, body []byte)
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), sessions: make(map[int64]*Session)}
}

func (r *recorder) add(s *Session, line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.sessions[s.UserID()] = s
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) OnOpen(s *Session) { r.add(s, fmt.Sprintf("open %d", s.UserID())) }
func (r *recorder) OnMessage(s *Session, proto int16, body []byte) {
	r.add(s, fmt.Sprintf("message %d %d %s", s.UserID(), proto, body))
	if r.onMessage != nil {
		r.onMessage(s, proto, body)
	}
}
func (r *recorder) OnClose(s *Session, reason CloseReason) {
	r.add(s, fmt.Sprintf("close %d %s", s.UserID(), reason))
}

// waitLines waits until the recorded lines are `want` (in order).
func (r *recorder) waitLines(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(patience)
	for {
		r.mu.Lock()
		got := strings.Join(r.lines, "\n")
		changed := r.changed
		r.mu.Unlock()
		if got == strings.Join(want, "\n") {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("callbacks:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
	}
}

func (r *recorder) session(userID int64) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[userID]
}

type fixture struct {
	t    *testing.T
	srv  *Server
	game *recorder
	addr string
	conn *grpc.ClientConn
}

func start(t *testing.T, opts Options) *fixture {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Logf = t.Logf
	f := &fixture{t: t, game: newRecorder(), addr: lis.Addr().String()}
	f.srv = NewServer(f.game, opts)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = f.srv.Serve(lis)
	}()
	f.conn, err = grpc.Dial(f.addr, grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.conn.Close()
		f.srv.Stop()
		<-served
	})
	return f
}

// fakeLink is the gateway's side of one Batches call.
type fakeLink struct {
	t        *testing.T
	call     batchpb.BatchGameService_BatchesClient
	cancel   context.CancelFunc
	batches  chan *batchpb.Batch
	ended    chan error // the call's end, once
	received uint64     // the game's events taken from batches
	gameAck  uint64     // the highest Batch.ack the game sent
}

func (f *fixture) link(gatewayID string) *fakeLink {
	ctx, cancel := context.WithCancel(context.Background())
	if gatewayID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "gateway-id", gatewayID)
	}
	call, err := batchpb.NewBatchGameServiceClient(f.conn).Batches(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	l := &fakeLink{t: f.t, call: call, cancel: cancel, batches: make(chan *batchpb.Batch, 1024), ended: make(chan error, 1)}
	go func() {
		for {
			b, err := call.Recv()
			if err != nil {
				l.ended <- err
				return
			}
			l.batches <- b
		}
	}()
	f.t.Cleanup(cancel)
	return l
}

func (l *fakeLink) send(ack uint64, events ...*batchpb.Event) {
	l.t.Helper()
	if err := l.call.Send(&batchpb.Batch{Events: events, Ack: ack}); err != nil {
		l.t.Fatal(err)
	}
}

// events waits for the game's next n events (acks only are taken in passing).
func (l *fakeLink) events(n int) []*batchpb.Event {
	l.t.Helper()
	var out []*batchpb.Event
	deadline := time.After(patience)
	for len(out) < n {
		select {
		case b := <-l.batches:
			out = append(out, b.Events...)
			l.received += uint64(len(b.Events))
			if b.Ack > l.gameAck {
				l.gameAck = b.Ack
			}
		case err := <-l.ended:
			l.t.Fatalf("the link ended (%v) after %d of %d events", err, len(out), n)
		case <-deadline:
			l.t.Fatalf("%d of %d events from the game", len(out), n)
		}
	}
	if len(out) != n {
		l.t.Fatalf("%d events from the game, want %d", len(out), n)
	}
	return out
}

// waitAck waits for the game to acknowledge n of our events.
func (l *fakeLink) waitAck(n uint64) {
	l.t.Helper()
	deadline := time.After(patience)
	for l.gameAck < n {
		select {
		case b := <-l.batches:
			if len(b.Events) != 0 {
				l.t.Fatalf("unexpected events %v", b.Events)
			}
			if b.Ack > l.gameAck {
				l.gameAck = b.Ack
			}
		case <-deadline:
			l.t.Fatalf("the game acknowledged %d of %d", l.gameAck, n)
		}
	}
}

// waitEnded waits for the game to end the call.
func (l *fakeLink) waitEnded() error {
	l.t.Helper()
	deadline := time.After(patience)
	for {
		select {
		case <-l.batches:
		case err := <-l.ended:
			return err
		case <-deadline:
			l.t.Fatal("the game did not end the link")
		}
	}
}

func open(session uint64, user int64) *batchpb.Event {
	return &batchpb.Event{Session: session, Kind: batchpb.Event_OPEN, UserId: user, Seq: 7}
}

func message(session, seq uint64, proto int16, body string) *batchpb.Event {
	return &batchpb.Event{Session: session, Kind: batchpb.Event_MESSAGE, Seq: seq, Message: encode(proto, []byte(body))}
}

func closeEvent(session uint64) *batchpb.Event {
	return &batchpb.Event{Session: session, Kind: batchpb.Event_CLOSE}
}

// checkMessages checks events are MESSAGEs of session carrying bodies, in
// order, numbered n = first, first+1, ... in one epoch.
func checkMessages(t *testing.T, events []*batchpb.Event, session uint64, first uint64, bodies ...string) {
	t.Helper()
	if len(events) != len(bodies) {
		t.Fatalf("%d events, want %d", len(events), len(bodies))
	}
	for i, e := range events {
		if e.Kind != batchpb.Event_MESSAGE || e.Session != session || string(e.Message[2:]) != bodies[i] {
			t.Fatalf("event %d: %v, want MESSAGE of %d carrying %q", i, e, session, bodies[i])
		}
		if e.Seq>>32 == 0 || e.Seq&0xffffffff != first+uint64(i) || e.Seq>>32 != events[0].Seq>>32 {
			t.Fatalf("event %d: seq %x, want n %d in one nonzero epoch", i, e.Seq, first+uint64(i))
		}
	}
}

func TestSessionOpensTakesMessagesAnswersAndCloses(t *testing.T) {
	f := start(t, Options{})
	f.game.onMessage = func(s *Session, proto int16, body []byte) {
		_ = f.srv.Send(s, proto+1, body)
	}
	l := f.link("gw-1")
	l.send(0, open(1, 42), message(1, 1, 1001, "hi"), message(1, 2, 1001, "there"))
	checkMessages(t, l.events(2), 1, 1, "hi", "there")
	l.waitAck(3)
	s := f.game.session(42)
	if s.GatewayID() != "gw-1" || s.LoginSeq() != 7 || s.Contract() != Batched {
		t.Fatalf("session %+v", s)
	}
	l.send(l.received, closeEvent(1))
	f.game.waitLines(t, "open 42", "message 42 1001 hi", "message 42 1001 there", "close 42 client left")
	if err := f.srv.Send(s, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send to a closed session: %v", err)
	}
}

func TestRepeatedGatewayMessagesAreDropped(t *testing.T) {
	f := start(t, Options{})
	l := f.link("gw-1")
	l.send(0, open(1, 42), message(1, 5, 1, "a"), message(1, 5, 1, "a again"), message(1, 4, 1, "older"),
		message(1, 6, 1, "b"))
	l.waitAck(5)
	f.game.waitLines(t, "open 42", "message 42 1 a", "message 42 1 b")
}

// A bridge restart: the new link of the same gateway-id re-opens the
// session, which is re-attached (no second OnOpen) and gets what the old
// link had not acknowledged again, in order and with the same seqs, before
// anything new; the gateway's re-sent MESSAGE is dropped.
func TestBridgeRestartReattachesAndResendsTheUnacknowledged(t *testing.T) {
	f := start(t, Options{})
	l1 := f.link("gw-1")
	l1.send(0, open(1, 42), message(1, 1, 1, "m1"))
	f.game.waitLines(t, "open 42", "message 42 1 m1")
	s := f.game.session(42)
	for _, b := range []string{"a", "b", "c"} {
		if err := f.srv.Send(s, 2, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	first := l1.events(3)
	checkMessages(t, first, 1, 1, "a", "b", "c")
	// The gateway took "a" only; the game's ack of m2 says it read that.
	l1.send(1, message(1, 2, 1, "m2"))
	l1.waitAck(3)
	l1.cancel()
	if err := f.srv.Send(s, 2, []byte("d")); err != nil { // while detached, or before the game noticed
		t.Fatal(err)
	}
	l2 := f.link("gw-1")
	l2.send(0, open(1, 42), message(1, 1, 1, "m1"), message(1, 2, 1, "m2"), message(1, 3, 1, "m3"))
	again := l2.events(3)
	checkMessages(t, again, 1, 2, "b", "c", "d")
	if again[0].Seq != first[1].Seq {
		t.Fatalf("re-sent with seq %x, first sent with %x", again[0].Seq, first[1].Seq)
	}
	if err := f.srv.Send(s, 2, []byte("e")); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, l2.events(1), 1, 5, "e")
	f.game.waitLines(t, "open 42", "message 42 1 m1", "message 42 1 m2", "message 42 1 m3")
}

// A new link of a gateway-id replaces the old one, which ends; its sessions
// carry on on the new link.
func TestANewLinkOfAGatewayIDReplacesTheOld(t *testing.T) {
	f := start(t, Options{})
	l1 := f.link("gw-1")
	l1.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	l2 := f.link("gw-1")
	l2.send(0, open(1, 42), message(1, 1, 1, "on l2"))
	if code := status.Code(l1.waitEnded()); code == codes.OK {
		t.Fatal("the replaced link ended OK")
	}
	f.game.waitLines(t, "open 42", "message 42 1 on l2")
	if err := f.srv.Send(f.game.session(42), 2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, l2.events(1), 1, 1, "x")
}

// A session the gateway closed is remembered: its late OPEN (an event the
// gateway sent again) opens nothing.
func TestALateOpenOfAClosedSessionIsIgnored(t *testing.T) {
	f := start(t, Options{})
	l1 := f.link("gw-1")
	l1.send(0, open(1, 42), closeEvent(1))
	l1.waitAck(2)
	l1.cancel()
	l2 := f.link("gw-1")
	l2.send(0, open(1, 42), open(2, 43))
	l2.waitAck(2)
	f.game.waitLines(t, "open 42", "close 42 client left", "open 43")
}

// Kick sends a KICK; OnClose comes at once. The KICK is sent again on
// re-attach until the gateway acknowledges it; then the session is gone.
func TestAKickIsResentUntilAcknowledged(t *testing.T) {
	f := start(t, Options{})
	l1 := f.link("gw-1")
	l1.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	s := f.game.session(42)
	f.srv.Kick(s, "test")
	f.game.waitLines(t, "open 42", "close 42 kicked")
	kick := l1.events(1)[0]
	if kick.Kind != batchpb.Event_KICK || kick.Session != 1 {
		t.Fatalf("%v, want a KICK of 1", kick)
	}
	l1.cancel()
	l2 := f.link("gw-1")
	l2.send(0, open(1, 42))
	again := l2.events(1)[0]
	if again.Kind != batchpb.Event_KICK || again.Seq != kick.Seq {
		t.Fatalf("%v, want the same KICK (seq %x)", again, kick.Seq)
	}
	l2.send(1, open(2, 43)) // the game's ack of the OPEN says it read the KICK's ack
	l2.waitAck(2)
	l2.cancel()
	l3 := f.link("gw-1")
	l3.send(0, open(1, 42), open(2, 43))
	l3.waitAck(2)
	f.game.waitLines(t, "open 42", "close 42 kicked", "open 43")
	if got := len(f.srv.Sessions()); got != 1 {
		t.Fatalf("%d live sessions, want 1", got)
	}
}

// Kick from inside the session's own OnMessage: OnClose comes after it
// returned, and nothing deadlocks.
func TestKickInsideACallback(t *testing.T) {
	f := start(t, Options{})
	f.game.onMessage = func(s *Session, proto int16, body []byte) {
		f.srv.Kick(s, "asked")
		f.game.add(s, "kick returned")
	}
	l := f.link("gw-1")
	l.send(0, open(1, 42), message(1, 1, 1005, ""), message(1, 2, 1005, ""))
	f.game.waitLines(t, "open 42", "message 42 1005 ", "kick returned", "close 42 kicked")
	if e := l.events(1)[0]; e.Kind != batchpb.Event_KICK {
		t.Fatalf("%v, want a KICK", e)
	}
}

func TestADetachedSessionEndsAfterTheGrace(t *testing.T) {
	f := start(t, Options{ReattachGrace: 200 * time.Millisecond})
	l := f.link("gw-1")
	l.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	l.cancel()
	f.game.waitLines(t, "open 42", "close 42 expired")
}

func TestALinkWithoutGatewayIDEndsItsSessions(t *testing.T) {
	f := start(t, Options{})
	l := f.link("")
	l.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	l.cancel()
	f.game.waitLines(t, "open 42", "close 42 link lost")
}

// A gateway that stops acknowledging: past MaxQueued unacknowledged events
// the link is cancelled, not trimmed; the next link gets everything, once
// and in order.
func TestAGatewayThatDoesNotAcknowledgeLosesItsLinkNotItsMessages(t *testing.T) {
	f := start(t, Options{MaxQueued: 8})
	l1 := f.link("gw-1")
	l1.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	s := f.game.session(42)
	var bodies []string
	for i := 0; i < 9; i++ { // the ninth finds 8 unacknowledged
		bodies = append(bodies, fmt.Sprint(i))
		if err := f.srv.Send(s, 2, []byte(bodies[i])); err != nil {
			t.Fatal(err)
		}
	}
	if code := status.Code(l1.waitEnded()); code != codes.Aborted {
		t.Fatalf("the link ended with %v, want Aborted", code)
	}
	l2 := f.link("gw-1")
	l2.send(0, open(1, 42))
	checkMessages(t, l2.events(9), 1, 1, bodies...)
}

// Batches are cut by bytes: three 1.5 MiB messages never make a Batch over
// gRPC's 4 MiB (which the fake gateway's receive limit enforces); a message
// that could not fit one is refused.
func TestBatchesFitOneGRPCMessage(t *testing.T) {
	f := start(t, Options{})
	l := f.link("gw-1")
	l.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	s := f.game.session(42)
	big := strings.Repeat("x", 1536<<10)
	if err := f.srv.Send(s, 2, []byte(strings.Repeat("y", MaxMessageBytes-1))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an oversize Send: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := f.srv.Send(s, 2, []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	checkMessages(t, l.events(3), 1, 1, big, big, big)
}

// gonet2's contract: the same handler, one stream per session.
func gonet2Stream(t *testing.T, f *fixture, md ...string) gamepb.GameService_StreamClient {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), md...))
	t.Cleanup(cancel)
	call, err := gamepb.NewGameServiceClient(f.conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return call
}

func TestGonet2StreamsReachTheSameCallbacks(t *testing.T) {
	f := start(t, Options{})
	f.game.onMessage = func(s *Session, proto int16, body []byte) {
		if proto == 1005 {
			f.srv.Kick(s, "asked")
			return
		}
		_ = f.srv.Send(s, proto+1, body)
	}
	a := gonet2Stream(t, f, "userid", "42", "gateway-id", "host/seg@1", "login-seq", "99")
	if err := a.Send(&gamepb.Game_Frame{Type: gamepb.Game_Message, Message: encode(1001, []byte("hi"))}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(&gamepb.Game_Frame{Type: gamepb.Game_Ping, Message: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*gamepb.Game_Frame{
		{Type: gamepb.Game_Message, Message: encode(1002, []byte("hi"))},
		{Type: gamepb.Game_Ping, Message: []byte("p")},
	} {
		got, err := a.Recv()
		if err != nil || got.Type != want.Type || string(got.Message) != string(want.Message) {
			t.Fatalf("got %v (%v), want %v", got, err, want)
		}
	}
	s := f.game.session(42)
	if s.GatewayID() != "host/seg@1" || s.LoginSeq() != 99 || s.Contract() != Gonet2Stream {
		t.Fatalf("session %+v", s)
	}
	if err := a.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Recv(); err != io.EOF {
		t.Fatalf("after the half-close: %v, want the stream to end OK", err)
	}
	f.game.waitLines(t, "open 42", "message 42 1001 hi", "close 42 client left")
	b := gonet2Stream(t, f, "userid", "43")
	if err := b.Send(&gamepb.Game_Frame{Type: gamepb.Game_Message, Message: encode(1005, nil)}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Recv(); err != nil || got.Type != gamepb.Game_Kick {
		t.Fatalf("got %v (%v), want a Kick frame", got, err)
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("after the Kick: %v, want the stream to end OK", err)
	}
	f.game.waitLines(t, "open 42", "message 42 1001 hi", "close 42 client left",
		"open 43", "message 43 1005 ", "close 43 kicked")
}

func TestGonet2StreamWithoutUseridIsRefused(t *testing.T) {
	f := start(t, Options{})
	call := gonet2Stream(t, f)
	if _, err := call.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%v, want InvalidArgument", err)
	}
}

// Broadcast reaches the sessions of both contracts.
func TestBroadcastReachesEveryContract(t *testing.T) {
	f := start(t, Options{})
	l := f.link("gw-1")
	l.send(0, open(1, 42))
	f.game.waitLines(t, "open 42")
	a := gonet2Stream(t, f, "userid", "43")
	// A Ping's answer says the stream is open.
	if err := a.Send(&gamepb.Game_Frame{Type: gamepb.Game_Ping}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Recv(); err != nil || got.Type != gamepb.Game_Ping {
		t.Fatalf("got %v (%v), want a Ping", got, err)
	}
	f.game.waitLines(t, "open 42", "open 43")
	if n := f.srv.Broadcast(nil, 7, []byte("all")); n != 2 {
		t.Fatalf("Broadcast reached %d sessions, want 2", n)
	}
	checkMessages(t, l.events(1), 1, 1, "all")
	if got, err := a.Recv(); err != nil || string(got.Message) != string(encode(7, []byte("all"))) {
		t.Fatalf("gonet2 got %v (%v)", got, err)
	}
}
