package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ghostcomm/ghostcomm"
)

// client adds, removes or lists the clients authorized to reach a Primary.
// A running Primary applies the change when it is restarted.
func (e *env) client(args []string) error {
	fs := e.newFlags("client", "ghostcomm client -state DIR add NAME | remove NAME | list\n\nadd prints the new client's invite (valid once the Primary is restarted; it creates the state\ndirectory's keys if the Primary never ran); remove revokes one.")
	state := fs.String("state", "", "state directory of the Primary (default $"+envStateDir+")")
	port := fs.Int("port", ghostcomm.DefaultOnionPort, "the Primary's onion port, for the invite")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	*state = stateDir(*state)
	if *state == "" {
		return usageErrorf("client: -state DIR is required")
	}
	a := fs.Args()
	if len(a) == 0 || (a[0] == "list") != (len(a) == 1) || len(a) > 2 {
		return usageErrorf("client: add NAME, remove NAME or list")
	}
	load := ghostcomm.LoadIdentity
	if a[0] == "add" { // invites can be made before the first run
		load = func(dir string) (*ghostcomm.Identity, error) {
			id, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil)
			return id, err
		}
	}
	id, err := load(*state)
	if err != nil {
		return &usageError{fmt.Errorf("state directory: %w", err)}
	}
	switch a[0] {
	case "list":
		for _, c := range id.Clients {
			fmt.Fprintln(e.stdout, c.Name)
		}
		return nil
	case "add":
		c, err := id.AddClient(a[1], nil)
		if err != nil {
			return &usageError{err}
		}
		inv, _ := id.Invite(c.Name, *port)
		fmt.Fprintln(e.stdout, inv)
		fmt.Fprintln(e.stderr, "restart the Primary to admit the new client")
		return nil
	case "remove":
		if err := id.RemoveClient(a[1]); err != nil {
			return &usageError{err}
		}
		os.Remove(filepath.Join(*state, invitesDir, a[1]))
		fmt.Fprintln(e.stderr, "restart the Primary to refuse the client")
		return nil
	}
	return usageErrorf("client: add NAME, remove NAME or list, not %q", a[0])
}
