package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sethvargo/go-retry"
	"go.uber.org/zap"
)

// settle stores the outcome of each item and then acknowledges its input:
// Ack after a result, Term after a dead letter. An outcome that cannot be
// stored is retried until the work context ends; then its input is naked,
// never acknowledged.
func (w *Worker) settle(ctx context.Context, items []settleItem) settleDone {
	now := time.Now()
	outs := make([]Outbound, len(items))
	for i, it := range items {
		if it.v.deadLetter() {
			outs[i] = w.out.deadLetter(it.p.msg, it.v, now)
		} else {
			outs[i] = w.out.resultMessage(it.p.msg, it.p.ev, it.v, now)
		}
	}
	applied := map[string]LedgerEntry{}
	for _, it := range items {
		if o := it.v.outcome; (o == OutcomeApplied || o == OutcomeUnchanged) && it.p.ev != nil {
			applied[it.p.ev.ID] = LedgerEntry{State: LedgerApplied, Seq: it.p.seq, MauticID: it.v.mauticID}
		}
	}
	stored := make([]bool, len(items))
	todo := make([]int, len(items))
	for i := range todo {
		todo[i] = i
	}
	b := retry.WithCappedDuration(w.opts.RetryMax, retry.WithJitterPercent(20, retry.NewExponential(w.opts.RetryMin)))
	logged := false
	_ = retry.Do(ctx, b, func(ctx context.Context) error {
		if len(applied) > 0 {
			// Recorded before the outcome and the ack: a message redelivered
			// after a crash finds it and is not applied again.
			if err := w.ledger.Record(ctx, applied); err != nil {
				w.log.Warn("ledger write failed; retrying, inputs stay unacknowledged", zap.Error(err))
				return retry.RetryableError(err)
			}
			applied = nil
		}
		batch := make([]Outbound, len(todo))
		for j, i := range todo {
			batch[j] = outs[i]
		}
		errs := w.pub.Publish(ctx, batch)
		var failed []int
		var firstErr error
		for j, i := range todo {
			if errs[j] == nil {
				stored[i] = true
			} else {
				failed = append(failed, i)
				firstErr = errs[j]
			}
		}
		todo = failed
		if len(todo) == 0 {
			return nil
		}
		if !logged {
			w.log.Warn("outcomes not stored; retrying, inputs stay unacknowledged",
				zap.Int("failed", len(todo)), zap.Error(firstErr))
			logged = true
		}
		return retry.RetryableError(firstErr)
	})

	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
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
		if stored[i] {
			w.report(it, now)
		}
	}
	return settleDone{items: items, stored: stored}
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
