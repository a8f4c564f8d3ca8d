package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
	"github.com/mautic-sync/mautic-sync/worker"
)

// devSample is one sample event that dev publishes, with the outcome it
// should end in.
type devSample struct {
	subject string
	body    string
}

// devSamples exercise every event type, per-contact order and a dead letter.
// The Mautic fake starts empty, so Jane becomes contact 1.
func devSamples() []devSample {
	const jane = "mautic.contacts.jane"
	ev := func(id, typ, data string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":"dev-%s","source":"/mautic-sync/dev","type":"%s","time":"%s","data":%s}`,
			id, typ, time.Now().UTC().Format(time.RFC3339), data)
	}
	return []devSample{
		{jane, ev("0001", worker.TypeUpsert, `{"email":"Jane.Doe@example.com","fields":{"firstname":"Jane","lastname":"Doe","city":"Oslo"},"tags":["vip"]}`)},
		{jane, ev("0002", worker.TypeSegmentAdd, `{"email":"jane.doe@example.com","segment_id":3}`)},
		{jane, ev("0003", worker.TypeDNCAdd, `{"email":"jane.doe@example.com","channel":"email","reason":2,"comments":"hard bounce"}`)},
		{jane, ev("0004", worker.TypePointsAdd, `{"email":"jane.doe@example.com","delta":5}`)},
		{jane, ev("0005", worker.TypeUpsert, `{"mautic_id":1,"fields":{"city":"Bergen"}}`)},
		{jane, ev("0006", worker.TypeDNCRemove, `{"email":"jane.doe@example.com"}`)},
		{jane, ev("0007", worker.TypeSegmentRemove, `{"email":"jane.doe@example.com","segment_id":3}`)},
		{"mautic.contacts.john", ev("0008", worker.TypeUpsert, `{"email":"john@example.com","fields":{"firstname":"John"}}`)},
		{"mautic.contacts.john", ev("0009", worker.TypeDelete, `{"email":"john@example.com"}`)},
		{"mautic.contacts.nobody", ev("0010", worker.TypeSegmentAdd, `{"email":"nobody@example.com","segment_id":"three"}`)},
	}
}

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("nats-port", 4222, "port of the embedded NATS server on 127.0.0.1 (-1: any free port)")
	dataDir := fs.String("data-dir", "", "JetStream store directory (default: a temporary one, removed on exit)")
	once := fs.Bool("once", false, "exit once the sample events have their outcomes (for scripts and CI)")
	noSamples := fs.Bool("no-samples", false, "publish no sample events")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: mautic-sync dev [flags]\n\nRuns the real service on an embedded NATS server (JetStream, loopback) and the\nbuilt-in Mautic fake over HTTP on loopback, publishes sample events of every\ntype and prints each outcome. Other settings come from the environment as for 'run'.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := config.Parse()
	if err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}
	if _, set := os.LookupEnv("LOG_FORMAT"); !set {
		cfg.Log.Format = "console"
	}
	if _, set := os.LookupEnv("LOG_LEVEL"); !set {
		cfg.Log.Level = "warn" // the outcomes are the show
	}
	if _, set := os.LookupEnv("HTTP_ADDR"); !set {
		cfg.HTTP.Addr = loopbackAddr(8080)
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync:", err)
		return exitConfig
	}
	defer func() { _ = log.Sync() }()

	ns, err := startEmbeddedNATS(*port, *dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync dev:", err)
		return exitFailure
	}
	defer ns.Shutdown()
	password := randomHex(16)
	fake := mautictest.NewServer(mautictest.WithBasicAuth("dev", password))
	defer fake.Close()

	cfg.NATS.URL = ns.ClientURL()
	cfg.Mautic.URL = fake.URL()
	cfg.Mautic.Username, cfg.Mautic.Password = "dev", password
	cfg.Mautic.ClientID, cfg.Mautic.ClientSecret = "", ""
	cfg.Mautic.AllowInsecureHTTP = true // the fake listens on loopback only
	if err := cfg.Validate(); err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}

	fmt.Fprintf(stdout, "mautic-sync dev: NATS (JetStream) at %s, Mautic fake at %s, health and metrics at http://%s\n",
		cfg.NATS.URL, cfg.Mautic.URL, cfg.HTTP.Addr)
	fmt.Fprintf(stdout, "Publish your own events with: nats --server %s pub %s.<key> '<event JSON>'\n",
		cfg.NATS.URL, strings.TrimSuffix(cfg.Stream.Subjects[0], ".>"))
	if !*once {
		fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	}
	fmt.Fprintln(stdout)

	samples := devSamples()
	if *noSamples {
		samples = nil
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu      sync.Mutex
		pending = len(samples)
	)
	observer := func(s worker.Settled) {
		mu.Lock()
		defer mu.Unlock()
		printOutcome(stdout, s)
		if strings.HasPrefix(s.EventID, "dev-") {
			pending--
		}
		if *once && pending <= 0 {
			stop()
		}
	}
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return serve(gctx, cfg, log, observer) })
	g.Go(func() error { return publishSamples(gctx, cfg, samples) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("mautic-sync dev failed", zap.Error(err))
		return exitFailure
	}
	if *once {
		printFakeState(stdout, fake)
	}
	return exitOK
}

