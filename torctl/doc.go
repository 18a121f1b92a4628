// Package torctl implements ghostcomm's TorController and Dialer on a real
// tor.
//
// A Controller speaks tor's control protocol (through
// github.com/cretz/bine/control). Connect attaches it to a tor that is
// already running (a system tor's ControlPort, 127.0.0.1:9051 by default);
// Launch starts a tor from a torrc the caller supplies and stops it on Close.
// CreateOnion adds an ephemeral v3 onion service with ADD_ONION and waits
// until tor reports its descriptor uploaded (HS_DESC UPLOADED); the services
// belong to the Controller's control connection, so tor removes them when
// the Controller is closed or its process dies.
//
// A Dialer connects to onion services through tor's SocksPort, retrying
// while a freshly published descriptor propagates, and reports tor's
// extended SOCKS errors (SocksPort ... ExtendedErrors) as *SOCKSError values
// that match ghostcomm.ErrOnionNotFound or ghostcomm.ErrOnionUnreachable.
//
// Launch never starts tor without a torrc: tor's built-in defaults join the
// public Tor network. Tests run against a private network on 127.0.0.1 from
// package torctl/testnet.
package torctl
