package sealed

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
)

// Offsets in a packet.
const (
	alphaAt   = 1
	betaAt    = alphaAt + KeySize
	betaSize  = MaxHops * SlotSize
	gammaAt   = betaAt + betaSize
	payloadAt = gammaAt + MACSize // == HeaderSize
)

// Offsets in a slot.
const (
	slotCmd    = 0
	slotNext   = 1
	slotBudget = 2
	slotFlags  = 6
	slotLink   = 8
	slotGamma  = slotLink + KeySize
	slotAlpha  = slotGamma + MACSize
)

var zeros [zeroTag]byte

// Sent is what a client keeps of a packet it built, to open the reply: the
// route's backward keys. It holds secrets; drop it when the reply is read.
type Sent struct {
	class Class
	mode  Mode
	hops  int
	back  [MaxHops][KeySize]byte
}

// Class is the packet's class (and its reply's).
func (s *Sent) Class() Class { return s.class }

// Hops is the route's length.
func (s *Sent) Hops() int { return s.hops }

// Wipe zeroes the backward keys. OpenReply fails after it. It may be called
// more than once.
func (s *Sent) Wipe() { clear(s.back[:]) }

// Build makes a packet of class c carrying data along route (1..MaxHops
// hops; route[0] is the hop the client sends it to) in mode m. rnd gives
// the ephemeral keys and the padding (crypto/rand when nil; a fixed reader
// gives the test vectors). It returns ErrFrameTooLarge for data longer than
// c.Capacity(), and ErrMalformed for a bad class, mode or route length, or a
// hop key that is not a valid public key.
func Build(rnd io.Reader, c Class, m Mode, route []Hop, data []byte) ([]byte, *Sent, error) {
	n := len(route)
	switch {
	case !c.Valid():
		return nil, nil, fmt.Errorf("%w: packet class %d", ErrMalformed, int(c))
	case m != Relay && m != Chain:
		return nil, nil, fmt.Errorf("%w: mode %d", ErrMalformed, m)
	case n < 1 || n > MaxHops:
		return nil, nil, fmt.Errorf("%w: route of %d hops (1..%d)", ErrMalformed, n, MaxHops)
	case len(data) > c.Capacity():
		return nil, nil, fmt.Errorf("%w: %d data bytes, more than the %d of class %d", ErrFrameTooLarge, len(data), c.Capacity(), int(c))
	}
	sent := &Sent{class: c, mode: m, hops: n}
	var keys [MaxHops]hopKeys
	var alphas [MaxHops][KeySize]byte
	defer clear(keys[:])

	// 1. An ephemeral key per hop, and the secret it shares with the hop.
	sc := getScratch()
	defer sc.put()
	var x [KeySize]byte
	defer clear(x[:])
	for i := range route {
		if err := readRand(rnd, x[:]); err != nil {
			return nil, nil, err
		}
		keyGen((*x25519.Key)(&alphas[i]), (*x25519.Key)(&x))
		if err := shared(&sc.sec, (*x25519.Key)(&x), route[i].Key[:]); err != nil {
			return nil, nil, fmt.Errorf("hop %d's key: %w", i+1, err)
		}
		sc.deriveHopKeys(alphas[i][:], &route[i].Key)
		keys[i] = sc.k
		sent.back[i] = keys[i].bck
	}

	// 2. The filler: what hops 1..n-1 append to β as they shift their
	// slots off, which the MACs of hops 2..n must cover.
	// Each hop's β stream is made again where it is needed: a few hundred
	// nanoseconds, where keeping all of them would cost 6 KiB a packet.
	stream := new([(MaxHops + 1) * SlotSize]byte)
	defer clear(stream[:])
	var filler [(MaxHops - 1) * SlotSize]byte
	flen := 0
	for i := 0; i < n-1; i++ {
		flen += SlotSize
		headerStream(stream, &keys[i].hdr)
		subtle.XORBytes(filler[:flen], filler[:flen], stream[betaSize-flen+SlotSize:betaSize+SlotSize])
	}

	pkt := make([]byte, c.Size())
	pkt[0] = Version
	beta := pkt[betaAt:gammaAt]
	var flags uint16
	if m == Chain {
		flags = flagChain
	}

	// 3. The exit's β: its slot, random bytes, the filler; its γ.
	last := n - 1
	slot := beta[:SlotSize]
	slot[slotCmd] = byte(CmdExit)
	if err := readRand(rnd, slot[slotNext:slotNext+1]); err != nil {
		return nil, nil, err
	}
	binary.BigEndian.PutUint32(slot[slotBudget:], route[last].BudgetMS)
	binary.BigEndian.PutUint16(slot[slotFlags:], flags)
	if err := readRand(rnd, slot[slotLink:]); err != nil { // link, γ, α: unused, random
		return nil, nil, err
	}
	if err := readRand(rnd, beta[SlotSize:betaSize-flen]); err != nil {
		return nil, nil, err
	}
	headerStream(stream, &keys[last].hdr)
	subtle.XORBytes(beta[:betaSize-flen], beta[:betaSize-flen], stream[:betaSize-flen])
	copy(beta[betaSize-flen:], filler[:flen])
	copy(pkt[alphaAt:betaAt], alphas[last][:])
	sc.headerMAC(&keys[last].mac, pkt[:gammaAt])

	// 4. Hops n-1..1: each slot in front of the next hop's β, encrypted.
	for i := last - 1; i >= 0; i-- {
		copy(beta[SlotSize:], beta[:betaSize-SlotSize])
		slot[slotCmd] = byte(CmdRelay)
		slot[slotNext] = route[i+1].Index
		binary.BigEndian.PutUint32(slot[slotBudget:], route[i].BudgetMS)
		binary.BigEndian.PutUint16(slot[slotFlags:], flags)
		if m == Chain {
			copy(slot[slotLink:slotGamma], keys[i+1].fwd[:])
		} else if err := readRand(rnd, slot[slotLink:slotGamma]); err != nil {
			return nil, nil, err
		}
		copy(slot[slotGamma:slotAlpha], sc.gamma[:])
		copy(slot[slotAlpha:], alphas[i+1][:])
		newCTR(keys[i].hdr[:]).XORKeyStream(beta, beta)
		copy(pkt[alphaAt:betaAt], alphas[i][:])
		sc.headerMAC(&keys[i].mac, pkt[:gammaAt])
	}
	copy(pkt[gammaAt:payloadAt], sc.gamma[:])

	// 5. The payload: 0¹⁶ ‖ len ‖ data ‖ random, under LIONESS for every
	// hop (Relay) or for hop 1 (Chain: each hop reseals for the next).
	p := pkt[payloadAt:]
	binary.BigEndian.PutUint32(p[zeroTag:], uint32(len(data)))
	copy(p[zeroTag+lenSize:], data)
	if err := readRand(rnd, p[zeroTag+lenSize+len(data):]); err != nil {
		return nil, nil, err
	}
	first := last
	if m == Chain {
		first = 0
	}
	for i := first; i >= 0; i-- {
		sc.lioness(&keys[i].fwd).encrypt(p)
	}
	return pkt, sent, nil
}

