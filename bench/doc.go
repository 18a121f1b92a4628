// Package bench measures ghostcomm's per-message cryptography side by side
// with its floor (the same work done with raw primitives, floor.go) and with
// lightning-onion's Sphinx (sphinx.go), and the whole in-process network on
// the fake Tor against the crypto-only bound of the same messages.
//
// It is its own module, so the library's go.mod does not carry the peer's
// dependencies. Run the benchmarks with
//
//	go test -bench . -count 5
//
// and write docs/PERFORMANCE.md (medians, ratios, targets) with
//
//	go run ./cmd/report
//
// (with -tor, also the figures of torctl's TestIntegrationTorOverhead on the
// private Tor network)
//
// The code here mirrors, function for function, what the library does per
// message (Client.sendVia, node.handle, node.relay) using the same
// internal/layer calls; tests in this package check that every setup does
// the work it claims, so that a broken benchmark fails loudly rather than
// measuring nothing.
package bench
