package ghostcomm

import (
	"bytes"
	"errors"
	"testing"
)

// sealedSeed makes a seed payload sealed, with a distinct key per node.
func sealedSeed(p *payload, s SealedConfig) *payload {
	p.cycle.Protocol, p.cycle.Sealed = ProtocolSealed, s
	for i := range p.cycle.Nodes {
		p.cycle.Nodes[i].SealedKey = bytes.Repeat([]byte{byte(i + 1)}, sealedKeySize)
	}
	return p
}

func TestPayloadProtocolRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		p    Protocol
		s    SealedConfig
	}{
		{"layered", ProtocolLayered, SealedConfig{}},
		{"chain large", ProtocolSealed, SealedConfig{Form: FormChain, MaxPacket: SealedLarge}},
		{"chain small", ProtocolSealed, SealedConfig{Form: FormChain, MaxPacket: SealedSmall}},
		{"relay large", ProtocolSealed, SealedConfig{Form: FormRelay, MaxPacket: SealedLarge}},
		{"relay small", ProtocolSealed, SealedConfig{Form: FormRelay, MaxPacket: SealedSmall}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := seedPayload(t, 3)
			if tc.p == ProtocolSealed {
				sealedSeed(p, tc.s)
			} else {
				p.cycle.Protocol = tc.p
			}
			b, err := p.marshal()
			if err != nil {
				t.Fatal(err)
			}
			q, err := parsePayload(b)
			if err != nil {
				t.Fatal(err)
			}
			if q.cycle.Protocol != tc.p || q.cycle.Sealed != tc.s {
				t.Fatalf("parsed %q %+v, want %q %+v", q.cycle.Protocol, q.cycle.Sealed, tc.p, tc.s)
			}
			for i, n := range q.cycle.Nodes {
				if !bytes.Equal(n.SealedKey, p.cycle.Nodes[i].SealedKey) {
					t.Fatalf("node %d: sealed key %x, want %x", i, n.SealedKey, p.cycle.Nodes[i].SealedKey)
				}
			}
		})
	}
}

// The announcement's three bytes take only the values protocolCodes
// writes: every other value of each byte is ErrMalformed.
func TestPayloadProtocolBytesChecked(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		p := seedPayload(t, 2)
		if sealed {
			sealedSeed(p, SealedConfig{Form: FormRelay, MaxPacket: SealedSmall})
		}
		b, err := p.marshal()
		if err != nil {
			t.Fatal(err)
		}
		at := len(b) - 3
		if sealed {
			at -= 2 * sealedKeySize
		}
		good := b[at : at+3]
		for pos := range 3 {
			for v := range 256 {
				mut := bytes.Clone(b)
				mut[at+pos] = byte(v)
				codes := [3]byte(mut[at : at+3])
				valid := codes == [3]byte{codeLayered, 0, 0} ||
					codes[0] == codeSealed && (codes[1] == codeChain || codes[1] == codeRelay) && (codes[2] == codeSmall || codes[2] == codeLarge)
				_, err := parsePayload(mut)
				switch {
				case bytes.Equal(mut[at:at+3], good):
					if err != nil {
						t.Fatalf("unchanged payload refused: %v", err)
					}
				case !valid:
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("sealed=%v, byte %d = %d: got %v, want ErrMalformed", sealed, pos, v, err)
					}
				default:
					// A valid announcement of the other protocol: the keys
					// that follow (or their absence) no longer fit.
					if (codes[0] == codeSealed) != sealed && !errors.Is(err, ErrMalformed) {
						t.Fatalf("sealed=%v announced as %x: got %v, want ErrMalformed", sealed, codes, err)
					}
				}
			}
		}
	}
}

func TestPayloadSealedKeysExactLength(t *testing.T) {
	p := sealedSeed(seedPayload(t, 3), SealedConfig{Form: FormChain, MaxPacket: SealedLarge})
	b, err := p.marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, sealedKeySize, 3 * sealedKeySize} {
		if _, err := parsePayload(b[:len(b)-cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("sealed keys cut by %d: got %v, want ErrMalformed", cut, err)
		}
	}
	if _, err := parsePayload(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a trailing byte: got %v, want ErrMalformed", err)
	}
	l := seedPayload(t, 3)
	lb, err := l.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsePayload(append(lb, make([]byte, 3*sealedKeySize)...)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("keys after a layered announcement: got %v, want ErrMalformed", err)
	}
}

func TestPayloadVersion2Refused(t *testing.T) {
	b, err := seedPayload(t, 1).marshal()
	if err != nil {
		t.Fatal(err)
	}
	b[0] = 2
	if _, err := parsePayload(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 2: got %v, want ErrUnsupportedVersion", err)
	}
}

// A Primary never signs a cycle whose keys do not match its protocol.
func TestPayloadMarshalChecksSealedKeys(t *testing.T) {
	p := sealedSeed(seedPayload(t, 3), SealedConfig{})
	p.cycle.Nodes[1].SealedKey = nil
	if _, err := p.marshal(); !errors.Is(err, ErrBadProtocol) {
		t.Fatalf("sealed cycle, a node without a key: got %v, want ErrBadProtocol", err)
	}
	p.cycle.Nodes[1].SealedKey = make([]byte, 31)
	if _, err := p.marshal(); !errors.Is(err, ErrBadProtocol) {
		t.Fatalf("sealed cycle, a 31-byte key: got %v, want ErrBadProtocol", err)
	}
	l := seedPayload(t, 2)
	l.cycle.Nodes[0].SealedKey = make([]byte, sealedKeySize)
	if _, err := l.marshal(); !errors.Is(err, ErrBadProtocol) {
		t.Fatalf("layered cycle with a sealed key: got %v, want ErrBadProtocol", err)
	}
}

func TestCheckProtocol(t *testing.T) {
	bad := []struct {
		p Protocol
		s SealedConfig
	}{
		{"sphinx", SealedConfig{}},
		{ProtocolLayered, SealedConfig{Form: FormChain}},
		{"", SealedConfig{MaxPacket: SealedSmall}},
		{ProtocolSealed, SealedConfig{Form: "mix"}},
		{ProtocolSealed, SealedConfig{MaxPacket: 4096}},
		{ProtocolSealed, SealedConfig{MaxPacket: -1}},
	}
	for _, b := range bad {
		if _, _, err := checkProtocol(b.p, b.s); !errors.Is(err, ErrBadProtocol) {
			t.Errorf("%q %+v: got %v, want ErrBadProtocol", b.p, b.s, err)
		}
	}
	p, s, err := checkProtocol("", SealedConfig{})
	if err != nil || p != ProtocolLayered || s != (SealedConfig{}) {
		t.Errorf("zero: %q %+v %v", p, s, err)
	}
	p, s, err = checkProtocol(ProtocolSealed, SealedConfig{})
	if err != nil || p != ProtocolSealed || s != (SealedConfig{Form: FormChain, MaxPacket: SealedLarge}) {
		t.Errorf("sealed zero: %q %+v %v", p, s, err)
	}
}
