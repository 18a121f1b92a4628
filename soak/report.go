package soak

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// AfterRotation is how long after a rotation a message counts as "just after
// a rotation".
const AfterRotation = 5 * time.Second

// Window labels.
const (
	WindowQuiet    = "quiet"
	WindowRotation = "≤5 s after a rotation"
)

// Window returns the label of the window r falls in: for an error that a
// fault explains, that fault's kind; else the kind of the first fault whose
// window it overlaps; else WindowRotation if it started within AfterRotation
// of a rotation; else WindowQuiet.
func (res *Result) Window(r Record) string {
	if r.Outcome == Failed {
		if f, ok := r.Explained(res.Faults, res.Config.Settle); ok {
			return string(f.Kind)
		}
	}
	if f, ok := r.InFault(res.Faults, res.Config.Settle); ok {
		return string(f.Kind)
	}
	if res.afterRotation(r) {
		return WindowRotation
	}
	return WindowQuiet
}

// Summary is what the report says about a Result.
type Summary struct {
	Total, Verified, Unverified, Errors, Lost int
	// Unexplained counts errors that no fault explains (outside every fault
	// window, or not naming the faulted node).
	Unexplained int
	// ErrorRows counts errors by window, class, sentinel and whether the
	// error names the faulted node.
	ErrorRows []ErrorRow
	// Windows are latency figures of verified messages by window.
	Windows []WindowRow
	// FaultCount counts faults by kind (a fault that hit several nodes
	// once).
	FaultCount map[FaultKind]int
	// Examples are up to 10 unexplained errors, lost or unverified messages.
	Examples []Record
	// AfterRotation and Rest are the latencies of verified messages sent
	// within AfterRotation after a rotation, and of the others, whatever
	// fault windows they fall in.
	AfterRotation, Rest LatencyRow
	// QuietAfterRotation and QuietRest are the same for verified messages
	// outside every fault window.
	QuietAfterRotation, QuietRest LatencyRow
}

// LatencyRow is a count and percentiles of latencies.
type LatencyRow struct {
	Messages      int
	P50, P99, Max time.Duration
}

func latencyRow(l []time.Duration) LatencyRow {
	slices.Sort(l)
	r := LatencyRow{Messages: len(l), P50: quantile(l, 0.5), P99: quantile(l, 0.99)}
	if len(l) > 0 {
		r.Max = l[len(l)-1]
	}
	return r
}

// afterRotation reports whether r started within AfterRotation after a
// rotation.
func (res *Result) afterRotation(r Record) bool {
	i := sort.Search(len(res.Rotations), func(i int) bool { return res.Rotations[i] > r.Start })
	return i > 0 && r.Start-res.Rotations[i-1] <= AfterRotation
}

// ErrorRow is one line of the error table.
type ErrorRow struct {
	Window, Class, Sentinel string
	NamesFaulted            bool
	Count                   int
}

// WindowRow is one line of the latency table.
type WindowRow struct {
	Window             string
	Messages, Errors   int
	P50, P90, P99, Max time.Duration
	windowOrder        int
	latencies          []time.Duration
}

// Summarize computes the Summary of res.
func (res *Result) Summarize() Summary {
	s := Summary{Total: len(res.Records), FaultCount: map[FaultKind]int{}}
	type faultID struct {
		kind  FaultKind
		start time.Duration
	}
	seen := map[faultID]bool{}
	for _, f := range res.Faults {
		// A fault that hit several nodes has a record per node.
		if id := (faultID{f.Kind, f.Start}); !seen[id] {
			seen[id] = true
			s.FaultCount[f.Kind]++
		}
	}
	order := map[string]int{WindowQuiet: 0, WindowRotation: 1, string(Sever): 2, string(Partition): 3, string(Stall): 4, string(SigStop): 5, string(Circuits): 6}
	windows := map[string]*WindowRow{}
	errs := map[ErrorRow]int{}
	var afterRot, rest, quietAfterRot, quietRest []time.Duration
	for _, r := range res.Records {
		if r.Outcome == Verified {
			_, inFault := r.InFault(res.Faults, res.Config.Settle)
			if res.afterRotation(r) {
				afterRot = append(afterRot, r.End-r.Start)
				if !inFault {
					quietAfterRot = append(quietAfterRot, r.End-r.Start)
				}
			} else {
				rest = append(rest, r.End-r.Start)
				if !inFault {
					quietRest = append(quietRest, r.End-r.Start)
				}
			}
		}
		w := res.Window(r)
		row := windows[w]
		if row == nil {
			row = &WindowRow{Window: w, windowOrder: order[w]}
			windows[w] = row
		}
		row.Messages++
		switch r.Outcome {
		case Verified:
			s.Verified++
			row.latencies = append(row.latencies, r.End-r.Start)
		case Unverified:
			s.Unverified++
			s.example(r)
		case Lost:
			s.Lost++
			row.Errors++
			s.example(r)
		case Failed:
			s.Errors++
			row.Errors++
			_, named := r.Explained(res.Faults, res.Config.Settle)
			if !named {
				s.Unexplained++
				s.example(r)
			}
			errs[ErrorRow{Window: w, Class: r.Class, Sentinel: r.Sentinel, NamesFaulted: named}]++
		}
	}
	for k, n := range errs {
		k.Count = n
		s.ErrorRows = append(s.ErrorRows, k)
	}
	slices.SortFunc(s.ErrorRows, func(a, b ErrorRow) int {
		return strings.Compare(fmt.Sprint(order[a.Window], a.Class, a.Sentinel, a.NamesFaulted), fmt.Sprint(order[b.Window], b.Class, b.Sentinel, b.NamesFaulted))
	})
	for _, row := range windows {
		slices.Sort(row.latencies)
		row.P50, row.P90, row.P99 = quantile(row.latencies, 0.5), quantile(row.latencies, 0.9), quantile(row.latencies, 0.99)
		if len(row.latencies) > 0 {
			row.Max = row.latencies[len(row.latencies)-1]
		}
		s.Windows = append(s.Windows, *row)
	}
	slices.SortFunc(s.Windows, func(a, b WindowRow) int { return a.windowOrder - b.windowOrder })
	s.AfterRotation, s.Rest = latencyRow(afterRot), latencyRow(rest)
	s.QuietAfterRotation, s.QuietRest = latencyRow(quietAfterRot), latencyRow(quietRest)
	return s
}

