package worker

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// pending is one held input message, or the ghost of one handed back for
// redelivery.
type pending struct {
	msg     Message
	seq     uint64
	arrived time.Time
	ev      *Event   // nil when the body is not a valid event
	keys    []string // lane keys; nil when not in the lanes
	touched time.Time
	// busy is set once the message is part of an op (queued, in a call or
	// being settled); only lane heads, and upserts merged with them, become
	// busy.
	busy bool
	op   *op        // the op it is part of, once busy
	span trace.Span // the event's span, when tracing
	// ghostUntil is set while the message was naked for redelivery: it
	// keeps its place in its lanes, so that its contact's later events
	// wait for it, until it comes back or the time passes.
	ghostUntil time.Time
}

func (p *pending) ghost() bool { return !p.ghostUntil.IsZero() }

// stepQueue holds ops waiting for a call of one kind.
type stepQueue struct {
	ops   []*op
	since time.Time // when the oldest op was first queued (see enqueue)
}

type callDone struct {
	results []opResult
}

type settleItem struct {
	p *pending
	v verdict
}

type settleDone struct {
	items  []settleItem
	stored []bool // per item: outcome stored and input acknowledged
}

// coordinator owns all pipeline state in one goroutine: held messages,
// ghosts, lanes, step queues and the bookkeeping of calls and settlements
// running in their own goroutines, which report back over channels.
type coordinator struct {
	w      *Worker
	opts   *Options
	log    *zap.Logger
	lanes  *lanes
	held   map[uint64]*pending
	ghosts map[uint64]*pending
	// systemic counts the naks of a message that were not its fault (rate
	// limits, contact blocked): they do not count as deliveries.
	systemic map[uint64]int
	queues   map[queueKey]*stepQueue

	inflight int // calls running
	settling int // settlements running
	done     chan callDone
	settled  chan settleDone
	wg       sync.WaitGroup

	workCtx context.Context // outlives Run's ctx until the drain timeout
	// retryCtx ends when the drain starts: calls in flight finish, but a
	// failed call is not tried again (its messages are handed back).
	retryCtx      context.Context
	cancelRetries context.CancelFunc
	draining      bool
}

func newCoordinator(w *Worker) *coordinator {
	return &coordinator{
		w:        w,
		opts:     &w.opts,
		log:      w.log,
		lanes:    newLanes(),
		held:     map[uint64]*pending{},
		ghosts:   map[uint64]*pending{},
		systemic: map[uint64]int{},
		queues:   map[queueKey]*stepQueue{},
		done:     make(chan callDone),
		settled:  make(chan settleDone),
	}
}

func (c *coordinator) run(ctx context.Context, in <-chan Message) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	c.workCtx = workCtx
	c.retryCtx, c.cancelRetries = context.WithCancel(workCtx)
	defer c.cancelRetries()
	defer c.wg.Wait()

	beat := max(c.opts.AckWait/3, 100*time.Millisecond)
	heartbeat := time.NewTicker(beat)
	defer heartbeat.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	var drainTimeout <-chan time.Time
	recv := in

	for {
		if c.draining && c.inflight == 0 && c.settling == 0 {
			c.dropAll()
			// The fetcher stops with the context; hand back what it
			// delivered in the meantime.
			for m := range in {
				c.nak(m, handBackDelay)
				c.w.release(1)
			}
			return nil
		}
		now := time.Now()
		c.expireGhosts(now)
		c.dispatch(now)
		c.arm(timer, now)
		select {
		case m, ok := <-recv:
			if !ok {
				recv = nil
				continue
			}
			c.accept(m, time.Now())
		case r := <-c.done:
			c.inflight--
			c.handle(r, time.Now())
		case s := <-c.settled:
			c.settling--
			c.release(s)
		case <-timer.C:
		case now := <-heartbeat.C:
			c.heartbeat(now, beat)
		case <-ctxDone:
			ctxDone = nil
			c.startDrain()
			drainTimeout = time.After(c.opts.DrainTimeout)
		case <-drainTimeout:
			drainTimeout = nil
			c.log.Warn("drain timeout: abandoning calls in flight; their messages are handed back",
				zap.Int("calls", c.inflight), zap.Int("settling", c.settling))
			cancelWork()
		}
	}
}

