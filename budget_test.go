package ghostcomm

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"
)

func TestBudgetFits255Hops(t *testing.T) {
	// From the smallest first budget a 10 s wait can give (5 s), every hop
	// of a 255-hop route still gets at least MinBudget.
	b := 5 * time.Second
	for hop := 2; hop <= 255; hop++ {
		b = forwardBudget(b)
		if b < MinBudget {
			t.Fatalf("hop %d gets %v, below MinBudget", hop, b)
		}
	}
	t.Logf("hop 255 gets %v of a 5 s first budget", b)
}

func TestFirstBudgetRange(t *testing.T) {
	// The first budget is spread over [wait/2, 9 wait/10): with the default
	// Timeout, hop 1 sees 30 s .. 54 s, and hop 8's budgets overlap hop 1's
	// over most of their range, so a budget says little of a hop's position.
	wait := DefaultClientTimeout
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 2000 {
		b, err := firstBudget(wait, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if b < wait/2 || b >= wait*9/10 {
			t.Fatalf("first budget %v outside [%v, %v)", b, wait/2, wait*9/10)
		}
		lo, hi = min(lo, b), max(hi, b)
	}
	if lo > wait*52/100 || hi < wait*88/100 {
		t.Fatalf("2000 first budgets span only %v .. %v", lo, hi)
	}
	lo8, hi8 := lo, hi
	for range 7 {
		lo8, hi8 = forwardBudget(lo8), forwardBudget(hi8)
	}
	overlap := float64(hi8-lo) / float64(hi-lo)
	t.Logf("hop 1 sees %v .. %v, hop 8 %v .. %v: %.0f%% of hop 1's range is shared", lo, hi, lo8, hi8, 100*overlap)
	if overlap < 0.8 {
		t.Fatalf("hop 1 and hop 8 share only %.0f%% of their budget range", 100*overlap)
	}
	// The same randomness gives the same budget: it comes from Rand alone.
	seed := bytes.Repeat([]byte{7}, 8)
	a, _ := firstBudget(wait, bytes.NewReader(seed))
	b, _ := firstBudget(wait, bytes.NewReader(seed))
	if a != b {
		t.Fatal("firstBudget does not depend on its randomness alone")
	}
}

func TestAnswerTableBounded(t *testing.T) {
	// Answers are kept while their bytes fit in maxBytes, oldest dropped
	// first; a dropped answer's copy is then a plain replay.
	tab := newAnswerTable(1000, time.Hour)
	box := bytes.Repeat([]byte{'b'}, 64) // a data box ends with its 32-byte HMAC tag
	other := bytes.Repeat([]byte{'o'}, 64)
	add := func() error { return nil }
	tags := make([][]byte, 4)
	for i := range tags {
		tags[i] = bytes.Repeat([]byte{byte(i + 1)}, 16)
		c, dup, err := tab.begin(tags[i], box, add)
		if err != nil || dup {
			t.Fatalf("begin %d: %v %v", i, dup, err)
		}
		tab.finish(c, 4, [][]byte{make([]byte, 400)}, nil)
	}
	// 4 x 400 bytes in a table of 1000: the two oldest are gone.
	for i, want := range []bool{false, false, true, true} {
		if got := tab.has(tags[i]); got != want {
			t.Errorf("answer %d kept: %v, want %v", i, got, want)
		}
	}
	_, dup, err := tab.begin(tags[0], box, func() error { return ErrReplay })
	if dup || err != ErrReplay {
		t.Fatalf("copy of a dropped answer: dup %v, err %v; want a replay", dup, err)
	}
	_, dup, err = tab.begin(tags[3], box, func() error { return ErrReplay })
	if !dup || err != nil {
		t.Fatalf("copy of a kept answer: dup %v, err %v; want the kept answer", dup, err)
	}
	_, dup, err = tab.begin(tags[3], other, func() error { return ErrReplay })
	if dup || err != ErrReplay {
		t.Fatalf("kept layer with another data box: dup %v, err %v; want a replay", dup, err)
	}
}
