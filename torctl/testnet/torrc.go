package testnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrUnsafeTorrc is matched (errors.Is) by every error of CheckTorrc: the
// torrc could let tor reach a network other than this private loopback one.
var ErrUnsafeTorrc = errors.New("testnet: unsafe torrc")

// role is what a tor does in the network.
type role int

const (
	roleAuthority role = iota
	roleRelay
	roleClient
)

func (r role) String() string {
	switch r {
	case roleAuthority:
		return "authority"
	case roleRelay:
		return "relay"
	default:
		return "client"
	}
}

// placeholderAuthority is the DirAuthority line of the torrc used only for
// `tor --list-fingerprint`: tor refuses TestingTorNetwork without one, and the
// real authorities' fingerprints are not known yet. It points at 127.0.0.1:1,
// where nothing listens.
const placeholderAuthority = "DirAuthority placeholder orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 127.0.0.1:1 0000000000000000000000000000000000000000"

// shared files every torrc refers to.
type commonFiles struct {
	geoIP      string // empty file
	resolvConf string // "nameserver 127.0.0.1"
	bandwidths string // V3BandwidthsFile
}

// torrcSpec is everything renderTorrc needs to know about one tor.
type torrcSpec struct {
	role        role
	nick        string
	dataDir     string
	controlPort int
	orPort      int      // authority, relay
	dirPort     int      // authority, relay
	socksPort   int      // client
	ownerPID    int      // __OwningControllerProcess, 0 to omit
	authorities []string // DirAuthority lines (without the keyword)
	extra       []string // extra lines (clients only), checked by checkExtraLine
	// votingInterval is the authorities' V3AuthVotingInterval in seconds
	// (0: 10).
	votingInterval int
}

// renderTorrc returns the torrc text for one tor of the private network, as
// described in /work/shared/tor-testnet.md.
func renderTorrc(s torrcSpec, f commonFiles) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line("# Written by ghostcomm torctl/testnet: a %s of a private Tor network on 127.0.0.1.", s.role)
	line("# It must never reach the public Tor network: keep the next two lines and")
	line("# only DirAuthority lines for this network's own 127.0.0.1 authorities.")
	line("TestingTorNetwork 1")
	line("UseDefaultFallbackDirs 0")
	line("DataDirectory %s", s.dataDir)
	line("PidFile %s/tor.pid", s.dataDir)
	line("Log notice file %s/notice.log", s.dataDir)
	line("SafeLogging 0")
	line("ShutdownWaitLength 0")
	line("RunAsDaemon 0")
	line("ControlPort 127.0.0.1:%d", s.controlPort)
	line("CookieAuthentication 1")
	line("PathsNeededToBuildCircuits 0.67")
	line("TestingDirAuthVoteGuard *")
	line("TestingDirAuthVoteHSDir *")
	line("V3AuthNIntervalsValid 2")
	line("LearnCircuitBuildTimeout 0")
	line("CircuitBuildTimeout 30")
	line("GeoIPFile %s", f.geoIP)
	line("GeoIPv6File %s", f.geoIP)
	if s.ownerPID > 0 {
		line("__OwningControllerProcess %d", s.ownerPID)
	}
	for _, a := range s.authorities {
		line("DirAuthority %s", a)
	}
	switch s.role {
	case roleAuthority, roleRelay:
		line("Nickname %s", s.nick)
		line("SocksPort 0")
		line("Address 127.0.0.1")
		line("ORPort 127.0.0.1:%d", s.orPort)
		line("DirPort 127.0.0.1:%d", s.dirPort)
		line("AssumeReachable 1")
		line("ExitRelay 0")
		line("ExitPolicy reject *:*")
		line("ServerDNSDetectHijacking 0")
		line("ServerDNSResolvConfFile %s", f.resolvConf)
		line("ContactInfo ghostcomm private test network on 127.0.0.1")
	case roleClient:
		line("SocksPort 127.0.0.1:%d ExtendedErrors", s.socksPort)
		// Directory information from the authorities, as soon as it is
		// published: the relays (directory caches too) fetch a new
		// consensus and its microdescriptors some seconds after it, and a
		// client that asked them first waited up to 20 s more to bootstrap.
		line("FetchDirInfoEarly 1")
		line("FetchDirInfoExtraEarly 1")
	}
	if s.role == roleAuthority {
		line("AuthoritativeDirectory 1")
		line("V3AuthoritativeDirectory 1")
		line("TestingV3AuthInitialVotingInterval 10")
		line("TestingV3AuthInitialVoteDelay 2")
		line("TestingV3AuthInitialDistDelay 2")
		voting := s.votingInterval
		if voting == 0 {
			voting = 10
		}
		line("V3AuthVotingInterval %d", voting)
		line("V3AuthVoteDelay 2")
		line("V3AuthDistDelay 2")
		line("AuthDirTestReachability 0")
		line("AuthDirFastGuarantee 1 byte")
		line("AuthDirVoteStableGuaranteeMinUptime 0")
		line("AuthDirVoteStableGuaranteeMTBF 0")
		line("V3BandwidthsFile %s", f.bandwidths)
		line("ConsensusParams vanguards-lite-enabled=0")
	}
	if len(s.extra) > 0 {
		line("# Extra lines given to AddTor:")
		for _, e := range s.extra {
			line("%s", e)
		}
	}
	return b.String()
}

