package ghostcomm

// Remote nodes: nodes that operators run on other machines, which join a
// Primary over its onion service (docs/PROTOCOL.md, "Remote nodes"). The
// Primary's side is RemoteSource, a NodeSource; the operator's is
// RemoteNode.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

const (
	// remoteVersion is the version of every remote-node message (2: the
	// node cycle announces the protocol, a descriptor carries the node's
	// sealed-mode key).
	remoteVersion = 2
	// descriptorContext prefixes what a descriptor's signature covers, so
	// that an identity key's signature on anything else is never a
	// descriptor.
	descriptorContext = "ghostcomm node descriptor v1\x00"
	// maxDescriptorSize bounds a descriptor: a node entry's largest key,
	// processor and parameters fit.
	maxDescriptorSize = 64 << 10
	// pastCycles is how many closed gatherings a RemoteSource remembers,
	// to tell a replayed or late descriptor from one for no cycle at all.
	pastCycles = 16
	// maxHelloWait bounds how long a Primary holds a hello before it
	// answers "no cycle yet, ask again".
	maxHelloWait = 2 * time.Minute
	// maxReadyWait bounds how long a cycle that formed waits for its
	// remote nodes to say they have their peer lists, before it is handed
	// to clients anyway.
	maxReadyWait = 10 * time.Second
	// maxFormWait is how long, after its gathering's deadline, a
	// descriptor waits for the cycle to form.
	maxFormWait = 2 * time.Minute
)

// DefaultRemoteWait is how long a RemoteSource waits for descriptors when
// a cycle opens, unless every enrolled node has sent one before.
const DefaultRemoteWait = 20 * time.Second

// descriptor is what a remote node submits for one cycle.
//
//	offset size
//	0      1    version (2)
//	1      32   the node's ed25519 identity public key
//	33     32   SHA-256 fingerprint of the Primary's key (from the invite)
//	65     16   cycle id (from the Primary's NodeCycle answer)
//	81     8    the cycle's not before, unix seconds
//	89     ...  one node entry, as in the payload's node list
//	...    1    k = length of the node's sealed-mode key: 32 in a sealed
//	            cycle, 0 otherwise
//	...    k    the node's sealed-mode X25519 public key
//	end-64 64   ed25519 signature by the identity key over
//	            "ghostcomm node descriptor v1\x00" || bytes 0..end-64
type descriptor struct {
	identity  ed25519.PublicKey
	primary   Fingerprint
	cycle     [16]byte
	notBefore int64
	node      NodeInfo
}

func (d *descriptor) body() ([]byte, error) {
	entry, err := marshalNodes([]NodeInfo{d.node})
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 89+len(entry)+ed25519.SignatureSize)
	b = append(b, remoteVersion)
	b = append(b, d.identity...)
	b = append(b, d.primary[:]...)
	b = append(b, d.cycle[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(d.notBefore))
	b = append(b, entry[1:]...) // without marshalNodes' count byte
	if k := len(d.node.SealedKey); k != 0 && k != sealedKeySize {
		return nil, fmt.Errorf("ghostcomm: a sealed-mode key of %d bytes", k)
	}
	b = append(b, byte(len(d.node.SealedKey)))
	return append(b, d.node.SealedKey...), nil
}

// sign returns the signed descriptor.
func (d *descriptor) sign(id ed25519.PrivateKey) ([]byte, error) {
	b, err := d.body()
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(id, append([]byte(descriptorContext), b...))
	return append(b, sig...), nil
}

