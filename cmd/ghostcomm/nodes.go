package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/names"
)

// nodesFile is the allow-list of remote nodes in a Primary's state
// directory, which "ghostcomm nodes" edits and a running "ghostcomm primary
// -remote" re-reads every nodesPoll.
const nodesFile = "nodes"

// maxNodesFile bounds what is read of the allow-list: 255 nodes per cycle,
// and room for many more enrolled.
const maxNodesFile = 1 << 20

// nodesPoll is how often a running Primary looks for a changed allow-list.
const nodesPoll = 2 * time.Second

// errNodesCorrupt: the allow-list does not parse.
var errNodesCorrupt = errors.New("corrupt node allow-list")

// nodeKeyEncoding writes a node identity key on one line that survives a
// shell and an e-mail: 52 characters, lowercase base32, no padding.
var nodeKeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func encodeNodeKey(k ed25519.PublicKey) string {
	return strings.ToLower(nodeKeyEncoding.EncodeToString(k))
}

// parseNodeKey parses the canonical encoding of a node identity key.
func parseNodeKey(s string) (ed25519.PublicKey, error) {
	k, err := nodeKeyEncoding.DecodeString(strings.ToUpper(s))
	if err != nil || len(k) != ed25519.PublicKeySize || encodeNodeKey(k) != s {
		return nil, fmt.Errorf("not a node identity key (52 characters of a-z and 2-7, as \"ghostcomm node -id\" prints): %q", s)
	}
	return k, nil
}

// enrolledNode is one line of the allow-list.
type enrolledNode struct {
	name     string
	key      ed25519.PublicKey
	operator string // the label that routes use to keep operators apart
}

const nodesHeader = "ghostcomm-nodes 1"

// marshalNodes writes the allow-list format, version 1:
//
//	ghostcomm-nodes 1
//	node <name> <key> <operator>
//	end
//
// with zero or more node lines; names and keys unique; name and operator 1
// to 64 of [A-Za-z0-9._-].
func marshalNodeList(nodes []enrolledNode) []byte {
	var b bytes.Buffer
	b.WriteString(nodesHeader + "\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "node %s %s %s\n", n.name, encodeNodeKey(n.key), n.operator)
	}
	b.WriteString("end\n")
	return b.Bytes()
}

