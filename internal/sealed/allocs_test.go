package sealed_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// TestProcessAllocs: a relaying hop allocates only its AES key schedules
// and CTR streams (header, LIONESS subkeys, two LIONESS stream rounds: 7),
// and a reply hop only its LIONESS ones (5); the HMAC and HKDF states are
// reused. (Under the race detector sync.Pool drops states at random, so
// the counts are not checked there.)
func TestProcessAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops states at random under the race detector")
	}
	for _, c := range classes {
		nw := newNetwork(t, "allocs", 5)
		in, _, err := sealed.Build(nil, c, sealed.Relay, nw.route, []byte("allocs"))
		if err != nil {
			t.Fatal(err)
		}
		pkt := make([]byte, len(in))
		rs := forgetful{}
		var r sealed.Result
		var failed error
		n := testing.AllocsPerRun(50, func() {
			copy(pkt, in)
			if err := sealed.Process(nw.keys[0], pkt, rs, &r); err != nil {
				failed = err
			}
			delete(rs, r.Tag)
		})
		if failed != nil {
			t.Fatal(failed)
		}
		if n > 7 {
			t.Errorf("class %d: Process made %v allocations, want at most 7", c, n)
		}
		reply := make([]byte, c.Size())
		n = testing.AllocsPerRun(50, func() {
			if err := r.WrapReply(reply); err != nil {
				failed = err
			}
		})
		if failed != nil {
			t.Fatal(failed)
		}
		if n > 5 {
			t.Errorf("class %d: WrapReply made %v allocations, want at most 5", c, n)
		}
	}
}

// TestProcessConcurrent: hops sharing a key (and the package's pooled
// hashing state) process packets concurrently with the results of one
// after the other. Run it with -race.
func TestProcessConcurrent(t *testing.T) {
	const packets = 16
	for _, m := range modes {
		nw := newNetwork(t, "concurrent", 3)
		in := make([][]byte, packets)
		want := make([][]byte, packets)
		for i := range in {
			var err error
			if in[i], _, err = sealed.Build(nil, sealed.Small, m, nw.route, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			want[i] = bytes.Clone(in[i])
			var r sealed.Result
			if err := sealed.Process(nw.keys[0], want[i], forgetful{}, &r); err != nil {
				t.Fatal(err)
			}
			if m == sealed.Chain {
				d, err := r.Data(want[i])
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Reseal(want[i], d); err != nil {
					t.Fatal(err)
				}
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, packets)
		got := make([][]byte, packets)
		for i := range in {
			wg.Go(func() {
				got[i] = bytes.Clone(in[i])
				var r sealed.Result
				if errs[i] = sealed.Process(nw.keys[0], got[i], nw.caches[0], &r); errs[i] != nil {
					return
				}
				if m == sealed.Chain {
					d, err := r.Data(got[i])
					if err != nil {
						errs[i] = err
						return
					}
					errs[i] = r.Reseal(got[i], d)
				}
			})
		}
		wg.Wait()
		for i := range in {
			if errs[i] != nil {
				t.Fatalf("mode %d packet %d: %v", m, i, errs[i])
			}
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("mode %d packet %d: processed concurrently, it differs from processed alone", m, i)
			}
		}
	}
}
