package replay

import (
	"errors"
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
