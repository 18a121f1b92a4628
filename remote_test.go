package ghostcomm_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// remoteNet is a Primary whose nodes come from a RemoteSource, remote
// nodes that joined it, and a client, on one fake Tor network.
type remoteNet struct {
	net     *tortest.Network
	primary *ghostcomm.Primary
	src     *ghostcomm.RemoteSource
	nodes   []*ghostcomm.RemoteNode
	ids     []ed25519.PrivateKey
	invite  ghostcomm.Invite
	client  *ghostcomm.Client
}

func newIdentity(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRemoteNet starts remote nodes (all enrolled), then the Primary, which
// returns once they have formed its first cycle.
func newRemoteNet(t testing.TB, remote int, pc ghostcomm.PrimaryConfig, sc ghostcomm.RemoteSourceConfig) *remoteNet {
	t.Helper()
	return newRemoteNetAuth(t, remote, pc, sc, nil)
}

// newRemoteNetAuth is newRemoteNet with authKey, if not nil, in the nodes'
// invite and in the client's (for a Primary with ClientAuth).
func newRemoteNetAuth(t testing.TB, remote int, pc ghostcomm.PrimaryConfig, sc ghostcomm.RemoteSourceConfig, authKey *[32]byte) *remoteNet {
	t.Helper()
	rn := &remoteNet{net: tortest.NewNetwork(tortest.Config{})}
	t.Cleanup(func() { rn.net.Close() })
	id, err := ghostcomm.CreateIdentity(filepath.Join(t.TempDir(), "state"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := pc.ClientAuth
	id.Apply(&pc) // the identity's clients (none) replace pc.ClientAuth
	pc.ClientAuth = append(pc.ClientAuth, auth...)
	inv, ok := id.Invite("", 0)
	if !ok {
		t.Fatal("no invite")
	}
	inv.ClientAuthKey = authKey
	rn.invite = inv
	if rn.src, err = ghostcomm.NewRemoteSource(sc); err != nil {
		t.Fatal(err)
	}
	for range remote {
		rn.addNode(t, true)
	}
	pc.Sources = append(pc.Sources, rn.src)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if rn.primary, err = ghostcomm.NewPrimary(ctx, rn.net.Controller(), rn.net.Dialer(), pc); err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	t.Cleanup(func() {
		if err := rn.primary.Close(); err != nil {
			t.Errorf("Primary.Close: %v", err)
		}
	})
	if rn.client, err = ghostcomm.NewClient(rn.net.Dialer(), rn.primary.Invite(authKey), ghostcomm.ClientConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rn.client.Close() })
	return rn
}

// addNode starts a remote node with a fresh identity, enrolled or not.
func (rn *remoteNet) addNode(t testing.TB, enroll bool) *ghostcomm.RemoteNode {
	t.Helper()
	id := newIdentity(t)
	if enroll {
		if err := rn.src.Enroll(id.Public().(ed25519.PublicKey), ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := ghostcomm.NewRemoteNode(rn.net.Controller(), rn.net.Dialer(), ghostcomm.RemoteNodeConfig{
		Identity: id, Invite: rn.invite, Retry: 20 * time.Millisecond,
		Node: ghostcomm.NodeConfig{Processor: ghostcomm.HashSpec("sha256", []byte("operator salt"), 1, true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	rn.nodes = append(rn.nodes, n)
	rn.ids = append(rn.ids, id)
	return n
}

func cycleOnions(c *ghostcomm.Cycle) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Onion.Addr())
	}
	slices.Sort(out)
	return out
}

func remoteOnions(nodes ...*ghostcomm.RemoteNode) []string {
	var out []string
	for _, n := range nodes {
		for _, o := range n.Onions() {
			out = append(out, o.Addr())
		}
	}
	slices.Sort(out)
	return out
}

func sendVerified(t *testing.T, c *ghostcomm.Client, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.Send(ctx, []byte("over remote hops"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !res.Verified || len(res.Route) != want {
		t.Fatalf("verified %v, route of %d hops, want %d", res.Verified, len(res.Route), want)
	}
}

// Three remote nodes form the Primary's cycles; a client's messages cross
// them; a second cycle is formed by the same nodes with new onions.
func TestRemoteNodesFormCycles(t *testing.T) {
	rn := newRemoteNet(t, 3, ghostcomm.PrimaryConfig{MinNodes: 3}, ghostcomm.RemoteSourceConfig{Wait: 10 * time.Second})
	c := rn.primary.Cycle()
	if got, want := cycleOnions(c), remoteOnions(rn.nodes...); !slices.Equal(got, want) {
		t.Fatalf("cycle onions %v, remote nodes' %v", got, want)
	}
	if len(rn.primary.Onions()) != 0 {
		t.Fatalf("the Primary runs %d local nodes, want none", len(rn.primary.Onions()))
	}
	sendVerified(t, rn.client, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	c2 := rn.primary.Cycle()
	if c2.ID == c.ID || len(c2.Nodes) != 3 {
		t.Fatalf("second cycle: id %x (first %x), %d nodes", c2.ID, c.ID, len(c2.Nodes))
	}
	for _, o := range cycleOnions(c2) {
		if slices.Contains(cycleOnions(c), o) {
			t.Fatalf("onion %s in both cycles", o)
		}
	}
	if got, err := rn.client.Fetch(ctx); err != nil || got.ID != c2.ID {
		t.Fatalf("Fetch: %v", err)
	}
	sendVerified(t, rn.client, 3)
	for _, n := range rn.nodes {
		if n.Joined() != 2 {
			t.Fatalf("a remote node joined %d cycles, want 2 (last error %v)", n.Joined(), n.LastError())
		}
	}
}

// Local and remote nodes in one cycle: the local ones first.
func TestRemoteAndLocalNodes(t *testing.T) {
	rn := newRemoteNet(t, 2, ghostcomm.PrimaryConfig{Nodes: 2}, ghostcomm.RemoteSourceConfig{Wait: 10 * time.Second})
	c := rn.primary.Cycle()
	if len(c.Nodes) != 4 || len(rn.primary.Onions()) != 2 {
		t.Fatalf("%d nodes, %d local, want 4 and 2", len(c.Nodes), len(rn.primary.Onions()))
	}
	sendVerified(t, rn.client, 4)
}

// An unenrolled node is refused over the network with ErrNotEnrolled and
// never gets into a cycle.
func TestRemoteUnenrolledOverNetwork(t *testing.T) {
	rn := newRemoteNet(t, 1, ghostcomm.PrimaryConfig{}, ghostcomm.RemoteSourceConfig{Wait: 2 * time.Second})
	stranger := rn.addNode(t, false)
	deadline := time.Now().Add(10 * time.Second)
	for stranger.LastError() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := stranger.LastError(); !errors.Is(err, ghostcomm.ErrNotEnrolled) {
		t.Fatalf("unenrolled node's error: %v, want ErrNotEnrolled", err)
	}
	if rn.src.Refused() == 0 {
		t.Fatal("the source counted no refusal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if got, want := cycleOnions(rn.primary.Cycle()), remoteOnions(rn.nodes[0]); len(got) != 1 || !slices.Contains(want, got[0]) {
		t.Fatalf("cycle onions %v, enrolled node's %v", got, want)
	}
	if stranger.Joined() != 0 || len(stranger.Onions()) != 0 {
		t.Fatal("the unenrolled node joined a cycle")
	}
}

// hostileSource is a RemoteSource gathering a cycle, with no Primary: the
// tests hand it descriptors directly.
type hostileSource struct {
	src     *ghostcomm.RemoteSource
	primary ghostcomm.Fingerprint
	newNode func() ghostcomm.NodeInfo
	nodes   map[string]ghostcomm.NodeInfo // identity -> its node
	gather  func(id byte) (ghostcomm.Cycle, func() []ghostcomm.NodeInfo)
	abort   func() // ends the last gathering at once, as a canceled rotation
}

func newHostileSource(t *testing.T) *hostileSource {
	t.Helper()
	n := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { n.Close() })
	src, err := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{Wait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileSource{src: src, nodes: map[string]ghostcomm.NodeInfo{}}
	h.newNode = func() ghostcomm.NodeInfo {
		node, err := ghostcomm.NewNode(context.Background(), n.Controller(), n.Dialer(), ghostcomm.NodeConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		return node.Info()
	}
	rand.Read(h.primary[:])
	// gather opens cycle id and returns it, and a function that waits for
	// the gathering to form (every enrolled node has submitted) and returns
	// the nodes admitted. The test's end cancels a gathering left open.
	h.gather = func(id byte) (ghostcomm.Cycle, func() []ghostcomm.NodeInfo) {
		now := time.Now().Truncate(time.Second)
		c := &ghostcomm.Cycle{ID: [16]byte{id}, NotBefore: now, NotAfter: now.Add(time.Hour), Grace: time.Minute}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		h.abort = func() { cancel(); wg.Wait() }
		t.Cleanup(h.abort)
		var got []ghostcomm.NodeInfo
		wg.Go(func() {
			// Canceled: the gathering still records what it admitted.
			cn, err := src.CycleNodes(ctx, c)
			if err == nil {
				got = cn.Infos()
			}
		})
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		open, err := src.WaitOpen(wctx)
		if err != nil {
			t.Fatal(err)
		}
		return open, func() []ghostcomm.NodeInfo { wg.Wait(); return got }
	}
	return h
}

func (h *hostileSource) sign(t *testing.T, id ed25519.PrivateKey, c *ghostcomm.Cycle) []byte {
	t.Helper()
	ni, ok := h.nodes[string(id)]
	if !ok {
		ni = h.newNode()
		h.nodes[string(id)] = ni
	}
	b, err := ghostcomm.SignDescriptor(id, h.primary, c, ni)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every hostile descriptor is refused with its typed error.
func TestRemoteHostileDescriptors(t *testing.T) {
	h := newHostileSource(t)
	good, stranger, revoked, spare := newIdentity(t), newIdentity(t), newIdentity(t), newIdentity(t)
	// absent is enrolled and never submits, so the gathering stays open
	// until end1 (once every enrolled node has submitted, it closes at
	// once, and a revocation after that counts from the next cycle).
	absent := newIdentity(t)
	for _, id := range []ed25519.PrivateKey{good, revoked, spare, absent} {
		h.src.Enroll(id.Public().(ed25519.PublicKey), "")
	}
	c1, end1 := h.gather(1)

	// The honest descriptor of cycle 1 is admitted.
	old := h.sign(t, good, &c1)
	if err := h.src.Admit(old, h.primary); err != nil {
		t.Fatalf("honest descriptor: %v", err)
	}
	cases := []struct {
		name string
		desc func() []byte
		fpr  ghostcomm.Fingerprint
		want error
	}{
		{"unenrolled", func() []byte { return h.sign(t, stranger, &c1) }, h.primary, ghostcomm.ErrNotEnrolled},
		{"forged signature", func() []byte {
			b := h.sign(t, spare, &c1)
			b[len(b)-1] ^= 1
			return b
		}, h.primary, ghostcomm.ErrBadSignature},
		{"signed by another key", func() []byte {
			b := h.sign(t, stranger, &c1)
			copy(b[1:33], spare.Public().(ed25519.PublicKey)) // claims spare's identity
			return b
		}, h.primary, ghostcomm.ErrBadSignature},
		{"altered body", func() []byte {
			b := h.sign(t, spare, &c1)
			b[100] ^= 1 // inside the node entry
			return b
		}, h.primary, ghostcomm.ErrBadSignature},
		{"wrong cycle id", func() []byte {
			c := c1
			c.ID[15] ^= 1
			return h.sign(t, spare, &c)
		}, h.primary, ghostcomm.ErrWrongCycle},
		{"wrong not before", func() []byte {
			c := c1
			c.NotBefore = c.NotBefore.Add(time.Second)
			return h.sign(t, spare, &c)
		}, h.primary, ghostcomm.ErrWrongCycle},
		{"another Primary", func() []byte { return h.sign(t, spare, &c1) }, ghostcomm.Fingerprint{1}, ghostcomm.ErrWrongCycle},
		{"same identity twice", func() []byte { return h.sign(t, good, &c1) }, h.primary, ghostcomm.ErrDescriptorReplay},
		{"truncated", func() []byte { return h.sign(t, spare, &c1)[:80] }, h.primary, ghostcomm.ErrMalformed},
	}
	for _, tc := range cases {
		if err := h.src.Admit(tc.desc(), tc.fpr); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// Revoked before it submits: refused. Revoked after: left out.
	h.src.Revoke(revoked.Public().(ed25519.PublicKey))
	if err := h.src.Admit(h.sign(t, revoked, &c1), h.primary); !errors.Is(err, ghostcomm.ErrNotEnrolled) {
		t.Errorf("revoked: %v, want ErrNotEnrolled", err)
	}
	if err := h.src.Admit(h.sign(t, spare, &c1), h.primary); err != nil {
		t.Fatalf("spare's honest descriptor: %v", err)
	}
	h.src.Revoke(spare.Public().(ed25519.PublicKey))
	h.src.Revoke(absent.Public().(ed25519.PublicKey)) // every enrolled node has submitted: cycle 1 forms
	got := end1()
	if len(got) != 1 || got[0].Onion != h.nodes[string(good)].Onion {
		t.Fatalf("cycle 1 has %d nodes, want only the good one", len(got))
	}

	// Cycle 2: the old descriptor replayed; a descriptor for cycle 1 from
	// an identity that never sent one is late.
	late := newIdentity(t)
	h.src.Enroll(late.Public().(ed25519.PublicKey), "")
	c2, _ := h.gather(2)
	if err := h.src.Admit(old, h.primary); !errors.Is(err, ghostcomm.ErrDescriptorReplay) {
		t.Errorf("replayed descriptor of the last cycle: %v, want ErrDescriptorReplay", err)
	}
	if err := h.src.Admit(h.sign(t, late, &c1), h.primary); !errors.Is(err, ghostcomm.ErrLate) {
		t.Errorf("late descriptor: %v, want ErrLate", err)
	}
	if err := h.src.Admit(h.sign(t, good, &c2), h.primary); err != nil {
		t.Errorf("good node's descriptor for cycle 2: %v", err)
	}
}

// Too few nodes: the rotation fails with ErrTooFewNodes, is counted, and
// the current cycle stays handed out.
func TestRemoteTooFewNodes(t *testing.T) {
	rn := newRemoteNet(t, 2, ghostcomm.PrimaryConfig{MinNodes: 2}, ghostcomm.RemoteSourceConfig{Wait: 500 * time.Millisecond})
	before := rn.primary.Cycle()
	rn.src.Revoke(rn.nodes[1].Identity())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.primary.Rotate(ctx); !errors.Is(err, ghostcomm.ErrTooFewNodes) {
		t.Fatalf("Rotate: %v, want ErrTooFewNodes", err)
	}
	if got := rn.primary.Stats().CyclesFailed; got != 1 {
		t.Fatalf("CyclesFailed %d, want 1", got)
	}
	after := rn.primary.Cycle()
	if after.ID != before.ID {
		t.Fatal("the cycle changed although the rotation failed")
	}
	// Extended into its grace window (the remote nodes stop when they
	// always would: NotAfter plus Grace does not move).
	if !after.NotAfter.After(before.NotAfter) || !after.NotAfter.Add(after.Grace).Equal(before.NotAfter.Add(before.Grace)) {
		t.Fatalf("after a failed rotation the cycle ends %v (grace %v), before %v (grace %v)", after.NotAfter, after.Grace, before.NotAfter, before.Grace)
	}
	sendVerified(t, rn.client, 2)
	// The remaining node learns that the cycle did not form.
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(rn.nodes[0].LastError(), ghostcomm.ErrTooFewNodes) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := rn.nodes[0].LastError(); !errors.Is(err, ghostcomm.ErrTooFewNodes) {
		t.Fatalf("remaining node's error: %v, want ErrTooFewNodes", err)
	}
}

// A remote node that disappears mid-cycle: a message through it fails
// with a *HopError naming it, the others' succeed, and the next cycle
// forms without it.
func TestRemoteNodeDisappears(t *testing.T) {
	t.Parallel()
	rn := newRemoteNet(t, 3, ghostcomm.PrimaryConfig{MinNodes: 2}, ghostcomm.RemoteSourceConfig{Wait: time.Second})
	gone := rn.nodes[2]
	goneOnion := gone.Onions()[0].Addr()
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	c := rn.primary.Cycle()
	idx := slices.IndexFunc(c.Nodes, func(n ghostcomm.NodeInfo) bool { return n.Onion.Addr() == goneOnion })
	others := []int{}
	for i := range c.Nodes {
		if i != idx {
			others = append(others, i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, route := range [][]int{{others[0], idx, others[1]}, {idx, others[0]}} {
		cl, err := ghostcomm.NewClient(rn.net.Dialer(), rn.primary.Invite(nil), ghostcomm.ClientConfig{Route: func(*ghostcomm.Cycle) []int { return route }})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		_, err = cl.Send(ctx, []byte("through the gone node"))
		var he *ghostcomm.HopError
		if !errors.As(err, &he) || he.Onion != goneOnion {
			t.Fatalf("route %v: %v, want a *HopError naming %s", route, err, goneOnion)
		}
	}
	cl, err := ghostcomm.NewClient(rn.net.Dialer(), rn.primary.Invite(nil), ghostcomm.ClientConfig{Route: func(*ghostcomm.Cycle) []int { return others }})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Send(ctx, []byte("around it")); err != nil {
		t.Fatalf("route avoiding the gone node: %v", err)
	}
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if got, want := cycleOnions(rn.primary.Cycle()), remoteOnions(rn.nodes[0], rn.nodes[1]); len(got) != 2 || !slices.Equal(got, slicesIntersect(got, want)) {
		t.Fatalf("next cycle %v, want the two live nodes' new onions among %v", got, want)
	}
}

func slicesIntersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// recordConn records what a connection writes.
type recordConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(b)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// The Primary never sees a remote node's private keys: no byte sent to the
// Primary's onion holds the identity key's seed or a node's OpenPGP secret
// scalars, and no type the RemoteSource holds can hold a private key.
func TestRemotePrimaryNeverSeesPrivateKeys(t *testing.T) {
	var mu sync.Mutex
	var sent bytes.Buffer
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	id, err := ghostcomm.CreateIdentity(filepath.Join(t.TempDir(), "state"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := id.Invite("", 0)
	n.SetWrapConn(func(addr string, c net.Conn) net.Conn {
		if addr == inv.Primary.Addr() {
			return recordConn{Conn: c, mu: &mu, buf: &sent}
		}
		return c
	})
	src, _ := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{Wait: 10 * time.Second})
	var nodes []*ghostcomm.RemoteNode
	var ids []ed25519.PrivateKey
	for range 2 {
		k := newIdentity(t)
		src.Enroll(k.Public().(ed25519.PublicKey), "")
		rnode, err := ghostcomm.NewRemoteNode(n.Controller(), n.Dialer(), ghostcomm.RemoteNodeConfig{Identity: k, Invite: inv, Retry: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer rnode.Close()
		nodes, ids = append(nodes, rnode), append(ids, k)
	}
	pc := ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}, MinNodes: 2}
	id.Apply(&pc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	mu.Lock()
	wire := bytes.Clone(sent.Bytes())
	mu.Unlock()
	if len(wire) == 0 {
		t.Fatal("nothing recorded on the way to the Primary")
	}
	var secrets [][]byte
	for i, rnode := range nodes {
		secrets = append(secrets, ids[i].Seed())
		// The public halves do travel: the recording is of the right
		// streams.
		if !bytes.Contains(wire, rnode.Identity()) {
			t.Fatal("a node's identity public key is not in what it sent")
		}
		for _, node := range rnode.Nodes() {
			if !bytes.Contains(wire, node.Info().PublicKey) {
				t.Fatal("a node's public key is not in what it sent")
			}
			secrets = append(secrets, node.KeyMaterial()...)
		}
	}
	if len(secrets) < 2+2*2 {
		t.Fatalf("only %d secrets found to look for", len(secrets))
	}
	for _, s := range secrets {
		if len(s) < 16 || bytes.Contains(wire, s) {
			t.Fatalf("a secret of %d bytes is in what the Primary received", len(s))
		}
	}

	// Structurally: nothing reachable from a RemoteSource's type is a
	// private key type.
	// An OpenPGP key ring's type can hold private keys; the rings a
	// source holds are parsed from descriptors' public keys, and are
	// checked below to hold none.
	forbidden := []reflect.Type{
		reflect.TypeFor[ed25519.PrivateKey](), reflect.TypeFor[*pgp.Key](),
		reflect.TypeFor[*packet.PrivateKey](), reflect.TypeFor[*ghostcomm.Node](),
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		if seen[ty] {
			return
		}
		seen[ty] = true
		if ty.PkgPath() == "log/slog" || ty == reflect.TypeFor[error]() || ty == reflect.TypeFor[*pgp.KeyRing]() || ty == reflect.TypeFor[*packet.PublicKey]() {
			return // the logger, errors the source makes itself, public keys
		}
		if ty.String() == "*layer.KeyPair" {
			t.Fatalf("RemoteSource can hold a key pair at %s", path)
		}
		for _, f := range forbidden {
			if ty == f {
				t.Fatalf("RemoteSource can hold a %v at %s", ty, path)
			}
		}
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
			walk(ty.Elem(), path+"[]")
		case reflect.Map:
			walk(ty.Key(), path+"{key}")
			walk(ty.Elem(), path+"{}")
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(ty.Field(i).Type, path+"."+ty.Field(i).Name)
			}
		case reflect.Interface:
			if ty.NumMethod() > 0 {
				t.Fatalf("RemoteSource holds an interface %v at %s: extend the walk", ty, path)
			}
		}
	}
	walk(reflect.TypeFor[*ghostcomm.RemoteSource](), "RemoteSource")
	if !seen[reflect.TypeFor[ghostcomm.NodeInfo]()] || !seen[reflect.TypeFor[*pgp.KeyRing]()] {
		t.Fatal("the walk did not reach the NodeInfos a RemoteSource holds")
	}
	for _, ni := range p.Cycle().Nodes {
		if !ni.HasKeyRing() || ni.RingHasPrivateKey() {
			t.Fatal("a remote node's key ring at the Primary is missing or holds a private key")
		}
	}
}

// 255 remote nodes join one Primary on the fake Tor, and a second cycle
// is formed with all of them. What is measured (go test -run TestRemote255
// -v), for that second cycle, from the moment it opens (Rotate: every
// node's parked hello is answered with the cycle's id and times):
//
//   - gathered: every node has made a fresh OpenPGP key pair and onion and
//     submitted a signed descriptor, and the Primary has checked all 255
//     (the RemoteSource's "remote descriptors gathered" record);
//   - handed out: the Primary has sent each node the peer list and heard
//     from each that it set its peers, or waited maxReadyWait (10 s) for
//     them, and hands the cycle out (Rotate returns);
//   - all set: every node has parsed and checked the 255 peers' keys (in
//     this one process, 255 x 255 key parses share the machine's cores);
//   - then, alone on the machine, a client's fetch: the payload of 255
//     nodes fetched, opened and checked.
//
// The signed payload's size is logged too. The fake Tor adds no network
// delay: this is the Primary's and the nodes' own work on this machine,
// with the 255 nodes and the Primary sharing its cores.
func TestRemote255(t *testing.T) {
	// A measurement (minutes on 2 cores), not run by default so that
	// the suite stays fast: GHOSTCOMM_MEASURE=1 go test -run TestRemote255 -v .
	if testing.Short() || os.Getenv("GHOSTCOMM_MEASURE") == "" {
		t.Skip("255 remote nodes: set GHOSTCOMM_MEASURE=1 to run")
	}
	gathered := make(chan time.Time, 4)
	logger := slog.New(&recordTimes{msg: "remote descriptors gathered", at: gathered})
	rn := newRemoteNet(t, 255, ghostcomm.PrimaryConfig{Period: time.Hour}, ghostcomm.RemoteSourceConfig{Wait: 60 * time.Second, Logger: logger})
	if got := len(rn.primary.Cycle().Nodes); got != 255 {
		t.Fatalf("first cycle: %d nodes, want 255", got)
	}
	<-gathered // the first cycle's
	// Wait for every node to ask for the next cycle.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, n := range rn.nodes {
			all = all && n.Joined() == 1
		}
		if all {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // and for their hellos to be parked at the Primary
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	formed := time.Since(start)
	var gather time.Duration
	select {
	case at := <-gathered:
		gather = at.Sub(start)
	default:
		t.Fatal("no \"remote descriptors gathered\" record for the second cycle")
	}
	if got := len(rn.primary.Cycle().Nodes); got != 255 {
		t.Fatalf("second cycle: %d nodes, want 255", got)
	}
	ready := 0
	for _, n := range rn.nodes {
		if n.Joined() == 2 {
			ready++
		}
	}
	// Every node parses and checks the 255 peers' keys: 255 x 255 parses,
	// here on the cores of one machine, where 255 operators would each
	// spend 1/255th of it on their own.
	for all := false; !all && time.Since(start) < 5*time.Minute; time.Sleep(10 * time.Millisecond) {
		all = true
		for _, n := range rn.nodes {
			all = all && n.Joined() == 2
		}
	}
	allReady := time.Since(start)
	t0 := time.Now()
	if _, err := rn.client.Fetch(ctx); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	fetch := time.Since(t0)
	size, err := rn.primary.PayloadSize()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("255 remote nodes, from the cycle's opening: descriptors gathered in %v; cycle handed out in %v (%d nodes had said they set their peers, the Primary waits at most 10 s); all 255 nodes had set their peers at %v; then a client's fetch of the payload took %v; signed payload %d bytes",
		gather.Round(time.Millisecond), formed.Round(time.Millisecond), ready, allReady.Round(time.Millisecond), fetch.Round(time.Millisecond), size)
}

// recordTimes is a slog handler that sends the time of every record with
// message msg.
type recordTimes struct {
	msg string
	at  chan<- time.Time
}

func (h *recordTimes) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordTimes) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.at <- time.Now():
		default:
		}
	}
	return nil
}
func (h *recordTimes) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordTimes) WithGroup(string) slog.Handler      { return h }

// A Primary without a RemoteSource refuses a remote node's hello with
// reject 9 (ErrRejected): it takes no remote nodes.
func TestRemoteNodeWithoutRemoteSource(t *testing.T) {
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 1}, ghostcomm.ClientConfig{})
	n, err := ghostcomm.NewRemoteNode(tn.ctrl, tn.net.Dialer(), ghostcomm.RemoteNodeConfig{
		Identity: newIdentity(t), Invite: tn.primary.Invite(nil), Retry: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	deadline := time.Now().Add(10 * time.Second)
	for n.LastError() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.LastError(); !errors.Is(err, ghostcomm.ErrRejected) {
		t.Fatalf("hello to a Primary without a RemoteSource: %v, want ErrRejected", err)
	}
	if len(tn.primary.Cycle().Nodes) != 1 {
		t.Fatal("the cycle changed")
	}
}

// Operator labels: the payload carries the label each identity was
// enrolled with (not one a descriptor claims), and the default route takes
// one node per operator, in a random order.
func TestRemoteOperatorLabels(t *testing.T) {
	rn := newRemoteNet(t, 0, ghostcomm.PrimaryConfig{Nodes: 1}, ghostcomm.RemoteSourceConfig{Wait: 10 * time.Second})
	labels := []string{"alice", "alice", "bob"}
	for _, l := range labels {
		n := rn.addNode(t, false)
		if err := rn.src.Enroll(n.Identity(), l); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	cy, err := rn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range cy.Nodes {
		got = append(got, n.Operator)
	}
	slices.Sort(got)
	if want := []string{"", "alice", "alice", "bob"}; !slices.Equal(got, want) {
		t.Fatalf("operator labels in the payload %q, want %q", got, want)
	}
	firstAlice := map[string]int{}
	for range 20 {
		res, err := rn.client.Send(ctx, []byte("one hop per operator"))
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if len(res.Route) != 3 || !res.Verified {
			t.Fatalf("route of %d hops (verified %v), want 3: the local node, one of alice's, bob's", len(res.Route), res.Verified)
		}
		ops := map[string]int{}
		for _, n := range res.Route {
			ops[n.Operator]++
			if n.Operator == "alice" {
				firstAlice[n.Onion.Addr()]++
			}
		}
		if ops["alice"] != 1 || ops["bob"] != 1 || ops[""] != 1 {
			t.Fatalf("route operators %v", ops)
		}
	}
	if len(firstAlice) != 2 {
		t.Fatalf("20 routes took always the same one of alice's two nodes: %v", firstAlice)
	}
}

// A label claimed in a descriptor is replaced by the enrolled one.
func TestRemoteOperatorLabelFromEnrolment(t *testing.T) {
	h := newHostileSource(t)
	id := newIdentity(t)
	h.src.Enroll(id.Public().(ed25519.PublicKey), "honest-label")
	c, end := h.gather(7)
	ni := h.newNode()
	ni.Operator = "someone-else"
	b, err := ghostcomm.SignDescriptor(id, h.primary, &c, ni)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.src.Admit(b, h.primary); err != nil {
		t.Fatal(err)
	}
	got := end()
	if len(got) != 1 || got[0].Operator != "honest-label" {
		t.Fatalf("gathered %+v, want one node labelled honest-label", got)
	}
	if err := h.src.Enroll(id.Public().(ed25519.PublicKey), string(make([]byte, 65))); !errors.Is(err, ghostcomm.ErrMalformed) {
		t.Fatalf("a 65-byte label: %v, want ErrMalformed", err)
	}
}

// An enrolled node that never comes does not hold automatic rotations
// past their deadline: the gathering ends halfway to it, and the cycle
// forms with the nodes that came.
func TestRemoteAbsentNodeDoesNotStallRotation(t *testing.T) {
	t.Parallel()
	rn := newRemoteNet(t, 1, ghostcomm.PrimaryConfig{Period: 4 * time.Second, Grace: time.Second}, ghostcomm.RemoteSourceConfig{Wait: time.Minute})
	if err := rn.src.Enroll(newIdentity(t).Public().(ed25519.PublicKey), ""); err != nil { // never runs
		t.Fatal(err)
	}
	first := rn.primary.Cycle().ID
	deadline := time.Now().Add(20 * time.Second)
	for rn.primary.Cycle().ID == first && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if rn.primary.Cycle().ID == first {
		t.Fatalf("no automatic rotation in 20 s (failed rotations: %d)", rn.primary.Stats().CyclesFailed)
	}
	if n := len(rn.primary.Cycle().Nodes); n != 1 {
		t.Fatalf("%d nodes, want the one that came", n)
	}
}

// plainDialer hides every method of a Dialer but DialContext: it is no
// ClientAuthorizer.
type plainDialer struct{ d ghostcomm.Dialer }

func (p plainDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.d.DialContext(ctx, network, addr)
}

// A Primary that only authorized clients reach (ClientAuth): remote nodes
// whose invite carries the key join through their Dialer, which takes the
// key; a node whose invite lacks it never reaches the Primary; and a node
// whose Dialer cannot take the key is refused at once with ErrBadInvite.
func TestRemoteNodeClientAuth(t *testing.T) {
	t.Parallel()
	var key [32]byte
	rand.Read(key[:])
	rn := newRemoteNetAuth(t, 2, ghostcomm.PrimaryConfig{
		MinNodes: 2, ClientAuth: [][32]byte{tortest.ClientAuthPublicKey(key)},
	}, ghostcomm.RemoteSourceConfig{Wait: 2 * time.Second}, &key)
	if got, want := cycleOnions(rn.primary.Cycle()), remoteOnions(rn.nodes...); !slices.Equal(got, want) {
		t.Fatalf("cycle onions %v, want the remote nodes' %v", got, want)
	}
	sendVerified(t, rn.client, 2)

	// An enrolled node with an invite without the key: tor refuses its
	// dials to the Primary, so it never joins a cycle.
	keyless := rn.invite
	keyless.ClientAuthKey = nil
	id := newIdentity(t)
	if err := rn.src.Enroll(id.Public().(ed25519.PublicKey), ""); err != nil {
		t.Fatal(err)
	}
	n, err := ghostcomm.NewRemoteNode(rn.net.Controller(), rn.net.Dialer(), ghostcomm.RemoteNodeConfig{
		Identity: id, Invite: keyless, Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.primary.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if j := n.Joined(); j != 0 {
		t.Fatalf("a node without the key joined %d cycles", j)
	}
	if got := len(rn.primary.Cycle().Nodes); got != 2 {
		t.Fatalf("the new cycle has %d nodes, want the 2 authorized ones", got)
	}
	sendVerified(t, rn.client, 2)

	// A Dialer that cannot take the key: refused before anything is dialed.
	_, err = ghostcomm.NewRemoteNode(rn.net.Controller(), plainDialer{rn.net.Dialer()}, ghostcomm.RemoteNodeConfig{
		Identity: newIdentity(t), Invite: rn.invite})
	if !errors.Is(err, ghostcomm.ErrBadInvite) {
		t.Fatalf("NewRemoteNode with a Dialer that is no ClientAuthorizer: %v, want ErrBadInvite", err)
	}
}
