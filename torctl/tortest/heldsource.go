package tortest

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"

	"github.com/ghostcomm/ghostcomm"
)

// HeldSource is a ghostcomm.NodeSource (PrimaryConfig.Sources) that makes
// each cycle's Count nodes as a Primary's local nodes would be, and keeps
// them, so that a test can call their methods (Node.Ping, Node.Stats),
// which a Primary keeps to itself. It works on any TorController and
// Dialer: this package's or a real tor's.
type HeldSource struct {
	TC     ghostcomm.TorController
	Dialer ghostcomm.Dialer
	Count  int
	// Config is each node's NodeConfig; its cycle times are set per cycle,
	// and a zero Processor is ghostcomm.DefaultProcessing of the node's
	// index, as a Primary's local nodes have.
	Config ghostcomm.NodeConfig

	mu    sync.Mutex
	nodes map[string]*ghostcomm.Node // by service id
}

// CycleNodes makes the cycle's nodes, all at once.
func (s *HeldSource) CycleNodes(ctx context.Context, c *ghostcomm.Cycle) (ghostcomm.CycleNodes, error) {
	held := make(heldNodes, s.Count)
	errs := make([]error, s.Count)
	var wg sync.WaitGroup
	for i := range held {
		nc := s.Config
		if nc.Processor.Name == "" {
			nc.Processor = ghostcomm.DefaultProcessing(i, rand.Reader)
		}
		nc.NotBefore, nc.NotAfter, nc.Grace = c.NotBefore, c.NotAfter, c.Grace
		wg.Go(func() { held[i], errs[i] = ghostcomm.NewNode(ctx, s.TC, s.Dialer, nc) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, held.Close())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		s.nodes = map[string]*ghostcomm.Node{}
	}
	for _, n := range held {
		s.nodes[n.Onion().ServiceID] = n
	}
	return held, nil
}

// Node returns the node on onion o that the source made, or nil.
func (s *HeldSource) Node(o ghostcomm.Onion) *ghostcomm.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[o.ServiceID]
}

// heldNodes are one cycle's nodes of a HeldSource.
type heldNodes []*ghostcomm.Node

func (h heldNodes) Infos() []ghostcomm.NodeInfo {
	var infos []ghostcomm.NodeInfo
	for _, n := range h {
		infos = append(infos, n.Info())
	}
	return infos
}

func (h heldNodes) Start(_ context.Context, peers []ghostcomm.NodeInfo) error {
	for _, n := range h {
		if err := n.SetPeers(peers); err != nil {
			return err
		}
	}
	return nil
}

func (h heldNodes) Close() error {
	var errs []error
	for _, n := range h {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