// authorityLine returns a DirAuthority value (without the keyword).
func authorityLine(nick string, orPort, dirPort int, v3ident, fingerprint string) string {
	return fmt.Sprintf("%s orport=%d no-v2 v3ident=%s 127.0.0.1:%d %s", nick, orPort, v3ident, dirPort, fingerprint)
}

// forbiddenKeywords are torrc options that AddTor's extra lines may not set:
// they choose which network tor joins, or they are the harness's own.
var forbiddenKeywords = map[string]bool{
	"testingtornetwork":         true,
	"usedefaultfallbackdirs":    true,
	"dirauthority":              true,
	"alternatedirauthority":     true,
	"alternatebridgeauthority":  true,
	"dirauthorityfallbackrate":  true,
	"fallbackdir":               true,
	"bridge":                    true,
	"usebridges":                true,
	"clienttransportplugin":     true,
	"servertransportplugin":     true,
	"datadirectory":             true,
	"controlport":               true,
	"socksport":                 true,
	"__owningcontrollerprocess": true,
	"runasdaemon":               true,
	"pidfile":                   true,
	"hashedcontrolpassword":     true,
	"cookieauthentication":      true,
	"cookieauthfile":            true,
	"orport":                    true,
	"dirport":                   true,
}

// checkExtraLine refuses an extra torrc line that could change which network
// tor joins or break the harness.
func checkExtraLine(l string) error {
	if strings.ContainsAny(l, "\r\n\x00") {
		return fmt.Errorf("%w: extra line %q has a line break", ErrUnsafeTorrc, l)
	}
	t := strings.TrimSpace(l)
	if t == "" || strings.HasPrefix(t, "#") {
		return nil
	}
	if strings.HasSuffix(t, "\\") {
		return fmt.Errorf("%w: extra line %q continues on the next line", ErrUnsafeTorrc, l)
	}
	kw := strings.ToLower(strings.Fields(t)[0])
	if strings.HasPrefix(kw, "%") || strings.HasPrefix(kw, "+") || strings.HasPrefix(kw, "/") {
		return fmt.Errorf("%w: extra line %q: includes and +/ prefixes are not allowed", ErrUnsafeTorrc, l)
	}
	if forbiddenKeywords[kw] {
		return fmt.Errorf("%w: extra line %q sets %s, which the harness owns", ErrUnsafeTorrc, l, kw)
	}
	return nil
}

