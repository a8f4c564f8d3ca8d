package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/queue/dlq"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

func topo() queue.Topology {
	return queue.Topology{
		Stream: "MAUTIC_CONTACTS", Subjects: []string{"mautic.contacts.>"}, Duplicates: 2 * time.Minute,
		Consumer: "mautic-sync", AckWait: 30 * time.Second, MaxAckPending: 1000,
		ResultStream: "MAUTIC_SYNC_RESULTS", ResultSubject: "mautic.sync.result",
		DLQStream: "MAUTIC_SYNC_DLQ", DLQSubject: "mautic.sync.dlq",
	}
}

// setup starts NATS with the service's streams.
func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, _, js := natstest.Start(t)
	if _, err := queue.Ensure(context.Background(), js, topo(), true); err != nil {
		t.Fatal(err)
	}
	return js
}

// letter stores a dead letter as the worker would, with the given contract
// headers, and returns its DLQ sequence.
func letter(t *testing.T, js jetstream.JetStream, reason, subj string, failedAt time.Time, body string, extra ...string) uint64 {
	t.Helper()
	m := nats.NewMsg(topo().DLQSubject)
	m.Data = []byte(body)
	m.Header.Set(contract.HeaderReason, reason)
	m.Header.Set(contract.HeaderError, "something about "+subj)
	m.Header.Set(contract.HeaderStatus, "422")
	m.Header.Set(contract.HeaderSubject, subj)
	m.Header.Set(contract.HeaderStreamSeq, "7")
	m.Header.Set(contract.HeaderDeliveries, "1")
	m.Header.Set(contract.HeaderFailedAt, failedAt.UTC().Format(time.RFC3339))
	for i := 0; i+1 < len(extra); i += 2 {
		m.Header.Set(extra[i], extra[i+1])
	}
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func seqs(ds []dlq.DeadLetter) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.Seq)
	}
	return out
}

func TestHeaderNamesAreTheWorkers(t *testing.T) {
	for mine, theirs := range map[string]string{
		contract.HeaderReason: contract.HeaderReason, contract.HeaderError: contract.HeaderError, contract.HeaderStatus: contract.HeaderStatus,
		contract.HeaderSubject: contract.HeaderSubject, contract.HeaderStreamSeq: contract.HeaderStreamSeq,
		contract.HeaderDeliveries: contract.HeaderDeliveries, contract.HeaderFailedAt: contract.HeaderFailedAt,
	} {
		if mine != theirs {
			t.Errorf("dlq header %q, worker writes %q", mine, theirs)
		}
	}
}

