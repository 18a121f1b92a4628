package ghostcomm_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
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

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