// maxRecover bounds the messages read at start to rebuild order.
const maxRecover = 20000

// recover places ghosts for the messages an earlier worker may have left
// unacknowledged, so that newer messages of their contacts wait for their
// redelivery (at most AckWait) instead of overtaking them. Messages the
// ledger shows applied need no ghost: their redelivery changes nothing.
func (c *coordinator) recover(ctx context.Context) {
	if c.opts.Recovery == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msgs, err := c.opts.Recovery.Unacked(rctx, maxRecover)
	if err != nil {
		c.log.Warn("reading unacknowledged messages failed; per-contact order across the restart is not guaranteed", zap.Error(err))
	}
	if len(msgs) == 0 {
		return
	}
	evs := make([]*Event, len(msgs))
	var ids []string
	for i, m := range msgs {
		if ev, err := Decode(m.Data); err == nil {
			evs[i] = ev
			ids = append(ids, ev.ID, deadLetterKey(m.Seq), copyKey(m.Seq))
		}
	}
	known, err := c.w.ledger.Lookup(rctx, ids)
	if err != nil {
		known = nil
	}
	until := time.Now().Add(c.opts.AckWait + 5*time.Second)
	for i, m := range msgs {
		ev := evs[i]
		if ev == nil {
			continue // invalid: it has no lane
		}
		if _, dead := known[deadLetterKey(m.Seq)]; dead {
			continue // settled as a dead letter
		}
		if _, settled := known[copyKey(m.Seq)]; settled {
			continue // a copy of an applied event, its outcome stored
		}
		if e, ok := known[ev.ID]; ok && e.State == LedgerApplied && e.Seq == m.Seq {
			// Applied by this message, and so its outcome is stored (the
			// ledger entry is written after it): its redelivery changes
			// nothing. A copy of an applied event (another message) is
			// waited for like any other: its own outcome may not be
			// stored yet, and the contact's later results must not
			// overtake it.
			continue
		}
		g := &pending{seq: m.Seq, ev: ev, keys: laneKeys(m.Subject, ev), ghostUntil: until}
		c.lanes.add(g)
		c.ghosts[m.Seq] = g
	}
	c.log.Info("waiting for the redelivery of messages an earlier worker left unacknowledged",
		zap.Int("messages", len(c.ghosts)), zap.Duration("at_most", time.Until(until)))
}

// accept takes in one delivered message.
func (c *coordinator) accept(m Message, now time.Time) {
	seq := m.StreamSeq()
	if _, dup := c.held[seq]; dup {
		// A redelivery of a message still held (its AckWait lapsed): the
		// held copy's ack settles both.
		c.w.release(1)
		c.log.Debug("redelivery of a held message ignored", zap.Uint64("stream_seq", seq))
		return
	}
	if c.draining {
		c.nak(m, handBackDelay)
		c.w.release(1)
		return
	}
	if g, ok := c.ghosts[seq]; ok {
		c.revive(g, m, now)
		return
	}
	p := &pending{msg: m, seq: seq, touched: now, arrived: now}
	c.held[seq] = p
	ev, err := Decode(m.Data())
	if c.overDelivered(p) {
		p.ev, p.busy = ev, true
		return
	}
	if err != nil {
		p.busy = true
		c.settle([]settleItem{{p, verdict{reason: ReasonInvalidEvent, err: err.Error()}}})
		return
	}
	p.ev = ev
	p.span = c.w.startEventSpan(ev, m.Subject(), seq)
	p.keys = laneKeys(m.Subject(), ev)
	c.lanes.add(p)
	c.consider(p, now)
}

// overDelivered dead-letters a message delivered again and again without
// an outcome: one that stops the worker (a crash) or that nothing else
// could settle. It reports whether it did.
func (c *coordinator) overDelivered(p *pending) bool {
	d := c.deliveries(p)
	if d <= uint64(c.opts.MaxDeliveries) {
		return false
	}
	c.settle([]settleItem{{p, verdict{reason: ReasonMaxDeliveries,
		err: "delivered " + strconv.FormatUint(d, 10) + " times without an outcome, over WORKER_MAX_DELIVERIES=" + strconv.Itoa(c.opts.MaxDeliveries)}}})
	return true
}

