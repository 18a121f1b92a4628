// Package errs holds the sentinel errors that ghostcomm's internal packages
// return and package ghostcomm exports under the same names.
package errs

import "errors"

var (
	ErrMalformed          = errors.New("ghostcomm: malformed input")
	ErrUnsupportedVersion = errors.New("ghostcomm: unsupported version")
	ErrAuth               = errors.New("ghostcomm: authentication failed")
	ErrFrameTooLarge      = errors.New("ghostcomm: frame too large")
	ErrReplay             = errors.New("ghostcomm: replayed message")
	ErrBusy               = errors.New("ghostcomm: hop busy")
	ErrClosed             = errors.New("ghostcomm: closed")
)
