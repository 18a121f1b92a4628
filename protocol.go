package ghostcomm

import (
	"errors"
	"fmt"
)

// Protocol is the message protocol a lock-cycle speaks; the payload says
// which (docs/PROTOCOL.md, "Lock-cycle payload" and "Sealed mode").
type Protocol string

// Protocols.
const (
	// ProtocolLayered is today's protocol, and the default: nested layers
	// (an OpenPGP-wrapped key and a Fernet token per hop), a data box per
	// hop, and the answer sealed by the last hop.
	ProtocolLayered Protocol = "layered"
	// ProtocolSealed is sealed mode: packets of a fixed size (a class of 2
	// KiB or 32 KiB, whatever the route's length), one X25519 per hop, and
	// replies of the same fixed size re-enciphered by every hop on the way
	// back. SealedConfig.Form chooses who processes the data.
	ProtocolSealed Protocol = "sealed"
)

// SealedForm is what the hops of a sealed-mode route do with the data.
type SealedForm string

// Sealed-mode forms.
const (
	// FormChain keeps the seed's processing: every hop opens the data for
	// itself, applies its processor and reseals the output for the next
	// hop; the client verifies the result as in the layered protocol.
	// The default.
	FormChain SealedForm = "chain"
	// FormRelay: only the last hop (the exit) opens and processes the
	// data; the hops before it only relay. The client gets the exit's
	// output.
	FormRelay SealedForm = "relay"
)

// Packet classes of sealed mode: every packet and every reply is exactly
// one of these sizes.
const (
	SealedSmall = 2 << 10  // 2 KiB
	SealedLarge = 32 << 10 // 32 KiB
)

// MaxSealedHops is the longest route of a sealed-mode packet (its header
// has this many slots). A cycle may have more nodes; a route uses at most
// this many.
const MaxSealedHops = 8

// SealedConfig configures sealed mode (PrimaryConfig.Protocol =
// ProtocolSealed). Its zero value is chain form with both packet classes.
type SealedConfig struct {
	// Form is FormChain or FormRelay. Zero: FormChain.
	Form SealedForm
	// MaxPacket is the largest packet class the cycle's nodes accept:
	// SealedSmall or SealedLarge. A client sends a message in the
	// smallest class that fits it; with SealedSmall every packet of the
	// cycle has the same size. Zero: SealedLarge.
	MaxPacket int
}

// ErrBadProtocol: a protocol, sealed-mode form or packet class that does
// not exist, or a combination that the chosen protocol cannot carry (sealed
// options with the layered protocol, a node without a sealed-mode key in a
// sealed cycle or with one in a layered cycle, a route longer than
// MaxSealedHops).
var ErrBadProtocol = errors.New("ghostcomm: unsupported protocol or protocol combination")

// protocolOf returns p, or ProtocolLayered for the zero value.
func protocolOf(p Protocol) Protocol {
	if p == "" {
		return ProtocolLayered
	}
	return p
}

// check validates a protocol and its sealed configuration, and returns
// them with defaults filled in.
func checkProtocol(p Protocol, s SealedConfig) (Protocol, SealedConfig, error) {
	p = protocolOf(p)
	switch p {
	case ProtocolLayered:
		if s != (SealedConfig{}) {
			return p, s, fmt.Errorf("%w: sealed-mode options with the %s protocol", ErrBadProtocol, p)
		}
		return p, s, nil
	case ProtocolSealed:
	default:
		return p, s, fmt.Errorf("%w: protocol %q", ErrBadProtocol, string(p))
	}
	if s.Form == "" {
		s.Form = FormChain
	}
	if s.Form != FormChain && s.Form != FormRelay {
		return p, s, fmt.Errorf("%w: sealed-mode form %q", ErrBadProtocol, string(s.Form))
	}
	if s.MaxPacket == 0 {
		s.MaxPacket = SealedLarge
	}
	if s.MaxPacket != SealedSmall && s.MaxPacket != SealedLarge {
		return p, s, fmt.Errorf("%w: packet class %d (want %d or %d)", ErrBadProtocol, s.MaxPacket, SealedSmall, SealedLarge)
	}
	return p, s, nil
}

// Payload codes of the protocol announcement (docs/PROTOCOL.md).
const (
	codeLayered = 1
	codeSealed  = 2

	codeChain = 1
	codeRelay = 2

	codeSmall = 1
	codeLarge = 2
)

// protocolCodes encodes a cycle's protocol, form and largest class for the
// payload: three bytes, the last two zero for the layered protocol.
func protocolCodes(p Protocol, s SealedConfig) ([3]byte, error) {
	p, s, err := checkProtocol(p, s)
	if err != nil {
		return [3]byte{}, err
	}
	if p == ProtocolLayered {
		return [3]byte{codeLayered, 0, 0}, nil
	}
	b := [3]byte{codeSealed, codeChain, codeLarge}
	if s.Form == FormRelay {
		b[1] = codeRelay
	}
	if s.MaxPacket == SealedSmall {
		b[2] = codeSmall
	}
	return b, nil
}

// parseProtocolCodes decodes protocolCodes' bytes; anything else is
// ErrMalformed.
func parseProtocolCodes(b [3]byte) (Protocol, SealedConfig, error) {
	switch {
	case b == [3]byte{codeLayered, 0, 0}:
		return ProtocolLayered, SealedConfig{}, nil
	case b[0] == codeSealed && (b[1] == codeChain || b[1] == codeRelay) && (b[2] == codeSmall || b[2] == codeLarge):
		s := SealedConfig{Form: FormChain, MaxPacket: SealedLarge}
		if b[1] == codeRelay {
			s.Form = FormRelay
		}
		if b[2] == codeSmall {
			s.MaxPacket = SealedSmall
		}
		return ProtocolSealed, s, nil
	}
	return "", SealedConfig{}, fmt.Errorf("%w: protocol announcement %x", ErrMalformed, b[:])
}
