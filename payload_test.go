package ghostcomm_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

func TestPayloadOnlyForRequestingClient(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	other, err := NewClient(hn.net.Dialer(), hn.primary.Invite(nil), ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	req, nonce := hn.client.PayloadRequest()
	box, err := hn.primary.AnswerRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.OpenPayload(box, nonce); err != nil {
		t.Fatalf("client A cannot open its own payload: %v", err)
	}
	if _, err := other.OpenPayload(box, nonce); !errors.Is(err, ErrAuth) {
		t.Fatalf("client B opening A's payload: got %v, want ErrAuth", err)
	}
}

func TestPayloadEveryByteFlipRejected(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	req, nonce := hn.client.PayloadRequest()
	box, err := hn.primary.AnswerRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	typed := []error{ErrAuth, ErrMalformed, ErrUnsupportedVersion}
	for i := range box {
		mut := bytes.Clone(box)
		mut[i] ^= 1 << (i % 8)
		_, err := hn.client.OpenPayload(mut, nonce)
		if err == nil {
			t.Fatalf("byte %d flipped: payload accepted", i)
		}
		if !isAny(err, typed...) {
			t.Fatalf("byte %d flipped: untyped error %v", i, err)
		}
	}
}

func TestPayloadSignedContentAltered(t *testing.T) {
	// Altering any byte of the signed content (and sealing it again, as
	// someone holding the client's public key could) breaks the signature
	// or the structure.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	_, nonce := hn.client.PayloadRequest()
	genuine, err := ForgePayload(hn.primary, hn.client, hn.cycle, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.OpenPayload(genuine, nonce); err != nil {
		t.Fatalf("genuine payload refused: %v", err)
	}
	typed := []error{ErrBadSignature, ErrMalformed, ErrWrongPrimary, ErrUnsupportedVersion, ErrAuth}
	// The signed form is 2 + signature + content; step through it.
	for i := 0; ; i += 7 {
		done := false
		box, err := ForgePayload(hn.primary, hn.client, hn.cycle, nonce, func(b []byte) {
			if i >= len(b) {
				done = true
				return
			}
			b[i] ^= 0x80 >> (i % 8)
		})
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		_, err = hn.client.OpenPayload(box, nonce)
		if err == nil {
			t.Fatalf("signed byte %d altered: payload accepted", i)
		}
		if !isAny(err, typed...) {
			t.Fatalf("signed byte %d altered: untyped error %v", i, err)
		}
	}
}

func TestPayloadFromAnotherPrimaryRejected(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	impostor, err := NewPrimary(ctx, hn.net.Controller(), hn.net.Dialer(), PrimaryConfig{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer impostor.Close()
	_, nonce := hn.client.PayloadRequest()
	box, err := ForgePayload(impostor, hn.client, impostor.Cycle(), nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.OpenPayload(box, nonce); !errors.Is(err, ErrWrongPrimary) {
		t.Fatalf("got %v, want ErrWrongPrimary", err)
	}
	// And through the network: a client whose invite pins the first
	// Primary's key but names the impostor's onion refuses the payload.
	inv := hn.primary.Invite(nil)
	inv.Primary = impostor.Onion()
	c, err := NewClient(hn.net.Dialer(), inv, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Fetch(ctx); !errors.Is(err, ErrWrongPrimary) {
		t.Fatalf("Fetch from an impostor: got %v, want ErrWrongPrimary", err)
	}
}

func TestPayloadAnswersOnlyItsRequest(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	req, nonce := hn.client.PayloadRequest()
	box, err := hn.primary.AnswerRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	nonce[0] ^= 1 // the client asked with another nonce
	if _, err := hn.client.OpenPayload(box, nonce); !errors.Is(err, ErrReplay) {
		t.Fatalf("got %v, want ErrReplay", err)
	}
}

func TestPrimaryRejectsBadRequests(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	req, _ := hn.client.PayloadRequest()
	for name, body := range map[string][]byte{
		"empty":        {},
		"version":      append([]byte{9}, req[1:]...),
		"truncated":    req[:len(req)-1],
		"trailing":     append(bytes.Clone(req), 0),
		"key garbage":  append(bytes.Clone(req[:33]), 0, 3, 1, 2, 3),
		"no key":       append(bytes.Clone(req[:33]), 0, 0),
		"huge key len": append(bytes.Clone(req[:33]), 0xff, 0xff),
	} {
		if _, err := hn.primary.AnswerRequest(body); !isAny(err, ErrMalformed, ErrUnsupportedVersion) {
			t.Errorf("%s: got %v, want ErrMalformed or ErrUnsupportedVersion", name, err)
		}
	}
}

// forgeAndOpen forges, for the hop net's client, a payload of its cycle
// signed by its Primary and altered as f says, and opens it as Fetch does.
func forgeAndOpen(t *testing.T, hn *hopNet, f Forgery) error {
	t.Helper()
	_, nonce := hn.client.PayloadRequest()
	box, err := ForgePayloadWith(hn.primary, hn.client, hn.cycle, nonce, f)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.OpenPayload(box, nonce)
	return err
}

func TestPayloadForgeryControl(t *testing.T) {
	// The tests below alter one thing each; unaltered, the forged payload
	// is genuine and accepted, so each refusal is that one check's.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	if err := forgeAndOpen(t, hn, Forgery{}); err != nil {
		t.Fatalf("unaltered payload refused: %v", err)
	}
}

// Check 5: the client fingerprint in the signed payload is the client's own.
func TestPayloadNamingAnotherClientRefused(t *testing.T) {
	// The Primary signed a payload for client B, and someone sealed it to
	// client A (only B's fingerprint and A's public key are needed): A
	// refuses it, although it opens and verifies.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	other, err := NewClient(hn.net.Dialer(), hn.primary.Invite(nil), ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	fpr := other.Fingerprint()
	if err := forgeAndOpen(t, hn, Forgery{Client: &fpr}); !errors.Is(err, ErrAuth) {
		t.Fatalf("payload naming another client: got %v, want ErrAuth", err)
	}
}

// Check 6: the sealed box's timestamp is the cycle's NotBefore.
func TestPayloadBoxTimestampChecked(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	for _, d := range []int64{1, -1, 3600} {
		ts := hn.cycle.NotBefore.Unix() + d
		if err := forgeAndOpen(t, hn, Forgery{BoxTS: &ts}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("box timestamp NotBefore%+d: got %v, want ErrMalformed", d, err)
		}
	}
}

// Check 7: every onion key is a valid ed25519 point.
func TestPayloadInvalidOnionKeyRefused(t *testing.T) {
	offCurve := make([]byte, 32)
	for y := byte(2); ; y++ { // the first small y that is not on the curve
		offCurve[0] = y
		if err := onionaddr.CheckKey(offCurve); err != nil {
			break
		}
	}
	// A point of order 8 (on the curve, but tor refuses it).
	lowOrder := []byte{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a}
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	for name, key := range map[string][]byte{"off curve": offCurve, "order 8": lowOrder} {
		for node := range 3 {
			err := forgeAndOpen(t, hn, Forgery{Cycle: func(cy *Cycle) {
				cy.Nodes[node].Onion.ServiceID = onionaddr.ServiceID(key)
			}})
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, onionaddr.ErrInvalid) {
				t.Fatalf("%s onion key for node %d in a signed payload: got %v, want ErrMalformed", name, node, err)
			}
		}
	}
}

// Check 8: the cycle is valid now.
func TestPayloadStaleCycleRefused(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	now := time.Now().Truncate(time.Second)
	for name, nb := range map[string]time.Time{
		"ended an hour ago": now.Add(-2 * time.Hour),
		"ended just now":    now.Add(-time.Hour - time.Second),
		"starts in an hour": now.Add(time.Hour),
	} {
		err := forgeAndOpen(t, hn, Forgery{Cycle: func(cy *Cycle) {
			cy.NotBefore, cy.NotAfter = nb, nb.Add(time.Hour)
		}})
		if !errors.Is(err, ErrStaleCycle) {
			t.Fatalf("cycle that %s: got %v, want ErrStaleCycle", name, err)
		}
	}
}

func TestClientCloseWipesKey(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	req, nonce := hn.client.PayloadRequest()
	box, err := hn.primary.AnswerRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.OpenPayload(box, nonce); err != nil {
		t.Fatalf("before Close: %v", err)
	}
	secrets := hn.client.KeyMaterial()
	if len(secrets) != 2 {
		t.Fatalf("%d private keys, want a signing key and a decryption key", len(secrets))
	}
	for i, s := range secrets {
		if !slices.ContainsFunc(s, func(b byte) bool { return b != 0 }) {
			t.Fatalf("private key %d is zero before Close", i)
		}
	}
	for range 2 { // Close is idempotent
		if err := hn.client.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range secrets {
		if slices.ContainsFunc(s, func(b byte) bool { return b != 0 }) {
			t.Errorf("private key %d not zeroed by Close", i)
		}
	}
	if _, err := hn.client.OpenPayload(box, nonce); !errors.Is(err, ErrClosed) {
		t.Fatalf("payload opened after Close: got %v, want ErrClosed", err)
	}
}

func TestClientCloseDuringPayloadOpening(t *testing.T) {
	t.Parallel()
	// Payloads being opened (with the private key) while Close wipes it:
	// under the race detector, no unsynchronized access to the key; each
	// opening either succeeds or fails with ErrClosed. The openings touch
	// no network, so nothing else orders them with Close. Several rounds,
	// because the race detector sees a race only when the accesses meet.
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	for range 20 {
		c, err := NewClient(hn.net.Dialer(), hn.primary.Invite(nil), ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		req, nonce := c.PayloadRequest()
		box, err := hn.primary.AnswerRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		const workers = 4
		errs := make(chan error, workers)
		started := make(chan struct{}, workers)
		for range workers {
			go func() {
				var err error
				for n := 0; err == nil; n++ {
					_, err = c.OpenPayload(box, nonce)
					if n == 0 {
						started <- struct{}{}
					}
				}
				errs <- err
			}()
		}
		for range workers {
			<-started
		}
		c.Close()
		for range workers {
			if err := <-errs; !errors.Is(err, ErrClosed) {
				t.Fatalf("opening during Close: got %v, want ErrClosed", err)
			}
		}
	}
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
