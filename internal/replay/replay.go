// Package replay is a node's replay cache: the tags of the layers it opened
// in its lock-cycle.
package replay

import (
	"fmt"
	"sync"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// KeySize is how many bytes of a tag the cache keeps: the first 16 bytes of a
// Fernet token's HMAC-SHA256 tag, 128 bits.
const KeySize = 16

// Cache remembers tags and never forgets them until Close: a node lives for
// one lock-cycle, and so does its cache. When it holds max tags it refuses
// new ones (errs.ErrBusy) rather than evict any, which would let a replay
// through. It is safe for concurrent use.
type Cache struct {
	mu     sync.Mutex
	max    int
	seen   map[[KeySize]byte]struct{}
	closed bool
}

// New returns a cache for at most max tags.
func New(max int) *Cache {
	return &Cache{max: max, seen: make(map[[KeySize]byte]struct{})}
}

// Add records tag. It returns errs.ErrReplay if the tag was recorded before,
// an error matching errs.ErrBusy if the cache is full, and errs.ErrClosed
// after Close. Tags shorter than KeySize are refused as malformed.
func (c *Cache) Add(tag []byte) error {
	if len(tag) < KeySize {
		return fmt.Errorf("%w: replay tag of %d bytes", errs.ErrMalformed, len(tag))
	}
	k := [KeySize]byte(tag)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errs.ErrClosed
	}
	if _, dup := c.seen[k]; dup {
		return errs.ErrReplay
	}
	if len(c.seen) >= c.max {
		return fmt.Errorf("%w: replay cache full", errs.ErrBusy)
	}
	c.seen[k] = struct{}{}
	return nil
}

// Len returns the number of tags recorded.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Close releases the cache's memory; later Adds fail with errs.ErrClosed.
func (c *Cache) Close() {
	c.mu.Lock()
	c.seen = nil
	c.closed = true
	c.mu.Unlock()
}
