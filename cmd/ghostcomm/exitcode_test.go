package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ghostcomm/ghostcomm"
)

// TestExitCode pins the documented exit code of each class of error.
func TestExitCode(t *testing.T) {
	hop := func(err error) error { return &ghostcomm.HopError{Hop: 2, Err: err} }
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{fmt.Errorf("send: %w", ghostcomm.ErrVerify), exitVerify},
		{usageErrorf("bad flag"), exitUsage},
		{fmt.Errorf("x: %w", ghostcomm.ErrBadInvite), exitUsage},
		{&usageError{&ghostcomm.StateError{Path: "d", Err: ghostcomm.ErrStatePermissions}}, exitUsage},
		{hop(ghostcomm.ErrHopTimeout), exitRetry},
		{hop(ghostcomm.ErrBusy), exitRetry},
		{ghostcomm.ErrOnionUnreachable, exitRetry},
		{context.DeadlineExceeded, exitRetry},
		{hop(ghostcomm.ErrStaleCycle), exitRefetch},
		{hop(ghostcomm.ErrHopUnreachable), exitRefetch},
		{ghostcomm.ErrOnionNotFound, exitRefetch},
		{ghostcomm.ErrWrongPrimary, exitPermanent},
		{hop(ghostcomm.ErrProcessing), exitPermanent},
		{ghostcomm.ErrFrameTooLarge, exitPermanent},
		{context.Canceled, exitPermanent},
		{errors.New("torctl: authenticating: 515"), exitPermanent},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
