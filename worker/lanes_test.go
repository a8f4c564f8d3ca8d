package worker

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func pend(seq uint64, keys ...string) *pending { return &pending{seq: seq, keys: keys} }

func TestLanesOrderPerKey(t *testing.T) {
	l := newLanes()
	a := pend(1, "s:x", "e:a")
	b := pend(2, "s:y", "e:b")
	c := pend(3, "s:x", "e:a")
	d := pend(4, "s:z", "e:b", "i:9") // shares e:b with b
	for _, p := range []*pending{a, b, c, d} {
		l.add(p)
	}
	if !l.ready(a) || !l.ready(b) {
		t.Fatal("heads of distinct contacts must be ready together")
	}
	if l.ready(c) || l.ready(d) {
		t.Fatal("an event behind another of its contact must wait")
	}
	if got := l.remove(a); !slices.Equal(got, []*pending{c}) {
		t.Errorf("remove(a) woke %v, want [c]", got)
	}
	if got := l.remove(b); !slices.Equal(got, []*pending{d}) {
		t.Errorf("remove(b) woke %v, want [d]", got)
	}
	l.remove(c)
	l.remove(d)
	if l.len() != 0 {
		t.Errorf("%d queues left, want 0", l.len())
	}
}

func TestLanesRedeliveryNeverOvertakesRunning(t *testing.T) {
	l := newLanes()
	newer := pend(5, "s:x")
	l.add(newer)
	newer.busy = true
	older := pend(3, "s:x") // a redelivery of an older message
	l.add(older)
	if l.ready(older) {
		t.Fatal("a redelivered older event must not run beside a running one of its contact")
	}
	if got := l.remove(newer); !slices.Equal(got, []*pending{older}) {
		t.Errorf("remove(newer) woke %v, want [older]", got)
	}
	// Without a running event, stream order wins.
	l2 := newLanes()
	x, y := pend(9, "s:k"), pend(4, "s:k")
	l2.add(x)
	l2.add(y)
	if !l2.ready(y) || l2.ready(x) {
		t.Error("the lower stream sequence must head the lane")
	}
}

func TestFollowersNeedSameKeys(t *testing.T) {
	l := newLanes()
	a := pend(1, "s:x", "e:a")
	b := pend(2, "s:x", "e:a")
	c := pend(3, "s:x", "e:a", "i:4") // different key set: not mergeable
	e := pend(4, "s:x", "e:a")
	for _, p := range []*pending{a, b, c, e} {
		l.add(p)
	}
	if got := l.followers(a); !slices.Equal(got, []*pending{b}) {
		t.Errorf("followers(a) = %v, want [b]", got)
	}
}

