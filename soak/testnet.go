package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cretz/bine/control"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// TestnetEnv starts a private Tor network on 127.0.0.1 (torctl/testnet: 3
// authorities, 3 relays, 2 client tors) and nodeTors more tors that host the
// nodes' onions, and returns the environment and the function that stops
// every tor it started. cycleNodes is PrimaryConfig.Nodes. The Primary's onion is on client0, which also
// carries the nodes' dials; the soak's clients dial through client1. Faults:
// SigStop stops a node tor (SIGSTOP by PID) for the hold and resumes it
// (SIGCONT); Circuits closes every circuit of client0 or client1 (severing
// their streams) and counts as a fault of every node.
func TestnetEnv(ctx context.Context, nodeTors, cycleNodes int, log *slog.Logger) (_ *Env, closeAll func() error, err error) {
	if nodeTors < 1 {
		return nil, nil, fmt.Errorf("soak: %d node tors", nodeTors)
	}
	n, err := testnet.Start(ctx, testnet.Config{Clients: 2, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	env, closeEnv, err := TestnetEnvOn(ctx, n, nodeTors, cycleNodes)
	if err != nil {
		return nil, nil, errors.Join(err, n.Close())
	}
	return env, func() error { return errors.Join(closeEnv(), n.Close()) }, nil
}

// TestnetEnvOn is TestnetEnv on a running network with at least two
// clients (testnet.Shared, for example): it adds the node tors, and
// closeAll stops only what it added.
func TestnetEnvOn(ctx context.Context, n *testnet.Network, nodeTors, cycleNodes int) (_ *Env, closeAll func() error, err error) {
	if nodeTors < 1 {
		return nil, nil, fmt.Errorf("soak: %d node tors", nodeTors)
	}
	var closers []func() error
	var stopped sync.Map // pid → true while SIGSTOPped
	closeAll = func() error {
		stopped.Range(func(pid, _ any) bool {
			syscall.Kill(pid.(int), syscall.SIGCONT)
			return true
		})
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	clients := n.Clients()
	if len(clients) < 2 {
		return nil, nil, fmt.Errorf("soak: the network has %d client tors, want 2", len(clients))
	}
	tors := make([]*testnet.Tor, nodeTors)
	errs := make([]error, nodeTors)
	var wg sync.WaitGroup
	for i := range nodeTors {
		wg.Go(func() { tors[i], errs[i] = n.AddTor(ctx, fmt.Sprintf("soaknode%d", i), nil) })
	}
	wg.Wait()
	for _, t := range tors {
		if t != nil {
			closers = append(closers, func() error { return n.StopTor(t) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	connect := func(t *testnet.Tor) (*torctl.Controller, error) {
		c, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: t.ControlAddr, CookiePath: t.CookiePath})
		if err == nil {
			closers = append(closers, c.Close)
		}
		return c, err
	}
	h := &hosts{owner: map[string]int{}, cycleNodes: cycleNodes}
	if h.primary, err = connect(clients[0]); err != nil {
		return nil, nil, err
	}
	for _, t := range tors {
		c, err := connect(t)
		if err != nil {
			return nil, nil, err
		}
		h.nodes = append(h.nodes, c)
	}
	nodeDialer, err := torctl.NewDialer(clients[0].SocksAddr, torctl.DialerConfig{})
	if err != nil {
		return nil, nil, err
	}
	clientDialer, err := torctl.NewDialer(clients[1].SocksAddr, torctl.DialerConfig{})
	if err != nil {
		return nil, nil, err
	}
	wait := func(ctx context.Context, d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	env := &Env{
		Name:       "private Tor network (torctl/testnet)",
		Controller: h, NodeDialer: nodeDialer, ClientDialer: clientDialer,
		Faults: []Injector{
			{SigStop, func(ctx context.Context, nodes []ghostcomm.NodeInfo, pick func(int) int, hold time.Duration) []string {
				k := pick(len(tors))
				ids := h.hostedBy(k, nodes)
				pid := tors[k].PID
				stopped.Store(pid, true)
				syscall.Kill(pid, syscall.SIGSTOP)
				wait(ctx, hold)
				syscall.Kill(pid, syscall.SIGCONT)
				stopped.Delete(pid)
				return ids
			}},
			{Circuits, func(ctx context.Context, nodes []ghostcomm.NodeInfo, pick func(int) int, hold time.Duration) []string {
				closeCircuits(ctx, clients[pick(len(clients))])
				var ids []string
				for _, nd := range nodes {
					ids = append(ids, nd.Onion.ServiceID)
				}
				return ids
			}},
		},
	}
	return env, closeAll, nil
}

// hosts is the TorController of the testnet soak: the Primary's onion on
// primary, the nodes' in turn on nodes; it remembers which node tor hosts
// which onion. NewPrimary creates the first cycle's cycleNodes onions, then
// its own: the first onion asked for after cycleNodes were created is the
// Primary's.
type hosts struct {
	primary    *torctl.Controller
	nodes      []*torctl.Controller
	cycleNodes int

	mu          sync.Mutex
	created     int  // node onions created
	primaryDone bool // the Primary's onion was asked for
	next        int
	owner       map[string]int // service id → index in nodes
}

func (h *hosts) CreateOnion(ctx context.Context, conf ghostcomm.OnionConfig) (ghostcomm.Onion, error) {
	h.mu.Lock()
	if !h.primaryDone && h.created == h.cycleNodes {
		h.primaryDone = true
		h.mu.Unlock()
		return h.primary.CreateOnion(ctx, conf)
	}
	k := h.next % len(h.nodes)
	h.next++
	h.mu.Unlock()
	o, err := h.nodes[k].CreateOnion(ctx, conf)
	if err == nil {
		h.mu.Lock()
		h.owner[o.ServiceID] = k
		h.created++
		h.mu.Unlock()
	}
	return o, err
}

func (h *hosts) RemoveOnion(ctx context.Context, serviceID string) error {
	h.mu.Lock()
	k, ok := h.owner[serviceID]
	delete(h.owner, serviceID)
	h.mu.Unlock()
	if !ok {
		return h.primary.RemoveOnion(ctx, serviceID)
	}
	return h.nodes[k].RemoveOnion(ctx, serviceID)
}

// hostedBy returns the service ids of nodes hosted by node tor k.
func (h *hosts) hostedBy(k int, nodes []ghostcomm.NodeInfo) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, nd := range nodes {
		if o, ok := h.owner[nd.Onion.ServiceID]; ok && o == k {
			ids = append(ids, nd.Onion.ServiceID)
		}
	}
	return ids
}

// closeCircuits closes every circuit of t, which closes the streams on them.
func closeCircuits(ctx context.Context, t *testnet.Tor) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.ControlAddr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := control.NewConn(textproto.NewConn(raw))
	if err := c.Authenticate(""); err != nil {
		return err
	}
	kv, err := c.GetInfo("circuit-status")
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range kv {
		for _, line := range strings.Split(v.Val, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == "BUILT" {
				errs = append(errs, c.CloseCircuit(f[0], nil))
			}
		}
	}
	return errors.Join(errs...)
}
