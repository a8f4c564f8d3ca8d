package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-retry"
	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// opResult is what one call decided for one op: exactly one of final,
// next, later or abandoned.
type opResult struct {
	op    *op
	final *verdict
	next  stepKind
	// later: hand the op's messages back with NakWithDelay(delay). When
	// systemic is set (rate limit) it is not the events' fault and does not
	// count toward WORKER_MAX_DELIVERIES; otherwise it is a per-event
	// failure and err says what failed.
	later    bool
	delay    time.Duration
	systemic bool
	err      string
	// abandoned: the call was cut short by shutdown.
	abandoned bool
	// skipped are events taken out of the op before the call because the
	// ledger knows them; when it holds all of them, the op is done.
	skipped []settleItem
}

func finalResult(o *op, v verdict) opResult { return opResult{op: o, final: &v} }

// outageAfter is the number of consecutive failed calls after which
// Mautic counts as down and fetching pauses.
const outageAfter = 3

// isolateAfter is the number of failed attempts of one call after which
// its items are tried apart (and a lone item, while other calls succeed,
// counts as failed by its own fault).
const isolateAfter = 2

// execute runs one call for ops and returns one result per op. A call that
// fails for reasons that are not the events' fault is repeated with
// exponential backoff and jitter while the messages are held alive, and
// fetching pauses while the fault is systemic (an outage, refused
// credentials). A used-up rate limit hands the messages back until the
// window resets. A batch that keeps failing is split to find the item at
// fault, so that one bad item cannot hold up the others; alone, it fails
// as its own event's fault once other calls are seen to succeed.
//
// Calls use ctx; retries stop when stop ends (the worker drains): a call
// in flight then finishes, but a failed one is not repeated, and its
// messages are handed back.
func (w *Worker) execute(ctx, stop context.Context, k queueKey, ops []*op) []opResult {
	var skipped []opResult
	err := retry.Do(stop, w.backoff(), func(context.Context) error {
		var err error
		if ops, skipped, err = w.checkLedger(ctx, ops); err != nil {
			w.log.Warn("ledger lookup failed; retrying", zap.Error(err))
			return retry.RetryableError(err)
		}
		return nil
	})
	if err != nil {
		return abandon(ops)
	}
	if len(ops) == 0 {
		return skipped
	}
	return append(skipped, w.run(ctx, stop, k, ops, false)...)
}

func (w *Worker) backoff() retry.Backoff {
	return retry.WithCappedDuration(w.opts.RetryMax, retry.WithJitterPercent(20, retry.NewExponential(w.opts.RetryMin)))
}

// run repeats the call for ops until it is decided. suspect says that a
// sibling batch just succeeded, so that failures here are the items' own.
func (w *Worker) run(ctx, stop context.Context, k queueKey, ops []*op, suspect bool) []opResult {
	var (
		results    []opResult
		firstFail  time.Time
		failedHere int
		split      bool
	)
	err := retry.Do(stop, w.backoff(), func(context.Context) error {
		res, err := w.attempt(ctx, k, ops)
		if err == nil {
			results = res
			return nil
		}
		if firstFail.IsZero() {
			firstFail = time.Now()
		}
		failedHere++
		if action, _ := mautic.Classify(err); action == mautic.Retry && failedHere >= isolateAfter {
			switch {
			case len(ops) > 1:
				split = true // it may be one item's fault: try the halves apart
				return nil
			case suspect || w.succeededSince(firstFail) || w.probe(ctx):
				results = handBack(ops, 0, false, err.Error()) // Mautic works: this item is at fault
				return nil
			}
		}
		return retry.RetryableError(err)
	})
	switch {
	case err != nil: // only the drain or the context ends the retries
		return abandon(ops)
	case split:
		return w.isolate(ctx, stop, k, ops)
	}
	return results
}

// isolate finds the items at fault in a failing batch: it tries one half
// once; when that succeeds, the other half holds the culprit; when both
// halves fail, Mautic is probably down, and it waits and tries again.
// There is never more than one call in flight for the batch.
func (w *Worker) isolate(ctx, stop context.Context, k queueKey, ops []*op) []opResult {
	w.log.Info("isolating a failing batch", zap.String("endpoint", k.kind.endpoint()), zap.Int("items", len(ops)))
	h := len(ops) / 2
	b := w.backoff()
	for {
		for _, pair := range [][2][]*op{{ops[h:], ops[:h]}, {ops[:h], ops[h:]}} {
			res, err := w.attempt(ctx, k, pair[0])
			if err == nil {
				return append(res, w.run(ctx, stop, k, pair[1], true)...)
			}
			if stop.Err() != nil {
				return abandon(ops)
			}
		}
		d, _ := b.Next()
		select {
		case <-stop.Done():
			return abandon(ops)
		case <-time.After(d):
		}
	}
}