func TestListFiltersByReasonSubjectAndTime(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s1 := letter(t, js, "rejected", "mautic.contacts.a1", base, `{"id":"ev-1"}`)
	s2 := letter(t, js, "invalid_event", "mautic.contacts.b1", base.Add(time.Hour), `not json`)
	s3 := letter(t, js, "rejected", "mautic.contacts.b2", base.Add(2*time.Hour), `{"id":"ev-3"}`)
	s4 := letter(t, js, "max_deliveries", "mautic.contacts.a1", base.Add(3*time.Hour), `{"id":42}`)
	s5 := letter(t, js, "rejected", "mautic.other.x", base.Add(4*time.Hour), `{"id":"ev-5"}`)

	q := dlq.New(js, topo().DLQStream)
	for _, c := range []struct {
		name string
		f    dlq.Filter
		want []uint64
	}{
		{"all", dlq.Filter{}, []uint64{s1, s2, s3, s4, s5}},
		{"reason", dlq.Filter{Reason: "rejected"}, []uint64{s1, s3, s5}},
		{"subject exact", dlq.Filter{Subject: "mautic.contacts.a1"}, []uint64{s1, s4}},
		{"subject *", dlq.Filter{Subject: "mautic.contacts.*"}, []uint64{s1, s2, s3, s4}},
		{"subject >", dlq.Filter{Subject: "mautic.>"}, []uint64{s1, s2, s3, s4, s5}},
		{"reason and subject", dlq.Filter{Reason: "rejected", Subject: "mautic.contacts.>"}, []uint64{s1, s3}},
		{"since", dlq.Filter{Since: base.Add(2 * time.Hour)}, []uint64{s3, s4, s5}},
		{"until", dlq.Filter{Until: base.Add(time.Hour)}, []uint64{s1, s2}},
		{"since and until", dlq.Filter{Since: base.Add(30 * time.Minute), Until: base.Add(3 * time.Hour)}, []uint64{s2, s3, s4}},
		{"limit", dlq.Filter{Reason: "rejected", Limit: 2}, []uint64{s1, s3}},
		{"seqs", dlq.Filter{Seqs: []uint64{s4, s2, 999}}, []uint64{s2, s4}},
		{"seqs and reason", dlq.Filter{Seqs: []uint64{s2, s3}, Reason: "rejected"}, []uint64{s3}},
	} {
		got, err := q.List(ctx, c.f)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(seqs(got), c.want) {
			t.Errorf("%s: got %v, want %v", c.name, seqs(got), c.want)
		}
	}

	// A deleted message in the middle is skipped.
	s, _ := js.Stream(ctx, topo().DLQStream)
	if err := s.DeleteMsg(ctx, s3); err != nil {
		t.Fatal(err)
	}
	got, err := q.List(ctx, dlq.Filter{})
	if err != nil || !slices.Equal(seqs(got), []uint64{s1, s2, s4, s5}) {
		t.Errorf("after deleting %d: %v, %v", s3, seqs(got), err)
	}

	// Parsed fields.
	d, err := q.Get(ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Reason != "rejected" || d.Status != 422 || d.Subject != "mautic.contacts.a1" || d.StreamSeq != 7 || d.Deliveries != 1 ||
		!d.FailedAt.Equal(base) || d.EventID != "ev-1" || d.Error != "something about mautic.contacts.a1" {
		t.Errorf("parsed %+v", d)
	}
	if d, _ := q.Get(ctx, s4); d.EventID != "" {
		t.Errorf("numeric id parsed as %q", d.EventID)
	}
	if _, err := q.Get(ctx, s3); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("get deleted: %v", err)
	}
	if _, err := q.List(ctx, dlq.Filter{Subject: "bad..subject"}); err == nil {
		t.Error("a bad subject filter was accepted")
	}
}

func TestSinceSkipsAheadOverManyMessages(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second) // Failed-At has whole seconds
	var want []uint64
	for i := range 60 {
		at := now.Add(-time.Duration(60-i) * time.Hour)
		seq := letter(t, js, "rejected", "mautic.contacts.k", at, fmt.Sprintf(`{"id":"e%d"}`, i))
		if i >= 50 {
			want = append(want, seq)
		}
	}
	got, err := dlq.New(js, topo().DLQStream).List(ctx, dlq.Filter{Since: now.Add(-10 * time.Hour)})
	if err != nil || !slices.Equal(seqs(got), want) {
		t.Errorf("since: %v, %v; want %v", seqs(got), err, want)
	}
}