func (s *Summary) example(r Record) {
	if len(s.Examples) < 10 {
		s.Examples = append(s.Examples, r)
	}
}

// quantile returns the q-quantile of sorted (nearest rank), 0 if empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Check returns an error describing what the run shows that it must not: a
// lost or unverified message, or an error no fault explains.
func (s Summary) Check() error {
	if s.Lost == 0 && s.Unverified == 0 && s.Unexplained == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d lost, %d unverified, %d errors no fault explains", s.Lost, s.Unverified, s.Unexplained)
	for _, r := range s.Examples {
		fmt.Fprintf(&b, "\n  %v", r)
	}
	return fmt.Errorf("soak: %s", b.String())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// WriteMarkdown writes the report section for res: title, command, machine
// line, totals, error table, latency table, rotation figure and the plot
// link.
func (res *Result) WriteMarkdown(w io.Writer, title, command, machine, plotLink string) {
	s := res.Summarize()
	fmt.Fprintf(w, "## %s\n\n", title)
	fmt.Fprintf(w, "Command: `%s`  \nMachine: %s  \n", command, machine)
	c := res.Config
	rotate := fmt.Sprintf(" plus a Primary.Rotate every %v on average", c.Rotate)
	if c.Rotate < 0 {
		rotate = " (no other rotations)"
	}
	order, held := "at random", "about"
	if c.Env != nil && c.Env.InTurn {
		order = "in turn"
	}
	if c.Env != nil && c.Env.FixedHold {
		held = "for"
	}
	fmt.Fprintf(w, "Setup: %d messages from %d concurrent senders over %d clients, %d nodes per cycle, lock-cycle period %v%s; message deadline %v, dial timeout %v; faults %s, after a quiet time of about %v, each held %s %v (faults: %s).\n\n",
		s.Total, c.Senders, c.Clients, c.Nodes, c.Period, rotate, c.Deadline, c.DialTimeout, order, c.FaultGap, held, c.FaultHold, faultList(s.FaultCount))
	fmt.Fprintf(w, "| | count |\n|---|---:|\n")
	fmt.Fprintf(w, "| messages | %d |\n| verified answers | %d |\n| unverified answers | %d |\n| typed errors | %d |\n| errors no fault explains | %d |\n| **lost** | **%d** |\n",
		s.Total, s.Verified, s.Unverified, s.Errors, s.Unexplained, s.Lost)
	fmt.Fprintf(w, "| rotations | %d |\n| run time | %v |\n| throughput | %.0f messages/s |\n\n", len(res.Rotations), res.Elapsed.Round(100*time.Millisecond), float64(s.Total)/res.Elapsed.Seconds())

	fmt.Fprintf(w, "Errors by window and class (a window is a fault's time plus %v, or the %v after a rotation; \"names the faulted node\" means the error is a HopError naming the node the fault hit):\n\n", res.Config.Settle, AfterRotation)
	if len(s.ErrorRows) == 0 {
		fmt.Fprintf(w, "No errors.\n\n")
	} else {
		fmt.Fprintf(w, "| window | ActionFor | sentinel | names the faulted node | count |\n|---|---|---|---|---:|\n")
		for _, r := range s.ErrorRows {
			fmt.Fprintf(w, "| %s | %s | %s | %v | %d |\n", r.Window, r.Class, r.Sentinel, yesNo(r.NamesFaulted), r.Count)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Latency of verified messages (send to verified answer) by window:\n\n")
	fmt.Fprintf(w, "| window | messages | errors | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range s.Windows {
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", r.Window, r.Messages, r.Errors, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
	}
	fmt.Fprintf(w, "\nRotations: verified messages sent within %v after a rotation against the other verified messages, first all of them (whatever fault windows overlap them), then only those outside every fault window (a fault's time plus %v):\n\n", AfterRotation, res.Config.Settle)
	fmt.Fprintf(w, "| | messages | p50 | p99 | max | p99 ÷ p99 of the rest |\n|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, l, rest LatencyRow) {
		ratio := "–"
		if rest.P99 > 0 && l.Messages > 0 {
			ratio = fmt.Sprintf("%.2f", float64(l.P99)/float64(rest.P99))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", name, l.Messages, ms(l.P50), ms(l.P99), ms(l.Max), ratio)
	}
	row(fmt.Sprintf("all: ≤%v after a rotation", AfterRotation), s.AfterRotation, s.Rest)
	row("all: the rest", s.Rest, s.Rest)
	row(fmt.Sprintf("outside fault windows: ≤%v after a rotation", AfterRotation), s.QuietAfterRotation, s.QuietRest)
	row("outside fault windows: the rest", s.QuietRest, s.QuietRest)
	if len(s.Examples) > 0 {
		fmt.Fprintf(w, "\nExamples of what must not happen:\n\n```\n")
		for _, r := range s.Examples {
			fmt.Fprintf(w, "%v\n", r)
		}
		fmt.Fprintf(w, "```\n")
	}
	if plotLink != "" {
		fmt.Fprintf(w, "\n![latency over time](%s)\n\n[The plot](%s): latency of each verified message against the time it was sent (log scale; a sample when there are many), errors in red at the time they ended, rotations as blue lines, fault windows shaded by kind.\n", plotLink, plotLink)
	}
	fmt.Fprintln(w)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func faultList(m map[FaultKind]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// maxPoints bounds the verified messages drawn in the plot.
const maxPoints = 20000

// Plot draws latency over time with the rotations and fault windows and
// saves it to path (the extension, .png or .svg, picks the format).
func (res *Result) Plot(path, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true

	var ok, bad plotter.XYs
	step := max(1, len(res.Records)/maxPoints)
	ymin, ymax := math.Inf(1), 0.0
	for i, r := range res.Records {
		lat := math.Max(float64(r.End-r.Start)/float64(time.Millisecond), 0.01)
		ymin, ymax = math.Min(ymin, lat), math.Max(ymax, lat)
		switch {
		case r.Outcome == Verified && i%step == 0:
			ok = append(ok, plotter.XY{X: r.Start.Seconds(), Y: lat})
		case r.Outcome != Verified:
			bad = append(bad, plotter.XY{X: r.End.Seconds(), Y: lat})
		}
	}
	if ymax == 0 {
		ymin, ymax = 0.1, 1
	}
	ymin, ymax = ymin/1.5, ymax*1.5
	// color.NRGBA: not premultiplied, so A is the opacity of the colour.
	shade := map[FaultKind]color.NRGBA{
		Sever:     {R: 255, G: 140, B: 0, A: 200},
		Partition: {R: 160, G: 60, B: 220, A: 70},
		Stall:     {R: 0, G: 170, B: 90, A: 70},
		SigStop:   {R: 160, G: 60, B: 220, A: 70},
		Circuits:  {R: 255, G: 140, B: 0, A: 120},
	}
	legend := map[FaultKind]bool{}
	for _, f := range res.Faults {
		// A sever is an instant: drawn as a narrow band.
		x0, x1 := f.Start.Seconds(), math.Max(f.End.Seconds(), f.Start.Seconds()+res.Elapsed.Seconds()/1000)
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: ymin}, {X: x1, Y: ymin}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return err
		}
		poly.Color = shade[f.Kind]
		poly.LineStyle.Width = 0
		p.Add(poly)
		if !legend[f.Kind] {
			legend[f.Kind] = true
			p.Legend.Add(string(f.Kind), poly)
		}
	}
	for i, t := range res.Rotations {
		l, err := plotter.NewLine(plotter.XYs{{X: t.Seconds(), Y: ymin}, {X: t.Seconds(), Y: ymax}})
		if err != nil {
			return err
		}
		l.Color = color.NRGBA{B: 220, A: 255}
		l.Width = vg.Points(0.6)
		l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
		p.Add(l)
		if i == 0 {
			p.Legend.Add("rotation", l)
		}
	}
	if len(ok) > 0 {
		sc, err := plotter.NewScatter(ok)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = color.NRGBA{R: 40, G: 40, B: 40, A: 160}
		sc.GlyphStyle.Radius = vg.Points(0.5)
		p.Add(sc)
		p.Legend.Add("verified", sc)
	}
	if len(bad) > 0 {
		sc, err := plotter.NewScatter(bad)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = color.NRGBA{R: 230, A: 255}
		sc.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(sc)
		p.Legend.Add("error", sc)
	}
	p.Y.Min, p.Y.Max = ymin, ymax
	return p.Save(12*vg.Inch, 4.5*vg.Inch, path)
}
