// Package tortest is an in-process fake Tor for tests, in the manner of
// net/http/httptest: a whole ghostcomm network runs in one process with no
// tor installed.
//
// A Network links its Controllers (ghostcomm.TorController) and Dialers
// (ghostcomm.Dialer): a service that a Controller creates is reachable through
// every Dialer of the same Network, at a well-formed v3 onion address, by a
// real loopback TCP connection to the service's Target.
//
//	tor := tortest.NewNetwork(tortest.Config{})
//	defer tor.Close()
//	ctrl, dialer := tor.Controller(), tor.Dialer()
//
// The fake behaves like tor where code under test can tell the difference:
//
//   - Service ids are the v3 addresses of the services' ed25519 keys
//     (OnionConfig.Key, or a fresh key).
//   - A dial to an unknown, removed, not yet published service, or to a
//     virtual port the service does not have, fails with an error matching
//     ghostcomm.ErrOnionNotFound; other failures match
//     ghostcomm.ErrOnionUnreachable. Errors are *DialError values carrying
//     the SOCKS reply code tor would send (Code* constants).
//   - v3 client authorization is enforced: a service created with
//     OnionConfig.ClientAuth is reachable only by Dialers given a matching
//     key (Dialer.AddClientAuth).
//   - RemoveOnion, Controller.Close and Network.Close cut the connections
//     open to the services they remove, as tor closes their circuits.
//   - Descriptor publication can take time (Network.SetPublishDelay).
//
// Hooks make the network misbehave on demand, safely while traffic flows:
// dial latency, dial failures, CreateOnion failures, partitions (a service
// temporarily unreachable), severed connections and wrapped (slow or
// corrupting) connections. Per-service dial counters (Network.Stats) and the
// list of live services (Network.Onions) let tests check what happened.
//
// Clock is a fake ghostcomm.Clock that moves only when told to.
//
// tortest imports ghostcomm, so the root package's own tests (package
// ghostcomm) cannot import it: use an external test package (package
// ghostcomm_test).
package tortest
