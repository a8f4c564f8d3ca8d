package worker_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestNoGoroutineLeftAfterShutdown runs the worker through a graceful stop
// with calls in flight, a drain that times out with a call Mautic never
// answers, and a restart that finishes the stream; then everything is
// stopped (the worker first, then the NATS connections, the Mautic fake
// and the NATS server) and goleak must find no goroutine that was not
// there before. Nothing is ignored: the NATS server and the fake are
// stopped too, so their goroutines do not hide the worker's.
func TestNoGoroutineLeftAfterShutdown(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("run", func(t *testing.T) {
		f := newFaultHarness(t, faultConfig{ackWait: 2 * time.Second})
		f.fake.SetLatency(30*time.Millisecond, 0)
		f.opts.BatchSize = 5
		f.opts.DrainTimeout = 500 * time.Millisecond
		events := faultStream(t, 60, true)
		f.publishEvents(events)

		w := f.start()
		f.waitOutcomesAtLeast(10, 20*time.Second)
		waitFor(t, 10*time.Second, func() error {
			if w.InFlight() == 0 {
				return errNoCall
			}
			return nil
		})
		f.stop() // graceful, calls in flight

		// A call Mautic never answers: the drain times out and abandons it.
		stuck := make(chan struct{})
		reached := make(chan struct{}, 1)
		f.fake.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/api/fields/contact" {
				return false
			}
			select {
			case reached <- struct{}{}:
			default:
			}
			select {
			case <-stuck:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		})
		f.start()
		select { // a call hangs at Mautic (one merely started would not be sent once the drain begins)
		case <-reached:
		case <-time.After(10 * time.Second):
			t.Fatal(errNoCall)
		}
		f.stop()
		close(stuck)
		f.fake.SetHook(nil)

		f.start()
		f.waitAll(len(events), 30*time.Second)
		f.stop()
		if n := f.logged("drain timeout: abandoning calls in flight"); n == 0 {
			t.Error("the drain never timed out: the abandon path was not run")
		}
	}) // the subtest's cleanups stop the connections, the fake and the server
	goleak.VerifyNone(t, ignore)
}

var errNoCall = errors.New("no Mautic call in flight")
