package main

import (
	"errors"
	"strings"
)

// Kept sections are hand-written parts of the report: measurements that
// the report's run does not make (they take minutes, or a setup of their
// own), each with the command that gives its figures. The report copies
// every such section of the report it replaces, markers included, to the
// same place in the new one: before "All benchmarks".
const (
	keptBegin = "<!-- kept by cmd/report: begin -->"
	keptEnd   = "<!-- kept by cmd/report: end -->"
)

// keptSections returns the kept sections of a previous report, each from
// its begin marker to its end marker, followed by a blank line.
func keptSections(old string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(old, keptBegin)
		if i < 0 {
			if strings.Contains(old, keptEnd) {
				return "", errors.New("a kept section's end marker has no begin marker")
			}
			return b.String(), nil
		}
		old = old[i:]
		j := strings.Index(old, keptEnd)
		if j < 0 || strings.Contains(old[len(keptBegin):j], keptBegin) {
			return "", errors.New("a kept section's begin marker has no end marker")
		}
		b.WriteString(old[:j+len(keptEnd)])
		b.WriteString("\n\n")
		old = old[j+len(keptEnd):]
	}
}
