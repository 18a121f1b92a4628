package torctl

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cretz/bine/control"

	"github.com/ghostcomm/ghostcomm"
)

// DefaultControlAddr is the control port Connect uses when
// ConnectConfig.Addr is empty: a system tor's usual ControlPort.
const DefaultControlAddr = "127.0.0.1:9051"

// DefaultCommandTimeout bounds each control-port command when the config
// leaves CommandTimeout zero.
const DefaultCommandTimeout = 30 * time.Second

// Control-port reply codes that the Controller treats specially.
const (
	codeNoOnions         = 551 // GETINFO onions/current: none
	codeUnrecognizedItem = 552 // DEL_ONION: unknown service ID
)

// ConfigError reports an invalid configuration value (ConnectConfig,
// LaunchConfig, OnionConfig); nothing was started or sent to tor. Match it
// with errors.As.
type ConfigError struct {
	// Field names the offending field, e.g. "LaunchConfig.TorrcFile".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error describes the invalid field.
func (e *ConfigError) Error() string {
	return "torctl: invalid " + e.Field + ": " + e.Reason
}

// ConnectConfig configures Connect. The zero value connects to
// DefaultControlAddr with the authentication tor offers (cookie or none).
type ConnectConfig struct {
	// Addr is tor's ControlPort, "host:port" or "unix:/path/to/socket".
	// Empty means DefaultControlAddr.
	Addr string

	// Password is the control password, used when tor offers only
	// HASHEDPASSWORD authentication.
	Password string

	// CookiePath, if set, is the control_auth_cookie file to authenticate
	// with (SAFECOOKIE, else COOKIE), instead of the path tor announces in
	// PROTOCOLINFO. Use it when tor runs with another view of the file
	// system, such as in a container.
	CookiePath string

	// CommandTimeout bounds each control-port command. Zero means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration

	// Logger receives debug messages (onions added and published,
	// HS_DESC events) and warnings (an onion created without the
	// proof-of-work defence it asked for). Nil discards them.
	Logger *slog.Logger
}

// Controller is a ghostcomm.TorController on a tor control port.
//
// It holds two control connections: one for commands, which it runs one at
// a time, and one subscribed to HS_DESC events from the start, so that
// CreateOnion never misses the upload it waits for. Onion services it
// creates belong to its command connection: tor removes any that are left
// when that connection closes, including when this process dies.
//
// A Controller is safe for concurrent use. Every blocking method honours
// its ctx; a command already sent to tor is still read to its end, in the
// background, so that the connection stays usable (an onion created by an
// abandoned CreateOnion is removed). If the command connection fails, every
// later call returns an error and Close only closes. Close removes every
// onion service the Controller created, closes both connections, stops the
// tor that Launch started, and is idempotent; methods called after Close
// return an error matching ghostcomm.ErrClosed. If the event connection
// fails, CreateOnion fails too (except with NoWait): it cannot see uploads.
type Controller struct {
	log        *slog.Logger
	cmdTimeout time.Duration

	cmdMu  sync.Mutex // held while a command is on the wire
	conn   *control.Conn
	raw    net.Conn
	broken error // guarded by cmdMu

	evRaw  net.Conn
	events *uploadRouter

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	onions  map[string]struct{} // created here and not removed
	wg      sync.WaitGroup      // command and event goroutines

	proc *process // the tor Launch started, nil for Connect

	closeOnce sync.Once
	closeErr  error
}

var (
	_ ghostcomm.TorController    = (*Controller)(nil)
	_ ghostcomm.ClientAuthorizer = (*Controller)(nil)
)

// Connect connects to a running tor's control port and authenticates (cookie,
// safecookie or password, as tor offers). ctx bounds the connection and
// authentication.
func Connect(ctx context.Context, cfg ConnectConfig) (*Controller, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultControlAddr
	}
	if cfg.CommandTimeout < 0 {
		return nil, &ConfigError{"ConnectConfig.CommandTimeout", "negative"}
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{
		log:        log,
		cmdTimeout: cfg.CommandTimeout,
		events:     newUploadRouter(),
		closing:    make(chan struct{}),
		onions:     map[string]struct{}{},
	}
	var err error
	if c.conn, c.raw, err = dialControl(ctx, cfg); err != nil {
		return nil, err
	}
	evConn, evRaw, err := dialControl(ctx, cfg)
	if err != nil {
		c.raw.Close()
		return nil, err
	}
	c.evRaw = evRaw
	stop := deadlineFrom(ctx, evRaw, cfg.CommandTimeout)
	_, err = evConn.SendRequest("SETEVENTS %s", control.EventCodeHSDesc)
	if !stop() {
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		c.raw.Close()
		evRaw.Close()
		return nil, fmt.Errorf("torctl: SETEVENTS HS_DESC: %w", err)
	}
	evRaw.SetDeadline(time.Time{})
	c.wg.Add(1)
	go c.readEvents(evConn)
	log.Debug("torctl: connected", "addr", cfg.Addr)
	return c, nil
}

// deadlineFrom sets conn's deadline to the earlier of ctx's deadline and
// now+timeout, and to the past if ctx ends first. The returned func stops
// watching ctx (the deadline stays set); it reports false if ctx ended
// first, in which case conn's deadline may be set to the past at any time
// and conn must not be used.
func deadlineFrom(ctx context.Context, conn net.Conn, timeout time.Duration) func() bool {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	conn.SetDeadline(d)
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

// dialControl opens and authenticates one control connection.
func dialControl(ctx context.Context, cfg ConnectConfig) (*control.Conn, net.Conn, error) {
	network, addr := "tcp", cfg.Addr
	if p, ok := strings.CutPrefix(cfg.Addr, "unix:"); ok {
		network, addr = "unix", p
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, network, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("torctl: control port %s: %w", cfg.Addr, err)
	}
	stop := deadlineFrom(ctx, raw, cfg.CommandTimeout)
	conn := control.NewConn(textproto.NewConn(raw))
	if cfg.CookiePath != "" {
		err = authenticateCookie(conn, cfg.CookiePath, cfg.Password)
	} else {
		err = conn.Authenticate(cfg.Password)
	}
	if !stop() {
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("torctl: authenticating to %s: %w", cfg.Addr, err)
	}
	return conn, raw, nil
}

// Safe-cookie HMAC keys, from tor's control-spec (AUTHCHALLENGE).
const (
	safeCookieServerKey = "Tor safe cookie authentication server-to-controller hash"
	safeCookieClientKey = "Tor safe cookie authentication controller-to-server hash"
)

// authenticateCookie authenticates with the cookie file at path: SAFECOOKIE
// if tor offers it, else COOKIE; NULL and HASHEDPASSWORD as tor offers.
func authenticateCookie(conn *control.Conn, path, password string) error {
	pi, err := conn.ProtocolInfo()
	if err != nil {
		return err
	}
	if pi.HasAuthMethod("NULL") || !pi.HasAuthMethod("SAFECOOKIE") && !pi.HasAuthMethod("COOKIE") {
		return conn.Authenticate(password)
	}
	cookie, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(cookie) != 32 {
		return fmt.Errorf("cookie file %s holds %d bytes, want 32", path, len(cookie))
	}
	var auth []byte
	if pi.HasAuthMethod("SAFECOOKIE") {
		var clientNonce [32]byte
		rand.Read(clientNonce[:])
		resp, err := conn.SendRequest("AUTHCHALLENGE SAFECOOKIE %s", hex.EncodeToString(clientNonce[:]))
		if err != nil {
			return err
		}
		var serverHash, serverNonce []byte
		for _, f := range strings.Fields(resp.Reply) {
			if v, ok := strings.CutPrefix(f, "SERVERHASH="); ok {
				serverHash, _ = hex.DecodeString(v)
			} else if v, ok := strings.CutPrefix(f, "SERVERNONCE="); ok {
				serverNonce, _ = hex.DecodeString(v)
			}
		}
		if len(serverHash) != 32 || len(serverNonce) != 32 {
			return fmt.Errorf("malformed AUTHCHALLENGE reply %q", resp.Reply)
		}
		mac := func(key string) []byte {
			m := hmac.New(sha256.New, []byte(key))
			m.Write(cookie)
			m.Write(clientNonce[:])
			m.Write(serverNonce)
			return m.Sum(nil)
		}
		if !hmac.Equal(serverHash, mac(safeCookieServerKey)) {
			return errors.New("AUTHCHALLENGE: tor does not know this cookie (wrong cookie file?)")
		}
		auth = mac(safeCookieClientKey)
	} else {
		auth = cookie
	}
	if _, err := conn.SendRequest("AUTHENTICATE %s", hex.EncodeToString(auth)); err != nil {
		return err
	}
	conn.Authenticated = true
	return nil
}

// readEvents reads the event connection until it fails or is closed.
func (c *Controller) readEvents(conn *control.Conn) {
	defer c.wg.Done()
	for {
		resp, err := conn.ReadResponse()
		if err != nil {
			c.events.fail(fmt.Errorf("torctl: event connection: %w", err))
			return
		}
		if !resp.IsAsync() {
			continue
		}
		line := resp.Reply
		if len(resp.Data) > 0 {
			line = resp.Data[0]
		}
		code, rest, _ := strings.Cut(line, " ")
		if control.EventCode(code) != control.EventCodeHSDesc {
			continue
		}
		ev := control.ParseHSDescEvent(rest)
		c.log.Debug("torctl: HS_DESC", "action", ev.Action, "address", ev.Address, "hsdir", ev.HSDir, "reason", ev.Reason)
		if ev.Action == "UPLOADED" {
			c.events.uploaded(ev.Address)
		}
	}
}

// send sends one command and reads its reply. Every 2xx reply is a success
// (ONION_CLIENT_AUTH_ADD answers 252, which bine counts as an error).
func send(conn *control.Conn, format string, args ...any) (*control.Response, error) {
	resp, err := conn.SendRequest(format, args...)
	if err != nil && resp != nil && replyCode(err)/100 == 2 {
		err = nil
	}
	return resp, err
}

// isTorReply reports whether err is tor's reply to a command (the
// connection is fine).
func isTorReply(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te)
}

// isConnFailure reports whether err leaves the control connection unusable:
// an I/O error, or a reply that does not parse (the stream is out of step).
func isConnFailure(err error) bool {
	var ne net.Error
	var pe textproto.ProtocolError
	return errors.As(err, &ne) || errors.As(err, &pe) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func closedError() error {
	return fmt.Errorf("torctl: controller closed: %w", ghostcomm.ErrClosed)
}

// exec runs fn on the command connection, one command at a time, in a
// goroutine of its own so that the caller can leave when ctx ends while the
// reply is still read to its end. If fn succeeded but the caller had left,
// orphan (if not nil) runs next, still holding the connection, to undo it.
func (c *Controller) exec(ctx context.Context, fn func(*control.Conn) error, orphan func(*control.Conn)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return closedError()
	}
	c.wg.Add(1)
	c.mu.Unlock()
	res := make(chan error)
	go func() {
		defer c.wg.Done()
		c.cmdMu.Lock()
		defer c.cmdMu.Unlock()
		var err error
		switch {
		case c.broken != nil:
			err = c.broken
		case ctx.Err() != nil:
			err = ctx.Err()
		default:
			c.raw.SetDeadline(time.Now().Add(c.cmdTimeout))
			err = fn(c.conn)
			if err != nil && isConnFailure(err) {
				c.broken = fmt.Errorf("torctl: control connection failed: %w", err)
				c.raw.Close()
				err = c.broken
			}
		}
		select {
		case res <- err:
		case <-ctx.Done():
			if err == nil && orphan != nil && c.broken == nil {
				c.raw.SetDeadline(time.Now().Add(c.cmdTimeout))
				orphan(c.conn)
			}
		}
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Controller) track(id string) {
	c.mu.Lock()
	c.onions[id] = struct{}{}
	c.mu.Unlock()
}

func (c *Controller) untrack(id string) {
	c.mu.Lock()
	delete(c.onions, id)
	c.mu.Unlock()
}

// addOnionCommand validates conf and returns its ADD_ONION command and, for
// a given key, the service ID tor must answer with.
func addOnionCommand(conf ghostcomm.OnionConfig) (cmd, wantID string, err error) {
	if conf.VirtualPort < 1 || conf.VirtualPort > 65535 {
		return "", "", &ConfigError{"OnionConfig.VirtualPort", fmt.Sprintf("%d is not a port (1-65535)", conf.VirtualPort)}
	}
	target, err := loopbackTarget(conf.Target)
	if err != nil {
		return "", "", err
	}
	var b strings.Builder
	b.WriteString("ADD_ONION ")
	var flags []string
	if conf.Key == nil {
		b.WriteString("NEW:ED25519-V3")
		flags = append(flags, "DiscardPK")
	} else {
		if len(conf.Key) != ed25519.PrivateKeySize {
			return "", "", &ConfigError{"OnionConfig.Key", fmt.Sprintf("%d bytes, want %d", len(conf.Key), ed25519.PrivateKeySize)}
		}
		pub := ed25519.NewKeyFromSeed(conf.Key.Seed()).Public().(ed25519.PublicKey)
		if !pub.Equal(conf.Key.Public()) {
			return "", "", &ConfigError{"OnionConfig.Key", "public half does not match the seed"}
		}
		b.WriteString("ED25519-V3:" + torKeyBlob(conf.Key))
		wantID = ServiceID(pub)
	}
	if len(conf.ClientAuth) > 0 {
		flags = append(flags, "V3Auth")
	}
	if len(flags) > 0 {
		b.WriteString(" Flags=" + strings.Join(flags, ","))
	}
	fmt.Fprintf(&b, " Port=%d,%s", conf.VirtualPort, target)
	for _, pub := range conf.ClientAuth {
		b.WriteString(" ClientAuthV3=" + onionBase32.EncodeToString(pub[:]))
	}
	pow := conf.PoW
	switch {
	case pow.Enabled:
		b.WriteString(" PoWDefensesEnabled=1")
		if pow.QueueRate != 0 {
			fmt.Fprintf(&b, " PoWQueueRate=%d", pow.QueueRate)
		}
		if pow.QueueBurst != 0 {
			fmt.Fprintf(&b, " PoWQueueBurst=%d", pow.QueueBurst)
		}
	case pow.QueueRate != 0 || pow.QueueBurst != 0:
		return "", "", &ConfigError{"OnionConfig.PoW", "QueueRate or QueueBurst set without Enabled"}
	}
	return b.String(), wantID, nil
}

// loopbackTarget checks that target is "<loopback IP>:<port>" and returns
// it in canonical form. Onion services forward only to this machine.
func loopbackTarget(target string) (string, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return "", &ConfigError{"OnionConfig.Target", fmt.Sprintf("%q: %v", target, err)}
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", &ConfigError{"OnionConfig.Target", fmt.Sprintf("%q is not a loopback IP address", host)}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", &ConfigError{"OnionConfig.Target", fmt.Sprintf("%q is not a port", port)}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(p)), nil
}

// CreateOnion implements ghostcomm.TorController: ADD_ONION of a v3 service
// (a fresh key, which tor discards, unless conf.Key is set) that forwards
// conf.VirtualPort to conf.Target, which must be a loopback address. Each
// conf.ClientAuth key is authorized (ClientAuthV3). Unless conf.NoWait, it
// then waits for tor to report the first upload of the service's descriptor
// (HS_DESC UPLOADED). If ctx ends or anything fails, the service is removed
// before CreateOnion returns. Invalid configurations return a *ConfigError.
//
// conf.PoW is sent as ADD_ONION's PoWDefensesEnabled, PoWQueueRate and
// PoWQueueBurst. If tor refuses the command with them but accepts it without
// them (tor older than 0.4.9.2, or built without the pow module), the
// service is created without proof-of-work and a warning is logged
// (ConnectConfig.Logger): a service that is up without the defence serves
// better than none.
func (c *Controller) CreateOnion(ctx context.Context, conf ghostcomm.OnionConfig) (ghostcomm.Onion, error) {
	cmd, wantID, err := addOnionCommand(conf)
	if err != nil {
		return ghostcomm.Onion{}, err
	}
	// Without proof-of-work, for a tor that refuses it.
	var noPoW string
	if conf.PoW.Enabled {
		plain := conf
		plain.PoW = ghostcomm.PoWConfig{}
		noPoW, _, _ = addOnionCommand(plain)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ghostcomm.Onion{}, closedError()
	}
	if err := c.events.failure(); err != nil && !conf.NoWait {
		return ghostcomm.Onion{}, fmt.Errorf("torctl: cannot see onion uploads: %w", err)
	}
	c.events.begin()
	ended := false
	end := func() {
		if !ended {
			ended = true
			c.events.end()
		}
	}
	defer end()

	var id string
	var powErr error // tor's refusal of the proof-of-work keywords
	err = c.exec(ctx, func(conn *control.Conn) error {
		resp, err := send(conn, "%s", cmd)
		if err != nil && noPoW != "" && isTorReply(err) {
			// A tor older than 0.4.9.2 answers 512 (unrecognized keyword);
			// one built without the pow module may refuse it otherwise. If
			// the same command without it succeeds, proof-of-work was the
			// cause; if not, its error is the one to report.
			powErr = err
			resp, err = send(conn, "%s", noPoW)
		}
		if err != nil {
			return err
		}
		for _, d := range resp.Data {
			if v, ok := strings.CutPrefix(d, "ServiceID="); ok {
				id = v
			}
		}
		if !validServiceID(id) || wantID != "" && id != wantID {
			if validServiceID(id) {
				conn.DelOnion(id)
			}
			return fmt.Errorf("torctl: ADD_ONION answered service ID %q, want %q", id, wantID)
		}
		c.track(id)
		return nil
	}, func(conn *control.Conn) {
		if err := conn.DelOnion(id); err == nil || replyCode(err) == codeUnrecognizedItem {
			c.untrack(id)
		}
	})
	if err != nil {
		return ghostcomm.Onion{}, fmt.Errorf("torctl: ADD_ONION: %w", err)
	}
	onion := ghostcomm.Onion{ServiceID: id, Port: conf.VirtualPort}
	start := time.Now()
	c.log.Debug("torctl: onion added", "id", id, "pow", conf.PoW.Enabled && powErr == nil)
	if powErr != nil {
		c.log.Warn("torctl: tor refused the proof-of-work defence; onion created without it", "id", id, "err", powErr)
	}
	if conf.NoWait {
		return onion, nil
	}
	uploaded, stop := c.events.wait(id)
	defer stop()
	end()
	var werr error
	select {
	case <-uploaded:
		c.log.Debug("torctl: onion published", "id", id, "after", time.Since(start))
		return onion, nil
	case <-ctx.Done():
		werr = ctx.Err()
	case <-c.events.dead:
		werr = c.events.failure()
	case <-c.closing:
		werr = closedError()
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cmdTimeout)
	defer cancel()
	rerr := c.RemoveOnion(rctx, id)
	if errors.Is(rerr, ghostcomm.ErrClosed) {
		rerr = nil // Close removes it
	}
	return ghostcomm.Onion{}, errors.Join(fmt.Errorf("torctl: onion %s not published: %w", id, werr), rerr)
}

// RemoveOnion implements ghostcomm.TorController: DEL_ONION. Removing a
// service tor does not know (or that another control connection owns)
// returns nil. A malformed serviceID returns an error matching
// ghostcomm.ErrMalformed.
func (c *Controller) RemoveOnion(ctx context.Context, serviceID string) error {
	if !validServiceID(serviceID) {
		return fmt.Errorf("torctl: service ID %q: %w", serviceID, ghostcomm.ErrMalformed)
	}
	err := c.exec(ctx, func(conn *control.Conn) error {
		err := conn.DelOnion(serviceID)
		if err == nil || replyCode(err) == codeUnrecognizedItem {
			c.untrack(serviceID)
			return nil
		}
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("torctl: DEL_ONION %s: %w", serviceID, err)
	}
	return nil
}

// Onions returns the service IDs of the onion services that tor holds for
// this Controller's connection (GETINFO onions/current).
func (c *Controller) Onions(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.exec(ctx, func(conn *control.Conn) error {
		resp, err := send(conn, "GETINFO onions/current")
		if replyCode(err) == codeNoOnions {
			return nil
		}
		if err != nil {
			return err
		}
		for _, d := range resp.Data {
			v, ok := strings.CutPrefix(d, "onions/current=")
			if !ok {
				continue
			}
			for _, id := range strings.Fields(v) {
				if validServiceID(id) {
					ids = append(ids, id)
				}
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("torctl: GETINFO onions/current: %w", err)
	}
	return ids, nil
}

// AddClientAuth gives tor the x25519 private key with which it may reach
// the onion service serviceID when that service requires v3 client
// authorization (ONION_CLIENT_AUTH_ADD; kept in memory only).
func (c *Controller) AddClientAuth(ctx context.Context, serviceID string, priv [32]byte) error {
	if !validServiceID(serviceID) {
		return fmt.Errorf("torctl: service ID %q: %w", serviceID, ghostcomm.ErrMalformed)
	}
	err := c.exec(ctx, func(conn *control.Conn) error {
		_, err := send(conn, "ONION_CLIENT_AUTH_ADD %s x25519:%s", serviceID, base64.StdEncoding.EncodeToString(priv[:]))
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("torctl: ONION_CLIENT_AUTH_ADD %s: %w", serviceID, err)
	}
	return nil
}

// RemoveClientAuth makes tor forget the client authorization key of
// serviceID (ONION_CLIENT_AUTH_REMOVE). Forgetting a key tor does not have
// returns nil.
func (c *Controller) RemoveClientAuth(ctx context.Context, serviceID string) error {
	if !validServiceID(serviceID) {
		return fmt.Errorf("torctl: service ID %q: %w", serviceID, ghostcomm.ErrMalformed)
	}
	err := c.exec(ctx, func(conn *control.Conn) error {
		_, err := send(conn, "ONION_CLIENT_AUTH_REMOVE %s", serviceID)
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("torctl: ONION_CLIENT_AUTH_REMOVE %s: %w", serviceID, err)
	}
	return nil
}

// getInfo returns the value of one GETINFO key.
func (c *Controller) getInfo(ctx context.Context, key string) (string, error) {
	var val string
	err := c.exec(ctx, func(conn *control.Conn) error {
		resp, err := send(conn, "GETINFO %s", key)
		if err != nil {
			return err
		}
		for _, d := range resp.Data {
			if v, ok := strings.CutPrefix(d, key+"="); ok {
				val = v
				return nil
			}
		}
		return fmt.Errorf("torctl: GETINFO %s: no value in %q", key, resp.Data)
	}, nil)
	return val, err
}

// BootstrapProgress returns tor's bootstrap progress, 0 to 100
// (GETINFO status/bootstrap-phase).
func (c *Controller) BootstrapProgress(ctx context.Context) (int, error) {
	phase, err := c.getInfo(ctx, "status/bootstrap-phase")
	if err != nil {
		return 0, fmt.Errorf("torctl: GETINFO status/bootstrap-phase: %w", err)
	}
	for _, f := range strings.Fields(phase) {
		if v, ok := strings.CutPrefix(f, "PROGRESS="); ok {
			if p, err := strconv.Atoi(v); err == nil && p >= 0 && p <= 100 {
				return p, nil
			}
		}
	}
	return 0, fmt.Errorf("torctl: no PROGRESS in bootstrap phase %q", phase)
}

// WaitBootstrap polls tor's bootstrap progress every 250 ms until it
// reaches 100 or ctx ends.
func (c *Controller) WaitBootstrap(ctx context.Context) error {
	for {
		p, err := c.BootstrapProgress(ctx)
		if err != nil {
			return err
		}
		if p == 100 {
			return nil
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("torctl: tor bootstrapped only %d%%: %w", p, ctx.Err())
		case <-t.C:
		}
	}
}

// SOCKSAddr returns the address of tor's first TCP SocksPort listener
// (GETINFO net/listeners/socks), for NewDialer.
func (c *Controller) SOCKSAddr(ctx context.Context) (string, error) {
	v, err := c.getInfo(ctx, "net/listeners/socks")
	if err != nil {
		return "", fmt.Errorf("torctl: GETINFO net/listeners/socks: %w", err)
	}
	for _, f := range strings.Fields(v) {
		addr, err := strconv.Unquote(f)
		if err != nil {
			addr = f
		}
		if _, _, err := net.SplitHostPort(addr); err == nil && !strings.HasPrefix(addr, "unix:") {
			return addr, nil
		}
	}
	return "", fmt.Errorf("torctl: tor has no TCP SocksPort (listeners: %q)", v)
}

// Close removes every onion service the Controller created, closes its
// control connections and, for a Controller from Launch, stops tor and waits
// for it to exit. It is idempotent and returns the first call's result.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.closing)
		c.mu.Unlock()

		var errs []error
		c.cmdMu.Lock()
		if c.broken == nil {
			c.mu.Lock()
			ids := make([]string, 0, len(c.onions))
			for id := range c.onions {
				ids = append(ids, id)
			}
			c.mu.Unlock()
			for _, id := range ids {
				c.raw.SetDeadline(time.Now().Add(c.cmdTimeout))
				if err := c.conn.DelOnion(id); err != nil && replyCode(err) != codeUnrecognizedItem {
					// tor still removes it when the connection closes.
					errs = append(errs, fmt.Errorf("torctl: DEL_ONION %s: %w", id, err))
					if !isTorReply(err) {
						break
					}
				}
				c.untrack(id)
			}
			c.broken = closedError()
		}
		c.raw.Close()
		c.cmdMu.Unlock()
		c.evRaw.Close()
		c.wg.Wait()
		if c.proc != nil {
			errs = append(errs, c.proc.stop())
		}
		c.closeErr = errors.Join(errs...)
		c.log.Debug("torctl: closed", "err", c.closeErr)
	})
	return c.closeErr
}