// consider schedules p when it heads its lanes, or merges it into the
// queued upsert it follows.
func (c *coordinator) consider(p *pending, now time.Time) {
	switch {
	case c.lanes.ready(p):
		c.schedule(p, now)
	case p.ev.Type == TypeUpsert:
		c.joinQueued(p)
	}
}

// deliveries counts the deliveries of a message that were its own: naks
// for systemic reasons are taken off.
func (c *coordinator) deliveries(p *pending) uint64 {
	n := p.msg.NumDelivered()
	if s := uint64(c.systemic[p.seq]); s < n {
		return n - s
	}
	return 1
}

// laneKeys are the keys whose events must run in order with this one.
func laneKeys(subject string, ev *Event) []string {
	keys := []string{"s:" + subject}
	if ev.EmailKey != "" {
		keys = append(keys, "e:"+ev.EmailKey)
	}
	if ev.MauticID > 0 {
		keys = append(keys, "i:"+strconv.Itoa(ev.MauticID))
	}
	return keys
}

// joinQueued merges an upsert into the queued, not yet sent upsert of its
// contact that it directly follows.
func (c *coordinator) joinQueued(p *pending) {
	prev := c.lanes.predecessor(p)
	if prev == nil || prev.op == nil || prev.op.dispatched || prev.ghost() {
		return
	}
	o := prev.op
	if o.events[len(o.events)-1] != prev || !o.canMerge(p) {
		return
	}
	o.events = append(o.events, p)
	o.ev = mergeUpserts(o.events)
	p.busy, p.op = true, o
}

// schedule turns a lane head into an op and queues it.
func (c *coordinator) schedule(p *pending, now time.Time) {
	var followers []*pending
	for _, f := range c.lanes.followers(p) {
		if f.ghost() || f.busy {
			break
		}
		followers = append(followers, f)
	}
	o := newOp(p, followers)
	for _, e := range o.events {
		e.busy, e.op = true, o
	}
	c.enqueue(o, now)
}

func (c *coordinator) enqueue(o *op, now time.Time) {
	k := o.key()
	q := c.queues[k]
	if q == nil {
		q = &stepQueue{}
		c.queues[k] = q
	}
	// An event lingers once: the time an op already waited for a batch to
	// fill, in an earlier step whose batch went out unfilled, counts
	// toward this step's linger, so that a two-step event at light load
	// does not wait for a batch to fill twice; after a step whose batch
	// was full (a backlog) the next one lingers in full, to fill its own.
	o.queued = now
	start := now.Add(-o.lingered)
	if len(q.ops) == 0 || start.Before(q.since) {
		q.since = start
	}
	q.ops = append(q.ops, o)
}

// dispatch starts calls while there are free slots and full or ripe batches.
func (c *coordinator) dispatch(now time.Time) {
	if c.draining || c.w.gate.has(PauseRateLimited) {
		return // a used-up rate limit: no call until it resets
	}
	if c.fenced(now) {
		return
	}
	for {
		var best *stepQueue
		var bestKey queueKey
		for k, q := range c.queues {
			if len(q.ops) == 0 {
				continue
			}
			if c.ripe(k, q, now) && (best == nil || q.since.Before(best.since)) {
				best, bestKey = q, k
			}
		}
		if best == nil {
			return
		}
		if c.inflight >= c.w.conc.current() {
			c.w.conc.waiting()
			return
		}
		if c.dropDisowned(best) {
			if len(best.ops) == 0 {
				delete(c.queues, bestKey)
			}
			continue // the queues changed: look again
		}
		c.startCall(bestKey, c.take(bestKey, best, now))
	}
}

// take removes the next batch from q (its oldest ops, as many as a call of
// k carries) for a call at now.
func (c *coordinator) take(k queueKey, q *stepQueue, now time.Time) []*op {
	limit := k.kind.limit(c.opts.BatchSize)
	n := min(len(q.ops), limit)
	if n < limit {
		for _, o := range q.ops[:n] { // sent unfilled: they lingered
			o.lingered = min(o.lingered+now.Sub(o.queued), c.opts.Linger)
		}
	}
	batch := slices.Clone(q.ops[:n])
	q.ops = slices.Delete(q.ops, 0, n)
	if len(q.ops) > 0 {
		q.since = now // the rest start a fresh linger
	} else {
		delete(c.queues, k)
	}
	return batch
}

