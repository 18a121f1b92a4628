package ghostcomm_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// gated is a processor kind whose every message announces itself on
// gatedEnter and then waits for gatedRelease: a test decides when each
// message's hop finishes. Not deterministic, so that the client does not
// run it to check the answer.
var (
	gatedEnter   chan string
	gatedRelease chan struct{}
)

var gatedKind = ghostcomm.ProcessorKind{Name: "test-gated", New: func(map[string]string) (ghostcomm.Processor, error) {
	return ghostcomm.ProcessorFunc(func(b []byte) ([]byte, error) {
		gatedEnter <- string(b)
		<-gatedRelease
		return append([]byte("answer to "), b...), nil
	}), nil
}}

// gatedNet is a network of one test-gated node and a Client of cfg that
// has fetched its cycle. releaseAll lets every message at the hop go; it
// also runs before the network closes, when the test fails too (cleanups
// run last registered first).
func gatedNet(ctx context.Context, t *testing.T, cfg ghostcomm.ClientConfig) (tn *testNet, releaseAll func()) {
	t.Helper()
	registerOnce(t, gatedKind)
	gatedEnter, gatedRelease = make(chan string, 16), make(chan struct{})
	tn = newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 1, Period: time.Hour,
		Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.ProcessorSpec{Name: "test-gated"} }}, cfg)
	var releaseOnce sync.Once
	releaseAll = func() { releaseOnce.Do(func() { close(gatedRelease) }) }
	t.Cleanup(releaseAll)
	if _, err := tn.client.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	return tn, releaseAll
}

// TestMaxInFlight: with MaxInFlight 2, a third Send waits without reaching
// the network; waiting Sends are admitted in the order they were called; a
// waiting Send whose ctx ends returns the context's error at once and
// takes no turn; one waiting when the Client closes returns ErrClosed.
func TestMaxInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tn, releaseAll := gatedNet(ctx, t, ghostcomm.ClientConfig{MaxInFlight: 2})
	type done struct {
		msg string
		err error
	}
	results := make(chan done, 16)
	send := func(ctx context.Context, msg string) {
		go func() {
			res, err := tn.client.Send(ctx, []byte(msg))
			if err == nil && string(res.Data) != "answer to "+msg {
				err = errors.New("wrong answer " + string(res.Data))
			}
			results <- done{msg, err}
		}()
	}
	enter := func() string {
		t.Helper()
		select {
		case m := <-gatedEnter:
			return m
		case <-ctx.Done():
			t.Fatal("no message reached the hop")
			return ""
		}
	}
	// finish lets one message at the hop go (whichever takes the token)
	// and waits for its Send to return.
	finish := func() {
		t.Helper()
		gatedRelease <- struct{}{}
		if r := <-results; r.err != nil {
			t.Fatalf("%q: %v", r.msg, r.err)
		}
	}

	// Two in flight, both at the hop.
	send(ctx, "a")
	send(ctx, "b")
	enter()
	enter()
	// Three more, called one after the other: all wait.
	for i, m := range []string{"c", "d", "e"} {
		send(ctx, m)
		waitFor(t, func() bool { return tn.client.SendsWaiting() == i+1 })
	}
	// A fourth waiter gives up: its own cancel, at once, and no turn used.
	cctx, ccancel := context.WithCancel(ctx)
	send(cctx, "cancelled")
	waitFor(t, func() bool { return tn.client.SendsWaiting() == 4 })
	ccancel()
	if r := <-results; r.msg != "cancelled" || !errors.Is(r.err, context.Canceled) || ghostcomm.ActionFor(r.err) != ghostcomm.ActionGiveUp {
		t.Fatalf("cancelled while waiting: %q, %v", r.msg, r.err)
	}
	var he *ghostcomm.HopError
	waitFor(t, func() bool { return tn.client.SendsWaiting() == 3 })
	// A waiter whose deadline passes: DeadlineExceeded, naming no hop.
	dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer dcancel()
	send(dctx, "late")
	if r := <-results; r.msg != "late" || !errors.Is(r.err, context.DeadlineExceeded) || errors.As(r.err, &he) {
		t.Fatalf("deadline while waiting: %q, %v", r.msg, r.err)
	}
	select {
	case m := <-gatedEnter:
		t.Fatalf("%q reached the hop with two in flight", m)
	default:
	}
	// Each finished Send lets in the longest waiting one.
	finish()
	if m := enter(); m != "c" {
		t.Fatalf("after one finished, %q came in; want c", m)
	}
	finish()
	if m := enter(); m != "d" {
		t.Fatalf("then %q; want d", m)
	}
	finish()
	if m := enter(); m != "e" {
		t.Fatalf("then %q; want e", m)
	}
	// Close with one waiting: ErrClosed for it and for the two under way
	// (Close does not wait for the hop).
	send(ctx, "f")
	waitFor(t, func() bool { return tn.client.SendsWaiting() == 1 })
	go tn.client.Close()
	sawF := false
	for range 3 {
		r := <-results
		if !errors.Is(r.err, ghostcomm.ErrClosed) {
			t.Fatalf("under way or waiting at Close: %q, %v", r.msg, r.err)
		}
		sawF = sawF || r.msg == "f"
	}
	if !sawF {
		t.Fatal("the waiting Send did not return")
	}
	releaseAll()
}

// TestMaxInFlightTimeout: the wait for a turn is part of a Send's Timeout. A
// Send with no deadline of its own, behind one held at a slow hop, returns
// DeadlineExceeded once the Client's Timeout has passed, naming no hop,
// while the one at the hop still holds its turn.
func TestMaxInFlightTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tn, releaseAll := gatedNet(ctx, t, ghostcomm.ClientConfig{MaxInFlight: 1, Timeout: timeout})
	held := make(chan error, 1)
	go func() {
		_, err := tn.client.Send(ctx, []byte("held")) // its own deadline: 20 s
		held <- err
	}()
	select {
	case <-gatedEnter:
	case <-ctx.Done():
		t.Fatal("the first message did not reach the hop")
	}
	t0 := time.Now()
	_, err := tn.client.Send(context.Background(), []byte("waits"))
	var he *ghostcomm.HopError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &he) {
		t.Fatalf("waiting past the Client's Timeout: %v", err)
	}
	if d := time.Since(t0); d < timeout {
		t.Fatalf("returned after %v, before the Timeout of %v", d, timeout)
	}
	select {
	case err := <-held:
		t.Fatalf("the held Send returned first: %v", err)
	default:
	}
	releaseAll()
	if err := <-held; err != nil {
		t.Fatalf("the held Send: %v", err)
	}
}