// Result is what a hop learned from Process. It keeps the hop's keys for the
// reply (and, in Chain mode, the link key): keep it until the reply has
// passed, then drop it. The zero value is ready for Process.
type Result struct {
	Command  Command
	Next     byte   // CmdRelay: the next hop's index in the cycle's node list
	BudgetMS uint32 // this hop's budget
	Mode     Mode
	Tag      [TagSize]byte // the replay tag recorded

	class Class
	link  [KeySize]byte // Chain mode: the next hop's payload key
	back  [KeySize]byte // this hop's backward key
	ok    bool
}

// Class is the class of the packet processed (and of its reply).
func (r *Result) Class() Class { return r.class }

// Wipe zeroes the hop's keys (backward key, link key) and makes r unusable:
// call it once the reply has gone back. It may be called more than once.
func (r *Result) Wipe() {
	clear(r.link[:])
	clear(r.back[:])
	r.ok = false
}

var errNoKey = errors.New("sealed: Process needs a key and a Replay")

// Process is one hop's work on packet, in place. It refuses, in this order:
// a packet of a size that is no class (ErrMalformed), another version
// (ErrUnsupportedVersion), a non-canonical or low-order α (ErrMalformed),
// a header whose γ does not check (ErrAuth), a tag replay refuses (its
// error), and a slot with an unknown command or flags (ErrMalformed). Only
// a packet whose γ checks reaches replay.
//
// On success packet holds, for CmdRelay in Relay mode, the packet to send to
// r.Next, of the same size; for CmdExit, or in Chain mode, the header for the
// next hop and the payload opened for this hop: read it with r.Data, and in
// Chain mode call r.Reseal before forwarding. It does one X25519 operation.
// Process changes nothing in packet before replay has accepted the tag: after
// any of the refusals up to and including replay's, packet is unchanged (a
// replayed copy can be answered from the first copy's answer). After a later
// error (a bad slot) its bytes are unspecified. After any error r is not
// usable.
func Process(key *PrivateKey, packet []byte, replay Replay, r *Result) error {
	*r = Result{}
	c, err := ClassOf(len(packet))
	if err != nil {
		return err
	}
	if key == nil || replay == nil {
		return errNoKey
	}
	if packet[0] != Version {
		return fmt.Errorf("%w: sealed packet version %d", ErrUnsupportedVersion, packet[0])
	}
	alpha := packet[alphaAt:betaAt]
	sc := getScratch()
	defer sc.put()
	if err := shared(&sc.sec, &key.sk, alpha); err != nil {
		return err
	}
	sc.deriveHopKeys(alpha, &key.pub)
	k := &sc.k
	sc.headerMAC(&k.mac, packet[:gammaAt])
	if !hmac.Equal(sc.gamma[:], packet[gammaAt:payloadAt]) {
		return fmt.Errorf("%w: sealed header MAC", ErrAuth)
	}
	if err := replay.Add(k.tag[:]); err != nil {
		return fmt.Errorf("sealed: replay check: %w", err)
	}

	// β ‖ 0^SlotSize ⊕ stream: the hop's slot, then the next β.
	ctr := newCTR(k.hdr[:])
	beta := packet[betaAt:gammaAt]
	ctr.XORKeyStream(beta, beta)
	var slot [SlotSize]byte
	copy(slot[:], beta[:SlotSize])
	copy(beta, beta[SlotSize:])
	tail := beta[betaSize-SlotSize:]
	clear(tail)
	ctr.XORKeyStream(tail, tail) // the stream's last SlotSize bytes
	if err := r.parseSlot(&slot); err != nil {
		return err
	}
	copy(packet[alphaAt:betaAt], slot[slotAlpha:])
	copy(packet[gammaAt:payloadAt], slot[slotGamma:slotAlpha])

	sc.lioness(&k.fwd).decrypt(packet[payloadAt:])

	r.class = c
	r.Tag = k.tag
	r.back = k.bck
	r.ok = true
	return nil
}

