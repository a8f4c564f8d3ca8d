package partition

import (
	"slices"
	"testing"

	"go.uber.org/zap"
)

// TestParkedMessagesGoFirstWhenWantedAgain: messages taken while a
// partition was being released (no longer wanted) are parked; when the
// partition is wanted again before the release finished, they are
// delivered before any newer message of it, in stream order. (The cluster
// test once saw the newer ones delivered while the older stayed parked:
// a contact's later events applied before its earlier ones.)
func TestParkedMessagesGoFirstWhenWantedAgain(t *testing.T) {
	s := &Source{log: zap.NewNop()}
	p := &part{claimed: true, holding: map[uint64]bool{}, naked: map[uint64]bool{}}
	s.parts = []*part{p}
	var given []uint64
	give := func(m *Message) { given = append(given, m.seq) }
	msg := func(seq uint64) *Message { return &Message{seq: seq, p: p, s: s} }

	// Not wanted (a member joined): what an in-flight pull brings is parked.
	s.admit(p, msg(6), give)
	s.admit(p, msg(5), give)
	if len(given) != 0 || len(p.parked) != 2 {
		t.Fatalf("given %v, parked %d; want nothing given, two parked", given, len(p.parked))
	}
	// Wanted again (the member's announcement expired), seen first by a
	// new message...
	p.desired = true
	s.admit(p, msg(9), give)
	for _, m := range s.takeReady(10) {
		given = append(given, m.seq)
	}
	if want := []uint64{5, 6, 9}; !slices.Equal(given, want) {
		t.Errorf("delivered %v, want %v", given, want)
	}

	// ... or by the heartbeat, with nothing new: the parked ones come on
	// the next Fetch.
	given = nil
	p.desired = false
	s.admit(p, msg(12), give)
	s.mu.Lock()
	p.desired = true
	s.unpark(p)
	s.mu.Unlock()
	for _, m := range s.takeReady(10) {
		given = append(given, m.seq)
	}
	if want := []uint64{12}; !slices.Equal(given, want) || len(p.parked) != 0 {
		t.Errorf("delivered %v with %d parked, want %v", given, len(p.parked), want)
	}
}
