package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLibraryDoesNotImportCommandDeps checks that a program importing only
// the library (and its tor packages) compiles none of the command's
// dependencies: the Prometheus client and testscript.
func TestLibraryDoesNotImportCommandDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	for _, pkg := range []string{"github.com/ghostcomm/ghostcomm", "github.com/ghostcomm/ghostcomm/torctl"} {
		out, err := exec.Command(gobin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "github.com/ProtonMail/gopenpgp/v2/crypto") {
			t.Fatalf("go list -deps %s does not list gopenpgp: the check below would see nothing", pkg)
		}
		for _, d := range deps {
			for _, bad := range []string{"github.com/prometheus/", "github.com/rogpeppe/go-internal", "github.com/ghostcomm/ghostcomm/cmd/"} {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
	// And the command does import them: the check can fail.
	out, err := exec.Command(gobin, "list", "-deps", "github.com/ghostcomm/ghostcomm/cmd/ghostcomm").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "github.com/prometheus/client_golang/prometheus\n") {
		t.Fatal("the command no longer imports the Prometheus client: update this test")
	}
}
