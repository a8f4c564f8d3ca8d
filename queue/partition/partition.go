// Package partition consumes a partitioned input stream from several
// replicas, each partition by one replica at a time, so that the per-contact
// order a single worker keeps holds across replicas.
//
// The input stream's subject transform puts every event of one contact in
// one partition (see queue.Partitioning). Each partition has a durable pull
// consumer with the pinned-client priority policy: every replica that wants
// a partition pulls from its consumer in one priority group, and the server
// delivers to one of them only (the pinned client), moving the pin only when
// that client sends no pull request for the pin's timeout (it died or was
// cut off) or gives it up (unpin). The pin is the fence: a partition's
// messages never reach two replicas at once.
//
// Which replica wants which partition:
//
//   - Static: replica Index of Replicas wants partitions Index,
//     Index+Replicas, ... (a StatefulSet's ordinal). A replica that dies
//     keeps its partitions until it restarts (its pin times out meanwhile,
//     or it gave the pins up on a clean stop).
//   - Elastic: replicas announce themselves in a key-value bucket whose
//     entries expire after the takeover time; every replica computes the
//     same balanced assignment from the live members (rendezvous hashing
//     with a load cap). A replica pulls a partition only while it holds the
//     partition's claim in the same bucket (created with compare-and-set,
//     renewed with the announcement, expiring with it). A replica that
//     stops announcing drops out, its claims and pins time out, and the
//     partitions' new owners claim and pull them. A replica that no longer
//     wants a partition (a member joined) stops taking new messages of it,
//     waits until the worker has settled every message of it it holds
//     (taking back the ones the worker handed back for redelivery), then
//     gives the pin and the claim up: a partition moves only once its old
//     owner holds nothing of it, also when a consumer leader change resets
//     the pins meanwhile. Messages a pull brought meanwhile are parked and
//     handed back with it; if the partition is wanted again first, they go
//     to the worker before any newer one.
//
// A replica keeps the pins of the partitions it owns alive while its worker
// is paused or full (and so not fetching) with pull requests that cannot
// deliver anything (max bytes 1).
//
// Order across a takeover: the previous owner may have left messages
// unacknowledged (it died holding them); JetStream redelivers them only when
// their AckWait runs out, while newer messages of the partition flow at once.
// So on acquiring a partition the Source reads the partition's messages
// between the consumer's ack floor and its last delivery that it does not
// hold itself, and holds back every newer message of the same subject (the
// contact key) until the older ones come back, the ack floor passes them
// (they were acknowledged after all), or AckWait plus five seconds have
// passed (acknowledged above the floor). Held-back messages
// are kept alive with in-progress acknowledgements. Messages of other
// contacts flow at once.
package partition

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/queue"
)

// Mode is how a replica knows which partitions it wants.
type Mode int

// Modes.
const (
	Static Mode = iota + 1
	Elastic
)

func (m Mode) String() string {
	if m == Static {
		return "static"
	}
	return "elastic"
}

// gateMargin is added to AckWait before a newly acquired partition's held
// messages are let go without the older ones they wait for.
const gateMargin = 5 * time.Second

// Options configures a Source.
type Options struct {
	Topology     queue.Topology
	Partitioning queue.Partitioning
	Mode         Mode

	// Index and Replicas place a static replica.
	Index, Replicas int

	// Members is the membership bucket of elastic mode, MemberID this
	// replica's id in it (unique per process).
	Members  *queue.Members
	MemberID string
	// Takeover is how long a member that stopped announcing itself stays
	// listed (the members bucket's TTL); it is announced four times as
	// often. It should equal Partitioning.PinTTL.
	Takeover time.Duration

	// AckWait is the consumers' AckWait.
	AckWait time.Duration

	// Legacy names the unpartitioned consumer of the stream: while it has
	// messages to finish (those published before the stream was
	// partitioned), Fetch delivers nothing, so that no contact's newer
	// events overtake them. "" skips the check.
	Legacy string
	// LegacyPoll is how often the unpartitioned consumer is looked at
	// while it has messages to finish (default 5s).
	LegacyPoll time.Duration

	Logger *zap.Logger
	// OnChange, when set, is told of every change of a partition's
	// ownership: "acquired", "released" or "lost".
	OnChange func(partition int, what string)
}

// Source fetches from the partitions this replica owns. It implements the
// worker's Source (through queue/jsworker).
type Source struct {
	o      Options
	js     jetstream.JetStream
	stream jetstream.Stream
	parts  []*part
	log    *zap.Logger

	mu      sync.Mutex
	members []string
	changed chan struct{}
	// connectedAt is the last time the NATS connection was seen up;
	// renewedAt (elastic) the last heartbeat that renewed every claim.
	// Either older than half the takeover time fences the replica.
	connectedAt, renewedAt time.Time

	legacyMu   sync.Mutex
	legacyDone bool
	legacyAt   time.Time
	legacyErr  error

	stop   context.CancelFunc
	bg     sync.WaitGroup
	closed bool
}