// parseDescriptor checks a signed descriptor's structure and returns it
// with its body and signature; the caller checks enrolment and signature
// (verifyDescriptor), then the cycle.
func parseDescriptor(b []byte) (*descriptor, []byte, []byte, error) {
	if len(b) > maxDescriptorSize {
		return nil, nil, nil, fmt.Errorf("%w: descriptor of %d bytes", ErrMalformed, len(b))
	}
	if len(b) < 89+ed25519.SignatureSize {
		return nil, nil, nil, fmt.Errorf("%w: descriptor of %d bytes", ErrMalformed, len(b))
	}
	body, sig := b[:len(b)-ed25519.SignatureSize], b[len(b)-ed25519.SignatureSize:]
	d := decoder{b: body}
	if v := d.u8(); v != remoteVersion {
		return nil, nil, nil, fmt.Errorf("%w: descriptor version %d", ErrUnsupportedVersion, v)
	}
	desc := &descriptor{identity: bytes.Clone(d.bytes(ed25519.PublicKeySize))}
	copy(desc.primary[:], d.bytes(32))
	copy(desc.cycle[:], d.bytes(16))
	desc.notBefore = int64(d.u64())
	ni, err := parseNodeEntry(&d, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if k := int(d.u8()); d.err == nil {
		if k != 0 && k != sealedKeySize {
			return nil, nil, nil, fmt.Errorf("%w: a sealed-mode key of %d bytes", ErrMalformed, k)
		}
		if k != 0 {
			ni.SealedKey = d.bytes(k)
		}
	}
	if err := d.finish("descriptor"); err != nil {
		return nil, nil, nil, err
	}
	desc.node = ni
	return desc, body, sig, nil
}

// verifyDescriptor checks the signature, then that the node's onion key is
// a valid point, its OpenPGP key parses and its processor is known.
func verifyDescriptor(d *descriptor, body, sig []byte) error {
	if !ed25519.Verify(d.identity, append([]byte(descriptorContext), body...), sig) {
		return fmt.Errorf("%w: descriptor", ErrBadSignature)
	}
	key, err := onionaddr.Decode(d.node.Onion.ServiceID)
	if err == nil {
		err = onionaddr.CheckKey(key)
	}
	if err != nil {
		return fmt.Errorf("%w: descriptor onion key: %w", ErrMalformed, err)
	}
	pk, err := layer.ParsePublicKey(d.node.PublicKey)
	if err != nil {
		return fmt.Errorf("descriptor public key: %w", err)
	}
	d.node.pub = pk
	if d.node.SealedKey != nil {
		if _, err := sealed.ParsePublicKey(d.node.SealedKey); err != nil {
			return fmt.Errorf("descriptor sealed-mode key: %w", err)
		}
	}
	if _, err := NewProcessor(d.node.Processor); err != nil {
		return err
	}
	return nil
}

// nodeHello asks the Primary for the next cycle.
//
//	0  1   version (2)
//	1  32  the node's identity public key
//	33 16  the id of the last cycle the node joined (zero: none)
type nodeHello struct {
	identity ed25519.PublicKey
	after    [16]byte
}

func (h *nodeHello) marshal() []byte {
	b := append([]byte{remoteVersion}, h.identity...)
	return append(b, h.after[:]...)
}

func parseNodeHello(b []byte) (*nodeHello, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != remoteVersion {
		return nil, fmt.Errorf("%w: hello version %d", ErrUnsupportedVersion, v)
	}
	h := &nodeHello{identity: bytes.Clone(d.bytes(ed25519.PublicKeySize))}
	copy(h.after[:], d.bytes(16))
	if err := d.finish("node hello"); err != nil {
		return nil, err
	}
	return h, nil
}

// nodeCycle is the Primary's answer to a hello: the cycle it is gathering.
//
//	0  1   version (2)
//	1  16  cycle id
//	17 8   not before, unix seconds
//	25 8   not after, unix seconds
//	33 4   grace, seconds
//	37 4   milliseconds left before the descriptor deadline
//	41 3   the protocol announcement, as in the payload
type nodeCycle struct {
	cycle Cycle
	wait  time.Duration
}

func (c *nodeCycle) marshal() []byte {
	b := make([]byte, 0, 44)
	b = append(b, remoteVersion)
	b = append(b, c.cycle.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.cycle.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.cycle.NotAfter.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.cycle.Grace/time.Second))
	b = binary.BigEndian.AppendUint32(b, budgetMS(c.wait))
	codes, err := protocolCodes(c.cycle.Protocol, c.cycle.Sealed)
	if err != nil {
		codes = [3]byte{} // a Primary's cycle always has a valid protocol
	}
	return append(b, codes[:]...)
}

