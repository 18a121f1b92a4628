package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// node runs a remote node: it joins the Primary of its invite every
// lock-cycle, with a fresh key pair and onion of its own each time, until
// SIGINT or SIGTERM.
func (e *env) node(ctx context.Context, args []string) error {
	fs := e.newFlags("node", "ghostcomm node -state DIR [-invite INVITE | -invite-file FILE] [-tor system|launch] [flags]\n"+
		"       ghostcomm node -state DIR -id\n\n"+
		"Runs one hop of a network whose Primary's operator enrolled this node's identity key\n"+
		"(ghostcomm nodes add NAME KEY) and gave you the invite. -id prints the key and exits.")
	state := fs.String("state", "", "state directory: the node's identity key (default $"+envStateDir+")")
	printID := fs.Bool("id", false, "print the node's identity key (creating it if needed) and exit")
	var cf clientFlags // -invite, -invite-file, -log, -v; its tor flags are replaced below
	fs.StringVar(&cf.invite, "invite", "", "the node invite from the Primary's operator (default $"+envInvite+")")
	fs.StringVar(&cf.inviteFile, "invite-file", "", "read the invite from this file")
	var tf torFlags
	tf.register(fs, true)
	hash := fs.String("hash", "sha256", "what the node does to the data: hash it with sha256, sha3-256 or sha512 and a salt made at start")
	retry := fs.Duration("retry", 5*time.Second, "pause after a failed attempt to join a lock-cycle")
	cf.log.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("node: unexpected argument %q", fs.Arg(0))
	}
	*state = stateDir(*state)
	switch {
	case *state == "":
		return usageErrorf("node: -state DIR is required")
	case *retry <= 0:
		return usageErrorf("-retry must be positive")
	case tf.mode == "testnet":
		return usageErrorf("-tor testnet is for a Primary; a node joins its network with -tor system or launch")
	}
	logger, err := cf.log.logger(e.stderr, false)
	if err != nil {
		return err
	}
	key, created, err := ghostcomm.LoadOrCreateNodeIdentity(*state, nil)
	if err != nil {
		return &usageError{fmt.Errorf("state directory: %w", err)}
	}
	if created {
		logger.Info("created a new node identity", "path", filepath.Join(*state, ghostcomm.NodeIdentityFile))
	}
	id := encodeNodeKey(key.Public().(ed25519.PublicKey))
	if *printID {
		fmt.Fprintln(e.stdout, id)
		return nil
	}
	inv, err := cf.readInvite()
	if err != nil {
		return err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	spec := ghostcomm.HashSpec(*hash, salt, 1, true)
	if _, err := ghostcomm.NewProcessor(spec); err != nil {
		return usageErrorf("-hash must be sha256, sha3-256 or sha512, not %q", *hash)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := newProgress(e.stderr)
	fmt.Fprintln(e.stdout, id)
	progress.line("node identity %s (the Primary's operator enrolls it: ghostcomm nodes add NAME %s)", id, id)
	tor, err := tf.start(ctx, logger, progress)
	if err != nil {
		return interrupted(ctx, progress, err)
	}
	defer tor.close()

	// An invite with a client authorization key (the Primary runs with
	// -client-auth): the node's tor gets the key, as send gives it to the
	// sender's.
	dialer := authDialer{Dialer: tor.dialer, auth: tor.ctrl}
	rn, err := ghostcomm.NewRemoteNode(tor.ctrl, dialer, ghostcomm.RemoteNodeConfig{
		Identity: key, Invite: inv, Retry: *retry, Logger: logger,
		Node: ghostcomm.NodeConfig{Processor: spec},
	})
	if err != nil {
		return interrupted(ctx, progress, fmt.Errorf("starting the node: %w", err))
	}
	defer rn.Close()
	progress.line("joining the Primary %s", inv.Primary.Addr())

	<-ctx.Done()
	stop() // a second signal ends the process at once
	progress.line("stopping: removing onions (joined %d lock-cycles)", rn.Joined())
	if err := errors.Join(rn.Close(), tor.close()); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	return nil
}

// authDialer is a Dialer whose tor takes client authorization keys through
// its controller.
type authDialer struct {
	ghostcomm.Dialer
	auth ghostcomm.ClientAuthorizer
}

func (d authDialer) AddClientAuth(ctx context.Context, serviceID string, key [32]byte) error {
	return d.auth.AddClientAuth(ctx, serviceID, key)
}