// CheckTorrc parses torrc text and returns an error matching ErrUnsafeTorrc
// unless it pins tor to a private network on 127.0.0.1:
//
//   - "TestingTorNetwork 1" and "UseDefaultFallbackDirs 0" are set (the last
//     value of each wins, as in tor);
//   - there is at least one DirAuthority line and each one names a
//     127.0.0.1:<dirport> address that is in authorityAddrs (when
//     authorityAddrs is not nil);
//   - nothing else names directory servers or bridges (FallbackDir,
//     AlternateDirAuthority, AlternateBridgeAuthority, Bridge, UseBridges 1,
//     transport plugins), includes other files (%include), or uses the +/
//     keyword prefixes or line continuations, which this parser does not
//     follow.
//
// Every torrc this package writes passes CheckTorrc before a tor reads it.
func CheckTorrc(torrc string, authorityAddrs []string) error {
	allowed := map[string]bool{}
	for _, a := range authorityAddrs {
		allowed[a] = true
	}
	var (
		testing, noFallback string
		authorities         int
	)
	sc := bufio.NewScanner(strings.NewReader(torrc))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			return fmt.Errorf("%w: line %d continues on the next line", ErrUnsafeTorrc, n)
		}
		fields := strings.Fields(l)
		kw := strings.ToLower(fields[0])
		args := fields[1:]
		if strings.HasPrefix(kw, "%") || strings.HasPrefix(kw, "+") || strings.HasPrefix(kw, "/") {
			return fmt.Errorf("%w: line %d: %q is not allowed", ErrUnsafeTorrc, n, fields[0])
		}
		switch kw {
		case "testingtornetwork":
			testing = strings.Join(args, " ")
		case "usedefaultfallbackdirs":
			noFallback = strings.Join(args, " ")
		case "dirauthority":
			addr, err := dirAuthorityAddr(args)
			if err != nil {
				return fmt.Errorf("%w: line %d: %v", ErrUnsafeTorrc, n, err)
			}
			if authorityAddrs != nil && !allowed[addr] {
				return fmt.Errorf("%w: line %d: DirAuthority %s is not one of this network's authorities", ErrUnsafeTorrc, n, addr)
			}
			authorities++
		case "alternatedirauthority", "alternatebridgeauthority", "fallbackdir", "bridge",
			"clienttransportplugin", "servertransportplugin":
			return fmt.Errorf("%w: line %d: %s is not allowed", ErrUnsafeTorrc, n, fields[0])
		case "usebridges":
			if strings.Join(args, " ") != "0" {
				return fmt.Errorf("%w: line %d: UseBridges must be 0", ErrUnsafeTorrc, n)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsafeTorrc, err)
	}
	if testing != "1" {
		return fmt.Errorf("%w: TestingTorNetwork 1 is missing", ErrUnsafeTorrc)
	}
	if noFallback != "0" {
		return fmt.Errorf("%w: UseDefaultFallbackDirs 0 is missing", ErrUnsafeTorrc)
	}
	if authorities == 0 {
		return fmt.Errorf("%w: no DirAuthority line: tor would use the public authorities", ErrUnsafeTorrc)
	}
	return nil
}

// dirAuthorityAddr returns the "127.0.0.1:port" of a DirAuthority line's
// arguments ([nickname] [flags] address:port fingerprint), or an error if
// that address is not on 127.0.0.1.
func dirAuthorityAddr(args []string) (string, error) {
	addr := ""
	for _, a := range args {
		if strings.HasPrefix(strings.ToLower(a), "ipv6=") {
			return "", fmt.Errorf("DirAuthority with an IPv6 address (%s)", a)
		}
		if strings.Contains(a, "=") || !strings.Contains(a, ":") {
			continue // nickname, flag, or fingerprint
		}
		if addr != "" {
			return "", fmt.Errorf("DirAuthority with two addresses (%s, %s)", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return "", errors.New("DirAuthority without an address")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("DirAuthority address %q: %v", addr, err)
	}
	if host != "127.0.0.1" {
		return "", fmt.Errorf("DirAuthority address %q is not on 127.0.0.1", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("DirAuthority address %q has a bad port", addr)
	}
	return addr, nil
}