// parseNodeList parses the allow-list; every error matches errNodesCorrupt.
func parseNodeList(b []byte) ([]enrolledNode, error) {
	corrupt := func(line int, why string) error {
		return fmt.Errorf("%w: line %d: %s", errNodesCorrupt, line, why)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: truncated (no final newline)", errNodesCorrupt)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxNodesFile)
	var nodes []enrolledNode
	n, end := 0, false
	for sc.Scan() {
		n++
		line := sc.Text()
		f := strings.Split(line, " ")
		switch {
		case end:
			return nil, corrupt(n, "text after the end line")
		case n == 1:
			if line != nodesHeader {
				return nil, corrupt(n, "not a ghostcomm node allow-list (version 1)")
			}
		case line == "end":
			end = true
		default:
			if len(f) != 4 || f[0] != "node" {
				return nil, corrupt(n, "expected node NAME KEY OPERATOR")
			}
			if !names.Valid(f[1]) || !names.Valid(f[3]) {
				return nil, corrupt(n, "bad name or operator")
			}
			k, err := parseNodeKey(f[2])
			if err != nil {
				return nil, corrupt(n, "bad key")
			}
			if slices.ContainsFunc(nodes, func(e enrolledNode) bool { return e.name == f[1] || e.key.Equal(k) }) {
				return nil, corrupt(n, "duplicate name or key")
			}
			nodes = append(nodes, enrolledNode{name: f[1], key: k, operator: f[3]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", errNodesCorrupt, err)
	}
	if !end {
		return nil, fmt.Errorf("%w: truncated (no end line)", errNodesCorrupt)
	}
	return nodes, nil
}

// readNodeList reads the allow-list of state directory dir: none when
// there is no file. A file that group or others may write or read, or that
// is not a regular file, is refused as the identity is.
func readNodeList(dir string) ([]enrolledNode, error) {
	path := filepath.Join(dir, nodesFile)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ghostcomm.ErrStatePermissions)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: %w: mode %v", path, ghostcomm.ErrStatePermissions, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("%s: %w: the file changed while it was opened", path, ghostcomm.ErrStatePermissions)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxNodesFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxNodesFile {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, errNodesCorrupt, maxNodesFile)
	}
	nodes, err := parseNodeList(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nodes, nil
}

// nodes enrolls, revokes or lists the remote nodes of a Primary, and
// prints the invite that node operators give "ghostcomm node". A running
// "ghostcomm primary -remote" applies a change within nodesPoll.
func (e *env) nodes(args []string) error {
	fs := e.newFlags("nodes", "ghostcomm nodes -state DIR [-operator LABEL] add NAME KEY | remove NAME | list | invite\n\n"+
		"add enrolls the node whose identity KEY \"ghostcomm node -id\" printed, and prints the invite to\n"+
		"give its operator; remove revokes it (left out of the next lock-cycle); list shows the nodes;\n"+
		"invite prints the invite again. A running \"ghostcomm primary -remote\" applies a change within\n"+
		"a few seconds. Nodes with the same operator label never serve two hops of one message.")
	state := fs.String("state", "", "state directory of the Primary (default $"+envStateDir+")")
	operator := fs.String("operator", "", "add: the operator label of the node (default: its NAME)")
	port := fs.Int("port", ghostcomm.DefaultOnionPort, "the Primary's onion port, for the invite")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	*state = stateDir(*state)
	if *state == "" {
		return usageErrorf("nodes: -state DIR is required")
	}
	a := fs.Args()
	want := map[string]int{"add": 3, "remove": 2, "list": 1, "invite": 1}
	if len(a) == 0 || want[a[0]] != len(a) {
		return usageErrorf("nodes: add NAME KEY, remove NAME, list or invite")
	}
	load := ghostcomm.LoadIdentity
	if a[0] == "add" || a[0] == "invite" { // before the Primary's first run too
		load = func(dir string) (*ghostcomm.Identity, error) {
			id, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil)
			return id, err
		}
	}
	id, err := load(*state)
	if err != nil {
		return &usageError{fmt.Errorf("state directory: %w", err)}
	}
	list, err := readNodeList(*state)
	if err != nil {
		return &usageError{fmt.Errorf("state directory: %w", err)}
	}
	inv, _ := id.Invite("", *port)
	write := func() error {
		return writeFileAtomic(filepath.Join(*state, nodesFile), marshalNodeList(list))
	}
	switch a[0] {
	case "list":
		for _, n := range list {
			fmt.Fprintf(e.stdout, "%s %s %s\n", n.name, encodeNodeKey(n.key), n.operator)
		}
	case "invite":
		fmt.Fprintln(e.stdout, inv)
	case "add":
		name := a[1]
		k, err := parseNodeKey(a[2])
		if err != nil {
			return &usageError{err}
		}
		if *operator == "" {
			*operator = name
		}
		if !names.Valid(name) || !names.Valid(*operator) {
			return usageErrorf("nodes: a name and an operator label are 1 to 64 of A-Z a-z 0-9 . _ -")
		}
		if slices.ContainsFunc(list, func(n enrolledNode) bool { return n.name == name || n.key.Equal(k) }) {
			return usageErrorf("nodes: %q or that key is enrolled already", name)
		}
		list = append(list, enrolledNode{name: name, key: k, operator: *operator})
		if err := write(); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, inv)
		fmt.Fprintf(e.stderr, "enrolled %s; give its operator the invite above (ghostcomm node -invite ...)\n", name)
	case "remove":
		i := slices.IndexFunc(list, func(n enrolledNode) bool { return n.name == a[1] })
		if i < 0 {
			return usageErrorf("nodes: no node %q", a[1])
		}
		list = slices.Delete(list, i, i+1)
		if err := write(); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "revoked %s: left out of the next lock-cycle\n", a[1])
	}
	return nil
}

// nodeApplier returns a function that makes src's allow-list the state
// directory's: it enrolls the nodes new in the file (or with a new label)
// and revokes those gone from it. On an error it changes nothing, and the
// last list applied stays in force.
func nodeApplier(dir string, src *ghostcomm.RemoteSource, logger *slog.Logger) (apply func() error) {
	var applied []enrolledNode
	apply = func() error {
		list, err := readNodeList(dir)
		if err != nil {
			return err
		}
		for _, old := range applied {
			if !slices.ContainsFunc(list, func(n enrolledNode) bool { return n.key.Equal(old.key) }) {
				src.Revoke(old.key)
				logger.Info("node revoked", "name", old.name)
			}
		}
		for _, n := range list {
			i := slices.IndexFunc(applied, func(o enrolledNode) bool { return o.key.Equal(n.key) })
			if i >= 0 && applied[i].name == n.name && applied[i].operator == n.operator {
				continue
			}
			if err := src.Enroll(n.key, n.operator); err != nil {
				return err
			}
			logger.Info("node enrolled", "name", n.name, "operator", n.operator)
		}
		applied = list
		return nil
	}
	return apply
}

// pollNodes calls apply every nodesPoll until ctx ends, logging a failure
// once until the file changes again.
func pollNodes(ctx context.Context, apply func() error, logger *slog.Logger) {
	t := time.NewTicker(nodesPoll)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := apply(); err != nil {
			if msg := err.Error(); msg != last {
				logger.Warn("the node allow-list is not applied; the last good one stays", "err", err)
				last = msg
			}
			continue
		}
		last = ""
	}
}
