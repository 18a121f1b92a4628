// Package ghostcomm is a multi-hop, layered-encrypted message network over Tor
// v3 onion services.
//
// Three roles make up a network:
//
//   - A [Primary] is the discovery point. It listens on its own onion
//     service, owns a pool of [Node]s, and hands each [Client] that asks a
//     lock-cycle payload: the nodes' onion addresses, OpenPGP public keys and
//     processing configurations, encrypted so that only the asking client can
//     read it and signed by the Primary. It replaces the whole pool (new
//     keys, new onions) every rotation period; the previous pool stays up for
//     a grace window so messages in flight finish.
//   - A [Node] is one hop. It has its own onion service and its own OpenPGP
//     key pair, valid for one lock-cycle. Per message it peels its layer,
//     checks freshness and replay, applies its [Processor] to the data,
//     re-encrypts the result for the next hop with that hop's public key,
//     forwards it, and relays the answer back. The last hop encrypts the
//     result for the client.
//   - A [Client] fetches the payload from the Primary, builds one layer per
//     hop, sends the message to the first hop and reads the answer, which no
//     hop on the way back can read.
//
// Tor is reached through two small interfaces, [TorController] (create and
// remove onion services) and [Dialer] (connect to an onion address). Package
// torctl implements them on a real tor; package torctl/tortest implements them
// in process, so a whole network runs in one test with no tor installed.
//
// # Lock-cycles
//
// A cycle is valid from NotBefore to NotAfter (PrimaryConfig.Period, ten
// minutes by default). Its successor's nodes are created and their onions
// published PublishAhead before it ends; only then is the new cycle handed to
// clients. The old nodes serve until NotAfter plus Grace, so messages in
// flight finish, then their onions are removed and their private keys wiped.
// Clients fetch the next payload by themselves when theirs ends.
//
// # Security
//
// Each hop can open only its own layer (a fresh key wrapped for its
// curve25519 OpenPGP key, then a Fernet token), and learns the data it
// processes, its successor, and nothing of the route beyond or of the
// client. The answer is sealed for the client alone. Layers, payloads and
// failure reports are authenticated: any altered byte is refused with a
// typed error. Hops refuse replays within a cycle and messages made for
// another cycle. The design does not hide the data from the hops (they
// process it), hides the route length only partly, and trusts the Primary,
// which owns its local nodes (a [RemoteSource]'s nodes keep their keys with
// their operators). docs/PROTOCOL.md has the byte layouts and the full
// threat model.
//
// # Sealed mode
//
// A Primary may choose a second protocol for its cycles
// (PrimaryConfig.Protocol = ProtocolSealed): every packet and every reply is
// exactly one of two sizes (2 KiB or 32 KiB) whatever the route's length,
// each hop does one X25519 and adds a layer to the reply on its way back,
// and every hop gets the same budget, so that neither a packet's size, nor
// its bytes, nor its budget tell a hop its position or how many hops follow.
// In the chain form hops still process the data (which itself may hint at
// a hop's position) and the client verifies the result; in the relay form
// only the exit sees the data. The payload announces the protocol, and
// clients follow it.
package ghostcomm

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/layer"
)

// DefaultOnionPort is the virtual port of every onion service that a Primary
// or Node creates when its Config leaves OnionPort zero.
const DefaultOnionPort = 80

// OnionConfig describes an ephemeral v3 onion service to create.
type OnionConfig struct {
	// VirtualPort is the port clients dial at the onion address.
	VirtualPort int

	// Target is the local TCP address ("127.0.0.1:port") to which the
	// service forwards each incoming stream.
	Target string

	// Key, if not nil, is the service's ed25519 identity key. Nil asks the
	// controller to generate a fresh one, which is what ephemeral services
	// want: nothing links two services to each other.
	Key ed25519.PrivateKey

	// ClientAuth, if not empty, lists the x25519 public keys of the clients
	// allowed to reach the service (v3 client authorization). Tor refuses
	// every other client before any byte reaches Target.
	ClientAuth [][32]byte

	// NoWait makes CreateOnion return as soon as the service is registered,
	// without waiting for its descriptor to be published.
	NoWait bool

	// PoW turns on Tor's proof-of-work defence for the service. The zero
	// value leaves it off. Where the tor in use does not support it, the
	// controller says what it does: torctl creates the service without it
	// and logs a warning.
	PoW PoWConfig
}

