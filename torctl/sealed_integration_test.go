package torctl_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// TestIntegrationSealed runs sealed mode over real onion services of the
// private Tor network, in both forms: a Primary and three nodes spread over
// two tors, a client on the second tor; every message of every size class
// is verified (chain form: every hop's processing, in order; relay form:
// the exit's). It logs the warm round trip of each form.
func TestIntegrationSealed(t *testing.T) {
	e, ctx := setup(t)
	cctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: e.client.CookiePath})
	if err != nil {
		t.Fatal(err)
	}
	defer cctrl.Close()
	for _, form := range []ghostcomm.SealedForm{ghostcomm.FormChain, ghostcomm.FormRelay} {
		t.Run(string(form), func(t *testing.T) {
			start := time.Now()
			p, err := ghostcomm.NewPrimary(ctx, torctl.Spread(e.ctrl, cctrl), e.selfDial, ghostcomm.PrimaryConfig{
				Nodes: 3, Period: time.Hour, Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: form}})
			if err != nil {
				t.Fatalf("NewPrimary: %v", err)
			}
			defer p.Close()
			testnet.Figure(t, "sealed %s: NewPrimary, 4 onions published: %v", form, time.Since(start).Round(time.Millisecond))
			client, err := ghostcomm.NewClient(e.dialer, p.Invite(nil), ghostcomm.ClientConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var warm []time.Duration
			for i, size := range []int{0, 32, 1275, 1276, 20000, 32, 32, 32, 32, 32} {
				msg := bytes.Repeat([]byte(fmt.Sprint(i)), size)
				res, err := client.Send(ctx, msg)
				if err != nil {
					t.Fatalf("message %d (%d bytes): %v", i, size, err)
				}
				processed := res.Route
				if form == ghostcomm.FormRelay {
					processed = res.Route[len(res.Route)-1:]
				}
				want, ok := ghostcomm.Expected(processed, msg)
				if !ok || !res.Verified || !bytes.Equal(res.Data, want) || len(res.Route) != 3 {
					t.Fatalf("message %d (%d bytes): result %x not verified, want %x", i, size, res.Data, want)
				}
				if i >= 5 {
					warm = append(warm, res.RoundTrip)
				}
			}
			testnet.Figure(t, "sealed %s, 3 hops, 2 KiB packets on a warm chain: round trip median %v (min %v, max %v) over %d",
				form, median(warm).Round(time.Microsecond), slices.Min(warm).Round(time.Microsecond), slices.Max(warm).Round(time.Microsecond), len(warm))
		})
	}
}