// attempt makes one call and decides what it can: results for every op
// when Mautic answered (success, a refusal of the whole call, a used-up
// rate limit), or the error of a call to repeat.
func (w *Worker) attempt(ctx context.Context, k queueKey, ops []*op) ([]opResult, error) {
	start := time.Now()
	sctx, span := w.startCallSpan(ctx, k, ops)
	res, status, err := w.call(sctx, k, ops)
	endSpan(span, err)
	w.opts.Metrics.observeCall(k.kind.endpoint(), status, len(ops), time.Since(start))
	if err == nil {
		w.conc.succeeded(time.Since(start), len(ops))
		w.callSucceeded()
		return res, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	action, why := mautic.Classify(err)
	var rl *mautic.RateLimitError
	switch {
	case action == mautic.Reject:
		w.callSucceeded() // Mautic answered: it is up
		return rejectAll(ops, err), nil
	case errors.As(err, &rl) && !rl.Reset.IsZero():
		if !rl.Local {
			w.conc.overloaded()
		}
		w.gate.close(PauseRateLimited, err.Error(), rl.Reset)
		return handBack(ops, time.Until(rl.Reset), true, err.Error()), nil
	}
	w.callFailed(action, why, err, k, len(ops))
	return nil, err
}

// probe asks Mautic something harmless (its field list) to tell an outage
// from an item that Mautic fails on: true when Mautic answers.
func (w *Worker) probe(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fields, _, err := w.mautic.ContactFields(pctx)
	if err != nil {
		return false
	}
	w.storeFields(fields)
	w.callSucceeded()
	return true
}

func abandon(ops []*op) []opResult {
	out := make([]opResult, len(ops))
	for i, o := range ops {
		out[i] = opResult{op: o, abandoned: true}
	}
	return out
}

// checkLedger takes out of ops the events the ledger knows took effect:
// a redelivery of the very message that applied one settles as applied, a
// second message with the same event id as a duplicate. Ops left without
// events come back among the skipped results. It runs once per op, before
// the op's first call.
func (w *Worker) checkLedger(ctx context.Context, ops []*op) ([]*op, []opResult, error) {
	var ids []string
	for _, o := range ops {
		if !o.checked {
			for _, p := range o.events {
				ids = append(ids, p.ev.ID)
				if p.msg.NumDelivered() > 1 {
					ids = append(ids, deadLetterKey(p.seq))
				}
			}
		}
	}
	if len(ids) == 0 {
		return ops, []opResult{}, nil
	}
	known, err := w.ledger.Lookup(ctx, ids)
	if err != nil {
		return ops, nil, err
	}
	kept := ops[:0:0]
	skipped := []opResult{}
	for _, o := range ops {
		if o.checked || len(known) == 0 {
			o.checked = true
			kept = append(kept, o)
			continue
		}
		o.checked = true
		var rest []*pending
		var out []settleItem
		for _, p := range o.events {
			if _, dead := known[deadLetterKey(p.seq)]; dead {
				// Its dead letter is stored; only the Term was lost.
				out = append(out, settleItem{p, verdict{reason: "stored", stored: true}})
				continue
			}
			e, ok := known[p.ev.ID]
			switch {
			case !ok:
				rest = append(rest, p)
			case e.State == LedgerApplied && e.Seq == p.seq:
				out = append(out, settleItem{p, verdict{outcome: OutcomeApplied, mauticID: e.MauticID,
					note: "applied by an earlier delivery of this message"}})
			case e.State == LedgerApplied:
				out = append(out, settleItem{p, verdict{outcome: OutcomeDuplicate, mauticID: e.MauticID,
					note: "event id applied by stream message " + strconv.FormatUint(e.Seq, 10)}})
			case e.State == LedgerIntent && o.ev.Type == TypePointsAdd:
				// A points call of this event id was started (by this
				// message's earlier delivery or another message) and never
				// confirmed: it is not made again, whatever became of the
				// contact since (see callPoints).
				out = append(out, settleItem{p, uncertainVerdict(e.MauticID)})
			default:
				rest = append(rest, p)
			}
		}
		if len(out) == 0 {
			kept = append(kept, o)
			continue
		}
		o.events = rest
		if len(rest) > 1 && o.ev.Type == TypeUpsert {
			o.ev = mergeUpserts(rest)
		} else if len(rest) == 1 {
			o.ev = rest[0].ev
		}
		skipped = append(skipped, opResult{op: o, skipped: out})
		if len(rest) > 0 {
			kept = append(kept, o)
		}
	}
	return kept, skipped, nil
}

// callSucceeded records a successful call: Mautic is reachable and
// accepts the credentials.
func (w *Worker) callSucceeded() {
	w.lastSuccess.Store(time.Now().UnixNano())
	if w.failStreak.Swap(0) > 0 {
		w.lastWhy.Store("")
		for _, c := range []string{PauseOutage, PauseAuth, PauseAPIDisabled, PauseBadURL} {
			w.gate.open(c)
		}
		w.log.Info("Mautic calls succeed again")
	}
}

// callFailed records a failed call, logs a new kind of failure once, and
// pauses fetching while the fault is systemic.
func (w *Worker) callFailed(action mautic.Action, why mautic.Reason, err error, k queueKey, items int) {
	if prev := w.lastWhy.Swap(string(why)); prev != string(why) {
		w.log.Warn("Mautic call failed; retrying (no event is failed for this)",
			zap.String("endpoint", k.kind.endpoint()), zap.String("reason", string(why)),
			zap.String("action", action.String()), zap.Int("items", items), zap.Error(err))
	}
	streak := w.failStreak.Add(1)
	if why == mautic.ReasonServerError || why == mautic.ReasonTransport || why == mautic.ReasonRateLimited {
		w.conc.overloaded()
	}
	switch {
	case action == mautic.Pause && why == mautic.ReasonAPIDisabled:
		w.gate.close(PauseAPIDisabled, err.Error(), time.Time{})
	case action == mautic.Pause && why == mautic.ReasonBadURL:
		w.gate.close(PauseBadURL, err.Error(), time.Time{})
	case action == mautic.Pause && why == mautic.ReasonAuth:
		w.gate.close(PauseAuth, err.Error(), time.Time{})
	case action == mautic.Pause && why == mautic.ReasonRateLimited:
		// A 429 without a reset time: back off like an outage.
		w.gate.close(PauseRateLimited, err.Error(), time.Now().Add(w.opts.RetryMax))
	case streak >= outageAfter:
		w.gate.close(PauseOutage, err.Error(), time.Time{})
	}
}

func (w *Worker) succeededSince(t time.Time) bool {
	return w.lastSuccess.Load() > t.UnixNano()
}

// handBack asks for the ops' messages to be naked with a delay.
func handBack(ops []*op, delay time.Duration, systemic bool, why string) []opResult {
	out := make([]opResult, len(ops))
	for i, o := range ops {
		out[i] = opResult{op: o, later: true, delay: delay, systemic: systemic, err: why}
	}
	return out
}

// rejectAll fails every op of a call that Mautic refused as a whole.
func rejectAll(ops []*op, err error) []opResult {
	status := 0
	var ae *mautic.APIError
	if errors.As(err, &ae) {
		status = ae.StatusCode
	}
	out := make([]opResult, len(ops))
	for i, o := range ops {
		out[i] = finalResult(o, rejected(status, err.Error()))
	}
	return out
}

// eventBackoff is the redelivery delay after an event's own failure on its
// n-th delivery.
func (w *Worker) eventBackoff(n uint64) time.Duration {
	d := w.opts.RetryMin << min(n-1, 16)
	return min(d, w.opts.RetryMax)
}

// call performs one Mautic call and interprets each op's part of the
// answer. status is the HTTP status of the call, 0 without a response.
func (w *Worker) call(ctx context.Context, k queueKey, ops []*op) ([]opResult, int, error) {
	switch k.kind {
	case stepUpsert, stepEdit:
		return w.callContacts(ctx, k.kind, ops)
	case stepFind:
		return w.callFind(ctx, ops)
	case stepDelete:
		return w.callDelete(ctx, ops)
	case stepSegmentAdd:
		return w.callSegmentAdd(ctx, k.segment, ops)
	case stepSegmentRemove:
		return w.callSingle(ctx, ops[0], func(ctx context.Context, id int) (*mautic.Response, error) {
			return w.mautic.RemoveFromSegment(ctx, ops[0].ev.SegmentID, id)
		})
	case stepPoints:
		return w.callPoints(ctx, ops[0])
	}
	return nil, 0, fmt.Errorf("worker: no call for step %d", k.kind)
}

func statusOf(r *mautic.Response) int {
	if r == nil || r.Response == nil {
		return 0
	}
	return r.StatusCode
}

func (w *Worker) callContacts(ctx context.Context, kind stepKind, ops []*op) ([]opResult, int, error) {
	items := make([]mautic.Contact, len(ops))
	for i, o := range ops {
		items[i] = o.contactItem()
		if o.ev.Type == TypeUpsert && o.ignored == nil {
			o.ignored = ignoredFields(o.ev, w.knownFields())
		}
	}
	call := w.mautic.BatchUpsert
	if kind == stepEdit {
		call = w.mautic.BatchEdit
	}
	res, resp, err := call(ctx, items)
	if err != nil {
		return nil, statusOf(resp), err
	}
	out := make([]opResult, len(ops))
	for i, o := range ops {
		r := res[i]
		switch {
		case r.OK() && o.ev.Type == TypeSegmentAdd:
			o.contactIDs = []int{r.ContactID}
			out[i] = opResult{op: o, next: stepSegmentAdd}
		case r.OK():
			out[i] = finalResult(o, applied(r.Status, r.ContactID))
		case mautic.ItemAction(r.Status) == mautic.Reject:
			if o.ev.Type == TypeDNCRemove && r.Status == http.StatusNotFound {
				out[i] = finalResult(o, unchanged(r.Status, 0)) // nothing to remove
				continue
			}
			out[i] = finalResult(o, rejected(r.Status, itemError(kind.endpoint(), r.Status, r.Error)))
		default: // 5xx or another status that says nothing of the item
			out[i] = opResult{op: o, later: true, err: itemError(kind.endpoint(), r.Status, r.Error)}
		}
	}
	return out, statusOf(resp), nil
}

func (w *Worker) callFind(ctx context.Context, ops []*op) ([]opResult, int, error) {
	emails := make([]string, 0, len(ops))
	for _, o := range ops {
		if !slices.Contains(emails, o.ev.EmailKey) {
			emails = append(emails, o.ev.EmailKey)
		}
	}
	found, resp, err := w.mautic.FindByEmail(ctx, emails)
	if err != nil {
		return nil, statusOf(resp), err
	}
	status := statusOf(resp)
	out := make([]opResult, len(ops))
	for i, o := range ops {
		ids := found[o.ev.EmailKey]
		o.contactIDs = ids
		switch {
		case len(ids) == 0 && o.ev.Type == TypePointsAdd:
			out[i] = finalResult(o, rejected(http.StatusNotFound, "no Mautic contact has this email, so there are no points to adjust (send an upsert first)"))
		case len(ids) == 0:
			out[i] = finalResult(o, unchanged(status, 0)) // nothing to delete or remove
		case o.ev.Type == TypeDelete:
			out[i] = opResult{op: o, next: stepDelete}
		case o.ev.Type == TypeSegmentRemove:
			out[i] = opResult{op: o, next: stepSegmentRemove}
		case o.ev.Type == TypeDNCRemove:
			out[i] = opResult{op: o, next: stepEdit}
		case o.ev.Type == TypePointsAdd:
			out[i] = opResult{op: o, next: stepPoints}
		}
	}
	return out, status, nil
}

func (w *Worker) callDelete(ctx context.Context, ops []*op) ([]opResult, int, error) {
	var ids []int
	for _, o := range ops {
		if o.ev.MauticID > 0 {
			ids = append(ids, o.ev.MauticID)
		} else {
			ids = append(ids, o.contactIDs...) // every duplicate of the email
		}
	}
	deleted, resp, err := w.mautic.BatchDelete(ctx, ids)
	if err != nil {
		return nil, statusOf(resp), err
	}
	status := statusOf(resp)
	out := make([]opResult, len(ops))
	for i, o := range ops {
		mine := o.contactIDs
		if o.ev.MauticID > 0 {
			mine = []int{o.ev.MauticID}
		}
		v := unchanged(status, o.contactID()) // already gone
		for _, id := range mine {
			if slices.Contains(deleted, id) {
				v = applied(status, o.contactID())
				break
			}
		}
		out[i] = finalResult(o, v)
	}
	return out, status, nil
}

func (w *Worker) callSegmentAdd(ctx context.Context, segment int, ops []*op) ([]opResult, int, error) {
	ids := make([]int, len(ops))
	for i, o := range ops {
		ids[i] = o.contactID()
	}
	added, resp, err := w.mautic.AddToSegment(ctx, segment, ids)
	if err != nil {
		return nil, statusOf(resp), err
	}
	status := statusOf(resp)
	out := make([]opResult, len(ops))
	for i, o := range ops {
		if added[ids[i]] {
			out[i] = finalResult(o, applied(status, ids[i]))
		} else {
			out[i] = finalResult(o, rejected(http.StatusNotFound,
				fmt.Sprintf("Mautic did not add contact %d to segment %d: the contact is missing or not accessible", ids[i], segment)))
		}
	}
	return out, status, nil
}

// callSingle runs a call that Mautic has no batch route for.
func (w *Worker) callSingle(ctx context.Context, o *op, f func(context.Context, int) (*mautic.Response, error)) ([]opResult, int, error) {
	id := o.contactID()
	resp, err := f(ctx, id)
	status := statusOf(resp)
	if err == nil {
		return []opResult{finalResult(o, applied(status, id))}, status, nil
	}
	var ae *mautic.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound && !ae.RoutingError() {
		msg := ae.Message()
		if o.ev.Type == TypeSegmentRemove && strings.Contains(msg, "Contact not found") {
			return []opResult{finalResult(o, unchanged(ae.StatusCode, id))}, status, nil // remove of an unknown contact counts as done
		}
		return []opResult{finalResult(o, rejected(ae.StatusCode, err.Error()))}, status, nil
	}
	return nil, status, err
}

// callPoints adjusts points exactly once per event id. Points are the one
// write that is not idempotent, so an intent is recorded in the ledger
// before the call: an event that finds an intent it did not write, or that
// lost track of a call that may have reached Mautic, is not applied again
// and says so (at most once, never twice).
func (w *Worker) callPoints(ctx context.Context, o *op) ([]opResult, int, error) {
	p, id := o.events[0], o.contactID()
	if o.uncertain {
		return []opResult{finalResult(o, uncertainVerdict(id))}, 0, nil
	}
	if !o.intended {
		prior, created, err := w.ledger.Intend(ctx, o.ev.ID, LedgerEntry{State: LedgerIntent, Seq: p.seq, MauticID: id})
		if err != nil {
			return nil, 0, err
		}
		if !created {
			switch {
			case prior.State == LedgerApplied && prior.Seq == p.seq:
				return []opResult{finalResult(o, verdict{outcome: OutcomeApplied, mauticID: prior.MauticID, note: "applied by an earlier delivery of this message"})}, 0, nil
			case prior.State == LedgerApplied:
				return []opResult{finalResult(o, verdict{outcome: OutcomeDuplicate, mauticID: prior.MauticID,
					note: "event id applied by stream message " + strconv.FormatUint(prior.Seq, 10)})}, 0, nil
			default:
				return []opResult{finalResult(o, uncertainVerdict(id))}, 0, nil
			}
		}
		o.intended = true
	}
	res, status, err := w.callSingle(ctx, o, func(ctx context.Context, id int) (*mautic.Response, error) {
		return w.mautic.AdjustPoints(ctx, id, o.ev.Delta, "mautic-sync "+o.ev.ID)
	})
	switch {
	case err != nil && mautic.NotApplied(err):
		// Refused before anything was applied (the client-side budget, or
		// Mautic's 429): the intent is cleared, so that the call is made
		// once the window allows (writing its intent anew), not reported
		// uncertain.
		if ferr := w.ledger.Forget(ctx, o.ev.ID); ferr != nil {
			w.log.Warn("clearing a points intent after a refused call failed; the event will be reported uncertain", zap.Error(ferr))
		} else {
			o.intended = false
		}
	case err != nil && status == 0:
		// No answer: the call may have been applied. Never repeat it.
		o.uncertain = true
	case err == nil && len(res) == 1 && res[0].final != nil && res[0].final.deadLetter():
		// Mautic refused it: nothing was applied, and a later copy of the
		// event may be.
		if ferr := w.ledger.Forget(ctx, o.ev.ID); ferr != nil {
			w.log.Warn("clearing a points intent failed; a later copy of the event will be reported uncertain", zap.Error(ferr))
		}
	}
	return res, status, err
}

func uncertainVerdict(id int) verdict {
	return verdict{outcome: OutcomeDuplicate, mauticID: id, uncertain: true,
		note: "an earlier attempt to adjust these points was cut off before Mautic's answer; it is not repeated, so the adjustment took effect at most once"}
}
