package torctl

import (
	"bufio"
	"crypto/ed25519"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTor is a minimal tor control port for tests that need no tor: NULL
// authentication, SETEVENTS, ADD_ONION (random service IDs), DEL_ONION,
// GETINFO onions/current, ONION_CLIENT_AUTH_ADD, TAKEOWNERSHIP, QUIT. After
// ADD_ONION it sends "650 HS_DESC UPLOADED <id>" to every connection
// subscribed to HS_DESC, after the reply (or before it, with
// uploadBeforeReply), unless noUpload is set.
type fakeTor struct {
	t *testing.T
	l net.Listener

	mu                sync.Mutex
	conns             map[net.Conn]*fakeConn
	onions            map[string]net.Conn // id → owning connection
	commands          []string
	uploadBeforeReply bool
	uploadDelay       func() time.Duration
	noUpload          bool
	answerID          string        // if set, ADD_ONION answers this ID
	addReplyDelay     time.Duration // ADD_ONION's reply comes this late
	refusePoW         bool          // answer ADD_ONION with PoW keywords as tor 0.4.8 does
	wg                sync.WaitGroup
}

type fakeConn struct {
	wmu        sync.Mutex
	w          *bufio.Writer
	subscribed bool
}

func newFakeTor(t *testing.T) *fakeTor {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTor{t: t, l: l, conns: map[net.Conn]*fakeConn{}, onions: map[string]net.Conn{}}
	f.wg.Go(f.serve)
	t.Cleanup(f.close)
	return f
}

func (f *fakeTor) addr() string { return f.l.Addr().String() }

func (f *fakeTor) close() {
	f.l.Close()
	f.dropConnections()
	f.wg.Wait()
}

// dropConnections closes every client connection, as a dying tor would.
func (f *fakeTor) dropConnections() {
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

func (f *fakeTor) set(fn func(f *fakeTor)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *fakeTor) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{w: bufio.NewWriter(c)}
		f.mu.Lock()
		f.conns[c] = fc
		f.mu.Unlock()
		f.wg.Go(func() { f.handle(c, fc) })
	}
}

func (fc *fakeConn) send(lines ...string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	for _, l := range lines {
		fc.w.WriteString(l + "\r\n")
	}
	fc.w.Flush()
}

func (f *fakeTor) broadcastUpload(id string) {
	f.mu.Lock()
	var subs []*fakeConn
	for _, fc := range f.conns {
		if fc.subscribed {
			subs = append(subs, fc)
		}
	}
	f.mu.Unlock()
	for _, fc := range subs {
		fc.send("650 HS_DESC UPLOADED " + id + " UNKNOWN $0123456789ABCDEF0123456789ABCDEF01234567")
	}
}

func randomServiceID() string {
	pub, _, _ := ed25519.GenerateKey(nil)
	return ServiceID(pub)
}

func (f *fakeTor) handle(c net.Conn, fc *fakeConn) {
	defer func() {
		c.Close()
		f.mu.Lock()
		delete(f.conns, c)
		for id, owner := range f.onions {
			if owner == c { // ephemeral onions die with their connection
				delete(f.onions, id)
			}
		}
		f.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.commands = append(f.commands, line)
		f.mu.Unlock()
		cmd, args, _ := strings.Cut(line, " ")
		switch strings.ToUpper(cmd) {
		case "PROTOCOLINFO":
			fc.send("250-PROTOCOLINFO 1", "250-AUTH METHODS=NULL", `250-VERSION Tor="0.4.9.8"`, "250 OK")
		case "AUTHENTICATE", "TAKEOWNERSHIP":
			fc.send("250 OK")
		case "SETEVENTS":
			f.mu.Lock()
			fc.subscribed = strings.Contains(args, "HS_DESC")
			f.mu.Unlock()
			fc.send("250 OK")
		case "ADD_ONION":
			f.mu.Lock()
			if kw := powKeyword(args); f.refusePoW && kw != "" {
				f.mu.Unlock()
				fc.send(fmt.Sprintf("512 Bad arguments to ADD_ONION: Unrecognized keyword argument %q", kw))
				continue
			}
			id := f.answerID
			if id == "" {
				id = randomServiceID()
			}
			f.onions[id] = c
			before, none, replyDelay := f.uploadBeforeReply, f.noUpload, f.addReplyDelay
			delay := time.Duration(0)
			if f.uploadDelay != nil {
				delay = f.uploadDelay()
			}
			f.mu.Unlock()
			if before && !none {
				f.broadcastUpload(id)
			}
			time.Sleep(replyDelay)
			fc.send("250-ServiceID="+id, "250 OK")
			if !before && !none {
				f.wg.Go(func() {
					time.Sleep(delay)
					f.broadcastUpload(id)
				})
			}
		case "DEL_ONION":
			f.mu.Lock()
			_, ok := f.onions[args]
			delete(f.onions, args)
			f.mu.Unlock()
			if ok {
				fc.send("250 OK")
			} else {
				fc.send("552 Unknown Onion Service id")
			}
		case "GETINFO":
			switch args {
			case "onions/current":
				f.mu.Lock()
				var ids []string
				for id, owner := range f.onions {
					if owner == c {
						ids = append(ids, id)
					}
				}
				f.mu.Unlock()
				switch len(ids) {
				case 0:
					fc.send("551 No onion services of the specified type.")
				case 1:
					fc.send("250-onions/current="+ids[0], "250 OK")
				default:
					fc.send(append(append([]string{"250+onions/current="}, ids...), ".", "250 OK")...)
				}
			case "status/bootstrap-phase":
				fc.send(`250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`, "250 OK")
			default:
				fc.send(fmt.Sprintf("552 Unrecognized key %q", args))
			}
		case "ONION_CLIENT_AUTH_ADD":
			fc.send("252 Registered client and decrypted desc")
		case "QUIT":
			fc.send("250 closing connection")
			return
		default:
			fc.send("510 Unrecognized command")
		}
	}
}

// powKeyword returns the first proof-of-work keyword of ADD_ONION's
// arguments, or "".
func powKeyword(args string) string {
	for _, f := range strings.Fields(args) {
		k, _, _ := strings.Cut(f, "=")
		if strings.HasPrefix(strings.ToLower(k), "pow") {
			return k
		}
	}
	return ""
}

// onionCount returns how many onions the fake holds.
func (f *fakeTor) onionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.onions)
}

// commandsWithPrefix returns the commands received that start with prefix.
func (f *fakeTor) commandsWithPrefix(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.commands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}
