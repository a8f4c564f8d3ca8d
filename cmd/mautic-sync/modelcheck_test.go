package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/worker"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
)

// checkRun compares a finished run with the model (generate's events
// applied once each, in order): exactly one outcome per input message, the
// outcome the model expects, Mautic's final state, points never applied
// twice, one contact per email and never two writes for one contact in
// flight; and per-contact order: the results of one subject are stored in
// the order of their input sequences (a contact's next event runs only
// once the previous one's outcome is stored), except within one settlement
// (events of one contact merged into one call, and copies skipped with
// them, are stored together, with one processed_at, in any order).
func checkRun(t *testing.T, js jetstream.JetStream, fake *mautictest.Server, events []workertest.Event, seqOf []uint64) {
	t.Helper()
	outcomeOf := map[uint64]string{}
	uncertain := map[string]bool{}
	type stored struct {
		seq uint64
		at  string // processed_at: one per settlement
	}
	last := map[string]stored{}        // subject -> its latest settlement's highest input seq
	timeline := map[string][]string{}  // subject -> its outcomes in stored order, for failures
	idsOf := map[string]map[int]bool{} // subject -> the Mautic ids its results named
	readAll(t, js, "MAUTIC_SYNC_RESULTS", func(m *jetstream.RawStreamMsg) {
		var res worker.Result
		if err := json.Unmarshal(m.Data, &res); err != nil {
			t.Fatal(err)
		}
		if _, dup := outcomeOf[res.StreamSeq]; dup {
			t.Errorf("seq %d has two outcomes", res.StreamSeq)
		}
		outcomeOf[res.StreamSeq] = res.Outcome
		timeline[contactKey(res.Subject)] = append(timeline[contactKey(res.Subject)], fmt.Sprintf("result seq %d %s %s: %s at %s attempts %d mautic_id %d%s", res.StreamSeq, res.EventID, res.EventType, res.Outcome, res.ProcessedAt, res.Attempts, res.MauticID, noteOf(res)))
		if res.MauticID != 0 {
			if idsOf[contactKey(res.Subject)] == nil {
				idsOf[contactKey(res.Subject)] = map[int]bool{}
			}
			idsOf[contactKey(res.Subject)][res.MauticID] = true
		}
		if res.Uncertain {
			uncertain[res.EventID] = true
		}
		prev, seen := last[res.Subject]
		switch {
		case !seen || res.ProcessedAt != prev.at:
			if seen && res.StreamSeq < prev.seq {
				t.Errorf("order: the result of seq %d (%s) was stored after that of seq %d, settled earlier", res.StreamSeq, res.Subject, prev.seq)
			}
			last[res.Subject] = stored{seq: max(res.StreamSeq, prev.seq), at: res.ProcessedAt}
		default:
			last[res.Subject] = stored{seq: max(res.StreamSeq, prev.seq), at: prev.at}
		}
	})
	readAll(t, js, "MAUTIC_SYNC_DLQ", func(m *jetstream.RawStreamMsg) {
		seq, _ := strconv.ParseUint(m.Header.Get(contract.HeaderStreamSeq), 10, 64)
		if _, dup := outcomeOf[seq]; dup {
			t.Errorf("seq %d has two outcomes", seq)
		}
		outcomeOf[seq] = "dead_letter:" + m.Header.Get(contract.HeaderReason)
		key := contactKey(m.Header.Get(contract.HeaderSubject))
		timeline[key] = append(timeline[key], fmt.Sprintf("dead letter seq %d: %s at %s after %s deliveries: %s", seq, m.Header.Get(contract.HeaderReason),
			m.Header.Get(contract.HeaderFailedAt), m.Header.Get(contract.HeaderDeliveries), m.Header.Get(contract.HeaderError)))
	})
	if len(outcomeOf) != len(events) {
		t.Errorf("%d messages with outcomes, want %d", len(outcomeOf), len(events))
	}

	m := workertest.NewModel()
	explain := map[string]bool{}
	for i, e := range events {
		ok := m.Apply(e.ID, e.Type, e.Data)
		got := outcomeOf[seqOf[i]]
		if !ok && got != "dead_letter:rejected" {
			t.Errorf("event %s (%s, seq %d): outcome %q, want a rejected dead letter", e.ID, e.Type, seqOf[i], got)
			explain[e.Subject] = true
		}
		if ok && strings.HasPrefix(got, "dead_letter") {
			t.Errorf("event %s (%s, seq %d): outcome %q, want a result", e.ID, e.Type, seqOf[i], got)
			explain[e.Subject] = true
		}
	}
	for subject := range explain { // what happened to that contact, for the failure
		var in []string
		for i, e := range events {
			if e.Subject == subject {
				in = append(in, fmt.Sprintf("seq %d %s %s %v", seqOf[i], e.ID, e.Type, e.Data))
			}
		}
		email := strings.TrimPrefix(subject, "mautic.contacts.") + "@example.com"
		var calls []string
		for _, r := range fake.Requests() {
			names := strings.Contains(string(r.Body), `"`+email+`"`)
			for id := range idsOf[contactKey(subject)] {
				for _, s := range []string{"/" + strconv.Itoa(id) + "/", "=" + strconv.Itoa(id), "," + strconv.Itoa(id)} {
					names = names || strings.Contains(r.Path+"/", s) || strings.Contains(r.RawQuery+",", s+",") || strings.Contains(r.RawQuery+"&", s+"&")
				}
			}
			if names {
				calls = append(calls, fmt.Sprintf("%s %s %s %d items %d -> %d: %.300s",
					r.Start.Format("15:04:05.000"), r.End.Format("15:04:05.000"), r.Method, r.Items, len(r.Body), r.Status, r.Path+"?"+r.RawQuery+" "+string(r.Body)))
			}
		}
		t.Logf("%s: published in this order:\n%s\noutcomes in stored order:\n%s\nMautic calls naming %s or a contact id:\n%s",
			subject, strings.Join(in, "\n"), strings.Join(timeline[contactKey(subject)], "\n"), email, strings.Join(calls, "\n"))
	}

	workertest.CheckState(t, m, fake, events, uncertain)
}

// contactKey is a subject's last token, the contact key (a partitioned
// subject has the partition before it).
func contactKey(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

func noteOf(r worker.Result) string {
	if r.Note == "" && !r.Uncertain {
		return ""
	}
	return fmt.Sprintf(" uncertain %v note %q", r.Uncertain, r.Note)
}

// outcomeCount is the number of results and dead letters stored.
func outcomeCount(ctx context.Context, js jetstream.JetStream) int {
	total := 0
	for _, name := range []string{"MAUTIC_SYNC_RESULTS", "MAUTIC_SYNC_DLQ"} {
		if s, err := js.Stream(ctx, name); err == nil {
			if info, err := s.Info(ctx); err == nil {
				total += int(info.State.Msgs)
			}
		}
	}
	return total
}
