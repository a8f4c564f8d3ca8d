package mautictest_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

// together runs the requests at the same moment and waits for them.
func together(t *testing.T, reqs ...func()) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range reqs {
		wg.Go(func() {
			<-start
			f()
		})
	}
	close(start)
	wg.Wait()
}

func TestConcurrentUpsertsOfOneEmailCreateDuplicates(t *testing.T) {
	t.Parallel()
	// The per-call latency makes the requests overlap.
	srv := newServer(t, mautictest.WithLatency(100*time.Millisecond, 0))
	statuses := make([]int, 3)
	var reqs []func()
	for i := range statuses {
		reqs = append(reqs, func() {
			statuses[i] = do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "race@example.com", "firstname": strconv.Itoa(i)}).Status
		})
	}
	together(t, reqs...)
	for i, s := range statuses {
		if s != http.StatusCreated {
			t.Errorf("request %d: status %d, want 201 (each believed the contact new)", i, s)
		}
	}
	if got := len(srv.ContactsByEmail("race@example.com")); got != 3 {
		t.Fatalf("contacts = %d, want 3 duplicates", got)
	}
	if got := srv.MaxConcurrentWritesPerContact(); got != 3 {
		t.Errorf("MaxConcurrentWritesPerContact = %d, want 3", got)
	}

	// A later upsert goes to the newest duplicate.
	r := do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "race@example.com"})
	newest := srv.ContactsByEmail("race@example.com")[2].ID
	if got := num(t, at(t, r.JSON(t), "contact.id")); got != newest {
		t.Errorf("upsert matched %d, want newest %d", got, newest)
	}
}

func TestConcurrentBatchesShareTheRace(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithLatency(100*time.Millisecond, time.Millisecond))
	batch := func(prefix string) func() {
		return func() {
			do(t, srv, "POST", "/api/contacts/batch/new", []any{
				map[string]any{"email": prefix + "@example.com"},
				map[string]any{"email": "shared@example.com"},
			})
		}
	}
	together(t, batch("one"), batch("two"))
	if got := len(srv.ContactsByEmail("shared@example.com")); got != 2 {
		t.Fatalf("shared contacts = %d, want 2", got)
	}
	if got := srv.MaxConcurrentWritesPerContact(); got != 2 {
		t.Errorf("MaxConcurrentWritesPerContact = %d, want 2", got)
	}
}

func TestSerialisedWritesStayAtOne(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	for i := range 5 {
		do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "serial@example.com", "firstname": strconv.Itoa(i)})
	}
	// Concurrent writes to different contacts are fine.
	var reqs []func()
	for i := range 8 {
		reqs = append(reqs, func() {
			do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": fmt.Sprintf("c%d@example.com", i)})
		})
	}
	together(t, reqs...)
	if got := len(srv.ContactsByEmail("serial@example.com")); got != 1 {
		t.Errorf("contacts = %d, want 1", got)
	}
	if got := srv.MaxConcurrentWritesPerContact(); got != 1 {
		t.Errorf("MaxConcurrentWritesPerContact = %d, want 1", got)
	}
}

func TestOverlapByIDAndEmailIsDetected(t *testing.T) {
	t.Parallel()
	srv := newServer(t, mautictest.WithLatency(100*time.Millisecond, 0))
	id := newContact(t, srv, map[string]any{"email": "both@example.com"})
	together(t,
		func() {
			do(t, srv, "PATCH", "/api/contacts/"+strconv.Itoa(id)+"/edit", map[string]any{"city": "Rome"})
		},
		func() {
			do(t, srv, "POST", "/api/contacts/new", map[string]any{"email": "BOTH@example.com", "firstname": "B"})
		},
		func() {
			do(t, srv, "POST", "/api/contacts/"+strconv.Itoa(id)+"/points/plus/1", nil)
		},
	)
	if got := srv.MaxConcurrentWritesPerContact(); got != 3 {
		t.Errorf("MaxConcurrentWritesPerContact = %d, want 3", got)
	}
	if got := len(srv.ContactsByEmail("both@example.com")); got != 1 {
		t.Errorf("an existing contact must not be duplicated: %d", got)
	}
}

func TestCloseEndsLatencyWaits(t *testing.T) {
	t.Parallel()
	srv := mautictest.NewServer(mautictest.WithLatency(time.Hour, 0))
	arrived := make(chan struct{})
	var once sync.Once
	srv.SetHook(func(http.ResponseWriter, *http.Request) bool {
		once.Do(func() { close(arrived) })
		return false
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := http.Get(srv.URL() + "/api/contacts"); err == nil {
			res.Body.Close()
		}
	}()
	<-arrived
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a latency wait")
	}
	<-done
}
