package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-retry"
	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// opResult is what one call decided for one op: exactly one of final, next,
// retry or abandoned.
type opResult struct {
	op        *op
	final     *verdict
	next      stepKind
	retry     bool // an item-level transient failure: run the step again later
	abandoned bool // the call was cut short by shutdown
}

func finalResult(o *op, v verdict) opResult { return opResult{op: o, final: &v} }

// execute runs one call for ops, repeating it while it fails for reasons
// that are not the events' fault (with exponential backoff and jitter, or
// until the rate-limit window resets), and returns one result per op.
func (w *Worker) execute(ctx context.Context, k queueKey, ops []*op) []opResult {
	var (
		results  []opResult
		override time.Duration
		lastWhy  mautic.Reason
	)
	base := retry.WithCappedDuration(w.opts.RetryMax, retry.WithJitterPercent(20, retry.NewExponential(w.opts.RetryMin)))
	backoff := retry.BackoffFunc(func() (time.Duration, bool) {
		d, stop := base.Next()
		if override > 0 {
			d, override = override, 0
		}
		return d, stop
	})
	err := retry.Do(ctx, backoff, func(ctx context.Context) error {
		start := time.Now()
		res, status, err := w.call(ctx, k, ops)
		w.opts.Metrics.observeCall(k.kind.endpoint(), status, len(ops), time.Since(start))
		if err == nil {
			if lastWhy != "" {
				w.log.Info("Mautic calls succeed again", zap.String("endpoint", k.kind.endpoint()))
			}
			w.health.fault("mautic", "")
			results = res
			return nil
		}
		action, why := mautic.Classify(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if action == mautic.Reject {
			results = rejectAll(ops, err)
			return nil
		}
		var rl *mautic.RateLimitError
		if errors.As(err, &rl) && !rl.Reset.IsZero() {
			override = time.Until(rl.Reset) + w.opts.RetryMin
		}
		if action == mautic.Pause {
			w.health.fault("mautic", string(why)+": "+err.Error())
		}
		if why != lastWhy {
			w.log.Warn("Mautic call failed; retrying (no event is failed for this)",
				zap.String("endpoint", k.kind.endpoint()), zap.String("reason", string(why)),
				zap.String("action", action.String()), zap.Int("items", len(ops)), zap.Error(err))
			lastWhy = why
		}
		return retry.RetryableError(err)
	})
	if err != nil { // only the context ends the retries
		results = make([]opResult, len(ops))
		for i, o := range ops {
			results[i] = opResult{op: o, abandoned: true}
		}
	}
	return results
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

// itemBackoff is the delay before an op whose item failed transiently runs
// again.
func (w *Worker) itemBackoff(attempt int) time.Duration {
	d := w.opts.RetryMin << min(attempt-1, 16)
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
		return w.callSingle(ctx, ops[0], func(ctx context.Context, id int) (*mautic.Response, error) {
			return w.mautic.AdjustPoints(ctx, id, ops[0].ev.Delta, "mautic-sync "+ops[0].ev.ID)
		})
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
			o.ignored = ignoredFields(o.ev)
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
		default:
			out[i] = opResult{op: o, retry: true}
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
