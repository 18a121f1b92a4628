package torctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/proxy"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// Defaults of DialerConfig.
const (
	DefaultRetryFor      = 30 * time.Second
	DefaultRetryInterval = 500 * time.Millisecond
)

// ErrNotOnion is returned by Dialer.DialContext for a host that is not a
// ".onion" address, unless DialerConfig.AllowNonOnion is set.
var ErrNotOnion = errors.New("torctl: refusing to dial a host that is not a .onion address")

// SOCKSError is a failure reply of tor's SocksPort. With ExtendedErrors on
// the SocksPort, tor explains onion service failures with codes 0xF0-0xF7.
// It unwraps to ghostcomm.ErrOnionNotFound for 0xF0 and to
// ghostcomm.ErrOnionUnreachable for every other code.
type SOCKSError struct {
	// Code is the SOCKS5 reply code (RFC 1928 codes 0x01-0x08, tor's
	// extended codes 0xF0-0xF7).
	Code byte
}

// Tor's extended SOCKS5 reply codes (tor's socks-extensions, prop. 304).
const (
	SOCKSOnionNotFound      byte = 0xF0 // descriptor can not be found
	SOCKSOnionInvalidDesc   byte = 0xF1 // descriptor is invalid
	SOCKSOnionIntroFailed   byte = 0xF2 // introduction failed
	SOCKSOnionRendFailed    byte = 0xF3 // rendezvous failed
	SOCKSOnionMissingAuth   byte = 0xF4 // client authorization missing
	SOCKSOnionWrongAuth     byte = 0xF5 // client authorization wrong
	SOCKSOnionBadAddress    byte = 0xF6 // invalid onion address
	SOCKSOnionIntroTimedOut byte = 0xF7 // introduction timed out
)

// The RFC 1928 failure codes run from 0x01 to 0x08.
const (
	socksGeneralFailure      byte = 0x01
	socksLastStandardFailure byte = 0x08
)

var socksMessages = map[byte]string{
	0x01:                    "general SOCKS server failure",
	0x02:                    "connection not allowed by ruleset",
	0x03:                    "network unreachable",
	0x04:                    "host unreachable",
	0x05:                    "connection refused",
	0x06:                    "TTL expired",
	0x07:                    "command not supported",
	0x08:                    "address type not supported",
	SOCKSOnionNotFound:      "onion service descriptor can not be found",
	SOCKSOnionInvalidDesc:   "onion service descriptor is invalid",
	SOCKSOnionIntroFailed:   "onion service introduction failed",
	SOCKSOnionRendFailed:    "onion service rendezvous failed",
	SOCKSOnionMissingAuth:   "onion service client authorization missing",
	SOCKSOnionWrongAuth:     "onion service client authorization wrong",
	SOCKSOnionBadAddress:    "invalid onion address",
	SOCKSOnionIntroTimedOut: "onion service introduction timed out",
}

// Error names tor's SOCKS reply code and what it means.
func (e *SOCKSError) Error() string {
	msg, ok := socksMessages[e.Code]
	if !ok {
		msg = "unknown reply"
	}
	return fmt.Sprintf("tor SOCKS reply 0x%02X: %s", e.Code, msg)
}

// Unwrap returns ghostcomm.ErrOnionNotFound for 0xF0 and
// ghostcomm.ErrOnionUnreachable otherwise.
func (e *SOCKSError) Unwrap() error {
	if e.Code == SOCKSOnionNotFound {
		return ghostcomm.ErrOnionNotFound
	}
	return ghostcomm.ErrOnionUnreachable
}

// Retryable reports whether the failure may go away on its own within
// seconds: the descriptor was not found yet (0xF0, a new service's
// descriptor propagates), or introduction or rendezvous failed or timed
// out (0xF2, 0xF3, 0xF7). Dialer retries these.
func (e *SOCKSError) Retryable() bool {
	switch e.Code {
	case SOCKSOnionNotFound, SOCKSOnionIntroFailed, SOCKSOnionRendFailed, SOCKSOnionIntroTimedOut:
		return true
	}
	return false
}

// socksReplyPrefix is how golang.org/x/net/internal/socks reports a failure
// reply: "unknown error " + the reply's String(), which is a message for
// codes 0x01-0x08 and "unknown code: <decimal>" for the others. The unit
// tests pin this format against a fake SOCKS5 server.
const (
	socksReplyPrefix   = "unknown error "
	socksUnknownPrefix = "unknown code: "
)

// socksReply extracts the reply code from an error of x/net's SOCKS5 dialer,
// if it is a failure reply of the SOCKS server.
func socksReply(err error) (byte, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Err == nil || !strings.HasPrefix(op.Op, "socks") {
		return 0, false
	}
	msg, ok := strings.CutPrefix(op.Err.Error(), socksReplyPrefix)
	if !ok {
		return 0, false
	}
	if v, ok := strings.CutPrefix(msg, socksUnknownPrefix); ok {
		code, err := strconv.Atoi(v)
		if err != nil || code < 0 || code > 255 {
			return 0, false
		}
		return byte(code), true
	}
	for code := socksGeneralFailure; code <= socksLastStandardFailure; code++ {
		if socksMessages[code] == msg {
			return code, true
		}
	}
	return 0, false
}

