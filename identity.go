package ghostcomm

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/names"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// IdentityFile is the name of the file, inside a state directory, that holds
// a Primary's Identity.
const IdentityFile = "identity"

// MaxIdentitySize bounds the identity file that LoadIdentity reads.
const MaxIdentitySize = 1 << 20

// Errors of LoadIdentity, CreateIdentity and the Identity methods that write
// the state directory. They come wrapped in a *StateError that names the path.
var (
	// ErrStatePermissions: the state directory or the identity file may be
	// read or written by the group or by others (mode & 0o077 != 0), or
	// the identity file is not a regular file. Nothing was read or
	// written.
	ErrStatePermissions = errors.New("ghostcomm: state directory or file is accessible to group or others")
	// ErrStateCorrupt: the identity file does not parse (truncated,
	// edited, or not an identity file), or a key in it is not usable.
	ErrStateCorrupt = errors.New("ghostcomm: corrupt identity file")
	// ErrNoIdentity: the state directory has no identity file.
	ErrNoIdentity = errors.New("ghostcomm: no identity in the state directory")
	// ErrIdentityExists: CreateIdentity found an identity file already.
	ErrIdentityExists = errors.New("ghostcomm: an identity already exists in the state directory")
	// ErrClientName: AddClient was given a name that is not 1 to 64 of
	// [A-Za-z0-9._-] or is already taken; RemoveClient a name not listed.
	ErrClientName = errors.New("ghostcomm: bad or unknown client name")
)

// StateError is an error about one path of a state directory. Err matches
// ErrStatePermissions, ErrStateCorrupt, ErrNoIdentity, ErrIdentityExists, or
// is the operating system's error (fs.ErrPermission for a directory this
// process may not read, for example).
type StateError struct {
	Path string
	Err  error
}

// Error names the path and the cause.
func (e *StateError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *StateError) Unwrap() error { return e.Err }

// Identity is what keeps a Primary's invites valid across restarts: the
// OpenPGP key that signs its payloads (the invite pins its fingerprint), the
// ed25519 key of its onion service (the invite names its address), and the
// v3 client authorization keys of the clients allowed to reach it, if any.
//
// It lives in one file, IdentityFile, in a state directory that only its
// owner may read (mode 0700, the file 0600). Every write replaces the file
// atomically (a temporary file, fsync, rename), so a crash leaves the old or
// the new identity, never a mix. An Identity is not safe for concurrent use,
// and a state directory must be used by one process at a time.
//
// The file format, version 1, is text, one item per line:
//
//	ghostcomm-identity 1
//	signing-key <standard base64 of the binary OpenPGP private key>
//	onion-key <standard base64 of the 32-byte ed25519 seed>
//	client <name> <lowercase unpadded base32 of the x25519 private key>
//	end
//
// with zero or more client lines, names unique, and each line ending in a
// newline; the last line, "end", shows that the file was not truncated.
// Nothing else is accepted.
type Identity struct {
	// Key signs the Primary's payloads (unlocked, curve25519).
	Key *pgp.Key
	// OnionKey is the Primary's onion service key.
	OnionKey ed25519.PrivateKey
	// Clients are the clients allowed to reach the Primary's onion. Empty:
	// anyone holding the invite.
	Clients []ClientKey

	dir string
	fpr Fingerprint // of Key
}

// ClientKey is one client's v3 client authorization key, named so that an
// operator can revoke it.
type ClientKey struct {
	Name string
	// Private is the x25519 private key that the client's invite carries.
	Private [32]byte
}

// Public returns the x25519 public key that the Primary's onion lists.
func (c ClientKey) Public() [32]byte {
	k, err := ecdh.X25519().NewPrivateKey(c.Private[:])
	if err != nil { // cannot happen: every 32-byte string is an X25519 key
		panic(err)
	}
	var pub [32]byte
	copy(pub[:], k.PublicKey().Bytes())
	return pub
}

// Apply sets cfg's Key, OnionKey and ClientAuth from the identity.
func (id *Identity) Apply(cfg *PrimaryConfig) {
	cfg.Key = id.Key
	cfg.OnionKey = id.OnionKey
	cfg.ClientAuth = nil
	for _, c := range id.Clients {
		cfg.ClientAuth = append(cfg.ClientAuth, c.Public())
	}
}

// Invite returns the invite of client name, or of the Primary when name is
// empty, given the Primary's virtual onion port (DefaultOnionPort when
// zero). It is the invite a Primary started with Apply hands out, known
// before the Primary starts. ok is false when no client has that name, or
// the identity has no valid onion key.
func (id *Identity) Invite(name string, port int) (inv Invite, ok bool) {
	if port == 0 {
		port = DefaultOnionPort
	}
	if len(id.OnionKey) != ed25519.PrivateKeySize {
		return Invite{}, false
	}
	pub, _ := id.OnionKey.Public().(ed25519.PublicKey)
	inv = Invite{Primary: Onion{ServiceID: onionaddr.ServiceID(pub), Port: port}, Fingerprint: id.fpr}
	if name == "" {
		return inv, true
	}
	for _, c := range id.Clients {
		if c.Name == name {
			k := c.Private
			inv.ClientAuthKey = &k
			return inv, true
		}
	}
	return Invite{}, false
}