func parseNodeCycle(b []byte) (*nodeCycle, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != remoteVersion {
		return nil, fmt.Errorf("%w: cycle version %d", ErrUnsupportedVersion, v)
	}
	c := &nodeCycle{}
	copy(c.cycle.ID[:], d.bytes(16))
	c.cycle.NotBefore = time.Unix(int64(d.u64()), 0)
	c.cycle.NotAfter = time.Unix(int64(d.u64()), 0)
	c.cycle.Grace = time.Duration(d.u32()) * time.Second
	c.wait = time.Duration(d.u32()) * time.Millisecond
	var codes [3]byte
	copy(codes[:], d.bytes(3))
	if err := d.finish("node cycle"); err != nil {
		return nil, err
	}
	var err error
	if c.cycle.Protocol, c.cycle.Sealed, err = parseProtocolCodes(codes); err != nil {
		return nil, err
	}
	if !c.cycle.NotAfter.After(c.cycle.NotBefore) {
		return nil, fmt.Errorf("%w: cycle ends before it starts", ErrMalformed)
	}
	return c, nil
}

// Peer list: the cycle's nodes as a remote node needs them to forward.
//
//	0  1   version (2)
//	1  16  cycle id
//	17 1   n = number of nodes, 1..255
//	then n times: 32 onion ed25519 key, 2 port, 2 k, k OpenPGP public key
func marshalPeers(id [16]byte, peers []NodeInfo) ([]byte, error) {
	if len(peers) == 0 || len(peers) > layer.MaxNodes {
		return nil, fmt.Errorf("ghostcomm: %d peers (1..%d)", len(peers), layer.MaxNodes)
	}
	b := append([]byte{remoteVersion}, id[:]...)
	b = append(b, byte(len(peers)))
	for i := range peers {
		key, err := onionaddr.Decode(peers[i].Onion.ServiceID)
		if err != nil {
			return nil, fmt.Errorf("ghostcomm: peer %d: %w", i, err)
		}
		b = append(b, key...)
		b = binary.BigEndian.AppendUint16(b, uint16(peers[i].Onion.Port))
		b = binary.BigEndian.AppendUint16(b, uint16(len(peers[i].PublicKey)))
		b = append(b, peers[i].PublicKey...)
	}
	return b, nil
}

// parsePeers parses a peer list. Keys are parsed (and onion keys checked)
// by Node.SetPeers and onionaddr when used.
func parsePeers(b []byte) ([16]byte, []NodeInfo, error) {
	var id [16]byte
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != remoteVersion {
		return id, nil, fmt.Errorf("%w: peer list version %d", ErrUnsupportedVersion, v)
	}
	copy(id[:], d.bytes(16))
	n := int(d.u8())
	if d.err == nil && n == 0 {
		return id, nil, fmt.Errorf("%w: empty peer list", ErrMalformed)
	}
	peers := make([]NodeInfo, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		key := d.bytes(ed25519.PublicKeySize)
		port := int(d.u16())
		pk := d.bytes(int(d.u16()))
		if d.err != nil {
			break
		}
		if port == 0 || len(pk) == 0 || len(pk) > layer.MaxPublicKeySize {
			return id, nil, fmt.Errorf("%w: peer %d", ErrMalformed, i)
		}
		if err := onionaddr.CheckKey(key); err != nil {
			return id, nil, fmt.Errorf("%w: peer %d onion key: %w", ErrMalformed, i, err)
		}
		peers = append(peers, NodeInfo{Onion: Onion{ServiceID: onionaddr.ServiceID(ed25519.PublicKey(key)), Port: port}, PublicKey: pk})
	}
	if err := d.finish("peer list"); err != nil {
		return id, nil, err
	}
	return id, peers, nil
}

