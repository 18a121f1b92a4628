// Package replay is a node's replay cache: the tags of the layers it opened
// in its lock-cycle.
package replay

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// KeySize is how many bytes of a tag the cache keys on: the first 16 bytes
// of a Fernet token's HMAC-SHA256 tag, 128 bits.
const KeySize = 16

// How the cache is laid out. A tag is mapped to a 64-bit fingerprint by
// AES-128 under a key drawn for each cache: a secret permutation, so that
// whoever builds layers (anyone holding a payload) cannot choose tags that
// collide in the table or crowd one part of it. The fingerprint's top
// segBits bits choose a segment; the rest, its home slot in that segment.
// Each segment is a linear-probing table of fingerprints (0 marks a free
// slot) that grows on its own, so that growing never holds two copies of
// the whole table.
const (
	maxLoadNum, maxLoadDen = 7, 8 // a segment grows past 7/8 full
	minSegSlots            = 8
	tagsPerSeg             = 1 << 12 // a segment's share of a full cache, at least
	maxSegBits             = 8
)

// Cache remembers tags and never forgets them until Close: a node lives for
// one lock-cycle, and so does its cache. When it holds max tags it refuses
// new ones (errs.ErrBusy) rather than evict any, which would let a replay
// through. It is safe for concurrent use.
//
// It keeps a 64-bit keyed fingerprint of each tag, in about 10 bytes per tag
// when full (see TestMemoryPerTag). A replay is always recognized; a fresh
// tag is taken for a replay only if its fingerprint equals one already held,
// a chance of at most Len/2^64 per Add that no one can raise without the
// cache's key.
type Cache struct {
	mu      sync.Mutex
	block   cipher.Block
	max     int
	n       int
	segBits uint
	segMax  int // the slots a segment grows to before it grows by eighths
	segs    []segment
	closed  bool
}

type segment struct {
	n     int
	slots []uint64
}

// New returns a cache for at most size tags (at least 1).
func New(size int) *Cache {
	size = max(size, 1)
	var key [16]byte
	rand.Read(key[:])                 // never fails (crypto/rand, Go 1.24+)
	block, _ := aes.NewCipher(key[:]) // a 16-byte key is always valid
	c := &Cache{block: block, max: size}
	for c.segBits < maxSegBits && size>>c.segBits >= 2*tagsPerSeg {
		c.segBits++
	}
	per := (size + 1<<c.segBits - 1) >> c.segBits
	c.segMax = max(per*maxLoadDen/maxLoadNum+1, minSegSlots)
	c.segs = make([]segment, 1<<c.segBits)
	return c
}

// fingerprint returns the nonzero fingerprint of a tag.
func (c *Cache) fingerprint(tag []byte) uint64 {
	var out [16]byte
	c.block.Encrypt(out[:], tag[:KeySize])
	if h := binary.BigEndian.Uint64(out[:8]); h != 0 {
		return h
	}
	return 1
}

// lookup returns the segment of fingerprint h and the slot where h is, or
// the free slot where it would go (found false).
func (c *Cache) lookup(h uint64) (s *segment, i int, found bool) {
	s = &c.segs[h>>(63-c.segBits)>>1] // segBits may be 0
	if s.slots == nil {
		s.slots = make([]uint64, minSegSlots)
	}
	hi, _ := bits.Mul64(h<<c.segBits, uint64(len(s.slots)))
	i = int(hi)
	for s.slots[i] != 0 {
		if s.slots[i] == h {
			return s, i, true
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
	return s, i, false
}

// Add records tag. It returns errs.ErrReplay if the tag was recorded before,
// an error matching errs.ErrBusy if the cache is full, and errs.ErrClosed
// after Close. Tags shorter than KeySize are refused as malformed.
func (c *Cache) Add(tag []byte) error {
	if len(tag) < KeySize {
		return fmt.Errorf("%w: replay tag of %d bytes", errs.ErrMalformed, len(tag))
	}
	h := c.fingerprint(tag)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errs.ErrClosed
	}
	s, i, found := c.lookup(h)
	if found {
		return errs.ErrReplay
	}
	if c.n >= c.max {
		return fmt.Errorf("%w: replay cache full", errs.ErrBusy)
	}
	if (s.n+1)*maxLoadDen > len(s.slots)*maxLoadNum {
		c.grow(s)
		s, i, _ = c.lookup(h)
	}
	s.slots[i] = h
	s.n++
	c.n++
	return nil
}

// Seen reports whether tag has been recorded. Unlike Add it changes nothing,
// so a caller can refuse a replay cheaply before doing the work that must
// precede Add.
func (c *Cache) Seen(tag []byte) bool {
	if len(tag) < KeySize {
		return false
	}
	h := c.fingerprint(tag)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	_, _, found := c.lookup(h)
	return found
}

// grow gives segment s more slots: twice as many up to segMax, then an
// eighth more at a time, so that a full cache wastes little.
func (c *Cache) grow(s *segment) {
	size := 2 * len(s.slots)
	if size > c.segMax {
		size = max(c.segMax, len(s.slots)+len(s.slots)/8)
	}
	old := s.slots
	s.slots = make([]uint64, size)
	for _, h := range old {
		if h == 0 {
			continue
		}
		hi, _ := bits.Mul64(h<<c.segBits, uint64(size))
		i := int(hi)
		for s.slots[i] != 0 {
			if i++; i == size {
				i = 0
			}
		}
		s.slots[i] = h
	}
}

// Len returns the number of tags recorded.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Cap returns the number of tags the cache holds when full.
func (c *Cache) Cap() int { return c.max }

// Close releases the cache's memory; later Adds fail with errs.ErrClosed.
func (c *Cache) Close() {
	c.mu.Lock()
	c.segs = nil
	c.closed = true
	c.mu.Unlock()
}
