// Package errs holds the sentinel errors that ghostcomm's internal packages
// return and package ghostcomm exports under the same names.
package errs

import (
	"context"
	"errors"
	"time"
)

var (
	ErrMalformed          = errors.New("ghostcomm: malformed input")
	ErrUnsupportedVersion = errors.New("ghostcomm: unsupported version")
	ErrAuth               = errors.New("ghostcomm: authentication failed")
	ErrFrameTooLarge      = errors.New("ghostcomm: frame too large")
	ErrReplay             = errors.New("ghostcomm: replayed message")
	ErrBusy               = errors.New("ghostcomm: hop busy")
	ErrClosed             = errors.New("ghostcomm: closed")
)

// CtxEnded returns ctx.Err(), or context.DeadlineExceeded once ctx's
// deadline has passed: an operation whose I/O deadline is ctx's can fail
// with a timeout a moment before ctx itself says it is done, and that
// failure is the caller's own deadline.
func CtxEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