type part struct {
	i      int
	cons   jetstream.Consumer
	filter string

	// Guarded by Source.mu.
	desired   bool
	claimed   bool   // this replica may pull it (static: when desired)
	claimRev  uint64 // elastic: the claim's revision
	owned     bool   // this replica holds the pin
	pin       string
	holding   map[uint64]bool // handed to the worker, not settled
	naked     map[uint64]bool // handed back by the worker, to come back here
	parked    []*Message      // new messages taken while releasing: handed back on release
	gate      *gate
	ready     []*Message // let go by the gate, delivered by the next Fetch
	lastReq   time.Time
	keepalive bool // a keep-alive request is out
	hot       bool // its last request came back full
}

// pullable reports whether rounds pull the partition: claimed, and wanted
// or awaiting messages the worker handed back. Lock held.
func (p *part) pullable() bool {
	return p.claimed && (p.desired || len(p.naked) > 0) && len(p.ready) == 0
}

// replace puts m in the place of an earlier delivery of its message that
// this source holds back, parks or has ready, and reports whether there
// was one. Lock held.
func (p *part) replace(m *Message) bool {
	lists := [][]*Message{p.parked, p.ready}
	if p.gate != nil {
		lists = append(lists, p.gate.held)
	}
	for _, l := range lists {
		for i, h := range l {
			if h.seq == m.seq {
				l[i] = m
				return true
			}
		}
	}
	return false
}

// mine reports whether the partition's new messages go to the worker:
// wanted and claimed. Lock held.
func (p *part) mine() bool { return p.desired && p.claimed }

// hasState reports whether this replica holds anything of the partition
// besides what the worker holds: its pin, its claim, or messages held
// back, ready or parked. Lock held.
func (p *part) hasState() bool {
	return p.owned || p.claimed || len(p.parked) > 0 || len(p.ready) > 0 || (p.gate != nil && len(p.gate.held) > 0)
}

// New starts a Source on the partition consumers (in partition order, as
// queue.EnsurePartitioned returns them). In elastic mode it announces the
// replica and reads the membership before returning, so that Recovery
// covers the partitions it wants at start. Close stops it.
func New(ctx context.Context, js jetstream.JetStream, consumers []jetstream.Consumer, o Options) (*Source, error) {
	if len(consumers) != o.Partitioning.Count || o.Partitioning.Count == 0 {
		return nil, fmt.Errorf("partition: %d consumers for %d partitions", len(consumers), o.Partitioning.Count)
	}
	switch o.Mode {
	case Static:
		if o.Replicas < 1 || o.Index < 0 || o.Index >= o.Replicas {
			return nil, fmt.Errorf("partition: static replica %d of %d", o.Index, o.Replicas)
		}
	case Elastic:
		if o.Members == nil || o.MemberID == "" || o.Takeover <= 0 {
			return nil, errors.New("partition: elastic mode needs the members bucket, a member id and the takeover time")
		}
	default:
		return nil, fmt.Errorf("partition: unknown mode %d", o.Mode)
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Partitioning.PinTTL <= 0 {
		o.Partitioning.PinTTL = o.Takeover
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.LegacyPoll <= 0 {
		o.LegacyPoll = 5 * time.Second
	}
	stream, err := js.Stream(ctx, o.Topology.Stream)
	if err != nil {
		return nil, fmt.Errorf("partition: stream %s: %w", o.Topology.Stream, err)
	}
	s := &Source{o: o, js: js, stream: stream, log: o.Logger.Named("partition"), changed: make(chan struct{}, 1),
		connectedAt: time.Now(), renewedAt: time.Now()}
	for i, c := range consumers {
		s.parts = append(s.parts, &part{i: i, cons: c, filter: o.Partitioning.Filter(i), holding: map[uint64]bool{}, naked: map[uint64]bool{}})
	}
	if o.Mode == Static {
		var mine []int
		for _, p := range s.parts {
			p.desired = p.i%o.Replicas == o.Index
			p.claimed = p.desired
			if p.desired {
				mine = append(mine, p.i)
			}
		}
		s.log.Info("static partitions", zap.Int("replica", o.Index), zap.Int("replicas", o.Replicas), zap.Ints("partitions", mine))
	} else if err := s.heartbeat(ctx); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		s.coordinate(bctx)
	}()
	go func() {
		defer s.bg.Done()
		s.maintain(bctx)
	}()
	return s, nil
}

// tick is the period of the background loop.
func (s *Source) tick() time.Duration {
	return max(min(s.o.Partitioning.PinTTL/4, time.Second, s.o.AckWait/6), 50*time.Millisecond)
}

// coordinate keeps the membership and the claims (elastic mode), moves
// partitions this replica no longer wants, and drops from gates what the
// ack floor shows acknowledged: the steps that talk to JetStream and may
// wait on it.
func (s *Source) coordinate(ctx context.Context) {
	t := time.NewTicker(s.tick())
	defer t.Stop()
	var lastBeat time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := time.Now(); s.o.Mode == Elastic && now.Sub(lastBeat) >= s.o.Takeover/4 {
			lastBeat = now
			if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("partition membership: announcing, listing or claiming failed; retrying", zap.Error(err))
			}
		}
		s.releaseUnwanted(ctx)
		s.settleGates(ctx)
	}
}

