package worker

import "slices"

// lanes keeps per-contact order. Every held event joins one FIFO queue per
// key it has (its subject, its email, its Mautic id), ordered by stream
// sequence. An event may run only when it heads every one of its queues, so
// events that share any key take effect one after the other, in stream
// order, and no two Mautic writes for one contact are ever in flight
// together. Because every queue is ordered by the same sequence, no two
// events can wait for each other.
//
// lanes is owned by the worker's coordinator goroutine and is not safe for
// concurrent use.
type lanes struct {
	q map[string][]*pending
}

func newLanes() *lanes { return &lanes{q: map[string][]*pending{}} }

// add inserts p into each of its queues at its stream-sequence position,
// but never ahead of an event that is already running (a redelivery of an
// older message may arrive while a newer one of its contact runs).
func (l *lanes) add(p *pending) {
	for _, k := range p.keys {
		q := l.q[k]
		i, _ := slices.BinarySearchFunc(q, p.seq, func(e *pending, seq uint64) int {
			switch {
			case e.seq < seq:
				return -1
			case e.seq > seq:
				return 1
			}
			return 0
		})
		for j := len(q) - 1; j >= i; j-- {
			if q[j].busy {
				i = j + 1
				break
			}
		}
		l.q[k] = slices.Insert(q, i, p)
	}
}

// ready reports whether p heads all of its queues.
func (l *lanes) ready(p *pending) bool {
	for _, k := range p.keys {
		if q := l.q[k]; len(q) == 0 || q[0] != p {
			return false
		}
	}
	return true
}

// followers returns the events that come directly after p in every one of
// p's queues and have exactly p's keys: the run that may be merged with p.
func (l *lanes) followers(p *pending) []*pending {
	var out []*pending
	for i := 1; ; i++ {
		var next *pending
		for _, k := range p.keys {
			q := l.q[k]
			if len(q) <= i || (next != nil && q[i] != next) {
				return out
			}
			next = q[i]
		}
		if !slices.Equal(next.keys, p.keys) {
			return out
		}
		out = append(out, next)
	}
}

// predecessor returns the event directly before p in every one of p's
// queues, when p is last in each and that event has exactly p's keys.
func (l *lanes) predecessor(p *pending) *pending {
	var prev *pending
	for _, k := range p.keys {
		q := l.q[k]
		n := len(q)
		if n < 2 || q[n-1] != p || (prev != nil && q[n-2] != prev) {
			return nil
		}
		prev = q[n-2]
	}
	if prev == nil || !slices.Equal(prev.keys, p.keys) {
		return nil
	}
	return prev
}

// remove takes p out of its queues and returns the events that became
// ready because of it.
func (l *lanes) remove(p *pending) []*pending {
	var woken []*pending
	for _, k := range p.keys {
		q := l.q[k]
		i := slices.Index(q, p)
		if i < 0 {
			continue
		}
		q = slices.Delete(q, i, i+1)
		if len(q) == 0 {
			delete(l.q, k)
			continue
		}
		l.q[k] = q
		if i == 0 && l.ready(q[0]) && !slices.Contains(woken, q[0]) {
			woken = append(woken, q[0])
		}
	}
	return woken
}

// len returns the number of queues (distinct keys) held.
func (l *lanes) len() int { return len(l.q) }
