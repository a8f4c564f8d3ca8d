// Package embedded runs a NATS server with JetStream inside the process,
// for `mautic-sync dev` and for tests. It is never used silently: the
// production command needs NATS_URL.
package embedded

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures an embedded server.
type Options struct {
	// Host defaults to 127.0.0.1: the server is reachable from this
	// machine only.
	Host string
	// Port; -1 picks a free one (the default), 0 means 4222.
	Port int
	// StoreDir holds JetStream's data. Empty means a new temporary
	// directory, removed by Shutdown.
	StoreDir string
	// Logger, when set, receives the server's log (notices and errors).
	Logger server.Logger
}

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
	tempDir string
}

// Start runs a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	s := &Server{}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = -1
	}
	if o.StoreDir == "" {
		dir, err := os.MkdirTemp("", "mautic-sync-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded: temp store: %w", err)
		}
		o.StoreDir, s.tempDir = dir, dir
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "mautic-sync-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if o.Logger != nil {
		ns.SetLoggerV2(o.Logger, false, false, false)
	}
	s.Server = ns
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded: NATS server not ready within 10s")
	}
	return s, nil
}

// Shutdown stops the server and removes its temporary store, if any.
func (s *Server) Shutdown() {
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}