// fenced checks the source's lease (partitioned consumption): while it is
// unconfirmed no call starts, and fetching pauses. When it is confirmed
// again, what the replica holds of partitions it lost meanwhile is handed
// back.
func (c *coordinator) fenced(now time.Time) bool {
	l, ok := c.w.src.(Lease)
	if !ok {
		return false
	}
	why, fenced := l.Fenced(now)
	switch {
	case fenced && !c.w.gate.has(PauseFenced):
		c.log.Warn("pausing Mautic calls: this replica's partitions may be taken over", zap.String("reason", why))
		c.w.gate.close(PauseFenced, why, time.Time{})
	case !fenced && c.w.gate.has(PauseFenced):
		c.log.Info("partition ownership confirmed again; resuming")
		c.w.gate.open(PauseFenced)
		c.handBackDisowned(l, nil)
	}
	return fenced
}

// dropDisowned is the check at dispatch: when an op of q holds a message
// of a partition this replica lost, every message it holds of a lost
// partition is handed back (see handBackDisowned). It reports whether any
// was.
func (c *coordinator) dropDisowned(q *stepQueue) bool {
	l, ok := c.w.src.(Lease)
	if !ok || !slices.ContainsFunc(q.ops, func(o *op) bool {
		return slices.ContainsFunc(o.events, func(p *pending) bool { return !l.Owns(p.msg) })
	}) {
		return false
	}
	c.handBackDisowned(l, q)
	return true
}

// handBackDisowned hands back, unapplied, every held message of partitions
// this replica no longer owns (its lease lapsed and another replica took
// them over) that is not in a call: nak without delay, so that the new
// owner gets it at once, and a ghost in its lanes, so that should a later
// message of its contact come here (the partition came back) it waits for
// this one, as after any hand-back. Every message of one contact is in one
// partition, so a contact's held messages go back together. q, when not
// nil, is the queue being dispatched.
func (c *coordinator) handBackDisowned(l Lease, q *stepQueue) {
	var lost []*pending
	for _, p := range c.held {
		waiting := p.op == nil && !p.busy || p.op != nil && !p.op.dispatched // not in a call or settling
		if p.msg != nil && waiting && !l.Owns(p.msg) {
			lost = append(lost, p)
		}
	}
	if len(lost) == 0 {
		return
	}
	gone := map[*op]bool{}
	for _, p := range lost {
		if p.op != nil {
			gone[p.op] = true
		}
	}
	for o := range gone { // an op goes back whole (merged upserts of one contact)
		for _, p := range o.events {
			if !slices.Contains(lost, p) {
				lost = append(lost, p)
			}
		}
	}
	for k, sq := range c.queues {
		sq.ops = slices.DeleteFunc(sq.ops, func(o *op) bool { return gone[o] })
		if len(sq.ops) == 0 && sq != q {
			delete(c.queues, k)
		}
	}
	slices.SortFunc(lost, func(a, b *pending) int { return cmp.Compare(a.seq, b.seq) })
	for _, p := range lost {
		endEventSpan(p.span, "handed_back", "", "")
		p.span = nil
		c.handBack(p, 0, true)
	}
	c.log.Warn("handed back messages of partitions another replica owns now", zap.Int("messages", len(lost)))
}

// ripe reports whether q's batch is to be sent now: it is full, or its
// oldest op has lingered long enough.
func (c *coordinator) ripe(k queueKey, q *stepQueue, now time.Time) bool {
	return len(q.ops) >= k.kind.limit(c.opts.BatchSize) || now.Sub(q.since) >= c.opts.Linger
}

func (c *coordinator) startCall(k queueKey, ops []*op) {
	for _, o := range ops {
		o.dispatched = true
	}
	c.inflight++
	c.w.inflight.Add(1)
	c.wg.Go(func() {
		res := c.w.execute(c.workCtx, c.retryCtx, k, ops)
		c.w.inflight.Add(-1) // before the hand-over, which may wait for the coordinator
		c.done <- callDone{results: res}
	})
}