// TestRedriveHeadersOrderAndFailures: the republished message carries the
// original headers only, with Nats-Msg-Id redrive-<seq>; a dead letter whose
// subject leads to no input stream fails and holds back later ones of the
// same subject, while others go through.
func TestRedriveHeadersOrderAndFailures(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	now := time.Now()
	a := letter(t, js, "rejected", "mautic.contacts.a", now, `{"id":"a"}`, "X-Producer", "crm", "traceparent", "00-abc-01", "Nats-Expected-Stream", topo().DLQStream) // holds for this publish only
	gone1 := letter(t, js, "rejected", "gone.contacts.z", now, `{"id":"z1"}`)
	gone2 := letter(t, js, "rejected", "gone.contacts.z", now, `{"id":"z2"}`)
	b := letter(t, js, "rejected", "mautic.contacts.b", now, `{"id":"b"}`)

	q := dlq.New(js, topo().DLQStream)
	all, err := q.List(ctx, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var reports []dlq.Redriven
	sum, err := q.Redrive(ctx, all, dlq.RedriveOptions{ExpectStream: topo().Stream, OnMessage: func(r dlq.Redriven) { reports = append(reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if sum != (dlq.RedriveSummary{Redriven: 2, Failed: 1, Skipped: 1}) {
		t.Errorf("summary %+v", sum)
	}
	if len(reports) != 4 || reports[0].Err != nil || reports[1].Err == nil || !reports[2].Skipped || reports[3].Err != nil {
		t.Fatalf("reports %+v", reports)
	}
	in, _ := js.Stream(ctx, topo().Stream)
	m, err := in.GetMsg(ctx, reports[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "mautic.contacts.a" || string(m.Data) != `{"id":"a"}` {
		t.Errorf("republished %s %s", m.Subject, m.Data)
	}
	wantHdr := nats.Header{"X-Producer": {"crm"}, "traceparent": {"00-abc-01"}, "Nats-Msg-Id": {"redrive-" + strconv.FormatUint(a, 10)}}
	if fmt.Sprint(m.Header) != fmt.Sprint(wantHdr) {
		t.Errorf("republished headers %v, want %v", m.Header, wantHdr)
	}
	left, _ := q.List(ctx, dlq.Filter{})
	if !slices.Equal(seqs(left), []uint64{gone1, gone2}) {
		t.Errorf("left in the DLQ: %v", seqs(left))
	}
	_ = b
}

// TestRedriveAfterPublishBeforeDelete: a redrive killed between the publish
// acknowledgement and the delete left the dead letter behind; the re-run
// does not store the event twice.
func TestRedriveAfterPublishBeforeDelete(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	letter(t, js, "rejected", "mautic.contacts.a", time.Now(), `{"id":"a"}`)
	q := dlq.New(js, topo().DLQStream)
	ds, _ := q.List(ctx, dlq.Filter{})
	first, err := js.PublishMsg(ctx, ds[0].RedriveMsg()) // the interrupted run's publish
	if err != nil {
		t.Fatal(err)
	}
	var got dlq.Redriven
	sum, err := q.Redrive(ctx, ds, dlq.RedriveOptions{ExpectStream: topo().Stream, OnMessage: func(r dlq.Redriven) { got = r }})
	if err != nil || sum.Redriven != 1 || sum.Duplicates != 1 || !got.Duplicate || got.Seq != first.Sequence {
		t.Errorf("re-run: %+v %+v %v", sum, got, err)
	}
	in, _ := js.Stream(ctx, topo().Stream)
	if info, _ := in.Info(ctx); info.State.Msgs != 1 {
		t.Errorf("input stream holds %d messages, want 1", info.State.Msgs)
	}
	if left, _ := q.List(ctx, dlq.Filter{}); len(left) != 0 {
		t.Errorf("DLQ still holds %v", seqs(left))
	}
}

func TestOriginalHeaderDropsOnlyOurs(t *testing.T) {
	d := dlq.DeadLetter{Seq: 9, Subject: "s", Header: nats.Header{
		"Mautic-Sync-Reason": {"rejected"}, "mautic-sync-error": {"x"}, "Nats-Msg-Id": {"dlq-3"},
		"Nats-Expected-Last-Sequence": {"4"}, "X-Keep": {"1", "2"}, "Content-Type": {"application/json"},
	}}
	got := d.RedriveMsg().Header
	want := nats.Header{"X-Keep": {"1", "2"}, "Content-Type": {"application/json"}, "Nats-Msg-Id": {"redrive-9"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	if !strings.Contains(fmt.Sprint(d.Header), "dlq-3") {
		t.Error("RedriveMsg changed the dead letter's headers")
	}
}
