package ghostcomm

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// NodeIdentityFile is the name of the file, inside a remote node's state
// directory, that holds its identity key (RemoteNodeConfig.Identity).
const NodeIdentityFile = "node-identity"

const nodeIdentityHeader = "ghostcomm-node-identity 1"

// LoadOrCreateNodeIdentity returns the long-term ed25519 identity key of a
// remote node kept in the state directory dir, creating dir (mode 0700) and
// the key (from rnd; nil: crypto/rand) if there is none. created reports
// which. The same rules as LoadIdentity hold: the directory and the file
// must not be accessible to group or others (ErrStatePermissions), the
// file is written atomically with mode 0600 and never replaced, and a file
// that does not parse is ErrStateCorrupt. Errors are *StateError.
//
// The file format, version 1, is three lines, each ending in a newline:
//
//	ghostcomm-node-identity 1
//	identity-key <standard base64 of the 32-byte ed25519 seed>
//	end
func LoadOrCreateNodeIdentity(dir string, rnd io.Reader) (key ed25519.PrivateKey, created bool, err error) {
	key, err = loadNodeIdentity(dir)
	if !errors.Is(err, ErrNoIdentity) {
		return key, false, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, &StateError{dir, err}
	}
	if err := checkStateDir(dir); err != nil {
		return nil, false, err
	}
	seed := make([]byte, ed25519.SeedSize)
	defer clear(seed)
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, false, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	b := []byte(nodeIdentityHeader + "\nidentity-key " + base64.StdEncoding.EncodeToString(seed) + "\nend\n")
	defer clear(b)
	err = writeStateFile(dir, NodeIdentityFile, b, false)
	if errors.Is(err, ErrIdentityExists) { // another process won the race
		key, err = loadNodeIdentity(dir)
		return key, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return ed25519.NewKeyFromSeed(seed), true, nil
}

func loadNodeIdentity(dir string) (ed25519.PrivateKey, error) {
	b, err := readStateFile(dir, NodeIdentityFile)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	key, err := parseNodeIdentity(b)
	if err != nil {
		return nil, &StateError{filepath.Join(dir, NodeIdentityFile), err}
	}
	return key, nil
}

// parseNodeIdentity parses the node identity file format. Every error
// matches ErrStateCorrupt.
func parseNodeIdentity(b []byte) (ed25519.PrivateKey, error) {
	const prefix = nodeIdentityHeader + "\nidentity-key "
	const suffix = "\nend\n"
	if len(b) < len(prefix)+len(suffix) || string(b[:len(prefix)]) != prefix || string(b[len(b)-len(suffix):]) != suffix {
		return nil, fmt.Errorf("%w: not a ghostcomm node identity file (version 1), or truncated", ErrStateCorrupt)
	}
	enc := string(b[len(prefix) : len(b)-len(suffix)])
	seed, err := base64.StdEncoding.Strict().DecodeString(enc)
	defer clear(seed)
	// The decoder skips newlines: only the canonical encoding is the key.
	if err != nil || len(seed) != ed25519.SeedSize || base64.StdEncoding.EncodeToString(seed) != enc {
		return nil, fmt.Errorf("%w: bad identity-key", ErrStateCorrupt)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