// arm sets the timer to the next moment a batch ripens or a ghost expires.
func (c *coordinator) arm(t *time.Timer, now time.Time) {
	next := now.Add(time.Hour)
	for _, q := range c.queues {
		if due := q.since.Add(c.opts.Linger); len(q.ops) > 0 && due.Before(next) {
			next = due
		}
	}
	for _, g := range c.ghosts {
		if g.ghostUntil.Before(next) {
			next = g.ghostUntil
		}
	}
	if (len(c.queues) > 0 || c.w.gate.has(PauseFenced)) && !c.w.gate.isOpen() {
		if p := now.Add(pausePoll); p.Before(next) {
			next = p // look again when a pause may have ended
		}
	}
	t.Reset(max(next.Sub(now), time.Millisecond))
}

// handle takes the results of one call.
func (c *coordinator) handle(r callDone, now time.Time) {
	var done []settleItem
	var rateLimited time.Duration
	for _, res := range r.results {
		o := res.op
		done = append(done, res.skipped...)
		switch {
		case res.skipped != nil:
		case res.final != nil:
			v := *res.final
			if len(o.ignored) > 0 && !v.deadLetter() {
				v.ignored = o.ignored
			}
			for _, p := range o.events {
				done = append(done, settleItem{p, v})
			}
		case c.draining || res.abandoned:
			for _, p := range o.events {
				c.dropOne(p)
			}
		case res.next != 0:
			o.step, o.dispatched = res.next, false
			c.enqueue(o, now)
		case res.later && res.systemic && res.delay <= c.opts.AckWait && o.step != stepPoints:
			// A rate-limit window that resets within AckWait: the op
			// waits in its queue (the gate holds every call until the
			// reset) and goes out the moment it resets, instead of being
			// handed back and redelivered, spread, a while later.
			o.dispatched = false
			c.enqueue(o, now)
		case res.later && res.systemic:
			rateLimited = max(rateLimited, res.delay)
			for _, p := range o.events {
				c.handBack(p, res.delay, true)
			}
		case res.later:
			done = append(done, c.failEvent(o, res.err)...)
		}
	}
	if rateLimited > 0 {
		c.handBackAll(rateLimited)
	}
	if len(done) > 0 {
		c.settle(done)
	}
}

// failEvent handles an op whose own content failed again and again: each
// of its events is dead-lettered once it has used up its deliveries, else
// handed back for a later delivery with a growing delay.
func (c *coordinator) failEvent(o *op, why string) []settleItem {
	var done []settleItem
	for _, p := range o.events {
		d := c.deliveries(p)
		if d >= uint64(c.opts.MaxDeliveries) {
			done = append(done, settleItem{p, verdict{reason: ReasonMaxDeliveries,
				err: "failed on each of " + strconv.FormatUint(d, 10) + " deliveries (WORKER_MAX_DELIVERIES): " + why}})
			continue
		}
		c.log.Info("event failed; redelivering later (its contact's later events wait)",
			zap.Uint64("stream_seq", p.seq), zap.Uint64("num_delivered", d), zap.String("error", why))
		c.handBack(p, c.w.eventBackoff(d), false)
	}
	return done
}

// handBackAll hands back every held message that is not in a call or being
// settled: the rate limit is used up, and holding them for the window
// would only pin them.
func (c *coordinator) handBackAll(delay time.Duration) {
	for _, q := range c.queues {
		for _, o := range q.ops {
			for _, p := range o.events {
				c.handBack(p, delay, true)
			}
		}
	}
	c.queues = map[queueKey]*stepQueue{}
	for _, p := range c.held {
		if !p.busy {
			c.handBack(p, delay, true)
		}
	}
	c.log.Warn("Mautic rate limit used up; messages handed back until it resets",
		zap.Duration("delay", delay), zap.Int("ghosts", len(c.ghosts)))
}

// handBack naks a held message with a delay and leaves its ghost in the
// lanes. The delay gets a little jitter, so that redeliveries spread.
func (c *coordinator) handBack(p *pending, delay time.Duration, systemic bool) {
	if _, ok := c.held[p.seq]; !ok {
		return
	}
	delay += time.Duration(rand.Int64N(int64(delay/10) + 1))
	c.nak(p.msg, delay)
	if systemic {
		c.systemic[p.seq]++
	}
	delete(c.held, p.seq)
	c.w.release(1)
	if p.keys == nil {
		return
	}
	p.msg, p.busy, p.op = nil, false, nil
	p.ghostUntil = time.Now().Add(delay + c.opts.AckWait + 5*time.Second)
	c.ghosts[p.seq] = p
}

