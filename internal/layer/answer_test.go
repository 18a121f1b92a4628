package layer

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
)

// answerSizes are lengths around every bucket edge.
func answerSizes() []int {
	sizes := []int{0, 1, 2, 15, 16, 17}
	for _, b := range answerBuckets {
		sizes = append(sizes, b-1, b, b+1)
	}
	return append(sizes, 2<<20-1, 2<<20, 2<<20+1)
}

// Every answer of a bucket is sealed in a token of the same size, the
// bucket plus AnswerOverhead, and opens to itself.
func TestSealAnswerSizes(t *testing.T) {
	var k Key
	rand.Read(k[:])
	bucketOf := map[int]int{} // token size -> a length that gave it
	for _, n := range answerSizes() {
		msg := make([]byte, n)
		rand.Read(msg)
		tok, err := SealAnswer(nil, &k, 1700000000, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != AnswerSize(n) {
			t.Fatalf("%d bytes: token of %d bytes, AnswerSize says %d", n, len(tok), AnswerSize(n))
		}
		b := answerBucket(n)
		if b < n || len(tok) != b+AnswerOverhead {
			t.Fatalf("%d bytes: bucket %d, token of %d bytes", n, b, len(tok))
		}
		if prev, ok := bucketOf[len(tok)]; ok && answerBucket(prev) != b {
			t.Fatalf("%d and %d bytes: different buckets, same token size", prev, n)
		}
		bucketOf[len(tok)] = n
		p, ts, err := FernetOpen(&k, tok)
		if err != nil || ts != 1700000000 {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := UnpadAnswer(p)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: does not open to itself: %v", n, err)
		}
	}
	// A failure report (2 bytes) and any answer of up to the first bucket
	// give tokens of one size.
	for _, n := range []int{0, 2, 100, answerBuckets[0]} {
		if AnswerSize(n) != AnswerSize(2) {
			t.Fatalf("answer of %d bytes: token of %d bytes, a report's is %d", n, AnswerSize(n), AnswerSize(2))
		}
	}
	if AnswerSize(answerBuckets[0]+1) == AnswerSize(2) {
		t.Fatal("the first bucket holds more than it says")
	}
}

func TestAnswerBucketsIncrease(t *testing.T) {
	prev := 0
	for n := 0; n <= 8<<20; n += 4093 {
		b := answerBucket(n)
		if b < n || b < prev {
			t.Fatalf("answer of %d bytes in bucket %d (previous %d)", n, b, prev)
		}
		prev = b
	}
	if got := AnswerSize(MaxAnswer); got <= MaxAnswer || got < 0 {
		t.Fatalf("AnswerSize(MaxAnswer) = %d", got)
	}
	if AnswerSize(MaxAnswer+1) != int(^uint(0)>>1) || AnswerSize(-1) != int(^uint(0)>>1) {
		t.Fatal("AnswerSize of an impossible length is not MaxInt")
	}
}

// padded is PadAnswer(msg), altered by f.
func padded(t *testing.T, msg []byte, f func([]byte) []byte) []byte {
	p, err := PadAnswer(msg)
	if err != nil {
		t.Fatal(err)
	}
	return f(p)
}

func TestUnpadAnswerRefuses(t *testing.T) {
	report := []byte{4, 3}
	cases := map[string][]byte{
		"empty":           {},
		"short prefix":    {0, 0, 2},
		"unpadded":        report,
		"nonzero pad":     padded(t, report, func(p []byte) []byte { p[len(p)-1] = 1; return p }),
		"nonzero pad 1st": padded(t, report, func(p []byte) []byte { p[4+len(report)] = 0x80; return p }),
		"length overruns": padded(t, report, func(p []byte) []byte {
			binary.BigEndian.PutUint32(p, uint32(len(p)-4+1))
			return p
		}),
		"length max": padded(t, report, func(p []byte) []byte {
			binary.BigEndian.PutUint32(p, 0xFFFFFFFF)
			return p
		}),
		"bucket too large": append(padded(t, report, func(p []byte) []byte { return p }), make([]byte, 1<<10-256)...),
		"bucket too small": padded(t, make([]byte, 300), func(p []byte) []byte { return p[:4+256] }),
		"truncated":        padded(t, report, func(p []byte) []byte { return p[:len(p)-1] }),
		"extended":         append(padded(t, report, func(p []byte) []byte { return p }), 0),
	}
	for name, p := range cases {
		if _, err := UnpadAnswer(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzUnpadAnswer: no panic, only ErrMalformed, and what unpads pads back
// to the same bytes: the encoding has one form per answer.
func FuzzUnpadAnswer(f *testing.F) {
	for _, n := range []int{0, 2, 256, 257} {
		p, _ := PadAnswer(bytes.Repeat([]byte{9}, n))
		f.Add(p)
	}
	f.Add([]byte{0, 0, 0, 2, 5})
	f.Fuzz(func(t *testing.T, p []byte) {
		msg, err := UnpadAnswer(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := PadAnswer(msg)
		if err != nil || !bytes.Equal(again, p) {
			t.Fatalf("answer of %d bytes does not pad back to its %d bytes: %v", len(msg), len(p), err)
		}
	})
}

// SealAnswer appends: what dst holds stays, and the token after it opens
// to the padded answer, also when dst has spare capacity holding garbage.
func TestSealAnswerAppends(t *testing.T) {
	var k Key
	rand.Read(k[:])
	for _, n := range []int{0, 1, 255, 256, 257, 5000} {
		msg := make([]byte, n)
		rand.Read(msg)
		dst := make([]byte, 3, 3+AnswerSize(n)+7)
		rand.Read(dst[:cap(dst)])
		prefix := bytes.Clone(dst)
		out, err := SealAnswer(dst, &k, 5, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[:3], prefix) || len(out) != 3+AnswerSize(n) {
			t.Fatalf("%d bytes: prefix or length changed", n)
		}
		p, _, err := FernetOpen(&k, out[3:])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := PadAnswer(msg)
		if !bytes.Equal(p, want) {
			t.Fatalf("%d bytes: token does not open to the padded answer", n)
		}
	}
}
