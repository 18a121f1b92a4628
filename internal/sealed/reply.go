package sealed

// ReplyType is what a reply carries.
type ReplyType uint8

const (
	Answer  ReplyType = 1 // the exit's answer: body is its data
	Failure ReplyType = 2 // a failure report: a code byte and a detail
)

// Reply is a reply opened by the client.
type Reply struct {
	Depth int       // the author's position on the route: 1 is the first hop, Hops() the exit
	Type  ReplyType // Answer or Failure
	Code  byte      // Failure: the failure code
	Body  []byte    // Answer: the data; Failure: the detail. It aliases the reply buffer.
}

// Answer writes body as this hop's answer into reply (exactly the class's
// size; body at most ReplyCapacity bytes, and it may not alias reply),
// sealed under this hop's backward key.
func (r *Result) Answer(reply, body []byte) error { return errNotImplemented }

// Fail writes a failure report (code and detail, at most ReplyCapacity-1
// bytes, not aliasing reply) into reply (exactly the class's size), sealed
// under this hop's backward key. A hop that cannot deliver the packet, or
// whose next hop does not answer, writes one.
func (r *Result) Fail(reply []byte, code byte, detail []byte) error { return errNotImplemented }

// WrapReply adds this hop's layer to a reply coming back from the next hop,
// in place, with no public-key work. It refuses (ErrMalformed) a reply
// that is not exactly the class's size.
func (r *Result) WrapReply(reply []byte) error { return errNotImplemented }

// OpenReply opens a reply in place: it peels the hops' layers until the
// zero tag shows, and returns the reply with the author's depth. It returns
// ErrMalformed for a reply of the wrong size, ErrAuth if no depth shows the
// zero tag (the reply was altered on the way), and ErrMalformed for a bad
// type or length under an intact tag.
func (s *Sent) OpenReply(reply []byte) (Reply, error) { return Reply{}, errNotImplemented }