// parseSlot reads a decrypted slot into r: a known command, no unknown
// flag.
func (r *Result) parseSlot(slot *[SlotSize]byte) error {
	r.Command = Command(slot[slotCmd])
	if r.Command != CmdRelay && r.Command != CmdExit {
		return fmt.Errorf("%w: sealed slot command %d", ErrMalformed, slot[slotCmd])
	}
	r.Next = slot[slotNext]
	r.BudgetMS = binary.BigEndian.Uint32(slot[slotBudget:])
	switch flags := binary.BigEndian.Uint16(slot[slotFlags:]); flags {
	case 0:
		r.Mode = Relay
	case flagChain:
		r.Mode = Chain
	default:
		return fmt.Errorf("%w: sealed slot flags %#04x", ErrMalformed, flags)
	}
	if r.Mode == Chain && r.Command == CmdRelay {
		copy(r.link[:], slot[slotLink:slotGamma])
	}
	return nil
}

var errNotProcessed = errors.New("sealed: the packet was not processed")

// Data returns the data in packet after Process: in Chain mode at every
// hop, in Relay mode at the exit (CmdExit). The slice aliases packet. It
// returns ErrAuth if the payload's zero tag is not intact (the payload was
// altered on the way, or this hop may not read it) and ErrMalformed for a
// bad length.
func (r *Result) Data(packet []byte) ([]byte, error) {
	if !r.ok {
		return nil, errNotProcessed
	}
	if len(packet) != r.class.Size() {
		return nil, fmt.Errorf("%w: sealed packet of %d bytes, class %d", ErrMalformed, len(packet), int(r.class))
	}
	if r.Mode == Relay && r.Command != CmdExit {
		return nil, fmt.Errorf("%w: in relay mode only the exit reads the data", ErrAuth)
	}
	p := packet[payloadAt:]
	if subtle.ConstantTimeCompare(p[:zeroTag], zeros[:]) != 1 {
		return nil, fmt.Errorf("%w: sealed payload's zero tag", ErrAuth)
	}
	n := binary.BigEndian.Uint32(p[zeroTag:])
	if n > uint32(r.class.Capacity()) {
		return nil, fmt.Errorf("%w: sealed payload length %d", ErrMalformed, n)
	}
	return p[zeroTag+lenSize : zeroTag+lenSize+int(n)], nil
}

// Reseal (Chain mode, CmdRelay) writes data (at most the class's Capacity
// bytes, else ErrFrameTooLarge; it may alias packet) as packet's payload and
// seals it under the link key for the next hop. packet is then ready to send
// to r.Next.
func (r *Result) Reseal(packet, data []byte) error {
	if !r.ok {
		return errNotProcessed
	}
	if r.Mode != Chain || r.Command != CmdRelay {
		return fmt.Errorf("%w: only a relaying hop in chain mode reseals", ErrMalformed)
	}
	if len(packet) != r.class.Size() {
		return fmt.Errorf("%w: sealed packet of %d bytes, class %d", ErrMalformed, len(packet), int(r.class))
	}
	if len(data) > r.class.Capacity() {
		return fmt.Errorf("%w: %d data bytes, more than the %d of class %d", ErrFrameTooLarge, len(data), r.class.Capacity(), int(r.class))
	}
	p := packet[payloadAt:]
	copy(p[zeroTag+lenSize:], data)
	clear(p[:zeroTag])
	binary.BigEndian.PutUint32(p[zeroTag:], uint32(len(data)))
	clear(p[zeroTag+lenSize+len(data):])
	sc := getScratch()
	sc.lioness(&r.link).encrypt(p)
	sc.put()
	return nil
}
