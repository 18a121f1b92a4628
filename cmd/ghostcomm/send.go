package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
)

// envInvite names the environment variable from which send and fetch take
// the invite when no flag gives one.
const envInvite = "GHOSTCOMM_INVITE"

// maxMessage bounds a message: room for it in a frame with any number of
// hops (ghostcomm.DefaultMaxFrameSize).
const maxMessage = 1 << 20

// maxInviteFile bounds what -invite-file reads.
const maxInviteFile = 4096

// clientFlags are the flags of send and fetch.
type clientFlags struct {
	invite, inviteFile string
	json               bool
	timeout            time.Duration
	tor                torFlags
	log                logFlags
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.invite, "invite", "", "the invite (default $"+envInvite+"); other users see flags in the process list: give an invite with a client key by -invite-file or $"+envInvite)
	fs.StringVar(&c.inviteFile, "invite-file", "", "read the invite from this file")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", ghostcomm.DefaultClientTimeout, "give up after this long")
	c.tor.register(fs, false)
	c.log.register(fs)
}

// readInvite takes the invite from -invite, -invite-file or $GHOSTCOMM_INVITE.
func (c *clientFlags) readInvite() (ghostcomm.Invite, error) {
	s := c.invite
	switch {
	case c.invite != "" && c.inviteFile != "":
		return ghostcomm.Invite{}, usageErrorf("give -invite or -invite-file, not both")
	case c.inviteFile != "":
		f, err := os.Open(c.inviteFile)
		if err != nil {
			return ghostcomm.Invite{}, &usageError{fmt.Errorf("-invite-file: %w", err)}
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxInviteFile+1))
		if err != nil {
			return ghostcomm.Invite{}, &usageError{fmt.Errorf("-invite-file: %w", err)}
		}
		if len(b) > maxInviteFile {
			return ghostcomm.Invite{}, usageErrorf("-invite-file: larger than %d bytes: not an invite", maxInviteFile)
		}
		s = string(b)
	case s == "":
		s = os.Getenv(envInvite)
		if s == "" {
			return ghostcomm.Invite{}, usageErrorf("no invite: give -invite, -invite-file or $%s", envInvite)
		}
	}
	inv, err := ghostcomm.ParseInvite(s)
	if err != nil {
		return inv, &usageError{err}
	}
	return inv, nil
}

// setup makes the logger the flags ask for and reads the invite.
func (c *clientFlags) setup(e *env) (*slog.Logger, ghostcomm.Invite, error) {
	logger, err := c.log.logger(e.stderr, true)
	if err != nil {
		return nil, ghostcomm.Invite{}, err
	}
	inv, err := c.readInvite()
	return logger, inv, err
}

// newClient makes a client through tor's SocksPort; an invite with a client
// authorization key also connects to tor's ControlPort to give tor the key,
// which tor keeps in memory until it restarts.
func (c *clientFlags) newClient(ctx context.Context, inv ghostcomm.Invite, logger *slog.Logger) (*ghostcomm.Client, func(), error) {
	d, err := torctl.NewDialer(c.tor.socks, torctl.DialerConfig{Logger: logger})
	if err != nil {
		return nil, nil, usageErrorf("-socks: %v", err)
	}
	cfg := ghostcomm.ClientConfig{Timeout: c.timeout, Logger: logger}
	closeCtrl := func() {}
	if inv.ClientAuthKey != nil {
		ctrl, err := c.tor.connect(ctx, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("the invite carries a client authorization key for tor: %w", err)
		}
		cfg.Authorizer = ctrl
		closeCtrl = func() { ctrl.Close() }
	}
	client, err := ghostcomm.NewClient(d, inv, cfg)
	if err != nil {
		closeCtrl()
		return nil, nil, err
	}
	return client, func() { client.Close(); closeCtrl() }, nil
}

// readMessage reads the message from args or stdin, at most maxMessage bytes.
func (e *env) readMessage(args []string) ([]byte, error) {
	switch len(args) {
	case 0:
	case 1:
		if len(args[0]) > maxMessage {
			return nil, usageErrorf("message larger than %d bytes", maxMessage)
		}
		return []byte(args[0]), nil
	default:
		return nil, usageErrorf("send: one message argument, or the message on stdin (got %d arguments)", len(args))
	}
	msg, err := io.ReadAll(io.LimitReader(e.stdin, maxMessage+1))
	if err != nil {
		return nil, &usageError{fmt.Errorf("reading the message from stdin: %w", err)}
	}
	if len(msg) > maxMessage {
		return nil, usageErrorf("message on stdin larger than %d bytes", maxMessage)
	}
	if len(msg) == 0 {
		return nil, usageErrorf("no message: stdin was empty")
	}
	return msg, nil
}

