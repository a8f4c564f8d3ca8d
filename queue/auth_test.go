package queue_test

// NATS credentials by the standard means (issue #7): token, user and
// password, an nkey seed file and a .creds file (operator JWT mode), each
// against a server that requires it, through queue.Connect as serve.go
// calls it. A refused connection's error never repeats the secret.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

// connect tries queue.Connect and checks that neither its error nor its
// log repeats any secret.
func connect(t *testing.T, o queue.ConnOptions, secrets ...string) error {
	t.Helper()
	o.ConnectTimeout, o.MaxReconnects = 2*time.Second, 0
	core, logs := observer.New(zapcore.DebugLevel)
	nc, err := queue.Connect(context.Background(), o, zap.New(core))
	if err == nil {
		if !nc.IsConnected() {
			t.Error("connected without a connection")
		}
		nc.Close()
	}
	var text strings.Builder
	if err != nil {
		text.WriteString(err.Error())
	}
	for _, e := range logs.All() {
		text.WriteString(e.Message)
		for _, f := range e.Context {
			text.WriteString(f.String)
			if f.Interface != nil {
				if e, ok := f.Interface.(error); ok {
					text.WriteString(e.Error())
				}
			}
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(text.String(), s) {
			t.Errorf("the secret %q appears in the error or log: %s", s, text.String())
		}
	}
	return err
}

func TestNATSAuthToken(t *testing.T) {
	const token = "tok-5ecret-Xy1"
	ns := natstest.StartServer(t, func(o *server.Options) { o.Authorization = token })
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), Token: token}, token); err != nil {
		t.Fatalf("right token refused: %v", err)
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), Token: "wrong-tok-Qz9"}, token, "wrong-tok-Qz9"); err == nil {
		t.Error("wrong token accepted")
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL()}, token); err == nil {
		t.Error("no token accepted")
	}
	// A token in the URL works too, and is redacted from errors.
	u := strings.Replace(ns.ClientURL(), "nats://", "nats://wrong-url-tok-Pp2@", 1)
	if err := connect(t, queue.ConnOptions{URL: u}, "wrong-url-tok-Pp2"); err == nil {
		t.Error("wrong token in the URL accepted")
	}
}

func TestNATSAuthUserPassword(t *testing.T) {
	const pass = "pa55-word-Kq3"
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "mautic-sync", Password: pass}}
	})
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), User: "mautic-sync", Password: pass}, pass); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), User: "mautic-sync", Password: "wrong-pass-Vv8"}, pass, "wrong-pass-Vv8"); err == nil {
		t.Error("wrong password accepted")
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), User: "someone-else", Password: pass}, pass); err == nil {
		t.Error("wrong user accepted")
	}
	u := strings.Replace(ns.ClientURL(), "nats://", "nats://mautic-sync:wrong-url-pass-Mm4@", 1)
	if err := connect(t, queue.ConnOptions{URL: u}, "wrong-url-pass-Mm4"); err == nil {
		t.Error("wrong password in the URL accepted")
	}
}

func TestNATSAuthNKeyFile(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	ns := natstest.StartServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	path := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), NKeyFile: path}, string(seed)); err != nil {
		t.Fatalf("nkey refused: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherPath := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherPath, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), NKeyFile: otherPath}, string(seed), string(otherSeed)); err == nil {
		t.Error("unknown nkey accepted")
	}
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), NKeyFile: filepath.Join(t.TempDir(), "missing.nk")}); err == nil {
		t.Error("missing nkey file accepted")
	}
}

func TestNATSAuthCredsFile(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	if _, err := oc.Encode(okp); err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
	})
	creds := func(signer nkeys.KeyPair) (string, string) {
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		ujwt, err := jwt.NewUserClaims(upub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := ukp.Seed()
		file, err := jwt.FormatUserConfig(ujwt, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "user.creds")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		return path, string(seed)
	}
	path, seed := creds(akp)
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), CredsFile: path}, seed); err != nil {
		t.Fatalf("creds refused: %v", err)
	}
	rogue, _ := nkeys.CreateAccount() // not known to the operator
	path, seed = creds(rogue)
	if err := connect(t, queue.ConnOptions{URL: ns.ClientURL(), CredsFile: path}, seed); err == nil {
		t.Error("creds signed by an unknown account accepted")
	}
}
