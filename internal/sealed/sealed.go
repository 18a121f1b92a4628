package sealed

import (
	"fmt"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// Errors, the sentinels package ghostcomm exports under the same names.
var (
	ErrMalformed          = errs.ErrMalformed          // wrong size, bad slot, non-canonical or low-order α, bad length field
	ErrUnsupportedVersion = errs.ErrUnsupportedVersion // version byte is not Version
	ErrAuth               = errs.ErrAuth               // header MAC or zero tag wrong: tampered, or not for this key
	ErrReplay             = errs.ErrReplay             // what a Replay returns for a tag it has seen
	ErrFrameTooLarge      = errs.ErrFrameTooLarge      // data, a reply body or a failure detail longer than the class holds
)

// Version is the first byte of every sealed packet.
const Version = 1

// Sizes of the header's parts.
const (
	MaxHops    = 8                                        // slots in a header: routes have 1..MaxHops hops
	SlotSize   = 88                                       // one hop's routing information
	KeySize    = 32                                       // an X25519 key, a link key
	MACSize    = 16                                       // γ: HMAC-SHA256 truncated
	TagSize    = 16                                       // the replay tag a hop hands its Replay
	HeaderSize = 1 + KeySize + MaxHops*SlotSize + MACSize // 753
	zeroTag    = 16                                       // the zero tag that opens a payload or a reply
	lenSize    = 4                                        // big-endian length of the data or reply body
)

// Class is a packet class: the exact size in bytes of every packet and
// every reply of that class.
type Class int

// The two classes.
const (
	Small Class = 2048
	Large Class = 32768
)

// Valid reports whether c is Small or Large.
func (c Class) Valid() bool { return c == Small || c == Large }

// Size is the size in bytes of every packet and reply of class c.
func (c Class) Size() int { return int(c) }

// Capacity is the most data bytes a packet of class c carries (in either
// mode): 1275 for Small, 31995 for Large. It is 0 for an invalid class.
func (c Class) Capacity() int {
	if !c.Valid() {
		return 0
	}
	return int(c) - HeaderSize - zeroTag - lenSize
}

// ReplyCapacity is the most body bytes a reply of class c carries: 2027 for
// Small, 32747 for Large (a failure report's detail is one byte less, for
// its code). It is 0 for an invalid class.
func (c Class) ReplyCapacity() int {
	if !c.Valid() {
		return 0
	}
	return int(c) - zeroTag - 1 - lenSize
}

// ClassFor returns the smallest class whose Capacity is at least n bytes,
// or ErrFrameTooLarge when no class holds n bytes (ErrMalformed for n < 0).
func ClassFor(n int) (Class, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: %d data bytes", ErrMalformed, n)
	case n <= Small.Capacity():
		return Small, nil
	case n <= Large.Capacity():
		return Large, nil
	}
	return 0, fmt.Errorf("%w: %d data bytes, more than the %d a sealed packet holds", ErrFrameTooLarge, n, Large.Capacity())
}

// ClassOf returns the class whose size is n (a packet's or a reply's
// length), or ErrMalformed.
func ClassOf(n int) (Class, error) {
	if c := Class(n); c.Valid() {
		return c, nil
	}
	return 0, fmt.Errorf("%w: sealed packet of %d bytes", ErrMalformed, n)
}

// Mode says who sees the data.
type Mode uint8

const (
	// Relay: only the exit sees the data; relaying hops forward it
	// LIONESS-decrypted once, unreadable to them.
	Relay Mode = 1
	// Chain: every hop opens the data (Result.Data), may process it, and
	// reseals it for the next hop (Result.Reseal).
	Chain Mode = 2
)

// Command is what a slot tells its hop to do.
type Command uint8

const (
	CmdRelay Command = 1 // forward the packet to the hop at Result.Next
	CmdExit  Command = 2 // the route ends here: read the data, write the reply
)

// flagChain is the slot flag for Chain mode; every other flag bit must be 0.
const flagChain = 1

// Hop is one hop of a route, as the client knows it from the lock-cycle
// payload.
type Hop struct {
	Index    byte      // the hop's index in the cycle's node list; the previous hop's slot carries it
	Key      PublicKey // the hop's sealed-mode X25519 public key
	BudgetMS uint32    // the time this hop may take, in milliseconds; see EqualBudgets
}

// EqualBudgets sets every hop's BudgetMS to ms. Equal budgets tell a hop
// nothing about its position on the route; it is the default the network
// uses.
func EqualBudgets(route []Hop, ms uint32) {
	for i := range route {
		route[i].BudgetMS = ms
	}
}

// Replay records replay tags. Add records tag (TagSize bytes; Add must not
// keep the slice) and returns nil if it was new, an error wrapping
// ErrReplay if it was seen before, or another error (such as errs.ErrBusy
// when full) to refuse the packet. It must be safe for concurrent use if
// Process is called concurrently. A *replay.Cache is a Replay.
type Replay interface {
	Add(tag []byte) error
}

// ReplayFunc adapts a function to Replay.
type ReplayFunc func(tag []byte) error

// Add calls f(tag).
func (f ReplayFunc) Add(tag []byte) error { return f(tag) }