// RemoteSourceConfig configures a RemoteSource.
type RemoteSourceConfig struct {
	// Wait is how long a new cycle waits for descriptors once it opens,
	// in real time; it ends early when every enrolled node has sent one,
	// and at the latest halfway to the deadline of the rotation's context
	// (a Primary's automatic rotations have PublishAhead), so that the
	// rest of the rotation has time. Zero: DefaultRemoteWait.
	Wait time.Duration
	// MaxNodes bounds the remote nodes of one cycle (1..255); descriptors
	// beyond are refused with ErrBusy. Zero: 255.
	MaxNodes int
	// Logger receives info and debug records. Nil: silent.
	Logger *slog.Logger
}

// RemoteSource is a NodeSource of nodes run by operators on other
// machines (RemoteNode), for a Primary that lists it in
// PrimaryConfig.Sources: they reach the Primary over its own onion service.
//
// It admits only enrolled node identities (ed25519 public keys), an
// allow-list that Enroll and Revoke change while it runs. When a cycle
// opens, it tells every waiting node the cycle's id and times; each node
// creates its own key pair and onion and submits a descriptor signed by its
// identity and bound to the cycle and to this Primary. The source waits
// for descriptors until Wait has passed or every enrolled node has sent
// one, leaves out nodes revoked meanwhile, and answers each admitted node
// with the cycle's peer list (onions and public keys only) once the cycle
// forms. It never holds a remote node's private key: descriptors carry only
// public keys.
//
// A RemoteSource serves one Primary. It is safe for concurrent use.
type RemoteSource struct {
	cfg RemoteSourceConfig

	refused atomic.Uint64

	mu       sync.Mutex
	enrolled map[[32]byte]string // identity -> operator label
	open     *gathering
	opened   chan struct{} // closed, then replaced, when a cycle opens
	past     []*gathering  // the last pastCycles closed gatherings
}

// gathering is one cycle's collection of descriptors.
type gathering struct {
	cycle    Cycle
	deadline time.Time
	got      map[[32]byte]int // identity -> index in infos
	onions   map[string]bool
	ids      [][32]byte
	infos    []NodeInfo
	full     chan struct{} // closed when every enrolled node has sent one
	fullSaid bool

	included map[[32]byte]bool // the identities in the cycle, once gathered
	ready    map[[32]byte]bool // those that said they have the peer list
	allReady chan struct{}     // closed when every included one has

	formed chan struct{} // closed once peers or err is set
	peers  []byte        // the encoded peer list
	err    error
}

// NewRemoteSource returns a source with no node enrolled.
func NewRemoteSource(cfg RemoteSourceConfig) (*RemoteSource, error) {
	if cfg.Wait == 0 {
		cfg.Wait = DefaultRemoteWait
	}
	if cfg.Wait < 0 {
		return nil, errors.New("ghostcomm: negative RemoteSourceConfig.Wait")
	}
	if cfg.MaxNodes == 0 {
		cfg.MaxNodes = layer.MaxNodes
	}
	if cfg.MaxNodes < 1 || cfg.MaxNodes > layer.MaxNodes {
		return nil, fmt.Errorf("ghostcomm: RemoteSourceConfig.MaxNodes must be 1..%d", layer.MaxNodes)
	}
	cfg.Logger = loggerOr(cfg.Logger)
	return &RemoteSource{cfg: cfg, enrolled: map[[32]byte]string{}, opened: make(chan struct{})}, nil
}

func idKey(pub ed25519.PublicKey) (k [32]byte, ok bool) {
	if len(pub) != ed25519.PublicKeySize {
		return k, false
	}
	copy(k[:], pub)
	return k, true
}

