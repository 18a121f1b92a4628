package torctl_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/cretz/bine/control"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
)

// warnings is a slog.Handler that keeps the messages of warning records.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// TestIntegrationPoW creates an onion with Tor's proof-of-work defence on a
// real tor: tor accepts the keywords (the Controller did not fall back to a
// service without them, which it would have logged), and the onion is
// reachable from another tor. That the acceptance means something is shown
// on a raw control connection: this tor refuses keywords it does not know,
// and refuses an out-of-range PoWQueueRate, so it parses the keywords rather
// than ignoring them.
func TestIntegrationPoW(t *testing.T) {
	e, ctx := setup(t)
	var w warnings
	ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.service.ControlAddr, Logger: slog.New(&w)})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	pow := ghostcomm.PoWConfig{Enabled: true, QueueRate: 50, QueueBurst: 100}
	onion, _ := createAndEcho(t, ctx, ctrl, e.dialer, ghostcomm.OnionConfig{PoW: pow})
	if msgs := w.list(); len(msgs) != 0 {
		t.Fatalf("tor did not take the proof-of-work settings: %q", msgs)
	}
	t.Logf("onion %s up with %+v", onion.ServiceID, pow)

	raw, err := net.Dial("tcp", e.service.ControlAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	conn := control.NewConn(textproto.NewConn(raw))
	if err := conn.Authenticate(""); err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[string]string{
		"NoSuchKeyword=1": "NoSuchKeyword",
		"PoWDefensesEnabled=1 PoWQueueRate=4294967296": "PoWQueueRate",
	} {
		resp, err := conn.SendRequest("ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:1 %s", arg)
		var te *textproto.Error
		if err == nil || !errors.As(err, &te) || te.Code != 512 || !strings.Contains(te.Msg, want) {
			if resp != nil {
				for _, d := range resp.Data {
					if id, ok := strings.CutPrefix(d, "ServiceID="); ok {
						conn.DelOnion(id)
					}
				}
			}
			t.Errorf("ADD_ONION ... %s: %v; want 512 naming %s", arg, err, want)
		}
	}
}