func startEmbeddedNATS(port int, dir string) (*embedded.Server, error) {
	ns, err := embedded.Start(embedded.Options{Port: port, StoreDir: dir})
	if err != nil && port != -1 {
		// The port is taken (a real NATS runs here?): use any free one.
		ns, err = embedded.Start(embedded.Options{Port: -1, StoreDir: dir})
	}
	return ns, err
}

// publishSamples publishes the sample events once the input stream exists.
func publishSamples(ctx context.Context, cfg config.Config, samples []devSample) error {
	if len(samples) == 0 {
		return nil
	}
	nc, err := nats.Connect(cfg.NATS.URL, nats.Name("mautic-sync dev samples"))
	if err != nil {
		return fmt.Errorf("dev samples: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		if _, err := js.Stream(ctx, cfg.Stream.Name); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, s := range samples {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(s.body), &id)
		opts := []jetstream.PublishOpt{}
		if id.ID != "" {
			opts = append(opts, jetstream.WithMsgID(id.ID))
		}
		if _, err := js.Publish(ctx, s.subject, []byte(s.body), opts...); err != nil {
			return fmt.Errorf("dev samples: publish: %w", err)
		}
	}
	return nil
}

func printOutcome(w io.Writer, s worker.Settled) {
	id := s.EventID
	if id == "" {
		id = "(not an event)"
	}
	if s.Outcome == "dead_letter" {
		fmt.Fprintf(w, "DEAD LETTER  seq=%-4d %-24s %-12s reason=%s status=%d: %s\n",
			s.StreamSeq, s.EventType, id, s.Reason, s.Status, s.Error)
		return
	}
	fmt.Fprintf(w, "%-12s seq=%-4d %-24s %-12s mautic_id=%d status=%d\n",
		strings.ToUpper(s.Outcome), s.StreamSeq, s.EventType, id, s.MauticID, s.Status)
}

// printFakeState shows what the fake Mautic holds after the samples.
func printFakeState(w io.Writer, fake *mautictest.Server) {
	fmt.Fprintln(w, "\nMautic fake now holds:")
	for _, c := range fake.Contacts() {
		fmt.Fprintf(w, "  contact %d: email=%v city=%v tags=%v segments=%v dnc=%d points=%d\n",
			c.ID, c.Fields["email"], c.Fields["city"], c.Tags, c.Segments, len(c.DNC), c.Points)
	}
}

// loopbackAddr returns 127.0.0.1:port if that port is free, else another
// free loopback address.
func loopbackAddr(port int) string {
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1:0"} {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			a := ln.Addr().String()
			_ = ln.Close()
			return a
		}
	}
	return "127.0.0.1:0"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