// revive puts a redelivered message back in its ghost's place.
func (c *coordinator) revive(g *pending, m Message, now time.Time) {
	delete(c.ghosts, g.seq)
	if g.span == nil {
		g.span = c.w.startEventSpan(g.ev, m.Subject(), g.seq)
	}
	g.msg, g.touched, g.ghostUntil = m, now, time.Time{}
	if g.arrived.IsZero() {
		g.arrived = now
	}
	c.held[g.seq] = g
	if c.overDelivered(g) {
		g.busy = true // settling; it keeps its place in the lanes until then
		return
	}
	if c.lanes.ready(g) {
		c.schedule(g, now)
	}
}

// expireGhosts forgets ghosts whose message never came back (acknowledged
// elsewhere, or deleted), so that their contacts' later events go on.
func (c *coordinator) expireGhosts(now time.Time) {
	for seq, g := range c.ghosts {
		if now.Before(g.ghostUntil) {
			continue
		}
		delete(c.ghosts, seq)
		delete(c.systemic, seq)
		for _, next := range c.lanes.remove(g) {
			if !next.busy && !next.ghost() {
				c.schedule(next, now)
			}
		}
	}
}

// settle publishes the outcomes of items and then acknowledges them, in a
// goroutine that reports back on c.settled.
func (c *coordinator) settle(items []settleItem) {
	c.settling++
	c.wg.Go(func() {
		c.settled <- c.w.settle(c.workCtx, items)
	})
}

// release forgets settled messages and runs the events they held back.
func (c *coordinator) release(s settleDone) {
	now := time.Now()
	for _, it := range s.items {
		p := it.p
		delete(c.held, p.seq)
		delete(c.systemic, p.seq)
		if p.keys != nil {
			for _, next := range c.lanes.remove(p) {
				if c.draining {
					c.dropOne(next)
				} else if !next.busy && !next.ghost() {
					c.schedule(next, now)
				}
			}
		}
	}
	c.w.release(len(s.items))
}

// heartbeat keeps held messages from being redelivered while they wait.
func (c *coordinator) heartbeat(now time.Time, every time.Duration) {
	for _, p := range c.held {
		if now.Sub(p.touched) >= every {
			if err := p.msg.InProgress(c.workCtx); err != nil {
				c.log.Debug("in-progress ack failed", zap.Uint64("stream_seq", p.seq), zap.Error(err))
			}
			p.touched = now
		}
	}
}

// startDrain stops new work: everything held that is not in a call or
// being settled is handed back now.
func (c *coordinator) startDrain() {
	c.draining = true
	c.cancelRetries()
	c.log.Info("draining", zap.Int("held", len(c.held)), zap.Int("calls", c.inflight))
	for _, q := range c.queues {
		for _, o := range q.ops {
			for _, p := range o.events {
				c.dropOne(p)
			}
		}
	}
	c.queues = map[queueKey]*stepQueue{}
	for _, p := range c.held {
		if !p.busy {
			c.dropOne(p)
		}
	}
}

// dropAll hands back whatever is still held when the coordinator stops.
func (c *coordinator) dropAll() {
	for _, p := range c.held {
		c.dropOne(p)
	}
}

// dropOne hands a held message back on shutdown and forgets it.
func (c *coordinator) dropOne(p *pending) {
	if _, ok := c.held[p.seq]; !ok {
		return
	}
	c.nak(p.msg, handBackDelay)
	endEventSpan(p.span, "handed_back", "", "")
	delete(c.held, p.seq)
	if p.keys != nil {
		c.lanes.remove(p)
	}
	c.w.release(1)
}

func (c *coordinator) nak(m Message, delay time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.workCtx), 5*time.Second)
	defer cancel()
	if err := m.Nak(ctx, delay); err != nil {
		c.log.Debug("nak failed; the message is redelivered after AckWait", zap.Uint64("stream_seq", m.StreamSeq()), zap.Error(err))
	}
}
