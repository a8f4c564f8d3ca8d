package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/sethvargo/go-retry"
	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/queue/contract"
)

// settle stores the outcome of each item and then acknowledges its input:
// Ack after a result, Term after a dead letter. An outcome that cannot be
// stored is retried until the work context ends; then its input is naked,
// never acknowledged.
func (w *Worker) settle(ctx context.Context, items []settleItem) settleDone {
	now := time.Now()
	outs := make([]Outbound, len(items))
	for i, it := range items {
		if it.v.stored {
			continue
		}
		if it.v.deadLetter() {
			outs[i] = w.out.deadLetter(it.p.msg, it.v, now)
		} else {
			outs[i] = w.out.resultMessage(it.p.msg, it.p.ev, it.v, now)
		}
	}
	applied := map[string]LedgerEntry{}
	var appliedAt []int // indexes of the items recorded in applied
	for i, it := range items {
		if o := it.v.outcome; (o == OutcomeApplied || o == OutcomeUnchanged) && it.p.ev != nil {
			applied[it.p.ev.ID] = LedgerEntry{State: LedgerApplied, Seq: it.p.seq, MauticID: it.v.mauticID}
			appliedAt = append(appliedAt, i)
		}
	}
	stored := make([]bool, len(items))
	var todo []int
	for i, it := range items {
		if it.v.stored {
			stored[i] = true
		} else {
			todo = append(todo, i)
		}
	}
	b := retry.WithCappedDuration(w.opts.RetryMax, retry.WithJitterPercent(20, retry.NewExponential(w.opts.RetryMin)))
	logged := false
	recorded := len(applied) == 0
	_ = retry.Do(ctx, b, func(ctx context.Context) error {
		if len(todo) > 0 {
			batch := make([]Outbound, len(todo))
			for j, i := range todo {
				batch[j] = outs[i]
			}
			errs := w.pub.Publish(ctx, batch)
			var failed []int
			var firstErr error
			for j, i := range todo {
				switch {
				case errs[j] == nil:
					stored[i] = true
				case errors.Is(errs[j], ErrTooLarge) && items[i].v.deadLetter() && outs[i].Header[contract.HeaderBodyOmitted] == nil:
					// The body and our headers exceed the server's limit: store
					// the dead letter without the body rather than never.
					outs[i] = withoutBody(outs[i])
					failed = append(failed, i)
					firstErr = errs[j]
				default:
					failed = append(failed, i)
					firstErr = errs[j]
				}
			}
			todo = failed
			if len(todo) > 0 {
				if !logged {
					w.log.Warn("outcomes not stored; retrying, inputs stay unacknowledged",
						zap.Int("failed", len(todo)), zap.Error(firstErr))
					logged = true
				}
				return retry.RetryableError(firstErr)
			}
		}
		if !recorded {
			// Recorded after the outcomes and before the acks: a message
			// redelivered after a crash finds it and is not applied again,
			// and one the ledger shows applied has its outcome stored (so
			// that recovery need not keep its contact waiting for it). A
			// crash between the two re-applies the message on redelivery,
			// with its contact's later events waiting, and its outcome is
			// de-duplicated by its Nats-Msg-Id.
			if err := w.ledger.Record(ctx, applied); err != nil {
				w.log.Warn("ledger write failed; retrying, inputs stay unacknowledged", zap.Error(err))
				return retry.RetryableError(err)
			}
			recorded = true
		}
		return nil
	})
	if !recorded {
		// Stored but not in the ledger: not acknowledged, so that the
		// redelivery is checked again.
		for _, i := range appliedAt {
			stored[i] = false
		}
	}

	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	w.recordSettled(ackCtx, items, stored)
	for i, it := range items {
		m := it.p.msg
		var err error
		switch {
		case !stored[i]:
			err = m.Nak(ackCtx, handBackDelay)
		case it.v.deadLetter():
			err = m.Term(ackCtx)
		default:
			err = m.Ack(ackCtx)
		}
		if err != nil {
			stored[i] = false
			w.log.Warn("acknowledging input failed; it will be redelivered and its outcome de-duplicated",
				zap.Uint64("stream_seq", it.p.seq), zap.Error(err))
			continue
		}
		if stored[i] && !it.v.stored {
			w.report(it, now)
		}
	}
	return settleDone{items: items, stored: stored}
}

