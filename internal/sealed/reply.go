package sealed

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// ReplyType is what a reply carries.
type ReplyType uint8

const (
	Answer  ReplyType = 1 // the exit's answer: body is its data
	Failure ReplyType = 2 // a failure report: a code byte and a detail
)

// A reply's plaintext: 0¹⁶ ‖ type(1) ‖ len(4) ‖ body ‖ zeros.
const (
	replyType = zeroTag
	replyLen  = replyType + 1
	replyBody = replyLen + lenSize
)

// Reply is a reply opened by the client.
type Reply struct {
	Depth int       // the author's position on the route: 1 is the first hop, Hops() the exit
	Type  ReplyType // Answer or Failure
	Code  byte      // Failure: the failure code
	Body  []byte    // Answer: the data; Failure: the detail. It aliases the reply buffer.
}

// Answer writes body as this hop's answer into reply (exactly the class's
// size; body at most ReplyCapacity bytes, else ErrFrameTooLarge, and it may
// not alias reply),
// sealed under this hop's backward key.
func (r *Result) Answer(reply, body []byte) error {
	if err := r.checkReply(reply); err != nil {
		return err
	}
	if len(body) > r.class.ReplyCapacity() {
		return fmt.Errorf("%w: reply body of %d bytes, more than %d", ErrFrameTooLarge, len(body), r.class.ReplyCapacity())
	}
	clear(reply)
	reply[replyType] = byte(Answer)
	binary.BigEndian.PutUint32(reply[replyLen:], uint32(len(body)))
	copy(reply[replyBody:], body)
	r.seal(reply)
	return nil
}

// Fail writes a failure report (code and detail, at most ReplyCapacity-1
// bytes, else ErrFrameTooLarge, not aliasing reply) into reply (exactly the
// class's size), sealed
// under this hop's backward key. A hop that cannot deliver the packet, or
// whose next hop does not answer, writes one.
func (r *Result) Fail(reply []byte, code byte, detail []byte) error {
	if err := r.checkReply(reply); err != nil {
		return err
	}
	if len(detail) > r.class.ReplyCapacity()-1 {
		return fmt.Errorf("%w: failure detail of %d bytes, more than %d", ErrFrameTooLarge, len(detail), r.class.ReplyCapacity()-1)
	}
	clear(reply)
	reply[replyType] = byte(Failure)
	binary.BigEndian.PutUint32(reply[replyLen:], uint32(1+len(detail)))
	reply[replyBody] = code
	copy(reply[replyBody+1:], detail)
	r.seal(reply)
	return nil
}

// WrapReply adds this hop's layer to a reply coming back from the next hop,
// in place, with no public-key work. It refuses (ErrMalformed) a reply
// that is not exactly the class's size.
func (r *Result) WrapReply(reply []byte) error {
	if err := r.checkReply(reply); err != nil {
		return err
	}
	r.seal(reply)
	return nil
}

func (r *Result) checkReply(reply []byte) error {
	if !r.ok {
		return errNotProcessed
	}
	if len(reply) != r.class.Size() {
		return fmt.Errorf("%w: sealed reply of %d bytes, class %d", ErrMalformed, len(reply), int(r.class))
	}
	return nil
}

// seal enciphers reply with LIONESS under the hop's backward key.
func (r *Result) seal(reply []byte) {
	sc := getScratch()
	sc.lioness(&r.back).encrypt(reply)
	sc.put()
}

// OpenReply opens a reply in place: it peels the hops' layers until the
// zero tag shows, and returns the reply with the author's depth. It returns
// ErrMalformed for a reply of the wrong size, ErrAuth if no depth shows the
// zero tag (the reply was altered on the way), and ErrMalformed for a bad
// type or length under an intact tag.
func (s *Sent) OpenReply(reply []byte) (Reply, error) {
	if len(reply) != s.class.Size() {
		return Reply{}, fmt.Errorf("%w: sealed reply of %d bytes, class %d", ErrMalformed, len(reply), int(s.class))
	}
	sc := getScratch()
	defer sc.put()
	for d := 0; d < s.hops; d++ {
		sc.lioness(&s.back[d]).decrypt(reply)
		if subtle.ConstantTimeCompare(reply[:zeroTag], zeros[:]) == 1 {
			return parseReply(reply, d+1, s.class)
		}
	}
	return Reply{}, fmt.Errorf("%w: sealed reply: no zero tag at any depth", ErrAuth)
}

// parseReply reads an opened reply's type and body.
func parseReply(reply []byte, depth int, c Class) (Reply, error) {
	rep := Reply{Depth: depth, Type: ReplyType(reply[replyType])}
	n := binary.BigEndian.Uint32(reply[replyLen:])
	if n > uint32(c.ReplyCapacity()) {
		return rep, fmt.Errorf("%w: sealed reply from hop %d: length %d", ErrMalformed, depth, n)
	}
	body := reply[replyBody : replyBody+int(n)]
	switch rep.Type {
	case Answer:
		rep.Body = body
	case Failure:
		if n < 1 {
			return rep, fmt.Errorf("%w: sealed failure report from hop %d without a code", ErrMalformed, depth)
		}
		rep.Code, rep.Body = body[0], body[1:]
	default:
		return rep, fmt.Errorf("%w: sealed reply from hop %d: type %d", ErrMalformed, depth, rep.Type)
	}
	return rep, nil
}
