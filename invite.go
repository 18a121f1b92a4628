package ghostcomm

import (
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"

	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// invitePrefix starts every invite string; the digit is the format version.
const invitePrefix = "ghostcomm1:"

// Invite is what one user hands another so that the other can use their
// network: the Primary's onion address and the fingerprint of the key that
// signs its payloads, and, when the Primary's onion requires v3 client
// authorization, the client's x25519 private key for it.
//
// Its string form is one copyable line:
//
//	ghostcomm1:<56-char service id>:<port>:<64 hex digits of fingerprint>[:<52-char base32 client auth key>]
type Invite struct {
	Primary     Onion
	Fingerprint Fingerprint
	// ClientAuthKey, if not nil, is the x25519 private key that tor must be
	// given (ONION_CLIENT_AUTH_ADD) to reach the Primary.
	ClientAuthKey *[32]byte
}

var authEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// String returns the invite's copyable form.
func (inv Invite) String() string {
	s := fmt.Sprintf("%s%s:%d:%s", invitePrefix, inv.Primary.ServiceID, inv.Primary.Port, inv.Fingerprint)
	if inv.ClientAuthKey != nil {
		s += ":" + strings.ToLower(authEncoding.EncodeToString(inv.ClientAuthKey[:]))
	}
	return s
}

// ParseInvite parses an invite string. Surrounding white space is ignored.
// Errors match ErrBadInvite.
func ParseInvite(s string) (Invite, error) {
	var inv Invite
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, invitePrefix)
	if !ok {
		return inv, fmt.Errorf("%w: must start with %q", ErrBadInvite, invitePrefix)
	}
	f := strings.Split(rest, ":")
	if len(f) != 3 && len(f) != 4 {
		return inv, fmt.Errorf("%w: expected 3 or 4 fields after the prefix, got %d", ErrBadInvite, len(f))
	}
	id := strings.ToLower(f[0])
	if _, err := onionaddr.Parse(id); err != nil || strings.HasSuffix(id, ".onion") {
		return inv, fmt.Errorf("%w: bad onion service id", ErrBadInvite)
	}
	port, err := strconv.Atoi(f[1])
	if err != nil || port < 1 || port > 65535 {
		return inv, fmt.Errorf("%w: bad port %q", ErrBadInvite, f[1])
	}
	fpr, err := hexFingerprint(strings.ToLower(f[2]))
	if err != nil {
		return inv, err
	}
	inv = Invite{Primary: Onion{ServiceID: id, Port: port}, Fingerprint: fpr}
	if len(f) == 4 {
		k, err := authEncoding.DecodeString(strings.ToUpper(f[3]))
		if err != nil || len(k) != 32 {
			return Invite{}, fmt.Errorf("%w: bad client authorization key", ErrBadInvite)
		}
		var key [32]byte
		copy(key[:], k)
		inv.ClientAuthKey = &key
	}
	return inv, nil
}