// PoWConfig configures Tor's proof-of-work defence of an onion service
// (ADD_ONION's PoWDefensesEnabled, PoWQueueRate and PoWQueueBurst: tor
// 0.4.9.2 or later, built with the pow module). With it, tor puts every
// introduction in a priority queue ordered by the work its client did, and
// when the queue grows it asks clients, in the service's descriptor, to solve
// a puzzle whose effort follows the load: a flood of introductions costs the
// flooder CPU time per circuit, and clients that pay more are served first.
// Without load the suggested effort is zero and clients pay nothing. Clients
// whose tor does not solve puzzles are served after those that do.
//
// The zero value is off.
type PoWConfig struct {
	// Enabled turns the defence on.
	Enabled bool
	// QueueRate is the sustained number of introductions per second tor
	// takes from the priority queue to build rendezvous circuits. Zero:
	// tor's default. Setting it without Enabled is an error.
	QueueRate uint32
	// QueueBurst is the largest burst of introductions tor takes from the
	// queue at once. Zero: tor's default. Setting it without Enabled is an
	// error.
	QueueBurst uint32
}

// Onion is an onion service created by a TorController.
type Onion struct {
	// ServiceID is the 56-character base32 v3 address without ".onion".
	ServiceID string
	// Port is the virtual port.
	Port int
}

// Addr returns the dialable address "<ServiceID>.onion:<Port>".
func (o Onion) Addr() string {
	return net.JoinHostPort(o.ServiceID+".onion", strconv.Itoa(o.Port))
}

// TorController creates and removes ephemeral onion services.
//
// Implementations must be safe for concurrent use. CreateOnion blocks until
// the service is published (unless OnionConfig.NoWait is set) or ctx ends;
// when it returns an error no service is left behind. RemoveOnion is
// idempotent: removing a service that does not exist, or no longer exists,
// returns nil. The controller does not own the local listener at Target; the
// caller closes it.
type TorController interface {
	CreateOnion(ctx context.Context, conf OnionConfig) (Onion, error)
	RemoveOnion(ctx context.Context, serviceID string) error
}

// Dialer connects to onion addresses ("<id>.onion:port").
//
// Implementations must be safe for concurrent use and honour ctx for the whole
// dial. A dial to an onion service whose descriptor cannot be found fails
// with an error matching ErrOnionNotFound; other failures to reach a service
// match ErrOnionUnreachable. A real tor cannot always tell the two apart: a
// removed service's descriptor stays on the directories until it expires, so
// dials to it fail as unreachable. golang.org/x/net/proxy's ContextDialer has
// this shape.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ClientAuthorizer gives tor the x25519 private key of a v3 client
// authorization (ONION_CLIENT_AUTH_ADD), so that it can reach an onion
// service that requires one. A Client whose invite carries such a key gives
// it to ClientConfig.Authorizer, or else to its Dialer if the Dialer
// implements ClientAuthorizer. Adding a key for a service that already has
// one replaces it.
type ClientAuthorizer interface {
	AddClientAuth(ctx context.Context, serviceID string, key [32]byte) error
}

