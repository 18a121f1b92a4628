package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// TestMetrics scrapes a Primary's metrics, on the fake Tor, after one
// message through two nodes.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}

	ln, err := listenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveMetrics(ln, p, slog.New(slog.DiscardHandler))
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	body := string(b)
	for _, want := range []string{
		"# TYPE ghostcomm_payloads_total counter\nghostcomm_payloads_total 1\n",
		"ghostcomm_messages_accepted_total 2\n",
		"ghostcomm_cycle_nodes 2\n",
		"ghostcomm_messages_refused_total{reason=\"replay\"} 0\n",
		"ghostcomm_rotations_total 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "ghostcomm_rotations_total 1\n") {
		t.Errorf("after a rotation:\n%s", b)
	}
}