// recordSettled notes in the ledger, before their Term or Ack, the
// messages whose dead letters are now stored (if the Term is lost, the
// redelivery is terminated without being processed again) and the copies
// of applied events whose duplicate results are (a restart need not wait
// for their redelivery). A failed note is logged; the Term or Ack goes
// ahead (the outcome is stored).
func (w *Worker) recordSettled(ctx context.Context, items []settleItem, stored []bool) {
	entries := map[string]LedgerEntry{}
	for i, it := range items {
		switch {
		case !stored[i] || it.v.stored:
		case it.v.deadLetter():
			entries[deadLetterKey(it.p.seq)] = LedgerEntry{State: LedgerDeadLetter, Seq: it.p.seq}
		case it.v.outcome == OutcomeDuplicate:
			entries[copyKey(it.p.seq)] = LedgerEntry{State: LedgerApplied, Seq: it.p.seq}
		}
	}
	if len(entries) == 0 {
		return
	}
	if err := w.ledger.Record(ctx, entries); err != nil {
		w.log.Warn("recording dead letters and settled copies in the ledger failed; a lost Term would process a dead letter again, and a restart would wait for a copy", zap.Error(err))
	}
}

// report logs, counts and passes on one stored outcome.
func (w *Worker) report(it settleItem, now time.Time) {
	s := Settled{
		Subject:   it.p.msg.Subject(),
		StreamSeq: it.p.seq,
		Outcome:   it.v.outcome,
		Reason:    it.v.reason,
		Error:     it.v.err,
		Status:    it.v.status,
		MauticID:  it.v.mauticID,
	}
	if it.p.ev != nil {
		s.EventID, s.EventType = it.p.ev.ID, it.p.ev.Type
	} else {
		s.EventID = bestEffortID(it.p.msg.Data())
	}
	if it.v.deadLetter() {
		s.Outcome = "dead_letter"
		w.log.Warn("event dead-lettered", zap.String("subject", s.Subject), zap.Uint64("stream_seq", s.StreamSeq),
			zap.String("event_id", s.EventID), zap.String("reason", s.Reason), zap.Int("status", s.Status),
			zap.String("error", s.Error), zap.Uint64("num_delivered", it.p.msg.NumDelivered()))
	} else if ce := w.log.Check(zap.DebugLevel, "event settled"); ce != nil {
		ce.Write(zap.String("subject", s.Subject), zap.Uint64("stream_seq", s.StreamSeq),
			zap.String("event_id", s.EventID), zap.String("outcome", s.Outcome), zap.Int("mautic_id", s.MauticID))
	}
	endEventSpan(it.p.span, s.Outcome, s.Reason, s.Error)
	w.opts.Metrics.observeOutcome(s.EventType, s.Outcome, s.Reason, now.Sub(it.p.arrived))
	w.opts.Metrics.observeIgnored(it.v.ignored)
	if w.opts.Observer != nil {
		w.opts.Observer(s)
	}
}

// bestEffortID reads the "id" of a body that is not a valid event, for
// logs and the observer; "" when there is none.
func bestEffortID(body []byte) string {
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if id, ok := v.ID.(string); ok {
		return truncate(id, 200)
	}
	return ""
}

// withoutBody is a dead letter whose body is left out, flagged with its size.
func withoutBody(o Outbound) Outbound {
	h := make(map[string][]string, len(o.Header)+1)
	for k, v := range o.Header {
		h[k] = v
	}
	h[contract.HeaderBodyOmitted] = []string{strconv.Itoa(len(o.Data))}
	o.Header, o.Data = h, nil
	return o
}
