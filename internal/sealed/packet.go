package sealed

import "io"

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

// Build makes a packet of class c carrying data along route (1..MaxHops
// hops; route[0] is the hop the client sends it to) in mode m. rnd gives
// the ephemeral keys and the padding (crypto/rand when nil; a fixed reader
// gives the test vectors). It returns ErrMalformed for a bad class, mode or
// route length, data longer than c.Capacity(), or a hop key that is not a
// valid public key.
func Build(rnd io.Reader, c Class, m Mode, route []Hop, data []byte) ([]byte, *Sent, error) {
	return nil, nil, errNotImplemented
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
func Process(key *PrivateKey, packet []byte, replay Replay, r *Result) error {
	return errNotImplemented
}

// Data returns the data in packet after Process: in Chain mode at every
// hop, in Relay mode at the exit (CmdExit). The slice aliases packet. It
// returns ErrAuth if the payload's zero tag is not intact (the payload was
// altered on the way, or this hop may not read it) and ErrMalformed for a
// bad length.
func (r *Result) Data(packet []byte) ([]byte, error) { return nil, errNotImplemented }

// Reseal (Chain mode, CmdRelay) writes data (at most the class's Capacity
// bytes; it may alias packet) as packet's payload and seals it under the
// link key for the next hop. packet is then ready to send to r.Next.
func (r *Result) Reseal(packet, data []byte) error { return errNotImplemented }