// DialerConfig configures NewDialer. The zero value dials only onion
// services and retries temporary failures for up to DefaultRetryFor.
type DialerConfig struct {
	// AllowNonOnion lets DialContext dial hosts that are not ".onion"
	// addresses (tor then needs an exit). Off by default: ghostcomm only
	// ever dials onion services, and a mistyped address should not leave
	// through an exit relay.
	AllowNonOnion bool

	// RetryFor bounds how long DialContext retries temporary failures
	// (SOCKSError.Retryable), in addition to ctx. Zero means
	// DefaultRetryFor; negative disables retries.
	RetryFor time.Duration

	// RetryInterval is the pause between attempts. Zero means
	// DefaultRetryInterval.
	RetryInterval time.Duration

	// Logger receives a debug message per failed attempt. Nil discards
	// them.
	Logger *slog.Logger
}

// Dialer is a ghostcomm.Dialer through tor's SocksPort (SOCKS5, from
// golang.org/x/net/proxy). It is safe for concurrent use and holds no
// resources between dials.
//
// Errors: a SOCKS failure reply is a *SOCKSError (errors.As), matching
// ghostcomm.ErrOnionNotFound (descriptor not found) or
// ghostcomm.ErrOnionUnreachable (anything else); failing to reach the
// SocksPort itself also matches ghostcomm.ErrOnionUnreachable; a host that
// is not an onion address matches ErrNotOnion; when ctx ends the error
// matches ctx.Err() and, if a SOCKS failure came first, that failure too.
//
// Tor reports 0xF0 (ErrOnionNotFound) only when no HSDir has the service's
// descriptor. A service removed with DEL_ONION leaves its descriptor on the
// HSDirs until it expires, so dialing it fails with ErrOnionUnreachable:
// 0xF2 (introduction failed, retried until RetryFor or ctx ends) from a tor
// that never reached it, 0x05 or 0x01 from a tor that still has a circuit
// to it.
type Dialer struct {
	socksAddr string
	cfg       DialerConfig
	log       *slog.Logger
	dialer    proxy.ContextDialer
}

var _ ghostcomm.Dialer = (*Dialer)(nil)

// NewDialer returns a Dialer through the tor SocksPort at socksAddr
// ("host:port"). Use "ExtendedErrors" on that SocksPort, or every onion
// failure looks like 0x01 (general failure).
func NewDialer(socksAddr string, cfg DialerConfig) (*Dialer, error) {
	host, port, err := net.SplitHostPort(socksAddr)
	if err != nil || host == "" {
		return nil, &ConfigError{"socksAddr", fmt.Sprintf("%q is not host:port", socksAddr)}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return nil, &ConfigError{"socksAddr", fmt.Sprintf("%q has a bad port", socksAddr)}
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.RetryInterval < 0 {
		return nil, &ConfigError{"DialerConfig.RetryInterval", "negative"}
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, &net.Dialer{})
	if err != nil {
		return nil, fmt.Errorf("torctl: SOCKS5 dialer: %w", err)
	}
	cd, ok := d.(proxy.ContextDialer)
	if !ok {
		return nil, errors.New("torctl: golang.org/x/net/proxy SOCKS5 dialer has no DialContext")
	}
	return &Dialer{socksAddr: socksAddr, cfg: cfg, log: log, dialer: cd}, nil
}

// isOnionHost reports whether host ends in ".onion".
func isOnionHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return strings.HasSuffix(h, ".onion") && len(h) > len(".onion")
}

// DialContext connects to addr ("<id>.onion:port") through tor. Only "tcp"
// is supported. Temporary failures (SOCKSError.Retryable: a descriptor not
// yet found, a failed introduction or rendezvous) are retried every
// RetryInterval until ctx ends or RetryFor has passed; other failures return
// at once.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("torctl: dial %s %s: only tcp goes through tor", network, addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("torctl: dial %s: %w", addr, err)
	}
	if !d.cfg.AllowNonOnion && !isOnionHost(host) {
		return nil, fmt.Errorf("torctl: dial %s: %w", addr, ErrNotOnion)
	}
	start := time.Now()
	var retryUntil time.Time
	if d.cfg.RetryFor > 0 {
		retryUntil = start.Add(d.cfg.RetryFor)
	}
	var last error
	for attempt := 1; ; attempt++ {
		conn, err := d.dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			if attempt > 1 {
				d.log.Debug("torctl: dialed after retries", "addr", addr, "attempts", attempt, "after", time.Since(start))
			}
			return conn, nil
		}
		if cerr := errs.CtxEnded(ctx); cerr != nil {
			if last != nil {
				return nil, fmt.Errorf("torctl: dial %s: %w (after %d attempts; last failure: %w)", addr, cerr, attempt, last)
			}
			return nil, fmt.Errorf("torctl: dial %s: %w", addr, cerr)
		}
		code, isReply := socksReply(err)
		if !isReply {
			return nil, fmt.Errorf("torctl: dial %s via tor SOCKS %s: %w: %w", addr, d.socksAddr, ghostcomm.ErrOnionUnreachable, err)
		}
		serr := &SOCKSError{Code: code}
		last = serr
		d.log.Debug("torctl: dial failed", "addr", addr, "attempt", attempt, "err", serr)
		if !serr.Retryable() || retryUntil.IsZero() || time.Now().Add(d.cfg.RetryInterval).After(retryUntil) {
			if attempt > 1 {
				return nil, fmt.Errorf("torctl: dial %s (%d attempts over %v): %w", addr, attempt, time.Since(start).Round(time.Millisecond), serr)
			}
			return nil, fmt.Errorf("torctl: dial %s: %w", addr, serr)
		}
		t := time.NewTimer(d.cfg.RetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("torctl: dial %s: %w (after %d attempts; last failure: %w)", addr, ctx.Err(), attempt, last)
		case <-t.C:
		}
	}
}
