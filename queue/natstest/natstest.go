// Package natstest runs NATS servers in the test's process: one JetStream
// server as the service's embedded mode runs it, or a JetStream cluster
// routed on loopback.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue/embedded"
)

// Start starts one JetStream server on a free port with its store in a
// test directory (as queue/embedded runs it), connects to it, and stops
// both at the test's end.
func Start(t testing.TB) (*embedded.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, js := Connect(t, ns.ClientURL())
	return ns, nc, js
}

// StartServer starts one server on a free loopback port, as configure
// sets it up (auth, a JetStream domain, ...), and stops it at the test's
// end.
func StartServer(t testing.TB, configure func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	configure(o)
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return ns
}

// Cluster is a JetStream cluster of nats-server instances in this process,
// each with its own store in a test directory. Shutting a server down (as
// a failure) leaves it out of URLs.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster starts n routed servers with JetStream on, waits until the
// cluster answers JetStream requests, and shuts them down at the test's
// end. The route ports are picked free beforehand; if one was taken in
// the meantime (a server then never gets ready), it starts over on others.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for range 3 {
		var c *Cluster
		if c, err = startCluster(t, n); err == nil {
			t.Cleanup(c.shutdown)
			return c
		}
	}
	t.Fatal(err)
	return nil
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	routePorts := make([]int, n)
	var routes []string
	for i := range n {
		routePorts[i] = FreePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	c := &Cluster{}
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "mautic-sync-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs:  true, NoLog: true,
		})
		if err != nil {
			c.shutdown()
			return nil, err
		}
		s.Start()
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(10 * time.Second) {
			c.shutdown()
			return nil, fmt.Errorf("NATS server %s not ready within 10s (a route port of %v may have been taken)", s.Name(), routePorts)
		}
	}
	nc, js := Connect(t, c.URLs())
	defer nc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := js.AccountInfo(context.Background())
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.shutdown()
			return nil, fmt.Errorf("the NATS cluster does not answer JetStream requests: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// URLs is the client URLs of the running servers, comma-separated.
func (c *Cluster) URLs() string {
	var out []string
	for _, s := range c.Servers {
		if s.Running() {
			out = append(out, s.ClientURL())
		}
	}
	return strings.Join(out, ",")
}

// Connect connects to url (one or more, comma-separated) with JetStream,
// and closes the connection at the test's end.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