func TestMergeUpserts(t *testing.T) {
	mk := func(owb bool, fields map[string]any, tags ...string) *pending {
		return &pending{ev: &Event{Type: TypeUpsert, Email: "a@b.c", EmailKey: "a@b.c", Fields: fields, Tags: tags, OverwriteWithBlank: owb}}
	}
	m := mergeUpserts([]*pending{
		mk(false, map[string]any{"city": "Oslo", "firstname": "Ann", "zip": ""}, "vip", "trial"),
		mk(false, map[string]any{"city": "Bergen", "lastname": nil}, "-vip"),
		mk(true, map[string]any{"phone": nil}, "new"),
	})
	want := map[string]any{"city": "Bergen", "firstname": "Ann", "phone": nil}
	if len(m.Fields) != len(want) {
		t.Fatalf("merged fields %v, want %v", m.Fields, want)
	}
	for k, v := range want {
		if got, ok := m.Fields[k]; !ok || got != v {
			t.Errorf("field %s = %v, want %v", k, got, v)
		}
	}
	if !m.OverwriteWithBlank {
		t.Error("a blank from an overwrite_with_blank event must keep that flag")
	}
	if got, want := m.Tags, []string{"-vip", "trial", "new"}; !slices.Equal(got, want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	m2 := mergeUpserts([]*pending{mk(false, map[string]any{"a": "1"}), mk(false, map[string]any{"b": ""})})
	if m2.OverwriteWithBlank || len(m2.Fields) != 1 {
		t.Errorf("blank from a non-overwrite event must be dropped: %+v", m2)
	}
}

func TestNumericZeroReported(t *testing.T) {
	ev := &Event{Type: TypeUpsert, Fields: map[string]any{"score": json.Number("0"), "x": json.Number("0.0"), "s": "0", "ok": json.Number("5"), "t": "zero"}}
	got := ignoredFields(ev, nil)
	if len(got) != 3 {
		t.Errorf("ignoredFields = %v, want score, x and s", got)
	}
}

func TestUnknownFieldsReported(t *testing.T) {
	ev := &Event{Type: TypeUpsert, Fields: map[string]any{"city": "x", "citty": "y"}}
	got := ignoredFields(ev, map[string]bool{"city": true, "email": true})
	if len(got) != 1 || got[0].Field != "citty" || got[0].Kind != "unknown_field" {
		t.Errorf("ignoredFields = %+v", got)
	}
}

// An event waits for a batch to fill once: after a step whose batch went
// out unfilled (light load), its next step is due at once; after a step
// whose batch was full (a backlog), the next one lingers in full to fill
// its own batch; an op queued for the first time lingers in full.
func TestLingerOncePerEvent(t *testing.T) {
	c := newCoordinator(&Worker{opts: Options{BatchSize: 200, Linger: 100 * time.Millisecond}})
	t0 := time.Unix(1_700_000_000, 0)
	twoStep := &op{step: stepUpsert, ev: &Event{Type: TypeSegmentAdd, SegmentID: 7}}
	c.enqueue(twoStep, t0)
	k := twoStep.key()
	if q := c.queues[k]; c.ripe(k, q, t0.Add(99*time.Millisecond)) || !c.ripe(k, q, t0.Add(100*time.Millisecond)) {
		t.Fatal("a first step must linger exactly BATCH_LINGER")
	}
	if b := c.take(k, c.queues[k], t0.Add(100*time.Millisecond)); len(b) != 1 {
		t.Fatalf("took %d ops", len(b))
	}
	// Answered at t0+250ms.
	fresh := &op{step: stepSegmentAdd, ev: &Event{Type: TypeSegmentAdd, SegmentID: 7}}
	c.enqueue(fresh, t0.Add(240*time.Millisecond))
	twoStep.step = stepSegmentAdd
	c.enqueue(twoStep, t0.Add(250*time.Millisecond))
	k = twoStep.key()
	if q := c.queues[k]; len(q.ops) != 2 || !c.ripe(k, q, t0.Add(250*time.Millisecond)) {
		t.Error("a second step after an unfilled batch (it lingered 100ms) must be sent at once, with what waits with it")
	}
	c.take(k, c.queues[k], t0.Add(250*time.Millisecond))

	// A backlog: the first step's batch is full, so it did not linger.
	c.opts.BatchSize = 2
	a := &op{step: stepUpsert, ev: &Event{Type: TypeSegmentAdd, SegmentID: 8}}
	b := &op{step: stepUpsert, ev: &Event{Type: TypeSegmentAdd, SegmentID: 8}}
	t1 := t0.Add(time.Second)
	c.enqueue(a, t1)
	c.enqueue(b, t1.Add(5*time.Millisecond))
	k = a.key()
	if !c.ripe(k, c.queues[k], t1.Add(5*time.Millisecond)) {
		t.Fatal("a full batch is ripe at once")
	}
	c.take(k, c.queues[k], t1.Add(5*time.Millisecond))
	a.step = stepSegmentAdd
	c.enqueue(a, t1.Add(60*time.Millisecond))
	k = a.key()
	if q := c.queues[k]; c.ripe(k, q, t1.Add(159*time.Millisecond)) || !c.ripe(k, q, t1.Add(160*time.Millisecond)) {
		t.Error("after a full batch the next step must linger in full, to fill its own batch")
	}
}
