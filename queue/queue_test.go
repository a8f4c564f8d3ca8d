package queue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
)

func setup(t *testing.T) (*embedded.Server, *queue.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := queue.Connect(context.Background(), queue.ConnOptions{URL: ns.ClientURL(), MaxReconnects: -1}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return ns, nc, js
}

func topo() queue.Topology {
	return queue.Topology{
		Stream: "IN", Subjects: []string{"in.>"}, Duplicates: time.Minute,
		Consumer: "c", AckWait: 10 * time.Second, MaxAckPending: 100,
		ResultStream: "RES", ResultSubject: "out.result", DLQStream: "DLQ", DLQSubject: "out.dlq",
	}
}

func TestEnsureCreatesOnceAndBindsAfter(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	if _, err := queue.Ensure(ctx, js, topo(), false); err == nil || !strings.Contains(err.Error(), "CREATE_STREAMS") {
		t.Errorf("Ensure without create on an empty server: %v, want an error naming CREATE_STREAMS", err)
	}
	cons, err := queue.Ensure(ctx, js, topo(), true)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckPolicy != jetstream.AckExplicitPolicy || info.Config.MaxAckPending != 100 || info.Config.AckWait != 10*time.Second {
		t.Errorf("consumer config %+v", info.Config)
	}
	if _, err := queue.Ensure(ctx, js, topo(), false); err != nil {
		t.Errorf("binding to existing streams: %v", err)
	}
	bad := topo()
	bad.Subjects = []string{"other.>"}
	if _, err := queue.Ensure(ctx, js, bad, true); err == nil || !strings.Contains(err.Error(), "does not capture") {
		t.Errorf("stream with other subjects: %v", err)
	}
}

func TestPublisherDeduplicatesByMsgID(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	if _, err := queue.Ensure(ctx, js, topo(), true); err != nil {
		t.Fatal(err)
	}
	p := queue.NewPublisher(js)
	msgs := []queue.Outbound{
		{Subject: "out.result", MsgID: "result-1", Data: []byte(`{}`), Header: map[string][]string{"A": {"1"}}},
		{Subject: "out.result", MsgID: "result-1", Data: []byte(`{}`)},
		{Subject: "out.dlq", MsgID: "dlq-2", Data: []byte(`x`)},
		{Subject: "nowhere.at.all", MsgID: "x", Data: []byte(`x`)},
	}
	errs := p.Publish(ctx, msgs)
	for i := range 3 {
		if errs[i] != nil {
			t.Errorf("msg %d: %v", i, errs[i])
		}
	}
	if errs[3] == nil {
		t.Error("a publish no stream stores must fail")
	}
	s, _ := js.Stream(ctx, "RES")
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Errorf("%d results stored, want 1 (the second is a duplicate)", info.State.Msgs)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil || m.Header.Get("A") != "1" {
		t.Errorf("stored header %v, %v", m, err)
	}
}

func TestSourceFetchesWithMetadataAndAckVerbs(t *testing.T) {
	_, _, js := setup(t)
	ctx := context.Background()
	cons, err := queue.Ensure(ctx, js, topo(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"a", "b"} {
		if _, err := js.Publish(ctx, "in.k", []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	src := queue.NewSource(cons)
	var got []*queue.Message
	if err := src.Fetch(ctx, 10, 200*time.Millisecond, func(m *queue.Message) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].StreamSeq() != 1 || got[1].StreamSeq() != 2 || got[0].NumDelivered() != 1 || got[0].Subject() != "in.k" {
		t.Fatalf("fetched %d messages: %+v", len(got), got)
	}
	if err := got[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := got[1].Nak(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var again []*queue.Message
	deadline := time.Now().Add(5 * time.Second)
	for len(again) == 0 && time.Now().Before(deadline) {
		if err := src.Fetch(ctx, 10, 200*time.Millisecond, func(m *queue.Message) { again = append(again, m) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(again) != 1 || again[0].StreamSeq() != 2 || again[0].NumDelivered() != 2 {
		t.Fatalf("after ack and nak, fetched %+v", again)
	}
	_ = again[0].Term(ctx)
}

func TestConnectFailsClearlyWithoutLeakingPassword(t *testing.T) {
	_, err := queue.Connect(context.Background(), queue.ConnOptions{URL: "nats://user:sekret@127.0.0.1:1", ConnectTimeout: time.Second, MaxReconnects: 0}, nil)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "sekret") || !strings.Contains(err.Error(), "NATS_URL") {
		t.Errorf("error %q: must name NATS_URL and hide the password", err)
	}
}

func TestHealthyTurnsFalseWhenClosed(t *testing.T) {
	_, nc, _ := setup(t)
	if !nc.Healthy() {
		t.Fatal("not healthy while connected")
	}
	nc.Close()
	waitFor(t, 5*time.Second, func() bool { return !nc.Healthy() })
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
