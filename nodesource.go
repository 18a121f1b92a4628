package ghostcomm

import (
	"context"
	"errors"
	"sync"
)

// NodeSource is where a lock-cycle's nodes come from. A Primary asks each of
// its sources (PrimaryConfig.Sources, after its own local nodes) for the
// nodes of every new cycle, puts their NodeInfos in one list, in source
// order, signs that list into the payload, and hands it back to every
// source with Start. A program can supply its own source; RemoteSource is
// the one for nodes that operators run on other machines.
type NodeSource interface {
	// CycleNodes returns the nodes of the new cycle c, whose ID,
	// NotBefore, NotAfter and Grace are set (c.Nodes is nil; c must not be
	// changed). The nodes must serve c's times. It may return no nodes. It
	// must return by ctx's end.
	CycleNodes(ctx context.Context, c *Cycle) (CycleNodes, error)
}

// CycleNodes is what a NodeSource gathered for one lock-cycle.
type CycleNodes interface {
	// Infos returns the nodes' public descriptions, in the order they
	// take in the cycle's list.
	Infos() []NodeInfo
	// Start hands back the cycle's final node list (every source's, in
	// payload order), once, before any client is handed the cycle. An
	// error abandons the cycle: Close is called and the rotation fails.
	Start(ctx context.Context, peers []NodeInfo) error
	// Close ends the nodes: when the cycle is retired after its grace
	// window, or when it does not form (too few nodes, an error).
	// Close after Close does nothing.
	Close() error
}

// localSource is a Primary's own nodes, created in its process: the
// default, and today's behaviour.
type localSource struct {
	p *Primary
	n int
}

// localNodes are one cycle's local nodes.
type localNodes struct {
	nodes []*Node
}

// CycleNodes creates and publishes ls.n nodes, all at once. A node whose
// onion is not published in time is replaced by a fresh one (new key, new
// address), up to onionAttempts times.
func (ls localSource) CycleNodes(ctx context.Context, c *Cycle) (CycleNodes, error) {
	p := ls.p
	out := &localNodes{nodes: make([]*Node, ls.n)}
	errs := make([]error, ls.n)
	var wg sync.WaitGroup
	for i := range out.nodes {
		nc := p.cfg.Node
		nc.Processor = p.cfg.Processing(i, p.cfg.Rand)
		nc.Protocol, nc.Sealed = p.cfg.Protocol, p.cfg.Sealed
		nc.NotBefore, nc.NotAfter, nc.Grace = c.NotBefore, c.NotAfter, c.Grace
		nc.Key, nc.OnionKey = nil, nil
		nc.Clock, nc.Rand, nc.Logger = p.cfg.Clock, p.cfg.Rand, p.cfg.Logger
		id := c.ID
		nc.replayHalf = func() { p.replayHalf(id) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = retry(ctx, p.cfg.Logger, "node", func() (err error) {
				out.nodes[i], err = NewNode(ctx, p.tc, p.dialer, nc)
				return err
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, out.Close())
	}
	return out, nil
}

func (ln *localNodes) Infos() []NodeInfo {
	infos := make([]NodeInfo, len(ln.nodes))
	for i, n := range ln.nodes {
		infos[i] = n.Info()
	}
	return infos
}

// Start tells each node its peers, then, in a cycle of at most WarmNodes
// nodes, opens the streams between them before any client is handed them,
// so that the cycle's first messages do not wait for dials.
func (ln *localNodes) Start(ctx context.Context, peers []NodeInfo) error {
	for _, n := range ln.nodes {
		if err := n.SetPeers(peers); err != nil {
			return err
		}
	}
	if len(peers) <= WarmNodes {
		var wg sync.WaitGroup
		for _, n := range ln.nodes {
			wg.Go(func() { n.warm(ctx) })
		}
		wg.Wait()
	}
	return nil
}

// Close closes the nodes (those that exist).
func (ln *localNodes) Close() error {
	var errs []error
	for _, n := range ln.nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
