package soak

import (
	"context"
	"errors"
	"fmt"
	"log"
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

// TestnetEnv starts a private Tor network on 127.0.0.1 (testnet.Start with
// cfg: 3 authorities, cfg.Relays relays, cfg.Clients client tors, at least
// one) and the tors of TestnetEnvOn, and returns the environment and the
// function that stops every tor it started. cycleNodes is
// PrimaryConfig.Nodes. The faults are taken in turn.
func TestnetEnv(ctx context.Context, cfg testnet.Config, nodeTors, cycleNodes int) (_ *Env, closeAll func() error, err error) {
	if nodeTors < 1 {
		return nil, nil, fmt.Errorf("soak: %d node tors", nodeTors)
	}
	n, err := testnet.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	env, closeEnv, err := TestnetEnvOn(ctx, n, nodeTors, cycleNodes)
	if err != nil {
		return nil, nil, errors.Join(err, n.Close())
	}
	return env, func() error { return errors.Join(closeEnv(), n.Close()) }, nil
}

// TestnetEnvOn returns the environment of a soak on a running network
// (testnet.Shared, for example): it adds nodeTors tors that host the nodes'
// onions and one tor for the soak's clients, and closeAll stops only what
// it added. The Primary's onion is on the network's first client tor, which
// also carries the nodes' dials. Faults, taken in turn:
//
//   - SigStop stops a node tor (SIGSTOP by PID) for the hold and resumes it
//     (SIGCONT); it hits every node that tor hosts, and the Primary, which
//     creates its next cycle's onions on the node tors in turn and cannot
//     rotate while one of them is stopped.
//   - Circuits closes every circuit of the Primary's or the clients' tor,
//     severing every stream on them; it hits every node (AllNodes).
//   - ClientTor restarts the clients' tor (SIGTERM, 2 s down, started again
//     on the same data directory and SocksPort, which the clients' Dialer
//     keeps using); it hits every node (AllNodes).
//   - RelayKill kills one of the network's relays with SIGKILL, keeps it
//     down for the hold and starts it again on the same data directory and
//     ports (it rejoins with the same keys); it hits every node (AllNodes).
//     Only when this process started the relays (TestnetEnv, not
//     a network shared by another test binary).
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
	if len(clients) < 1 {
		return nil, nil, fmt.Errorf("soak: the network has no client tor")
	}
	// tors[nodeTors] is the clients' tor.
	tors := make([]*testnet.Tor, nodeTors+1)
	errs := make([]error, nodeTors+1)
	var wg sync.WaitGroup
	for i := range nodeTors + 1 {
		name := fmt.Sprintf("soaknode%d", i)
		if i == nodeTors {
			name = "soakclient"
		}
		wg.Go(func() { tors[i], errs[i] = n.AddTor(ctx, name, nil) })
	}
	wg.Wait()
	// The clients' tor is restarted by a fault: torMu guards added.
	var torMu sync.Mutex
	added := tors
	for i := range added {
		if added[i] != nil {
			closers = append(closers, func() error {
				torMu.Lock()
				defer torMu.Unlock()
				return n.StopTor(added[i])
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	clientTor := added[nodeTors]
	tors = tors[:nodeTors:nodeTors]
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
	clientDialer, err := torctl.NewDialer(clientTor.SocksAddr, torctl.DialerConfig{})
	if err != nil {
		return nil, nil, err
	}
	wait := func(ctx context.Context, d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	// A fault of a tor that carries every node's streams, or of a relay any
	// circuit may use, hits every node, also those created while it lasts.
	everyone := func(Target) []string { return []string{AllNodes} }
	env := &Env{
		Name:       "private Tor network (torctl/testnet)",
		Controller: h, NodeDialer: nodeDialer, ClientDialer: clientDialer,
		InTurn: true, FixedHold: true,
		Faults: []Injector{
			{SigStop, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				k := pick(len(tors))
				ids := h.hostedBy(k)
				pid := tors[k].PID
				stopped.Store(pid, true)
				syscall.Kill(pid, syscall.SIGSTOP)
				wait(ctx, hold)
				syscall.Kill(pid, syscall.SIGCONT)
				stopped.Delete(pid)
				return append(ids, t.Primary)
			}},
			{Circuits, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				torMu.Lock()
				tor := []*testnet.Tor{clients[0], added[nodeTors]}[pick(2)]
				torMu.Unlock()
				closeCircuits(ctx, tor)
				return everyone(t)
			}},
			{ClientTor, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				torMu.Lock()
				defer torMu.Unlock()
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				nt, err := n.Restart(rctx, added[nodeTors], syscall.SIGTERM, 2*time.Second)
				if err != nil {
					// The soak goes on without the clients' tor: its
					// messages fail, and the report shows it.
					log.Printf("soak: restarting the clients' tor: %v", err)
					return everyone(t)
				}
				added[nodeTors] = nt
				return everyone(t)
			}},
		},
	}
	relays := n.Relays()
	if len(relays) > 0 && relays[0].Restartable() {
		var relayMu sync.Mutex
		closers = append(closers, func() error {
			relayMu.Lock() // wait for a restart under way
			defer relayMu.Unlock()
			return nil
		})
		env.Faults = append(env.Faults, Injector{RelayKill, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
			relayMu.Lock()
			defer relayMu.Unlock()
			k := pick(len(relays))
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			nt, err := n.Restart(rctx, relays[k], syscall.SIGKILL, hold)
			if err != nil {
				log.Printf("soak: restarting relay %s: %v", relays[k].Name, err)
			} else {
				relays[k] = nt
			}
			return everyone(t)
		}})
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

// hostedBy returns the service ids of every node onion that node tor k
// hosts now, of whatever cycle.
func (h *hosts) hostedBy(k int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for id, o := range h.owner {
		if o == k {
			ids = append(ids, id)
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
