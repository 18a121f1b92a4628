package ghostcomm

import (
	"sync/atomic"

	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// Refusals counts messages refused with a plain reject, by reason.
type Refusals struct {
	Busy      uint64 // no room, no work slot, or a full replay cache (ErrBusy)
	Replay    uint64 // a layer already seen this cycle (ErrReplay)
	Stale     uint64 // made for another cycle, or cycle over (ErrStaleCycle)
	Auth      uint64 // the layer did not open (ErrAuth)
	Malformed uint64 // bytes that do not parse, or an unexpected frame (ErrMalformed)
	Budget    uint64 // a budget below MinBudget (ErrBudget)
	TooLarge  uint64 // a frame over the limit (ErrFrameTooLarge)
	Closed    uint64 // the node was closing (ErrClosed)
	Other     uint64 // anything else
}

// Total is the number of refusals.
func (r Refusals) Total() uint64 {
	return r.Busy + r.Replay + r.Stale + r.Auth + r.Malformed + r.Budget + r.TooLarge + r.Closed + r.Other
}

func (r *Refusals) add(o Refusals) {
	r.Busy += o.Busy
	r.Replay += o.Replay
	r.Stale += o.Stale
	r.Auth += o.Auth
	r.Malformed += o.Malformed
	r.Budget += o.Budget
	r.TooLarge += o.TooLarge
	r.Closed += o.Closed
	r.Other += o.Other
}

// NodeStats are a Node's counters since it started, and its state now. They
// are cheap to read: a few atomic loads.
type NodeStats struct {
	// Accepted counts messages whose layer and data opened and passed
	// every check; each was processed once.
	Accepted uint64
	// Failed counts accepted messages answered with a failure report (a
	// processing failure, or a failure of the rest of the route).
	Failed uint64
	// Duplicates counts copies of accepted messages, sent again after a
	// stream broke, that got the first copy's answer.
	Duplicates uint64
	// Refused counts messages refused with a plain reject, by reason.
	Refused Refusals

	// InFlight is the number of accepted messages being handled now, or
	// waiting for the rest of their route; Working is those computing,
	// Parked those waiting.
	InFlight, Working, Parked int64
	// BytesHeld is what the node's messages are charged now, against
	// MaxInflightBytes.
	BytesHeld int64
	// Streams is the number of streams open to the node now;
	// StreamsEvicted counts idle streams it closed to make room, and
	// StreamsRefused new streams it refused because every stream was busy.
	Streams                        int64
	StreamsEvicted, StreamsRefused uint64

	// OutStreams is the number of streams the node keeps open to next
	// hops; Dials, DialFailures and Resends count its dials, failed dials,
	// and messages sent again after a stream to a next hop broke.
	OutStreams                   int64
	Dials, DialFailures, Resends uint64
}

// Add adds o's counts and state to s (to sum over nodes).
func (s *NodeStats) Add(o NodeStats) {
	s.Accepted += o.Accepted
	s.Failed += o.Failed
	s.Duplicates += o.Duplicates
	s.Refused.add(o.Refused)
	s.InFlight += o.InFlight
	s.Working += o.Working
	s.Parked += o.Parked
	s.BytesHeld += o.BytesHeld
	s.Streams += o.Streams
	s.StreamsEvicted += o.StreamsEvicted
	s.StreamsRefused += o.StreamsRefused
	s.OutStreams += o.OutStreams
	s.Dials += o.Dials
	s.DialFailures += o.DialFailures
	s.Resends += o.Resends
}

type nodeCounters struct {
	accepted, failed, duplicates atomic.Uint64
	inflight                     atomic.Int64
	refusals                     [256]atomic.Uint64 // by reject code
}

func (c *nodeCounters) refused(code wire.RejectCode) { c.refusals[code].Add(1) }

func (c *nodeCounters) refusalCounts() Refusals {
	var r Refusals
	for code := range c.refusals {
		n := c.refusals[code].Load()
		if n == 0 {
			continue
		}
		switch wire.RejectCode(code) {
		case wire.RejectBusy:
			r.Busy += n
		case wire.RejectReplay:
			r.Replay += n
		case wire.RejectStale:
			r.Stale += n
		case wire.RejectAuth:
			r.Auth += n
		case wire.RejectMalformed, wire.RejectType:
			r.Malformed += n
		case wire.RejectBudget:
			r.Budget += n
		case wire.RejectTooLarge:
			r.TooLarge += n
		case wire.RejectClosed:
			r.Closed += n
		default:
			r.Other += n
		}
	}
	return r
}

func serverStats(s *NodeStats, ss transport.ServerStats) {
	s.Working = int64(ss.Working)
	s.Parked = ss.Parked
	s.BytesHeld = ss.BytesHeld
	s.Streams = int64(ss.Streams)
	s.StreamsEvicted = ss.Evicted
	s.StreamsRefused = ss.StreamsRefused
}

// Stats returns the node's counters.
func (n *Node) Stats() NodeStats {
	s := NodeStats{
		Accepted: n.stats.accepted.Load(), Failed: n.stats.failed.Load(),
		Duplicates: n.stats.duplicates.Load(), Refused: n.stats.refusalCounts(),
		InFlight: n.stats.inflight.Load(),
	}
	serverStats(&s, n.srv.Stats())
	ps := n.pool.Stats()
	s.OutStreams = int64(ps.Streams)
	s.Dials, s.DialFailures, s.Resends = ps.Dials, ps.DialFailures, ps.Resends
	return s
}

// PrimaryStats are a Primary's counters and its nodes'.
type PrimaryStats struct {
	// Payloads counts payload requests answered; PayloadsRefused those
	// refused.
	Payloads, PayloadsRefused uint64
	// Streams is the number of streams open to the Primary's own onion.
	Streams int64
	// Rotations counts lock-cycles started after the first.
	Rotations uint64
	// CyclesFailed counts rotations that failed (ErrTooFewNodes, a node
	// that could not be created...); each is logged and tried again.
	CyclesFailed uint64
	// Nodes sums the stats of the nodes alive now: the current cycle's and
	// those of replaced cycles still in their grace window. A node's
	// counts leave the sum when it is retired.
	Nodes NodeStats
}