// LoadIdentity reads the identity of the state directory dir. The directory
// and the file must not be accessible to group or others
// (ErrStatePermissions). A missing file is ErrNoIdentity; one that does not
// parse is ErrStateCorrupt. Errors are *StateError.
func LoadIdentity(dir string) (*Identity, error) {
	b, err := readStateFile(dir, IdentityFile)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	id, err := parseIdentity(b)
	if err != nil {
		return nil, &StateError{filepath.Join(dir, IdentityFile), err}
	}
	id.dir = dir
	return id, nil
}

// readStateFile reads file name of the state directory dir, refusing a
// directory or file that group or others may access, a file that is not
// regular, or one larger than MaxIdentitySize. Errors are *StateError.
func readStateFile(dir, name string) ([]byte, error) {
	if err := checkStateDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &StateError{path, ErrNoIdentity}
	}
	if err != nil {
		return nil, &StateError{path, err}
	}
	if !fi.Mode().IsRegular() {
		return nil, &StateError{path, fmt.Errorf("%w: not a regular file", ErrStatePermissions)}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &StateError{path, fmt.Errorf("%w: mode %v", ErrStatePermissions, fi.Mode().Perm())}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &StateError{path, err}
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) { // replaced since Lstat
		return nil, &StateError{path, fmt.Errorf("%w: the file changed while it was opened", ErrStatePermissions)}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxIdentitySize+1))
	if err != nil {
		return nil, &StateError{path, err}
	}
	if len(b) > MaxIdentitySize {
		clear(b)
		return nil, &StateError{path, fmt.Errorf("%w: larger than %d bytes", ErrStateCorrupt, MaxIdentitySize)}
	}
	return b, nil
}

// CreateIdentity makes a new identity in dir, creating dir (mode 0700) if it
// does not exist: the onion key from rnd (nil: crypto/rand), the OpenPGP key
// from crypto/rand, as gopenpgp generates it. An existing identity file is
// never replaced: that is ErrIdentityExists.
func CreateIdentity(dir string, rnd io.Reader) (*Identity, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &StateError{dir, err}
	}
	if err := checkStateDir(dir); err != nil {
		return nil, err
	}
	kp, err := layer.GenerateKeyPair("ghostcomm primary")
	if err != nil {
		return nil, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	key, err := kp.Priv.GetKey(0)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: generating key: %w", err)
	}
	id := &Identity{Key: key, OnionKey: ed25519.NewKeyFromSeed(seed), dir: dir, fpr: kp.Fpr}
	clear(seed)
	if err := id.write(false); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadOrCreateIdentity loads the identity of dir, or creates one if dir has
// none. created reports which.
func LoadOrCreateIdentity(dir string, rnd io.Reader) (id *Identity, created bool, err error) {
	id, err = LoadIdentity(dir)
	if errors.Is(err, ErrNoIdentity) {
		id, err = CreateIdentity(dir, rnd)
		if errors.Is(err, ErrIdentityExists) { // another process won the race
			id, err = LoadIdentity(dir)
			return id, false, err
		}
		return id, err == nil, err
	}
	return id, false, err
}

// AddClient makes a client authorization key named name, adds it to the
// identity and saves the identity. A Primary started afterwards admits
// that client; one already running does not.
func (id *Identity) AddClient(name string, rnd io.Reader) (ClientKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if !names.Valid(name) || slices.ContainsFunc(id.Clients, func(c ClientKey) bool { return c.Name == name }) {
		return ClientKey{}, fmt.Errorf("%w: %q", ErrClientName, name)
	}
	c := ClientKey{Name: name}
	if _, err := io.ReadFull(rnd, c.Private[:]); err != nil {
		return ClientKey{}, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	old := id.Clients
	id.Clients = append(slices.Clip(id.Clients), c)
	if err := id.write(true); err != nil {
		id.Clients = old
		return ClientKey{}, err
	}
	return c, nil
}

// RemoveClient removes client name from the identity and saves it. A
// Primary started afterwards no longer admits that client.
func (id *Identity) RemoveClient(name string) error {
	i := slices.IndexFunc(id.Clients, func(c ClientKey) bool { return c.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrClientName, name)
	}
	old := id.Clients
	id.Clients = slices.Delete(slices.Clone(id.Clients), i, i+1)
	if err := id.write(true); err != nil {
		id.Clients = old
		return err
	}
	return nil
}

// checkStateDir refuses a state directory that is not a directory or that
// group or others may access.
func checkStateDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &StateError{dir, ErrNoIdentity}
	}
	if err != nil {
		return &StateError{dir, err}
	}
	if !fi.IsDir() {
		return &StateError{dir, errors.New("not a directory")}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &StateError{dir, fmt.Errorf("%w: mode %v (want 0700)", ErrStatePermissions, fi.Mode().Perm())}
	}
	return nil
}

