package replay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math/bits"
	"runtime"
	"sync"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

func TestCache(t *testing.T) {
	c := New(2)
	a, b, d := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b[0], d[0] = 1, 2
	if err := c.Add(a); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(a); !errors.Is(err, errs.ErrReplay) {
		t.Fatalf("second add: %v", err)
	}
	// Only the first 16 bytes count.
	a2 := append([]byte(nil), a...)
	a2[20] = 9
	if err := c.Add(a2); !errors.Is(err, errs.ErrReplay) {
		t.Fatalf("same first 16 bytes: %v", err)
	}
	if err := c.Add(b); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(d); !errors.Is(err, errs.ErrBusy) {
		t.Fatalf("full: %v", err)
	}
	if err := c.Add(a); !errors.Is(err, errs.ErrReplay) {
		t.Fatalf("a full cache still remembers: %v", err)
	}
	if err := c.Add(make([]byte, 15)); !errors.Is(err, errs.ErrMalformed) {
		t.Fatalf("short tag: %v", err)
	}
	c.Close()
	if err := c.Add(d); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestCacheConcurrent(t *testing.T) {
	// Many goroutines add the same tag: exactly one succeeds.
	c := New(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 64 {
		wg.Go(func() {
			if c.Add(make([]byte, 16)) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d adds of one tag succeeded", ok)
	}
}

// TestMemoryPerTag fills a cache of DefaultSize-like capacity, 2^22 tags,
// and bounds the heap it holds: at most 16 bytes a tag, so 64 MiB for 2^22.
// The figure is logged: go test -run TestMemoryPerTag -v ./internal/replay
func TestMemoryPerTag(t *testing.T) {
	const n = 1 << 22
	if testing.Short() {
		t.Skip("fills 2^22 tags")
	}
	tags := make([]byte, 4096*KeySize)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(n)
	for i := 0; i < n; i++ {
		j := i % 4096
		if j == 0 {
			rand.Read(tags)
		}
		if err := c.Add(tags[j*KeySize : (j+1)*KeySize]); err != nil {
			t.Fatalf("tag %d: %v", i, err)
		}
	}
	if err := c.Add(tags[:KeySize]); !errors.Is(err, errs.ErrReplay) {
		t.Fatalf("replay in a full cache: %v", err)
	}
	rand.Read(tags)
	if err := c.Add(tags[:KeySize]); !errors.Is(err, errs.ErrBusy) {
		t.Fatalf("a fresh tag in a full cache: %v", err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	perTag := float64(held) / n
	t.Logf("%d tags: %.1f MiB held, %.2f bytes a tag", c.Len(), float64(held)/(1<<20), perTag)
	if held > 64<<20 {
		t.Fatalf("%d tags hold %d bytes, more than 64 MiB", n, held)
	}
	runtime.KeepAlive(c)
	c.Close()
}

// probes returns the longest distance of a stored fingerprint from its home
// slot, in slots.
func (c *Cache) probes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	worst := 0
	for _, s := range c.segs {
		for i, h := range s.slots {
			if h == 0 {
				continue
			}
			hi, _ := bits.Mul64(h<<c.segBits, uint64(len(s.slots)))
			d := i - int(hi)
			if d < 0 {
				d += len(s.slots)
			}
			worst = max(worst, d)
		}
	}
	return worst
}

// TestCraftedTags: whoever builds layers chooses their tags, up to grinding.
// Tags that share their first, or their last, 14 bytes do not crowd one part
// of the table, because the table is keyed with the cache's own secret, and
// none is taken for another.
func TestCraftedTags(t *testing.T) {
	const n = 1 << 16
	for _, shared := range []string{"prefix", "suffix"} {
		t.Run(shared, func(t *testing.T) {
			c := New(n)
			tag := func(i int) []byte {
				b := make([]byte, KeySize)
				for j := range b {
					b[j] = 0xa5
				}
				if shared == "prefix" {
					b[14], b[15] = byte(i>>8), byte(i)
				} else {
					b[0], b[1] = byte(i>>8), byte(i)
				}
				return b
			}
			for i := range n {
				if err := c.Add(tag(i)); err != nil {
					t.Fatalf("tag %d: %v", i, err)
				}
			}
			if c.Len() != n || c.Cap() != n {
				t.Fatalf("Len %d Cap %d, want %d", c.Len(), c.Cap(), n)
			}
			for i := range n {
				if err := c.Add(tag(i)); !errors.Is(err, errs.ErrReplay) {
					t.Fatalf("replay of tag %d: %v", i, err)
				}
				if !c.Seen(tag(i)) {
					t.Fatalf("tag %d not seen", i)
				}
			}
			// Random placement keeps every run of probes short: with an
			// index taken from the tag's own bits these tags would all
			// share one home slot and the longest run would be n.
			if p := c.probes(); p > 1000 {
				t.Fatalf("a tag is %d slots from its home", p)
			}
		})
	}
}

func TestSeen(t *testing.T) {
	c := New(4)
	a := make([]byte, KeySize)
	if c.Seen(a) {
		t.Fatal("empty cache has seen a tag")
	}
	if c.Len() != 0 {
		t.Fatal("Seen recorded a tag")
	}
	if err := c.Add(a); err != nil {
		t.Fatal(err)
	}
	if !c.Seen(a) || c.Seen(make([]byte, 3)) {
		t.Fatal("Seen is wrong")
	}
	c.Close()
	if c.Seen(a) {
		t.Fatal("Seen after Close")
	}
}

// FuzzCache checks the cache against a map: the same answers for every
// sequence of tags, drawn from a small alphabet so that repeats happen.
func FuzzCache(f *testing.F) {
	f.Add(uint16(3), []byte{0, 1, 0, 2, 3, 1})
	f.Add(uint16(1000), bytes.Repeat([]byte{7, 200, 9}, 300))
	f.Fuzz(func(t *testing.T, size uint16, ops []byte) {
		c := New(int(size))
		model := map[[KeySize]byte]bool{}
		limit := max(int(size), 1)
		for i, op := range ops {
			var k [KeySize]byte
			k[i%KeySize] = op // few distinct tags per position
			k[0] ^= byte(i % 3)
			err := c.Add(k[:])
			switch {
			case model[k]:
				if !errors.Is(err, errs.ErrReplay) {
					t.Fatalf("op %d: replay answered %v", i, err)
				}
			case len(model) >= limit:
				if !errors.Is(err, errs.ErrBusy) {
					t.Fatalf("op %d: full cache answered %v", i, err)
				}
			default:
				if err != nil {
					t.Fatalf("op %d: fresh tag answered %v", i, err)
				}
				model[k] = true
			}
			if c.Len() != len(model) {
				t.Fatalf("Len %d, model %d", c.Len(), len(model))
			}
		}
	})
}

// BenchmarkAdd records fresh random tags in a cache of 2^22.
func BenchmarkAdd(b *testing.B) {
	c := New(1 << 22)
	tags := make([]byte, 4096*KeySize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % 4096
		if j == 0 {
			b.StopTimer()
			rand.Read(tags)
			if c.Len() > 1<<21 {
				c = New(1 << 22)
			}
			b.StartTimer()
		}
		if err := c.Add(tags[j*KeySize : (j+1)*KeySize]); err != nil {
			b.Fatal(err)
		}
	}
}
