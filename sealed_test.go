package ghostcomm_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// sealedConfig is a Primary of n local nodes speaking sealed mode in form f.
func sealedConfig(n int, f ghostcomm.SealedForm) ghostcomm.PrimaryConfig {
	return ghostcomm.PrimaryConfig{Nodes: n, Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: f}}
}

// The whole network in process, in both forms, over routes of 1..8 hops
// and both packet classes: every message verified (chain: every hop's
// processing, in order; relay: the exit's).
func TestSealedRoundTrip(t *testing.T) {
	for _, form := range []ghostcomm.SealedForm{ghostcomm.FormChain, ghostcomm.FormRelay} {
		for _, hops := range []int{1, 3, 8} {
			t.Run(fmt.Sprintf("%s/%d hops", form, hops), func(t *testing.T) {
				tn := newTestNet(t, sealedConfig(hops, form), ghostcomm.ClientConfig{})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				for _, size := range []int{0, 12, 1275, 1276, 31995} {
					msg := bytes.Repeat([]byte{byte(size)}, size)
					res, err := tn.client.Send(ctx, msg)
					if err != nil {
						t.Fatalf("%d bytes: Send: %v", size, err)
					}
					if len(res.Route) != hops {
						t.Fatalf("route of %d hops, want %d", len(res.Route), hops)
					}
					processed := res.Route
					if form == ghostcomm.FormRelay {
						processed = res.Route[hops-1:]
					}
					want, ok := ghostcomm.Expected(processed, msg)
					if !ok || !bytes.Equal(res.Data, want) || !res.Verified {
						t.Fatalf("%d bytes: result %q (verified %v), want %q", size, res.Data, res.Verified, want)
					}
				}
			})
		}
	}
}