// write saves the identity atomically: a temporary file in the same
// directory, synced, then renamed over the file (replace) or linked to its
// name (create, which fails if the file exists).
func (id *Identity) write(replace bool) error {
	b, err := id.marshal()
	if err != nil {
		return err
	}
	defer clear(b)
	return writeStateFile(id.dir, IdentityFile, b, replace)
}

// writeStateFile writes file name of the state directory dir atomically,
// mode 0600: a temporary file in dir, synced, then renamed over the file
// (replace) or linked to its name (create: ErrIdentityExists if the file
// exists). Errors are *StateError.
func writeStateFile(dir, name string, b []byte, replace bool) error {
	path := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+"-*") // mode 0600
	if err != nil {
		return &StateError{dir, err}
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename there is nothing left to remove
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &StateError{tmp, err}
	}
	if replace {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return &StateError{path, ErrIdentityExists}
	}
	if err != nil {
		return &StateError{path, err}
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		d.Sync()
		d.Close()
	}
	return nil
}

const identityHeader = "ghostcomm-identity 1"

var clientKeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func (id *Identity) marshal() ([]byte, error) {
	key, err := id.Key.Serialize()
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: serializing key: %w", err)
	}
	if len(id.OnionKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: onion key of %d bytes", ErrStateCorrupt, len(id.OnionKey))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsigning-key %s\nonion-key %s\n", identityHeader,
		base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(id.OnionKey.Seed()))
	clear(key)
	for _, c := range id.Clients {
		fmt.Fprintf(&b, "client %s %s\n", c.Name, strings.ToLower(clientKeyEncoding.EncodeToString(c.Private[:])))
	}
	b.WriteString("end\n")
	return b.Bytes(), nil
}

// parseIdentity parses the identity file format. Every error matches
// ErrStateCorrupt.
func parseIdentity(b []byte) (*Identity, error) {
	corrupt := func(line int, why string) error {
		return fmt.Errorf("%w: line %d: %s", ErrStateCorrupt, line, why)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: truncated (no final newline)", ErrStateCorrupt)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, MaxIdentitySize)
	id := &Identity{}
	n, end := 0, false
	for sc.Scan() {
		n++
		line := sc.Text()
		f := strings.Split(line, " ")
		switch {
		case end:
			return nil, corrupt(n, "text after the end line")
		case n > 3 && line == "end":
			end = true
		case n == 1:
			if line != identityHeader {
				return nil, corrupt(n, "not a ghostcomm identity file (version 1)")
			}
		case n == 2:
			if len(f) != 2 || f[0] != "signing-key" {
				return nil, corrupt(n, "expected signing-key")
			}
			k, fpr, err := parseSigningKey(f[1])
			if err != nil {
				return nil, corrupt(n, err.Error())
			}
			id.Key, id.fpr = k, fpr
		case n == 3:
			if len(f) != 2 || f[0] != "onion-key" {
				return nil, corrupt(n, "expected onion-key")
			}
			seed, err := base64.StdEncoding.Strict().DecodeString(f[1])
			if err != nil || len(seed) != ed25519.SeedSize {
				return nil, corrupt(n, "bad onion-key")
			}
			id.OnionKey = ed25519.NewKeyFromSeed(seed)
			clear(seed)
		default:
			if len(f) != 3 || f[0] != "client" {
				return nil, corrupt(n, "expected client")
			}
			if !names.Valid(f[1]) {
				return nil, corrupt(n, "bad client name")
			}
			if slices.ContainsFunc(id.Clients, func(c ClientKey) bool { return c.Name == f[1] }) {
				return nil, corrupt(n, "duplicate client name")
			}
			k, err := clientKeyEncoding.DecodeString(strings.ToUpper(f[2]))
			if err != nil || len(k) != 32 || strings.ToLower(clientKeyEncoding.EncodeToString(k)) != f[2] {
				return nil, corrupt(n, "bad client key")
			}
			c := ClientKey{Name: f[1]}
			copy(c.Private[:], k)
			id.Clients = append(id.Clients, c)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	if !end {
		return nil, fmt.Errorf("%w: truncated (no end line)", ErrStateCorrupt)
	}
	return id, nil
}

// parseSigningKey decodes and checks the Primary's signing key: a private,
// unlocked OpenPGP key with a curve25519 encryption key, as NewPrimary wants.
func parseSigningKey(s string) (*pgp.Key, Fingerprint, error) {
	bin, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, Fingerprint{}, errors.New("bad signing-key encoding")
	}
	defer clear(bin)
	k, err := pgp.NewKey(bin)
	if err != nil {
		return nil, Fingerprint{}, errors.New("signing-key is not an OpenPGP key")
	}
	if !k.IsPrivate() {
		return nil, Fingerprint{}, errors.New("signing-key is not a private key")
	}
	if ok, err := k.IsUnlocked(); err != nil || !ok {
		return nil, Fingerprint{}, errors.New("signing-key is locked")
	}
	kp, err := layer.NewKeyPair(k)
	if err != nil {
		return nil, Fingerprint{}, errors.New("signing-key is not a usable curve25519 key")
	}
	defer kp.Wipe()
	return k, kp.Fpr, nil
}
