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

// TestMaxInFlight: with MaxInFlight 2, a third Send waits without reaching
// the network; waiting Sends are admitted in the order they were called; a
// waiting Send whose ctx ends returns the context's error at once and
// takes no turn; one waiting when the Client closes returns ErrClosed.
func TestMaxInFlight(t *testing.T) {
	registerOnce(t, gatedKind)
	gatedEnter, gatedRelease = make(chan string, 16), make(chan struct{})
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 1, Period: time.Hour,
		Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.ProcessorSpec{Name: "test-gated"} }},
		ghostcomm.ClientConfig{MaxInFlight: 2})
	// Let every message at the hop go before the network closes, also
	// when the test fails (cleanups run last registered first).
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(gatedRelease) }) }
	t.Cleanup(releaseAll)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := tn.client.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
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