// Enroll adds a node identity to the allow-list, with the label of its
// operator (at most 64 bytes; empty: none), or changes its label. The
// label goes into the payload with the node's descriptor, whatever label
// the descriptor carries: an operator cannot pass its nodes off as
// another's. Give every node of one operator the same label, so that the
// default route takes at most one of them.
func (s *RemoteSource) Enroll(id ed25519.PublicKey, operator string) error {
	k, ok := idKey(id)
	if !ok {
		return fmt.Errorf("%w: identity key of %d bytes", ErrMalformed, len(id))
	}
	if len(operator) > maxOperatorSize {
		return fmt.Errorf("%w: operator label of %d bytes", ErrMalformed, len(operator))
	}
	s.mu.Lock()
	s.enrolled[k] = operator
	s.mu.Unlock()
	return nil
}

// Revoke removes a node identity from the allow-list: its hellos and
// descriptors are refused with ErrNotEnrolled from now on, and it is left
// out of the cycle being gathered, if it has not formed yet, and of every
// later one. A cycle already formed keeps it until it is retired.
func (s *RemoteSource) Revoke(id ed25519.PublicKey) {
	k, ok := idKey(id)
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.enrolled, k)
	if g := s.open; g != nil {
		s.checkFullLocked(g)
	}
	s.mu.Unlock()
}

