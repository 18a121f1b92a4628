package ghostcomm_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// BenchmarkRoundTrip sends 1 KiB messages through a 3-hop route on the fake
// Tor (real loopback TCP streams) and back, with identity processing: one
// sender, and senders on every core (-cpu sets how many goroutines per core
// through RunParallel).
func BenchmarkRoundTrip(b *testing.B) {
	for _, hops := range []int{1, 3} {
		tn := newTestNet(b, ghostcomm.PrimaryConfig{
			Nodes:      hops,
			Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.IdentitySpec },
			Node:       ghostcomm.NodeConfig{ReplayCacheSize: 1 << 24},
		}, ghostcomm.ClientConfig{})
		msg := make([]byte, 1<<10)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		b.Cleanup(cancel)
		if _, err := tn.client.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("hops=%d/1KiB/serial", hops), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tn.client.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("hops=%d/1KiB/parallel", hops), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 senders on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tn.client.Send(ctx, msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