// Errors that callers may match with errors.Is.
var (
	// ErrOnionNotFound: the onion service's descriptor could not be found
	// (tor SOCKS reply 0xF0). The service was never published or was removed.
	ErrOnionNotFound = errors.New("ghostcomm: onion service not found")

	// ErrOnionUnreachable: the onion service exists but could not be reached
	// (introduction or rendezvous failed, client authorization missing...).
	ErrOnionUnreachable = errors.New("ghostcomm: onion service unreachable")

	// ErrClosed: the Primary, Node or Client was closed. A Client returns
	// it from every Fetch and Send that starts after Close, or was under
	// way when Close was called.
	ErrClosed = errs.ErrClosed

	// ErrFrameTooLarge: a frame announced a body larger than the limit (the
	// body was not read), or a Client's message would make one: Send
	// returns it before anything is sent.
	ErrFrameTooLarge = errs.ErrFrameTooLarge

	// ErrMalformed: bytes that do not parse as the expected structure.
	ErrMalformed = errs.ErrMalformed

	// ErrUnsupportedVersion: a frame, layer or payload of a version this
	// code does not speak.
	ErrUnsupportedVersion = errs.ErrUnsupportedVersion

	// ErrAuth: authenticated decryption failed. The bytes were altered, or
	// they were not encrypted for this key.
	ErrAuth = errs.ErrAuth

	// ErrBadSignature: the lock-cycle payload's signature does not verify
	// against the pinned Primary key.
	ErrBadSignature = errors.New("ghostcomm: bad signature")

	// ErrWrongPrimary: the payload was signed by a key other than the one
	// the client pinned.
	ErrWrongPrimary = errors.New("ghostcomm: payload signed by an unexpected primary key")

	// ErrReplay: a hop has already seen this layer in this lock-cycle.
	ErrReplay = errs.ErrReplay

	// ErrStaleCycle: the lock-cycle the message or payload was made for is
	// not valid at this time.
	ErrStaleCycle = errors.New("ghostcomm: lock-cycle expired or not yet valid")

	// ErrUnknownProcessor: a processing configuration names a processor that
	// is not registered, or gives it parameters it rejects.
	ErrUnknownProcessor = errors.New("ghostcomm: unknown processor or bad parameters")

	// ErrProcessing: a hop's processor failed on the data.
	ErrProcessing = errors.New("ghostcomm: processing failed")

	// ErrHopUnreachable: a hop could not be reached by the hop (or client)
	// before it.
	ErrHopUnreachable = errors.New("ghostcomm: hop unreachable")

	// ErrHopTimeout: a hop did not answer before the deadline.
	ErrHopTimeout = errors.New("ghostcomm: hop timed out")

	// ErrRejected: a hop refused the message without saying why in an
	// authenticated way (it could not open its layer).
	ErrRejected = errors.New("ghostcomm: rejected by hop")

	// ErrBusy: a hop refused the message for lack of capacity.
	ErrBusy = errs.ErrBusy

	// ErrBudget: the message's budget (the time its sender will wait) was
	// below MinBudget when it reached a hop, or when the client was about
	// to send it.
	ErrBudget = errors.New("ghostcomm: message budget below the floor")

	// ErrVerify: the final result differs from the result the client
	// expected from the chain's deterministic processors.
	ErrVerify = errors.New("ghostcomm: result does not match the expected processing")

	// ErrBadInvite: an invite string does not parse.
	ErrBadInvite = errors.New("ghostcomm: bad invite")

	// ErrNotEnrolled: a remote node's identity is not (or no longer) on
	// the Primary's allow-list (RemoteSource.Enroll, Revoke).
	ErrNotEnrolled = errors.New("ghostcomm: node identity not enrolled")

	// ErrWrongCycle: a node descriptor is bound to a cycle that is not the
	// one the Primary is gathering, or to another Primary.
	ErrWrongCycle = errors.New("ghostcomm: descriptor for another lock-cycle")

	// ErrDescriptorReplay: a node descriptor was already submitted: the
	// same identity twice in one cycle, or a descriptor of a past cycle.
	ErrDescriptorReplay = errors.New("ghostcomm: replayed node descriptor")

	// ErrLate: a node descriptor arrived after its cycle's deadline.
	ErrLate = errors.New("ghostcomm: node descriptor after the deadline")

	// ErrTooFewNodes: a new lock-cycle gathered fewer nodes than
	// PrimaryConfig.MinNodes; the current cycle stays handed out and the
	// rotation is tried again.
	ErrTooFewNodes = errors.New("ghostcomm: too few nodes for a lock-cycle")
)

// LayerOverhead is the number of bytes each hop adds to a message's onion:
// a curve25519 PKESK (96), a Fernet token's overhead (57), a one-byte header
// and 6 bytes of block padding.
const LayerOverhead = layer.Overhead

// Fingerprint is the SHA-256 fingerprint of an OpenPGP public key: SHA-256
// over the primary key's public-key packet, as gopenpgp's
// GetSHA256Fingerprint computes it. Clients pin a Primary by it.
type Fingerprint [32]byte

// String returns the fingerprint in lowercase hex.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// HopError reports a failure attributed to one hop of a route.
type HopError struct {
	// Hop is the 1-based position of the hop in the route.
	Hop int
	// Onion is the hop's onion address ("<id>.onion:port").
	Onion string
	// Err is the cause; it matches one of the package's sentinel errors.
	Err error
}

// Error describes the failure and names the hop.
func (e *HopError) Error() string {
	return fmt.Sprintf("ghostcomm: hop %d (%s): %v", e.Hop, e.Onion, e.Err)
}

// Unwrap returns the cause.
func (e *HopError) Unwrap() error { return e.Err }

// Clock is the time source of a Primary, Node or Client: tests inject a fake
// one to run a day of lock-cycle rotations in milliseconds. The zero Config
// uses the system clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless
	// stop is called first; stop reports whether it prevented the call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// SystemClock is the real clock.
var SystemClock Clock = systemClock{}