func (e *env) send(ctx context.Context, args []string) error {
	fs := e.newFlags("send", "ghostcomm send [-invite INVITE | -invite-file FILE] [--json] [MESSAGE]\n\nThe message is MESSAGE, or stdin (any bytes, at most 1 MiB). The answer goes to stdout.")
	var cf clientFlags
	cf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	logger, inv, err := cf.setup(e)
	if err != nil {
		return err
	}
	msg, err := e.readMessage(fs.Args())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, closeClient, err := cf.newClient(ctx, inv, logger)
	if err != nil {
		return err
	}
	defer closeClient()
	res, err := client.Send(ctx, msg)
	if cf.json {
		if res != nil || err == nil {
			if jerr := e.printJSON(sendJSON(res, err)); jerr != nil {
				return jerr
			}
		}
		return err
	}
	if err != nil {
		return err // an answer that failed verification is not printed
	}
	if _, err := e.stdout.Write(res.Data); err != nil {
		return fmt.Errorf("writing the answer: %w", err)
	}
	return nil
}

// hopJSON describes one node, without anything secret: the processor's
// parameter names, not their values (a hash node's salt).
type hopJSON struct {
	Onion       string   `json:"onion"`
	Fingerprint string   `json:"fingerprint"`
	Processor   string   `json:"processor"`
	Params      []string `json:"params,omitempty"`
}

func hopsJSON(nodes []ghostcomm.NodeInfo) []hopJSON {
	out := make([]hopJSON, 0, len(nodes))
	for _, n := range nodes {
		h := hopJSON{Onion: n.Onion.Addr(), Fingerprint: n.Fingerprint().String(), Processor: n.Processor.Name}
		for k := range n.Processor.Params {
			h.Params = append(h.Params, k)
		}
		slices.Sort(h.Params)
		out = append(out, h)
	}
	return out
}

// sendResult is send's --json output.
type sendResult struct {
	// Data is the answer as text when it is valid UTF-8; DataBase64 is
	// set otherwise.
	Data       *string `json:"data,omitempty"`
	DataBase64 string  `json:"data_base64,omitempty"`
	// Verified: every hop is deterministic and the answer is what the
	// route should give.
	Verified    bool      `json:"verified"`
	Cycle       string    `json:"cycle"`
	RoundTripMS float64   `json:"round_trip_ms"`
	Route       []hopJSON `json:"route"`
	Error       string    `json:"error,omitempty"`
}

func sendJSON(res *ghostcomm.Result, err error) sendResult {
	out := sendResult{
		Verified: res.Verified, Cycle: hex.EncodeToString(res.Cycle[:]),
		RoundTripMS: float64(res.RoundTrip.Microseconds()) / 1000, Route: hopsJSON(res.Route),
	}
	if utf8.Valid(res.Data) {
		s := string(res.Data)
		out.Data = &s
	} else {
		out.DataBase64 = base64.StdEncoding.EncodeToString(res.Data)
	}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) fetch(ctx context.Context, args []string) error {
	fs := e.newFlags("fetch", "ghostcomm fetch [-invite INVITE | -invite-file FILE] [--json]\n\nShows the network's current lock-cycle: validity and nodes, without anything secret.")
	var cf clientFlags
	cf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("fetch: unexpected argument %q", fs.Arg(0))
	}
	logger, inv, err := cf.setup(e)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, closeClient, err := cf.newClient(ctx, inv, logger)
	if err != nil {
		return err
	}
	defer closeClient()
	cycle, err := client.Fetch(ctx)
	if err != nil {
		return err
	}
	out := cycleJSON{
		Primary: inv.Primary.Addr(), Fingerprint: inv.Fingerprint.String(), Cycle: hex.EncodeToString(cycle.ID[:]),
		NotBefore: cycle.NotBefore.UTC(), NotAfter: cycle.NotAfter.UTC(), GraceSeconds: cycle.Grace.Seconds(),
		Protocol: string(ghostcomm.ProtocolLayered), Nodes: hopsJSON(cycle.Nodes),
	}
	if cycle.Protocol == ghostcomm.ProtocolSealed {
		out.Protocol, out.Form = string(cycle.Protocol), string(cycle.Sealed.Form)
	}
	if cf.json {
		return e.printJSON(out)
	}
	w := e.stdout
	proto := out.Protocol
	if out.Form != "" {
		proto += ", " + out.Form + " form"
	}
	fmt.Fprintf(w, "primary      %s\nfingerprint  %s\ncycle        %s\nvalid        %s to %s (grace %v)\nprotocol     %s\n\n",
		out.Primary, out.Fingerprint, out.Cycle, out.NotBefore.Format(time.RFC3339), out.NotAfter.Format(time.RFC3339), cycle.Grace, proto)
	fmt.Fprintf(w, "%-3s  %-65s  %-16s  %s\n", "#", "ONION", "FINGERPRINT", "PROCESSOR")
	for i, n := range out.Nodes {
		fmt.Fprintf(w, "%-3d  %-65s  %-16s  %s\n", i, n.Onion, n.Fingerprint[:16], n.Processor)
	}
	return nil
}

// cycleJSON is fetch's --json output.
type cycleJSON struct {
	Primary      string    `json:"primary"`
	Fingerprint  string    `json:"fingerprint"`
	Cycle        string    `json:"cycle"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	GraceSeconds float64   `json:"grace_seconds"`
	Protocol     string    `json:"protocol"`       // layered or sealed
	Form         string    `json:"form,omitempty"` // sealed: chain or relay
	Nodes        []hopJSON `json:"nodes"`
}
