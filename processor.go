package ghostcomm

import (
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ProcessorSpec names a registered processor and its parameters. The Primary
// assigns one to each Node of a lock-cycle and lists it in the payload, so a
// client knows what each hop does to its data.
type ProcessorSpec struct {
	Name   string
	Params map[string]string
}

// String renders the spec as "name(k=v, ...)" with keys in order.
func (s ProcessorSpec) String() string {
	if len(s.Params) == 0 {
		return s.Name
	}
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('(')
	for i, k := range slices.Sorted(maps.Keys(s.Params)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(s.Params[k])
	}
	b.WriteByte(')')
	return b.String()
}

// Processor transforms the data passing through a hop.
//
// Process must be safe for concurrent use, must not retain data or modify it
// in place (a relaying node reuses data's buffer to seal the output for the
// next hop once Process returns), and must return an error rather than output larger than the
// frame limit allows. An error is reported to the client as ErrProcessing,
// attributed to the hop.
type Processor interface {
	Process(data []byte) ([]byte, error)
}

// ProcessorFunc adapts a function to the Processor interface.
type ProcessorFunc func(data []byte) ([]byte, error)

// Process calls f(data).
func (f ProcessorFunc) Process(data []byte) ([]byte, error) { return f(data) }

// ProcessorKind is a kind of processor that can be registered by name.
type ProcessorKind struct {
	// Name is what ProcessorSpec.Name refers to: 1 to 64 bytes.
	Name string
	// Deterministic reports that equal input and parameters always give
	// equal output, so a client can compute the expected result of a route
	// and detect a hop that skipped or altered its processing.
	Deterministic bool
	// New makes a processor from parameters. It must reject parameters it
	// does not understand.
	New func(params map[string]string) (Processor, error)
}

var registry = struct {
	sync.RWMutex
	kinds map[string]ProcessorKind
}{kinds: map[string]ProcessorKind{}}

// RegisterProcessor makes a processor kind available to every Primary, Node
// and Client of this program under its name. Registering a name twice is an
// error. Nodes and the clients that verify their results must register the
// same kinds.
func RegisterProcessor(k ProcessorKind) error {
	if k.Name == "" || len(k.Name) > 64 || k.New == nil {
		return fmt.Errorf("ghostcomm: invalid processor kind %q", k.Name)
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.kinds[k.Name]; dup {
		return fmt.Errorf("ghostcomm: processor %q already registered", k.Name)
	}
	registry.kinds[k.Name] = k
	return nil
}

func lookupProcessor(name string) (ProcessorKind, bool) {
	registry.RLock()
	defer registry.RUnlock()
	k, ok := registry.kinds[name]
	return k, ok
}

// NewProcessor makes the processor a spec describes. The error matches
// ErrUnknownProcessor when the name is not registered or the parameters are
// rejected.
func NewProcessor(spec ProcessorSpec) (Processor, error) {
	k, ok := lookupProcessor(spec.Name)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not registered", ErrUnknownProcessor, spec.Name)
	}
	p, err := k.New(spec.Params)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnknownProcessor, spec.Name, err)
	}
	return p, nil
}

// isDeterministic reports whether the spec's kind is registered and
// deterministic.
func isDeterministic(spec ProcessorSpec) bool {
	k, ok := lookupProcessor(spec.Name)
	return ok && k.Deterministic
}

func init() {
	for _, k := range []ProcessorKind{
		{Name: "identity", Deterministic: true, New: newIdentity},
		{Name: "hash", Deterministic: true, New: newHashProcessor},
	} {
		if err := RegisterProcessor(k); err != nil {
			panic(err)
		}
	}
}

// IdentitySpec is the built-in processor that passes data through unchanged.
var IdentitySpec = ProcessorSpec{Name: "identity"}

func newIdentity(params map[string]string) (Processor, error) {
	if len(params) != 0 {
		return nil, fmt.Errorf("identity takes no parameters")
	}
	// The input itself, not a copy: a relaying node then seals it for the
	// next hop where it lies.
	return ProcessorFunc(func(b []byte) ([]byte, error) { return b, nil }), nil
}

// Limits of the built-in hash processor's parameters.
const (
	MaxHashRounds  = 10000
	MaxHashSaltLen = 64
)

var hashes = map[string]func() hash.Hash{
	"sha256":   sha256.New,
	"sha384":   sha512.New384,
	"sha512":   sha512.New,
	"sha3-256": func() hash.Hash { return sha3.New256() },
	"sha3-512": func() hash.Hash { return sha3.New512() },
}

// HashAlgorithms lists the algorithms of the built-in "hash" processor.
func HashAlgorithms() []string { return slices.Sorted(maps.Keys(hashes)) }

// HashSpec describes the built-in "hash" processor, the seed's per-node
// processing: out = H(salt || in), repeated rounds times over the previous
// digest (each round H(salt || digest)), written as lowercase hex (the
// default) or raw bytes. alg is one of HashAlgorithms.
func HashSpec(alg string, salt []byte, rounds int, hexOutput bool) ProcessorSpec {
	out := "raw"
	if hexOutput {
		out = "hex"
	}
	return ProcessorSpec{Name: "hash", Params: map[string]string{
		"alg":    alg,
		"salt":   hex.EncodeToString(salt),
		"rounds": strconv.Itoa(rounds),
		"output": out,
	}}
}

type hashProcessor struct {
	newHash func() hash.Hash
	salt    []byte
	rounds  int
	hex     bool
}

func newHashProcessor(params map[string]string) (Processor, error) {
	p := &hashProcessor{newHash: sha256.New, rounds: 1, hex: true}
	for k, v := range params {
		switch k {
		case "alg":
			h, ok := hashes[v]
			if !ok {
				return nil, fmt.Errorf("unknown hash algorithm %q", v)
			}
			p.newHash = h
		case "salt":
			s, err := hex.DecodeString(v)
			if err != nil || len(s) > MaxHashSaltLen {
				return nil, fmt.Errorf("salt must be at most %d hex-encoded bytes", MaxHashSaltLen)
			}
			p.salt = s
		case "rounds":
			r, err := strconv.Atoi(v)
			if err != nil || r < 1 || r > MaxHashRounds {
				return nil, fmt.Errorf("rounds must be 1..%d", MaxHashRounds)
			}
			p.rounds = r
		case "output":
			switch v {
			case "hex":
				p.hex = true
			case "raw":
				p.hex = false
			default:
				return nil, fmt.Errorf("output must be hex or raw")
			}
		default:
			return nil, fmt.Errorf("unknown parameter %q", k)
		}
	}
	return p, nil
}

func (p *hashProcessor) Process(data []byte) ([]byte, error) {
	h := p.newHash()
	h.Write(p.salt)
	h.Write(data)
	sum := h.Sum(nil)
	for i := 1; i < p.rounds; i++ {
		h.Reset()
		h.Write(p.salt)
		h.Write(sum)
		sum = h.Sum(sum[:0])
	}
	if p.hex {
		return hex.AppendEncode(nil, sum), nil
	}
	return sum, nil
}
