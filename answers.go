package ghostcomm

import (
	"sync"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/replay"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// answerTable turns a copy of a message, sent again because a stream broke
// before its answer came back, into the first copy's answer. The replay cache
// alone would refuse the copy, and the message would be lost although it was
// processed. A copy is recognized by its layer tag (the replay cache's key)
// and must carry the same data box (by its Fernet HMAC tag): anything else
// with a known tag is a replay. Answers are kept while the first copy is
// handled and for ttl after, in at most maxBytes (oldest dropped first);
// after that a copy is refused as a replay, as before.
type answerTable struct {
	maxBytes int64
	ttl      time.Duration

	mu    sync.Mutex
	calls map[[replay.KeySize]byte]*answerCall
	kept  []*answerCall // answered, oldest first
	bytes int64
}

type answerCall struct {
	key  [replay.KeySize]byte
	data [32]byte // the data box's HMAC tag
	done chan struct{}

	// Set before done is closed.
	typ   wire.Type
	parts [][]byte
	err   error
	at    time.Time
	size  int64
}

func newAnswerTable(maxBytes int64, ttl time.Duration) *answerTable {
	return &answerTable{maxBytes: maxBytes, ttl: ttl, calls: map[[replay.KeySize]byte]*answerCall{}}
}

// dataTag is the last 32 bytes of a data box: its Fernet token's HMAC.
func dataTag(box []byte) (t [32]byte) {
	if len(box) >= 32 {
		copy(t[:], box[len(box)-32:])
	}
	return t
}

// begin records a message with layer tag tag and data box box. add records
// the tag in the replay cache. For a new message it returns a call to
// finish; for a copy of a message in the table, that message's call and
// dup; otherwise add's error (a replay, or a full cache).
func (t *answerTable) begin(tag, box []byte, add func() error) (c *answerCall, dup bool, err error) {
	if len(tag) < replay.KeySize {
		return nil, false, errs.ErrMalformed
	}
	key := [replay.KeySize]byte(tag)
	data := dataTag(box)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(time.Now())
	if err := add(); err != nil {
		if c := t.calls[key]; c != nil && c.data == data {
			return c, true, nil
		}
		return nil, false, err
	}
	c = &answerCall{key: key, data: data, done: make(chan struct{})}
	t.calls[key] = c
	return c, false, nil
}

// has reports whether the table holds a message with layer tag tag.
func (t *answerTable) has(tag []byte) bool {
	if len(tag) < replay.KeySize {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[[replay.KeySize]byte(tag)] != nil
}

// finish records c's answer, wakes its copies and keeps the answer for ttl.
func (t *answerTable) finish(c *answerCall, typ wire.Type, parts [][]byte, err error) {
	c.typ, c.parts, c.err = typ, parts, err
	c.at = time.Now()
	for _, p := range parts {
		c.size += int64(len(p))
	}
	close(c.done)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kept = append(t.kept, c)
	t.bytes += c.size
	t.expireLocked(c.at)
}

// expireLocked drops answers older than ttl, and the oldest while over
// maxBytes.
func (t *answerTable) expireLocked(now time.Time) {
	drop := 0
	for drop < len(t.kept) {
		c := t.kept[drop]
		if now.Sub(c.at) < t.ttl && t.bytes <= t.maxBytes {
			break
		}
		t.bytes -= c.size
		delete(t.calls, c.key)
		drop++
	}
	if drop > 0 {
		clear(t.kept[:drop])
		t.kept = t.kept[drop:]
	}
}
