package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ghostcomm/ghostcomm"
)

// listenMetrics listens on addr, which must be a loopback IP address: the
// metrics describe the network's load and must not be served to others.
func listenMetrics(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usageErrorf("-metrics %q: %v", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, usageErrorf("-metrics %q: must be a loopback address such as 127.0.0.1:9100", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageErrorf("-metrics: %v", err)
	}
	return ln, nil
}

// serveMetrics serves p's Stats in the Prometheus text format on ln, at
// /metrics.
func serveMetrics(ln net.Listener, p *ghostcomm.Primary, logger *slog.Logger) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{p})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("metrics server", "err", err)
		}
	}()
	return srv
}

// statsCollector reads Primary.Stats at each scrape.
type statsCollector struct{ p *ghostcomm.Primary }

var metricDescs = map[string]*prometheus.Desc{}

func desc(name, help string, labels ...string) *prometheus.Desc {
	d, ok := metricDescs[name]
	if !ok {
		d = prometheus.NewDesc("ghostcomm_"+name, help, labels, nil)
		metricDescs[name] = d
	}
	return d
}

// Every metric, so that Describe lists them once.
var (
	descPayloads        = desc("payloads_total", "Payload requests answered.")
	descPayloadsRefused = desc("payloads_refused_total", "Payload requests refused.")
	descStreams         = desc("primary_streams", "Streams open to the Primary's onion.")
	descRotations       = desc("rotations_total", "Lock-cycles started after the first.")
	descCycleEnd        = desc("cycle_not_after_seconds", "End of the current lock-cycle, Unix time.")
	descCycleNodes      = desc("cycle_nodes", "Nodes of the current lock-cycle.")
	descAccepted        = desc("messages_accepted_total", "Messages accepted by the live nodes.")
	descFailed          = desc("messages_failed_total", "Accepted messages answered with a failure report.")
	descDuplicates      = desc("messages_duplicate_total", "Copies of accepted messages answered with the first copy's answer.")
	descRefused         = desc("messages_refused_total", "Messages refused by the live nodes, by reason.", "reason")
	descInFlight        = desc("messages_in_flight", "Messages being handled by the live nodes.")
	descBytesHeld       = desc("bytes_held", "Bytes held for messages by the live nodes.")
	descNodeStreams     = desc("node_streams", "Streams open to the live nodes.")
	descDials           = desc("dials_total", "Dials of next hops by the live nodes.")
	descDialFailures    = desc("dial_failures_total", "Failed dials of next hops by the live nodes.")
)

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDescs {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descPayloads, s.Payloads)
	counter(descPayloadsRefused, s.PayloadsRefused)
	gauge(descStreams, float64(s.Streams))
	counter(descRotations, s.Rotations)
	if cy := c.p.Cycle(); cy != nil {
		gauge(descCycleEnd, float64(cy.NotAfter.Unix()))
		gauge(descCycleNodes, float64(len(cy.Nodes)))
	}
	n := s.Nodes
	counter(descAccepted, n.Accepted)
	counter(descFailed, n.Failed)
	counter(descDuplicates, n.Duplicates)
	for reason, v := range map[string]uint64{
		"busy": n.Refused.Busy, "replay": n.Refused.Replay, "stale": n.Refused.Stale, "auth": n.Refused.Auth,
		"malformed": n.Refused.Malformed, "budget": n.Refused.Budget, "too_large": n.Refused.TooLarge,
		"closed": n.Refused.Closed, "other": n.Refused.Other,
	} {
		counter(descRefused, v, reason)
	}
	gauge(descInFlight, float64(n.InFlight))
	gauge(descBytesHeld, float64(n.BytesHeld))
	gauge(descNodeStreams, float64(n.Streams))
	counter(descDials, n.Dials)
	counter(descDialFailures, n.DialFailures)
}
