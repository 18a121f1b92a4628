package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Delayed acknowledgements on loopback.
//
// Linux delays the acknowledgement of a TCP segment by up to 40 ms when it
// has nothing to send back at once, and a sender with Nagle's algorithm on
// holds a small segment until every earlier one is acknowledged. On
// loopback, where a segment otherwise arrives in microseconds, each such
// hold is a 40 ms step, and on the private network it falls on tor's own
// connections between its relays: the same echo on one circuit takes 20 ms
// or 96 ms from round to round (torctl's TestIntegrationTorOverhead logs
// both kinds of figure). A route with "quickack 1" makes the kernel
// acknowledge at once on the connections that take it.
//
// LoopbackQuickAck reads whether the route to 127.0.0.1 carries it, and
// SetLoopbackQuickAck switches it; the report of bench/cmd/report uses them
// to measure the private network both ways. Both need iproute2's ip, and the
// switch needs CAP_NET_ADMIN; neither sends a packet.

// ErrNoIP is returned when iproute2's ip is not on PATH.
var ErrNoIP = errors.New("testnet: ip (iproute2) not found on PATH")

// LoopbackQuickAck reports whether the kernel's route to 127.0.0.1
// carries quickack 1, that is whether loopback connections acknowledge at
// once instead of delaying.
func LoopbackQuickAck() (bool, error) {
	routes, err := loopbackRoutes()
	if err != nil {
		return false, err
	}
	return routes[len(routes)-1].quickAck, nil
}

// SetLoopbackQuickAck sets or clears quickack 1 on the local routes that
// cover 127.0.0.1 (127.0.0.0/8 and 127.0.0.1), and returns a function that
// puts them back as they were. It applies to connections made after it:
// call it before the network starts.
func SetLoopbackQuickAck(on bool) (restore func() error, err error) {
	routes, err := loopbackRoutes()
	if err != nil {
		return nil, err
	}
	var done []route
	restore = func() error {
		var errs []error
		for _, r := range done {
			errs = append(errs, ipRoute("change", r.fields))
		}
		return errors.Join(errs...)
	}
	for _, r := range routes {
		if err := ipRoute("change", r.with(on)); err != nil {
			return nil, errors.Join(err, restore())
		}
		done = append(done, r)
	}
	if got, err := LoopbackQuickAck(); err != nil || got != on {
		return nil, errors.Join(fmt.Errorf("testnet: loopback quickack still %v after setting it to %v", got, on), err, restore())
	}
	return restore, nil
}

// route is one line of `ip -o route show table local` that covers
// 127.0.0.1, as its fields.
type route struct {
	fields   []string
	quickAck bool
}

// with is the route's fields for `ip route change table local` with
// quickack set to on (its other attributes as they are).
func (r route) with(on bool) []string {
	var f []string
	for i := 0; i < len(r.fields); i++ {
		if r.fields[i] == "quickack" {
			i++ // and its value
			continue
		}
		f = append(f, r.fields[i])
	}
	if on {
		f = append(f, "quickack", "1")
	}
	return f
}

func loopbackRoutes() ([]route, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, ErrNoIP
	}
	out, err := exec.Command("ip", "-o", "route", "show", "table", "local").Output()
	if err != nil {
		return nil, fmt.Errorf("testnet: ip route show table local: %w", err)
	}
	return parseLoopbackRoutes(out)
}

// parseLoopbackRoutes picks, out of `ip -o route show table local`, the
// "local" routes to 127.0.0.0/8 and to 127.0.0.1, least specific first.
func parseLoopbackRoutes(out []byte) ([]route, error) {
	var wide, exact *route
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 2 || f[0] != "local" {
			continue
		}
		r := route{fields: f}
		for i := 2; i < len(f); i++ {
			if f[i] == "quickack" {
				if i+1 >= len(f) {
					return nil, fmt.Errorf("testnet: route %q: quickack without a value", line)
				}
				r.quickAck = f[i+1] == "1"
			}
		}
		switch f[1] {
		case "127.0.0.0/8":
			wide = &r
		case "127.0.0.1", "127.0.0.1/32":
			exact = &r
		}
	}
	var rs []route
	for _, r := range []*route{wide, exact} {
		if r != nil {
			rs = append(rs, *r)
		}
	}
	if len(rs) == 0 {
		return nil, errors.New("testnet: no local route to 127.0.0.1 in table local")
	}
	return rs, nil
}

func ipRoute(verb string, fields []string) error {
	args := append([]string{"route", verb, "table", "local"}, fields...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