// maintain keeps the pins and the messages this source holds alive, and
// lets gates expire: the steps that must not wait behind a slow request.
func (s *Source) maintain(ctx context.Context) {
	t := time.NewTicker(s.tick())
	defer t.Stop()
	var lastTouch time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if s.js.Conn().IsConnected() {
			s.mu.Lock()
			s.connectedAt = now
			s.mu.Unlock()
		}
		s.keepAlive(ctx, now)
		s.expireGates(now)
		if now.Sub(lastTouch) >= s.o.AckWait/3 {
			lastTouch = now
			s.touchHeld(ctx)
		}
	}
}

// heartbeat announces this member, reads the membership, recomputes the
// partitions this replica wants, renews its claims and claims the wanted
// partitions nobody holds.
func (s *Source) heartbeat(ctx context.Context) error {
	info := fmt.Appendf(nil, `{"at":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	if err := s.o.Members.Announce(ctx, s.o.MemberID, info); err != nil {
		return err
	}
	members, err := s.o.Members.List(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(members, s.o.MemberID) {
		members = append(members, s.o.MemberID) // just announced: listed by the next read
		slices.Sort(members)
	}
	want := Assign(len(s.parts), members)[s.o.MemberID]
	s.mu.Lock()
	changed := !slices.Equal(members, s.members)
	s.members = members
	type claim struct {
		p   *part
		rev uint64
	}
	var renew []claim
	var take []*part
	for _, p := range s.parts {
		p.desired = !s.closed && slices.Contains(want, p.i)
		s.unpark(p)
		switch {
		case p.claimed:
			renew = append(renew, claim{p, p.claimRev})
		case p.desired:
			take = append(take, p)
		}
	}
	if changed {
		s.log.Info("partition membership changed", zap.Strings("members", members), zap.Ints("wanted", want))
	}
	s.mu.Unlock()

	var errs []error
	for _, c := range renew {
		rev, ok, err := s.o.Members.Renew(ctx, c.p.i, s.o.MemberID, c.rev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		if c.p.claimed && c.p.claimRev == c.rev {
			c.p.claimed, c.p.claimRev = ok, rev
		}
		s.mu.Unlock()
		if !ok {
			// It expired (this replica was cut off for the takeover time):
			// another may own the partition now.
			s.log.Warn("partition claim lost: this replica was cut off for longer than PARTITION_TAKEOVER; another replica may own the partition now",
				zap.Int("partition", c.p.i))
		}
	}
	if len(errs) == 0 {
		s.mu.Lock()
		s.renewedAt = time.Now()
		s.mu.Unlock()
	}
	for _, p := range take {
		rev, ok, err := s.o.Members.Claim(ctx, p.i, s.o.MemberID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			s.mu.Lock()
			if p.desired && !s.closed {
				p.claimed, p.claimRev = true, rev
				s.unpark(p)
				changed = true
			} else {
				ok = false
			}
			s.mu.Unlock()
			if !ok {
				_ = s.o.Members.Unclaim(ctx, p.i, rev)
			}
		}
	}
	if changed {
		s.wake()
	}
	return errors.Join(errs...)
}

func (s *Source) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Assign maps every member to its partitions: each partition goes to the
// member ranking highest for it (rendezvous hashing, so that a change of
// membership moves few partitions) among those below their fair share
// (ceil(n/members)). Every replica computes the same from the same list.
func Assign(n int, members []string) map[string][]int {
	out := map[string][]int{}
	if len(members) == 0 {
		return out
	}
	fair := (n + len(members) - 1) / len(members)
	load := map[string]int{}
	for p := range n {
		ranked := slices.Clone(members)
		score := func(m string) uint64 {
			h := fnv.New64a()
			_, _ = h.Write([]byte(strconv.Itoa(p) + "/" + m))
			return h.Sum64()
		}
		slices.SortFunc(ranked, func(a, b string) int {
			sa, sb := score(a), score(b)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return 0
		})
		for _, m := range ranked {
			if load[m] < fair {
				load[m]++
				out[m] = append(out[m], p)
				break
			}
		}
	}
	return out
}

// Fenced reports whether this replica's ownership of its partitions has
// gone unconfirmed for half the takeover time or more: its NATS connection
// is down, or (elastic) its claims were not renewed. Another replica may
// take the partitions over once the takeover time has passed, so nothing
// held should be applied to Mautic until ownership is confirmed again
// (see Owns for what was lost meanwhile).
func (s *Source) Fenced(now time.Time) (string, bool) {
	limit := s.o.Partitioning.PinTTL / 2
	if s.o.Mode == Elastic {
		limit = s.o.Takeover / 2
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := now.Sub(s.connectedAt); d >= limit {
		return fmt.Sprintf("NATS unreachable for %s; another replica may take this replica's partitions over after PARTITION_TAKEOVER (%s)", d.Round(time.Millisecond), 2*limit), true
	}
	if d := now.Sub(s.renewedAt); s.o.Mode == Elastic && d >= limit {
		return fmt.Sprintf("partition claims not renewed for %s; another replica may take them over after PARTITION_TAKEOVER (%s)", d.Round(time.Millisecond), 2*limit), true
	}
	return "", false
}

// Owns reports whether m's partition is still this replica's: elastic, it
// holds the partition's claim; static, the pin was not seen to move.
func (s *Source) Owns(m *Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.Mode == Elastic {
		return m.p.claimed
	}
	return m.p.owned
}

// Owned returns the partitions this replica holds the pin of.
func (s *Source) Owned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.parts {
		if p.owned {
			out = append(out, p.i)
		}
	}
	return out
}

// Wanted returns the partitions this replica wants (its share).
func (s *Source) Wanted() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.parts {
		if p.desired {
			out = append(out, p.i)
		}
	}
	return out
}

func (s *Source) changedOwnership(p *part, what string, fields ...zap.Field) {
	s.log.Info("partition "+what, append([]zap.Field{zap.Int("partition", p.i)}, fields...)...)
	if s.o.OnChange != nil {
		s.o.OnChange(p.i, what)
	}
}

// Fetch delivers up to max messages from the partitions this replica owns
// or wants, waiting at most wait: messages let go by a gate first, then one
// round of pull requests on the partitions, the budget spread over them
// and given again to partitions whose request came back full. deliver is
// called from one goroutine at a time.
func (s *Source) Fetch(ctx context.Context, max int, wait time.Duration, deliver func(*Message)) error {
	if max <= 0 {
		return nil
	}
	if err := s.checkLegacy(ctx); err != nil {
		sleep(ctx, s.o.LegacyPoll, nil) // and say so again: the worker logs it and reports it on /readyz
		return err
	}
	var dmu sync.Mutex
	delivered := 0
	give := func(m *Message) {
		dmu.Lock()
		defer dmu.Unlock()
		delivered++
		deliver(m)
	}
	for _, m := range s.takeReady(max) {
		give(m)
	}
	if delivered >= max {
		return nil
	}
	deadline := time.Now().Add(wait)
	type result struct {
		p      *part
		n, got int
		err    error
	}
	results := make(chan result)
	active := map[*part]int{} // outstanding requests and their size
	finished := map[*part]bool{}
	reserved := 0
	var errs []error
	launched := 0
	for {
		// What may still come: the requests out (at most their size) and
		// what was delivered (counted twice while its request is out:
		// erring on the safe side of max).
		dmu.Lock()
		free := max - reserved - delivered
		dmu.Unlock()
		left := time.Until(deadline)
		if free > 0 && left > 20*time.Millisecond && ctx.Err() == nil {
			var cold, hot []*part
			plan0 := map[*part]int{}
			s.mu.Lock()
			for _, p := range s.parts {
				if _, busy := active[p]; busy || finished[p] || !p.pullable() {
					continue
				}
				if !p.mine() {
					// Releasing: only the messages the worker handed back.
					plan0[p] = min(len(p.naked), max)
					continue
				}
				if p.hot {
					hot = append(hot, p)
				} else {
					cold = append(cold, p)
				}
			}
			s.mu.Unlock()
			coldN := min(free, max2(1, max/(4*max2(1, len(cold)+len(hot)+len(active)))))
			plan := map[*part]int{}
			for p, n := range plan0 {
				if n = min(n, free); n > 0 {
					plan[p], free = n, free-n
				}
			}
			for _, p := range cold {
				if free <= 0 {
					break
				}
				n := min(coldN, free)
				plan[p], free = n, free-n
			}
			for k, p := range hot {
				if free <= 0 {
					break
				}
				n := max2(1, free/(len(hot)-k))
				plan[p], free = n, free-n
			}
			for p, n := range plan {
				active[p] = n
				reserved += n
				launched++
				go func() {
					got, err := s.pull(ctx, p, n, left, give)
					results <- result{p: p, n: n, got: got, err: err}
				}()
			}
		}
		if len(active) == 0 {
			break
		}
		r := <-results
		delete(active, r.p)
		reserved -= r.n // delivered already counts what came of it
		s.mu.Lock()
		r.p.hot = r.got >= r.n
		s.mu.Unlock()
		if r.err != nil {
			errs = append(errs, r.err)
		}
		if r.got < r.n || r.err != nil {
			finished[r.p] = true // it waited out the round, or failed
		}
	}
	if launched == 0 && delivered == 0 {
		// Nothing to pull from (a standby replica): wait for a change.
		sleep(ctx, time.Until(deadline), s.changed)
		return nil
	}
	if len(errs) > 0 && len(errs) == launched && delivered == 0 {
		return errors.Join(errs...)
	}
	return nil
}

// pull makes one pull request on p for up to n messages, waiting at most
// wait, and admits each message as it arrives. It returns how many came.
func (s *Source) pull(ctx context.Context, p *part, n int, wait time.Duration, give func(*Message)) (int, error) {
	s.mu.Lock()
	p.lastReq = time.Now()
	s.mu.Unlock()
	batch, err := p.cons.Fetch(n, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(queue.PriorityGroup))
	if err != nil {
		return 0, fmt.Errorf("partition %d: fetch: %w", p.i, err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		md, err := m.Metadata()
		if err != nil {
			continue // not a JetStream message: nothing to ack it with
		}
		msg := &Message{msg: m, seq: md.Sequence.Stream, delivered: md.NumDelivered, p: p, s: s}
		if pin := m.Headers().Get(pinHeader); pin != "" {
			s.mu.Lock()
			fresh := pin != p.pin
			s.mu.Unlock()
			if fresh {
				s.acquire(ctx, p, pin)
			}
		}
		s.admit(p, msg, give)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
		if errors.Is(err, jetstream.ErrPinIDMismatch) {
			s.lose(p)
			return got, nil
		}
		return got, fmt.Errorf("partition %d: fetch: %w", p.i, err)
	}
	return got, nil
}

const pinHeader = "Nats-Pin-Id"

// acquire records that this replica holds p's pin now, and sets up the gate
// for the messages the previous owner may have left unacknowledged.
func (s *Source) acquire(ctx context.Context, p *part, pin string) {
	s.mu.Lock()
	wasOwned := p.owned
	p.owned, p.pin = true, pin
	ours := len(p.holding) + len(p.ready) + len(p.parked)
	if p.gate != nil {
		ours += len(p.gate.held)
	}
	s.mu.Unlock()

	var outstanding []queue.StoredMsg
	info, err := p.cons.Info(ctx)
	if err == nil && int(info.NumAckPending) > ours+1 {
		outstanding, err = queue.UnackedFiltered(ctx, s.js, p.cons, p.filter, info, 100_000)
	}
	if err != nil {
		s.log.Warn("reading a newly acquired partition's unacknowledged messages failed; holding its messages back until AckWait has passed",
			zap.Int("partition", p.i), zap.Error(err))
	}
	s.mu.Lock()
	g := &gate{until: time.Now().Add(s.o.AckWait + gateMargin), out: map[uint64]string{}, bySubject: map[string]map[uint64]bool{}, all: err != nil}
	for _, m := range outstanding {
		if !p.holding[m.Seq] {
			g.add(m.Seq, m.Subject)
		}
	}
	// What this source has in hand is not outstanding; what an earlier
	// gate held back stays held back (now behind the new gate).
	for _, m := range append(slices.Clone(p.ready), p.parked...) {
		g.remove(m.seq)
	}
	if old := p.gate; old != nil {
		for _, h := range old.held {
			g.remove(h.seq)
			g.held = insertSorted(g.held, h)
		}
	}
	p.gate = g
	s.openGate(p) // drops it when nothing is outstanding
	s.mu.Unlock()
	what := "acquired"
	if wasOwned {
		what = "acquired again" // a consumer leader change resets pins
	}
	s.changedOwnership(p, what, zap.Int("awaiting", len(g.out)))
}

// lose records that p's pin went to another client.
func (s *Source) lose(p *part) {
	s.mu.Lock()
	was := p.owned
	p.owned, p.pin = false, ""
	s.mu.Unlock()
	if was {
		s.changedOwnership(p, "lost")
	}
}

// admit hands m to the worker, or holds it back while its gate says an
// older message of its subject may still come.
func (s *Source) admit(p *part, m *Message, give func(*Message)) {
	s.mu.Lock()
	s.unpark(p)
	if p.replace(m) {
		// A redelivery of a message this source holds (its AckWait ran
		// out): keep the fresh delivery in its place.
		s.mu.Unlock()
		return
	}
	back := p.naked[m.seq]
	delete(p.naked, m.seq)
	if !p.mine() && !back {
		// Releasing: a new message (or an older owner's) is not taken: it
		// goes back to the next owner with the rest, and the gate stays
		// as it is (its successors must wait for it there too).
		p.parked = append(p.parked, m)
		s.mu.Unlock()
		return
	}
	if g := p.gate; g != nil {
		g.remove(m.seq)
		if g.blocks(m) {
			g.held = insertSorted(g.held, m)
			s.mu.Unlock()
			return
		}
	}
	if len(p.ready) > 0 {
		// Older messages of this partition wait in ready: keep their order.
		p.ready = append(p.ready, m)
		s.openGate(p)
		s.mu.Unlock()
		return
	}
	p.holding[m.seq] = true
	s.openGate(p)
	s.mu.Unlock()
	give(m)
}

// openGate moves the held messages that no longer wait for anything to
// ready, in stream order, and drops the gate once nothing is outstanding.
// Lock held.
func (s *Source) openGate(p *part) {
	g := p.gate
	if g == nil {
		return
	}
	done := len(g.out) == 0 && !g.all
	keep := g.held[:0]
	for _, h := range g.held {
		if done || !g.blocks(h) {
			p.ready = append(p.ready, h)
		} else {
			keep = append(keep, h)
		}
	}
	g.held = keep
	if done {
		p.gate = nil
	}
}

// unpark puts the messages parked while p was being released back in
// line, oldest first, when p is wanted again before its release finished
// (the membership went back, a member's announcement came late): they go
// before any newer message of p, held back by its gate as they would have
// been. Lock held.
func (s *Source) unpark(p *part) {
	if !p.mine() || len(p.parked) == 0 {
		return
	}
	parked := p.parked
	p.parked = nil
	slices.SortFunc(parked, func(a, b *Message) int { return cmp.Compare(a.seq, b.seq) })
	for _, m := range parked {
		if g := p.gate; g != nil {
			g.remove(m.seq)
			if g.blocks(m) {
				g.held = insertSorted(g.held, m)
				continue
			}
		}
		p.ready = append(p.ready, m)
	}
	s.openGate(p)
}

// takeReady removes up to max messages from the ready lists of the
// partitions this replica still wants, in order, and counts them held.
func (s *Source) takeReady(max int) []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Message
	for _, p := range s.parts {
		if !p.mine() || len(p.ready) == 0 {
			continue // a partition being released hands them back
		}
		n := min(max-len(out), len(p.ready))
		for _, m := range p.ready[:n] {
			p.holding[m.seq] = true
		}
		out = append(out, p.ready[:n]...)
		p.ready = slices.Delete(p.ready, 0, n)
		if len(out) >= max {
			break
		}
	}
	return out
}

// expireGates lets go of gates past their deadline.
func (s *Source) expireGates(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.parts {
		if g := p.gate; g != nil && p.mine() && now.After(g.until) {
			if len(g.out) > 0 {
				s.log.Info("partition's older messages did not come back before AckWait ran out (acknowledged after all); letting newer ones go",
					zap.Int("partition", p.i), zap.Int("messages", len(g.out)))
			}
			g.out, g.bySubject, g.all = nil, nil, false
			s.openGate(p)
			s.wake()
		}
	}
}

// touchHeld keeps held-back, parked and ready messages alive.
func (s *Source) touchHeld(ctx context.Context) {
	s.mu.Lock()
	var msgs []*Message
	for _, p := range s.parts {
		msgs = append(msgs, p.parked...)
		msgs = append(msgs, p.ready...)
		if p.gate != nil {
			msgs = append(msgs, p.gate.held...)
		}
	}
	s.mu.Unlock()
	for _, m := range msgs {
		if ctx.Err() != nil {
			return
		}
		_ = m.msg.InProgress()
	}
}

// settleGates drops the outstanding messages at or below the consumer's
// ack floor (acknowledged after all: they will not come back) from gates.
func (s *Source) settleGates(ctx context.Context) {
	s.mu.Lock()
	var gated []*part
	for _, p := range s.parts {
		if p.gate != nil && len(p.gate.out) > 0 {
			gated = append(gated, p)
		}
	}
	s.mu.Unlock()
	for _, p := range gated {
		info, err := p.cons.Info(ctx)
		if err != nil {
			continue
		}
		s.mu.Lock()
		if g := p.gate; g != nil {
			for seq := range g.out {
				if seq <= info.AckFloor.Stream {
					g.remove(seq)
				}
			}
			if p.mine() {
				s.openGate(p)
				if len(p.ready) > 0 {
					s.wake()
				}
			}
		}
		s.mu.Unlock()
	}
}

// keepAlive sends a pull request that delivers nothing to every owned
// partition no request went to for a third of the pin's timeout, so that
// the pin stays while the worker is not fetching (paused, or full).
func (s *Source) keepAlive(ctx context.Context, now time.Time) {
	s.mu.Lock()
	var due []*part
	for _, p := range s.parts {
		if p.owned && !p.keepalive && now.Sub(p.lastReq) >= s.o.Partitioning.PinTTL/3 {
			p.keepalive, p.lastReq = true, now
			due = append(due, p)
		}
	}
	s.mu.Unlock()
	for _, p := range due {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer func() {
				s.mu.Lock()
				p.keepalive = false
				s.mu.Unlock()
			}()
			// max bytes 1: no message fits, so none is delivered, while the
			// request (carrying the pin id) renews the pin.
			b, err := p.cons.Fetch(1, jetstream.FetchMaxBytes(1), jetstream.FetchMaxWait(100*time.Millisecond), jetstream.FetchPriorityGroup(queue.PriorityGroup))
			if err != nil {
				return
			}
			for m := range b.Messages() {
				_ = m.Nak() // cannot happen (max bytes 1); never hold it
			}
			if errors.Is(b.Error(), jetstream.ErrPinIDMismatch) && ctx.Err() == nil {
				s.lose(p)
			}
		}()
	}
}

// releaseUnwanted gives up what this replica holds of partitions it no
// longer wants or no longer has the claim of (pin, claim, messages held
// back or parked), once the worker holds none of their messages and every
// message it handed back has come back and been settled. (A pull sent
// while it was wanted can win the pin after the claim was given up: that
// pin and its messages go too.)
func (s *Source) releaseUnwanted(ctx context.Context) {
	s.mu.Lock()
	var rel []*part
	for _, p := range s.parts {
		if !p.mine() && p.hasState() && len(p.holding) == 0 && len(p.naked) == 0 {
			rel = append(rel, p)
		}
	}
	s.mu.Unlock()
	for _, p := range rel {
		s.release(ctx, p)
	}
}

// release hands p's held-back and parked messages back, gives up its pin
// and then its claim.
func (s *Source) release(ctx context.Context, p *part) {
	s.mu.Lock()
	back := p.parked
	p.parked = nil
	if p.gate != nil {
		back = append(back, p.gate.held...)
		p.gate = nil
	}
	back = append(back, p.ready...)
	p.ready = nil
	owned, claimed, rev := p.owned, p.claimed, p.claimRev
	s.mu.Unlock()
	for _, m := range back {
		_ = m.msg.Nak() // redelivered to the next owner, which waits for it
	}
	if owned {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.stream.UnpinConsumer(uctx, p.cons.CachedInfo().Name, queue.PriorityGroup)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("giving up a partition's pin failed; it moves once the pin times out", zap.Int("partition", p.i), zap.Error(err))
		}
	}
	s.mu.Lock()
	p.owned, p.pin = false, ""
	if s.o.Mode == Elastic {
		p.claimed = false
	}
	s.mu.Unlock()
	if claimed && s.o.Mode == Elastic {
		if err := s.o.Members.Unclaim(ctx, p.i, rev); err != nil && ctx.Err() == nil {
			s.log.Warn("giving up a partition's claim failed; it moves once the claim times out", zap.Int("partition", p.i), zap.Error(err))
		}
	}
	if owned {
		s.changedOwnership(p, "released")
	}
}

// settle records that the worker is done with a message; handedBack
// when it naked it (it is to come back to this replica).
func (s *Source) settle(p *part, seq uint64, handedBack bool) {
	s.mu.Lock()
	if p.holding[seq] {
		delete(p.holding, seq)
		if handedBack {
			p.naked[seq] = true
		}
	}
	s.mu.Unlock()
}

// checkLegacy says whether the unpartitioned consumer still has messages
// to finish (looked up at most every LegacyPoll, never again once done).
func (s *Source) checkLegacy(ctx context.Context) error {
	if s.o.Legacy == "" {
		return nil
	}
	s.legacyMu.Lock()
	defer s.legacyMu.Unlock()
	if s.legacyDone {
		return nil
	}
	if time.Since(s.legacyAt) < s.o.LegacyPoll {
		return s.legacyErr
	}
	s.legacyAt = time.Now()
	s.legacyErr = s.legacyState(ctx)
	if s.legacyErr == nil {
		s.legacyDone = true
	}
	return s.legacyErr
}

func (s *Source) legacyState(ctx context.Context) error {
	cons, err := s.js.Consumer(ctx, s.o.Topology.Stream, s.o.Legacy)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("partition: look up the unpartitioned consumer %s: %w", s.o.Legacy, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("partition: unpartitioned consumer %s: %w", s.o.Legacy, err)
	}
	// Is any message stored before partitioning (an untransformed subject)
	// left after its ack floor? Partitioned messages are not its business.
	first, found, err := queue.ReadMsg(ctx, s.js, s.o.Topology.Stream, info.AckFloor.Stream+1, s.o.Partitioning.LegacyFilter())
	if err != nil {
		return fmt.Errorf("partition: read the stream after the unpartitioned consumer's ack floor: %w", err)
	}
	if !found {
		return nil
	}
	filters := append([]string{}, info.Config.FilterSubjects...)
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	if len(filters) != 1 || filters[0] != s.o.Partitioning.LegacyFilter() {
		return fmt.Errorf("partition: the unpartitioned consumer %s has events stored before partitioning to finish (from stream sequence %d) but its filter is %v: run `mautic-sync provision` with PARTITIONS set (it narrows it to %s), then one unpartitioned replica until it has finished; see docs/scaling.md",
			s.o.Legacy, first.Seq, filters, s.o.Partitioning.LegacyFilter())
	}
	return fmt.Errorf("partition: waiting for the unpartitioned consumer %s to finish the events stored before partitioning (from stream sequence %d; %d pending, %d unacknowledged): run one unpartitioned replica until it has, see docs/scaling.md",
		s.o.Legacy, first.Seq, info.NumPending, info.NumAckPending)
}

// Unacked lists the messages an earlier worker may have left
// unacknowledged on the partitions this replica wants now, in stream order
// (at most limit): the worker's Recovery for the partitions it starts with.
// Partitions acquired later are covered by their gates.
func (s *Source) Unacked(ctx context.Context, limit int) ([]queue.StoredMsg, error) {
	var out []queue.StoredMsg
	var errs []error
	for _, i := range s.Wanted() {
		p := s.parts[i]
		msgs, err := queue.UnackedFiltered(ctx, s.js, p.cons, p.filter, nil, limit-len(out))
		out = append(out, msgs...)
		if err != nil {
			errs = append(errs, err)
		}
		if len(out) >= limit {
			break
		}
	}
	slices.SortFunc(out, func(a, b queue.StoredMsg) int { return cmpU(a.Seq, b.Seq) })
	return out, errors.Join(errs...)
}

// Pending sums the partition consumers' backlog (not yet delivered) and
// unacknowledged messages, over every partition.
func (s *Source) Pending(ctx context.Context) (pending, ackPending uint64, err error) {
	for _, p := range s.parts {
		info, ierr := p.cons.Info(ctx)
		if ierr != nil {
			err = ierr
			continue
		}
		pending += info.NumPending
		ackPending += uint64(info.NumAckPending)
	}
	return pending, ackPending, err
}

// Close stops the Source once the worker has stopped: it hands back
// held-back messages, gives up its pins and claims and leaves the
// membership, so that the partitions' next owners take them over at once.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, p := range s.parts {
		p.desired = false
	}
	s.mu.Unlock()
	s.stop()
	s.bg.Wait()
	s.mu.Lock()
	var rel []*part
	for _, p := range s.parts {
		p.naked = map[uint64]bool{} // on their way to the next owner
		if p.owned || p.claimed {
			rel = append(rel, p)
		}
	}
	s.mu.Unlock()
	for _, p := range rel {
		s.release(ctx, p)
	}
	if s.o.Mode == Elastic {
		return s.o.Members.Leave(ctx, s.o.MemberID)
	}
	return nil
}

// gate holds back a newly acquired partition's messages whose subject has
// an older message outstanding (delivered to the previous owner and not
// acknowledged), until that one comes back or until.
type gate struct {
	until     time.Time
	out       map[uint64]string          // outstanding seq -> subject
	bySubject map[string]map[uint64]bool // subject -> its outstanding seqs
	all       bool                       // the outstanding set is unknown: hold everything until until
	held      []*Message                 // in stream order
}

func (g *gate) add(seq uint64, subject string) {
	g.out[seq] = subject
	if g.bySubject[subject] == nil {
		g.bySubject[subject] = map[uint64]bool{}
	}
	g.bySubject[subject][seq] = true
}

func (g *gate) remove(seq uint64) {
	subj, ok := g.out[seq]
	if !ok {
		return
	}
	delete(g.out, seq)
	delete(g.bySubject[subj], seq)
	if len(g.bySubject[subj]) == 0 {
		delete(g.bySubject, subj)
	}
}

func (g *gate) blocks(m *Message) bool {
	if g.all {
		return true
	}
	for seq := range g.bySubject[m.msg.Subject()] {
		if seq < m.seq {
			return true
		}
	}
	return false
}

func insertSorted(l []*Message, m *Message) []*Message {
	i, _ := slices.BinarySearchFunc(l, m.seq, func(a *Message, seq uint64) int { return cmpU(a.seq, seq) })
	return slices.Insert(l, i, m)
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// sleep waits d, or until ctx ends or wake is signalled.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-wake:
	}
}

// Message is one delivery of an input message from a partition consumer.
// It has the worker's Message methods (see queue/jsworker).
type Message struct {
	msg       jetstream.Msg
	seq       uint64
	delivered uint64
	p         *part
	s         *Source
}

// Data returns the body.
func (m *Message) Data() []byte { return m.msg.Data() }

// Header returns the headers, without the server's pin id.
func (m *Message) Header() map[string][]string {
	h := m.msg.Headers()
	if _, ok := h[pinHeader]; !ok {
		return h
	}
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if k != pinHeader {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Subject returns the subject it is stored under (with the partition).
func (m *Message) Subject() string { return m.msg.Subject() }

// StreamSeq returns its sequence in the input stream.
func (m *Message) StreamSeq() uint64 { return m.seq }

// NumDelivered counts its deliveries, this one included.
func (m *Message) NumDelivered() uint64 { return m.delivered }

// Partition is the partition it came from.
func (m *Message) Partition() int { return m.p.i }

// Ack acknowledges it.
func (m *Message) Ack(context.Context) error {
	defer m.s.settle(m.p, m.seq, false)
	return m.msg.Ack()
}

// Term tells the server never to redeliver it.
func (m *Message) Term(context.Context) error {
	defer m.s.settle(m.p, m.seq, false)
	return m.msg.Term()
}

// Nak asks for redelivery after delay (at once when 0).
func (m *Message) Nak(_ context.Context, delay time.Duration) error {
	defer m.s.settle(m.p, m.seq, true)
	if delay > 0 {
		return m.msg.NakWithDelay(delay)
	}
	return m.msg.Nak()
}

// InProgress resets its AckWait.
func (m *Message) InProgress(context.Context) error { return m.msg.InProgress() }
