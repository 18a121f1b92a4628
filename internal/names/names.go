// Package names holds the one rule for the names an operator gives things in
// ghostcomm's state files: client names in a Primary's identity, and node
// names and operator labels in the command's allow-list.
package names

// Valid reports whether s is 1 to 64 of [A-Za-z0-9._-]: no space, no
// separator of the state files' lines, nothing a terminal interprets.
func Valid(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
