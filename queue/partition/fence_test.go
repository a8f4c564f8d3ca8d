package partition_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mautic-sync/mautic-sync/queue/partition"
)

// proxy forwards TCP connections to a NATS server until cut: then it
// drops every connection and refuses new ones until restored, as a
// network partition between one replica and NATS would.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// A replica cut off from NATS fences itself after half the takeover time,
// before another replica can take its partitions; once back, it is no
// longer fenced, and the messages it still holds of the partitions taken
// over are no longer its own (the worker hands them back unapplied).
func TestCutOffReplicaFencesItselfAndLosesItsMessages(t *testing.T) {
	const ttl = 2 * time.Second
	e := setup(t, ttl)
	rec := &recorder{}
	o := partition.Options{Mode: partition.Elastic, Takeover: ttl, AckWait: topo().AckWait}
	px := newProxy(t, e.url[len("nats://"):])
	var mu sync.Mutex
	var held []*partition.Message // a's messages, never settled
	a := e.startAt(px.url(), "a", o, rec, func(m *partition.Message) {
		mu.Lock()
		held = append(held, m)
		mu.Unlock()
	}, nats.ReconnectWait(100*time.Millisecond), nats.MaxReconnects(-1))
	b := e.start("b", o, rec, nil)
	waitFor(t, 10*time.Second, "both replicas to want two partitions", func() bool {
		return len(a.src.Wanted()) == 2 && len(b.src.Wanted()) == 2
	})
	e.publish(200, 20)
	waitFor(t, 10*time.Second, "a to hold messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(held) > 0
	})
	if why, fenced := a.src.Fenced(time.Now()); fenced {
		t.Fatalf("a fenced while connected: %s", why)
	}
	mu.Lock()
	m := held[0]
	mu.Unlock()
	if !a.src.Owns(m) {
		t.Fatal("a does not own a message of its own partition")
	}

	cut := time.Now()
	px.setCut(true)
	waitFor(t, ttl, "a to fence itself", func() bool {
		_, fenced := a.src.Fenced(time.Now())
		return fenced
	})
	fencedAfter := time.Since(cut)
	waitFor(t, 20*time.Second, "b to own every partition", func() bool { return len(b.src.Owned()) == parts })
	tookOver := time.Since(cut)
	t.Logf("a fenced %s after the cut, b owned everything %s after it (takeover %s)", fencedAfter, tookOver, ttl)
	if fencedAfter >= tookOver {
		t.Errorf("a fenced itself %s after the cut, not before b took over (%s)", fencedAfter, tookOver)
	}

	px.setCut(false)
	waitFor(t, 20*time.Second, "a to be back and unfenced", func() bool {
		_, fenced := a.src.Fenced(time.Now())
		return !fenced && a.nc.IsConnected()
	})
	if a.src.Owns(m) {
		t.Error("a still owns a message of a partition b took over")
	}
	a.kill()
	b.stop(t)
}
