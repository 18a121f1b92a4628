package layer

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// An answer is what a hop sends back to the client: the last hop's result
// under the reply key, or a hop's failure report under its error key. Both
// are padded to the same size buckets before they are sealed, so that a hop
// relaying an answer cannot tell a result from a failure report, and learns
// a result's length only to its bucket. The plaintext of an answer's Fernet
// token is
//
//	4 bytes   n, big-endian: the answer's length
//	n bytes   the answer
//	B-n bytes zeros
//
// where B, the bucket, is the smallest of answerBuckets that holds n, or
// else the smallest multiple of 1 MiB that does. The plaintext is B+4
// bytes, which PKCS#7 pads to B+16: every answer of a bucket is sealed in a
// token of exactly B+AnswerOverhead bytes.

// answerBuckets are the first bucket sizes. Beyond the last one, buckets are
// the multiples of 1 MiB.
var answerBuckets = [...]int{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

const (
	// AnswerOverhead is the size of an answer's token minus its bucket:
	// the length prefix and PKCS#7 padding (16 bytes), and the Fernet
	// overhead (57).
	AnswerOverhead = 16 + FernetOverhead
	// MaxAnswer bounds the length of an answer: 2 GiB minus 1 MiB, so that
	// every bucket and token size fits an int on every platform.
	MaxAnswer = math.MaxInt32 - 1<<20 + 1

	answerPrefix = 4
	mib          = 1 << 20
)

// answerBucket returns the bucket of an answer of n bytes, 0 <= n <= MaxAnswer.
func answerBucket(n int) int {
	for _, b := range answerBuckets {
		if n <= b {
			return b
		}
	}
	return (n + mib - 1) / mib * mib
}

// AnswerSize returns the size of the token that carries an answer of n
// bytes, or math.MaxInt if n exceeds MaxAnswer.
func AnswerSize(n int) int {
	if n < 0 || n > MaxAnswer {
		return math.MaxInt
	}
	return answerBucket(n) + AnswerOverhead
}

// PadAnswer returns msg with its length prefix and the zeros that fill its
// bucket.
func PadAnswer(msg []byte) ([]byte, error) {
	if len(msg) > MaxAnswer {
		return nil, fmt.Errorf("ghostcomm: answer of %d bytes, at most %d", len(msg), MaxAnswer)
	}
	return padAnswer(nil, msg), nil
}

// padAnswer appends to dst msg with its length prefix and the zeros that
// fill its bucket.
func padAnswer(dst, msg []byte) []byte {
	n := answerPrefix + answerBucket(len(msg))
	dst = slices.Grow(dst, n)
	p := dst[len(dst) : len(dst)+n]
	binary.BigEndian.PutUint32(p, uint32(len(msg)))
	copy(p[answerPrefix:], msg)
	clear(p[answerPrefix+len(msg):])
	return dst[:len(dst)+n]
}

// SealAnswer appends to dst a raw Fernet token under key, with timestamp ts,
// of msg padded to its bucket. The token is AnswerSize(len(msg)) bytes. The
// padded plaintext is written where the token's goes and sealed there: msg
// is copied once.
func SealAnswer(dst []byte, key *Key, ts int64, msg []byte) ([]byte, error) {
	if len(msg) > MaxAnswer {
		return nil, fmt.Errorf("ghostcomm: answer of %d bytes, at most %d", len(msg), MaxAnswer)
	}
	start := len(dst)
	dst = slices.Grow(dst, AnswerSize(len(msg)))
	p := padAnswer(dst[:start+FernetHeader], msg)[start+FernetHeader:]
	return FernetSeal(dst[:start], key, ts, p)
}

// UnpadAnswer returns the answer in the plaintext of an answer's token (a
// slice of p). It accepts only the encoding PadAnswer makes: a length
// prefix within p, exactly the bucket that length calls for, and padding
// that is all zero. Anything else is an error matching ErrMalformed.
func UnpadAnswer(p []byte) ([]byte, error) {
	if len(p) < answerPrefix {
		return nil, fmt.Errorf("%w: answer of %d bytes, shorter than its length prefix", ErrMalformed, len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-answerPrefix) || n > MaxAnswer {
		return nil, fmt.Errorf("%w: answer length %d overruns its %d bytes", ErrMalformed, n, len(p)-answerPrefix)
	}
	if b := answerBucket(int(n)); len(p)-answerPrefix != b {
		return nil, fmt.Errorf("%w: answer of %d bytes padded to %d, its bucket is %d", ErrMalformed, n, len(p)-answerPrefix, b)
	}
	var nz byte
	for _, c := range p[answerPrefix+int(n):] {
		nz |= c
	}
	if nz != 0 {
		return nil, fmt.Errorf("%w: answer padding is not zero", ErrMalformed)
	}
	return p[answerPrefix : answerPrefix+int(n)], nil
}