// Enrolled reports whether id is on the allow-list.
func (s *RemoteSource) Enrolled(id ed25519.PublicKey) bool {
	k, _ := idKey(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.enrolled[k]
	return ok
}

// Refused counts hellos and descriptors refused.
func (s *RemoteSource) Refused() uint64 { return s.refused.Load() }

// checkFullLocked closes g.full when every enrolled identity has a
// descriptor in g. s.mu is held.
func (s *RemoteSource) checkFullLocked(g *gathering) {
	if g.fullSaid {
		return
	}
	n := 0
	for _, id := range g.ids {
		if _, ok := s.enrolled[id]; ok {
			n++
		}
	}
	if n >= len(s.enrolled) || len(g.infos) >= s.cfg.MaxNodes {
		g.fullSaid = true
		close(g.full)
	}
}

// CycleNodes opens cycle c to descriptors, waits for them (Wait, or until
// every enrolled node has sent one, or ctx ends), and returns the nodes of
// enrolled identities, in the order their descriptors came.
func (s *RemoteSource) CycleNodes(ctx context.Context, c *Cycle) (CycleNodes, error) {
	wait := s.cfg.Wait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	g := &gathering{
		cycle:    Cycle{ID: c.ID, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Grace: c.Grace, Protocol: protocolOf(c.Protocol), Sealed: c.Sealed},
		deadline: time.Now().Add(wait),
		got:      map[[32]byte]int{}, onions: map[string]bool{},
		full: make(chan struct{}), formed: make(chan struct{}),
	}
	s.mu.Lock()
	s.open = g
	close(s.opened)
	s.opened = make(chan struct{})
	if len(s.enrolled) == 0 {
		g.fullSaid = true
		close(g.full)
	}
	s.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	var err error
	select {
	case <-g.full:
	case <-t.C:
	case <-ctx.Done():
		err = ctx.Err()
	}

	s.mu.Lock()
	s.open = nil
	s.past = append(s.past, g)
	if len(s.past) > pastCycles {
		s.past = s.past[1:]
	}
	rn := &remoteNodes{g: g, s: s}
	g.included, g.ready, g.allReady = map[[32]byte]bool{}, map[[32]byte]bool{}, make(chan struct{})
	for i, id := range g.ids {
		if op, ok := s.enrolled[id]; ok {
			g.infos[i].Operator = op // the label it is enrolled with now
			rn.infos = append(rn.infos, g.infos[i])
			g.included[id] = true
		}
	}
	if len(g.included) == 0 {
		close(g.allReady)
	}
	s.mu.Unlock()
	s.cfg.Logger.Info("remote descriptors gathered", "cycle", fmt.Sprintf("%x", c.ID), "nodes", len(rn.infos), "submitted", len(g.ids))
	if err != nil {
		rn.Close()
		return nil, err
	}
	return rn, nil
}

// remoteNodes are one cycle's remote nodes, as the Primary knows them.
type remoteNodes struct {
	s     *RemoteSource
	g     *gathering
	infos []NodeInfo
	once  sync.Once
}

func (rn *remoteNodes) Infos() []NodeInfo { return rn.infos }

// Start answers every waiting descriptor with the peer list, then waits
// until every node has said it set its peers (NodeReady), so that no
// client is handed a node that cannot forward yet; at most maxReadyWait,
// or until ctx ends: a node that does not say so stays in the cycle.
func (rn *remoteNodes) Start(ctx context.Context, peers []NodeInfo) error {
	b, err := marshalPeers(rn.g.cycle.ID, peers)
	rn.finish(b, err)
	if err != nil {
		return err
	}
	t := time.NewTimer(maxReadyWait)
	defer t.Stop()
	select {
	case <-rn.g.allReady:
	case <-t.C:
		rn.s.cfg.Logger.Warn("remote nodes did not all say they are ready", "cycle", fmt.Sprintf("%x", rn.g.cycle.ID))
	case <-ctx.Done():
	}
	return nil
}

// Close answers the waiting descriptors, if the cycle did not form, with
// ErrTooFewNodes. Remote nodes retire themselves.
func (rn *remoteNodes) Close() error {
	rn.finish(nil, fmt.Errorf("%w: the cycle did not form", ErrTooFewNodes))
	return nil
}

func (rn *remoteNodes) finish(peers []byte, err error) {
	rn.once.Do(func() {
		rn.g.peers, rn.g.err = peers, err
		close(rn.g.formed)
	})
}

// handle answers a remote node's hello or descriptor; primary is the
// fingerprint descriptors must be bound to.
func (s *RemoteSource) handle(ctx context.Context, r *transport.Request, primary Fingerprint) (wire.Type, [][]byte) {
	var typ wire.Type
	var body []byte
	var err error
	switch r.Type {
	case wire.NodeHello:
		body, err = s.hello(ctx, r)
		typ = wire.NodeCycle
	case wire.NodeReady:
		err = s.nodeReady(r.Body)
		typ = wire.NodeReady
	default:
		body, err = s.descriptor(ctx, r, primary)
		typ = wire.NodePeers
	}
	if err != nil {
		s.refused.Add(1)
		s.cfg.Logger.Debug("remote node refused", "frame", r.Type.String(), "err", err)
		return wire.Reject, [][]byte{{byte(rejectFor(err))}}
	}
	return typ, [][]byte{body}
}

// nodeReady records that a node of a formed cycle has set its peers.
func (s *RemoteSource) nodeReady(b []byte) error {
	h, err := parseNodeHello(b) // the same layout: identity, cycle id
	if err != nil {
		return err
	}
	id, _ := idKey(h.identity)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.past {
		if g.cycle.ID != h.after {
			continue
		}
		if g.included == nil || !g.included[id] {
			return ErrNotEnrolled
		}
		if !g.ready[id] {
			g.ready[id] = true
			if len(g.ready) == len(g.included) {
				close(g.allReady)
			}
		}
		return nil
	}
	return ErrWrongCycle
}

// hello waits for a cycle other than the one named in the hello to open,
// and answers with its id and times. Nothing in the answer is secret (a
// payload carries it too); the identity must still be enrolled.
func (s *RemoteSource) hello(ctx context.Context, r *transport.Request) ([]byte, error) {
	h, err := parseNodeHello(r.Body)
	if err != nil {
		return nil, err
	}
	if !s.Enrolled(h.identity) {
		return nil, ErrNotEnrolled
	}
	if err := r.Park(0); err != nil {
		return nil, err
	}
	t := time.NewTimer(maxHelloWait)
	defer t.Stop()
	for {
		s.mu.Lock()
		g, opened := s.open, s.opened
		s.mu.Unlock()
		if g != nil && g.cycle.ID != h.after {
			nc := nodeCycle{cycle: g.cycle, wait: time.Until(g.deadline)}
			return nc.marshal(), nil
		}
		select {
		case <-opened:
		case <-t.C:
			return nil, fmt.Errorf("%w: no cycle opened; ask again", ErrStaleCycle)
		case <-r.Gone():
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ErrClosed
		}
	}
}

// admit checks a signed descriptor against the source's allow-list and
// the cycle it is gathering, for a Primary whose key has fingerprint
// primary, and records it. Errors: ErrMalformed or ErrUnsupportedVersion
// (structure), ErrNotEnrolled, ErrBadSignature, ErrWrongCycle (no open
// cycle has its id, or it names another Primary or other times),
// ErrDescriptorReplay (its identity already submitted for that cycle),
// ErrLate (its cycle stopped gathering before it came), ErrBusy (the cycle
// has MaxNodes nodes), ErrUnknownProcessor. On success it returns the
// gathering, whose formed channel is closed when the cycle forms or fails.
func (s *RemoteSource) admit(b []byte, primary Fingerprint) (*gathering, [32]byte, error) {
	d, body, sig, err := parseDescriptor(b)
	if err != nil {
		return nil, [32]byte{}, err
	}
	if !s.Enrolled(d.identity) {
		return nil, [32]byte{}, ErrNotEnrolled
	}
	// The label is the Primary's to give (Enroll), not the node's.
	d.node.Operator = ""
	if err := verifyDescriptor(d, body, sig); err != nil {
		return nil, [32]byte{}, err
	}
	if d.primary != primary {
		return nil, [32]byte{}, fmt.Errorf("%w: descriptor for another Primary", ErrWrongCycle)
	}
	id, _ := idKey(d.identity)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.open
	if g == nil || g.cycle.ID != d.cycle {
		for _, pg := range s.past {
			if pg.cycle.ID == d.cycle {
				if _, ok := pg.got[id]; ok {
					return nil, id, ErrDescriptorReplay
				}
				return nil, id, ErrLate
			}
		}
		return nil, id, ErrWrongCycle
	}
	if d.notBefore != g.cycle.NotBefore.Unix() {
		return nil, id, fmt.Errorf("%w: not before %d", ErrWrongCycle, d.notBefore)
	}
	if (g.cycle.Protocol == ProtocolSealed) != (d.node.SealedKey != nil) {
		return nil, id, fmt.Errorf("%w: a descriptor with %d sealed-mode key bytes for a %s cycle", ErrBadProtocol, len(d.node.SealedKey), g.cycle.Protocol)
	}
	if _, ok := g.got[id]; ok {
		return nil, id, ErrDescriptorReplay
	}
	if g.onions[d.node.Onion.ServiceID] {
		return nil, id, fmt.Errorf("%w: onion already in the cycle", ErrMalformed)
	}
	if len(g.infos) >= s.cfg.MaxNodes {
		return nil, id, fmt.Errorf("%w: the cycle has %d remote nodes", ErrBusy, len(g.infos))
	}
	g.got[id] = len(g.infos)
	g.ids = append(g.ids, id)
	g.onions[d.node.Onion.ServiceID] = true
	g.infos = append(g.infos, d.node)
	s.checkFullLocked(g)
	return g, id, nil
}

// descriptor admits a descriptor and waits for its cycle to form.
func (s *RemoteSource) descriptor(ctx context.Context, r *transport.Request, primary Fingerprint) ([]byte, error) {
	g, id, err := s.admit(r.Body, primary)
	if err != nil {
		return nil, err
	}
	if err := r.Park(0); err != nil {
		return nil, err
	}
	t := time.NewTimer(time.Until(g.deadline) + maxFormWait)
	defer t.Stop()
	select {
	case <-g.formed:
	case <-t.C:
		return nil, fmt.Errorf("%w: the cycle did not form in time", ErrTooFewNodes)
	case <-r.Gone():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ErrClosed
	}
	if g.err != nil {
		return nil, g.err
	}
	if !g.included[id] {
		return nil, fmt.Errorf("%w: revoked before the cycle formed", ErrNotEnrolled)
	}
	return g.peers, nil
}
