package tortest

import (
	"context"
	"errors"
	"fmt"
)

// SOCKS5 reply codes, with tor's extended error codes for onion services
// (tor's socks-extensions.txt, "ExtendedErrors"), as carried by
// DialError.Code. The fake uses the code tor would send for the same
// situation.
const (
	// CodeGeneralFailure: a failure injected by a dial hook that matches
	// neither ghostcomm.ErrOnionNotFound nor ghostcomm.ErrOnionUnreachable.
	CodeGeneralFailure byte = 0x01
	// CodeNotAllowed: the host is not an onion address. The fake network
	// has no exit relays, like the private test network.
	CodeNotAllowed byte = 0x02
	// CodeConnectionRefused: the onion service exists but nothing accepts
	// connections at its Target.
	CodeConnectionRefused byte = 0x05
	// CodeCommandNotSupported: a network other than "tcp", "tcp4", "tcp6".
	CodeCommandNotSupported byte = 0x07
	// CodeOnionNotFound (tor 0xF0): no descriptor for the address: the
	// service was never created, is not yet published, was removed, has no
	// such virtual port, or the network is closed.
	CodeOnionNotFound byte = 0xF0
	// CodeIntroFailed (tor 0xF2): the service is partitioned away
	// (Network.Partition).
	CodeIntroFailed byte = 0xF2
	// CodeMissingClientAuth (tor 0xF4): the service requires client
	// authorization and the Dialer has no key for it.
	CodeMissingClientAuth byte = 0xF4
	// CodeWrongClientAuth (tor 0xF5): the Dialer's key for the service is
	// not one the service authorizes.
	CodeWrongClientAuth byte = 0xF5
	// CodeBadAddress (tor 0xF6): a ".onion" host that is not a valid v3
	// address, or a port outside 1..65535.
	CodeBadAddress byte = 0xF6
)

// Errors that callers may match with errors.Is.
var (
	// ErrClosed: the Network (or the Controller) was closed.
	ErrClosed = errors.New("tortest: closed")

	// ErrInvalidConfig: CreateOnion was given an OnionConfig that tor would
	// refuse. The error is a *ConfigError naming the field.
	ErrInvalidConfig = errors.New("tortest: invalid onion config")

	// ErrOnionExists: CreateOnion was given the Key of a service that
	// already exists (tor: "550 Onion address collision").
	ErrOnionExists = errors.New("tortest: onion service already exists")

	// ErrNotOwner: RemoveOnion named a service that another Controller
	// created (tor refuses to delete another control connection's
	// ephemeral service).
	ErrNotOwner = errors.New("tortest: onion service belongs to another controller")

	// ErrBadAddress: DialContext was given a ".onion" address that is not
	// a valid v3 address (DialError.Code is CodeBadAddress). It is matched
	// together with ghostcomm.ErrOnionUnreachable.
	ErrBadAddress = errors.New("tortest: invalid onion address")

	// ErrRemoved: the service was removed while CreateOnion waited for its
	// publication.
	ErrRemoved = errors.New("tortest: onion service removed before it was published")
)

// ConfigError reports the OnionConfig field that CreateOnion refused. It
// matches ErrInvalidConfig.
type ConfigError struct {
	// Field is the OnionConfig field: "VirtualPort", "Target", "Key",
	// "PoW".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error returns the field and the reason.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalidConfig, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// DialError is the error of every failed Dialer.DialContext.
//
// Err matches ghostcomm.ErrOnionNotFound when Code is CodeOnionNotFound and
// ghostcomm.ErrOnionUnreachable for every other non-zero Code (and then also
// the more precise ErrBadAddress, or the error a dial hook returned). When
// ctx ended before the dial finished, Code is 0 and Err is ctx.Err(), so the
// error matches context.Canceled or context.DeadlineExceeded and neither
// onion sentinel.
type DialError struct {
	// Addr is the address passed to DialContext.
	Addr string
	// Code is the SOCKS5 reply tor would have sent (Code* constants), or 0
	// when ctx ended first.
	Code byte
	// Err is the cause.
	Err error
}

// Error returns the address, the SOCKS code and the cause.
func (e *DialError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("tortest: dial %s: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("tortest: dial %s: socks reply 0x%02x: %v", e.Addr, e.Code, e.Err)
}

// Unwrap returns Err.
func (e *DialError) Unwrap() error { return e.Err }

// Timeout reports whether the dial failed because ctx's deadline passed, as
// net.Error's Timeout does.
func (e *DialError) Timeout() bool { return errors.Is(e.Err, context.DeadlineExceeded) }
