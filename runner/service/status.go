package service

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// The targets of the deployment checklist's success metrics, which
// Status.Missed judges against.
const (
	TargetSuccessRate = 0.99  // more than 99% of tasks succeed
	TargetTimeoutRate = 0.001 // fewer than 0.1% time out
	TargetStartTime   = 1.0   // a container starts in under a second
)

// Status is the deployment checklist's success metrics of one service,
// from its /metrics: every figure counts since the service started.
// Rates and times are nil while there is nothing to compute them from.
type Status struct {
	Version string `json:"version,omitempty"`
	// Tasks counts every task the service ran or failed to run;
	// Outcomes splits it by outcome.
	Tasks    float64            `json:"tasks"`
	Outcomes map[string]float64 `json:"outcomes"`
	// SuccessRate is the share of tasks that ran to their own end
	// (exited, signaled, compile_failed) among all but cancelled ones,
	// as contrib/prometheus's recording rules define it; TimeoutRate the
	// share of the same that were killed at their timeout.
	SuccessRate *float64 `json:"success_rate"`
	TimeoutRate *float64 `json:"timeout_rate"`
	// MedianStartSeconds is the median create stage: snapshot, shim,
	// runtime create (for a pooled task, claiming its sandbox).
	MedianStartSeconds *float64 `json:"median_start_seconds"`
	// LeftoversFound and LeftoversRemoved count, by kind, what sweeps
	// found of dead runners and removed.
	LeftoversFound   map[string]float64 `json:"leftovers_found"`
	LeftoversRemoved map[string]float64 `json:"leftovers_removed"`
	CleanupFailures  float64            `json:"cleanup_failures"`
	// ContainerdUp is the last probe's answer; nil when the service does
	// not probe.
	ContainerdUp *bool   `json:"containerd_up"`
	InFlight     float64 `json:"tasks_in_flight"`
	Queued       float64 `json:"queue_depth"`
	// Missed lists the targets the figures miss, empty when all are met.
	Missed []string `json:"missed"`
}

// LeftoversLeft is how many leftovers sweeps found but did not remove.
func (s *Status) LeftoversLeft() float64 {
	var n float64
	for kind, found := range s.LeftoversFound {
		n += found - s.LeftoversRemoved[kind]
	}
	return n
}

// ParseStatus reads the success metrics from a service's /metrics text.
func ParseStatus(r io.Reader) (*Status, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics: %w", err)
	}
	if _, ok := mfs[MetricTasks]; !ok {
		return nil, fmt.Errorf("the metrics have no %s: not a sandbox-runner service", MetricTasks)
	}
	s := &Status{
		Outcomes:         map[string]float64{},
		LeftoversFound:   map[string]float64{},
		LeftoversRemoved: map[string]float64{},
	}
	for _, m := range mfs[MetricTasks].GetMetric() {
		v := m.GetCounter().GetValue()
		s.Outcomes[label(m, "outcome")] += v
		s.Tasks += v
	}
	judged := s.Tasks - s.Outcomes[string(runner.OutcomeCancelled)]
	if judged > 0 {
		ok := s.Outcomes[string(runner.OutcomeExited)] + s.Outcomes[string(runner.OutcomeSignaled)] +
			s.Outcomes[string(runner.OutcomeCompileFailed)]
		success, timeouts := ok/judged, s.Outcomes[string(runner.OutcomeTimedOut)]/judged
		s.SuccessRate, s.TimeoutRate = &success, &timeouts
	}
	if mf, ok := mfs[MetricStageDuration]; ok {
		for _, m := range mf.GetMetric() {
			if label(m, "stage") == StageCreate {
				if q, ok := histogramQuantile(0.5, m.GetHistogram()); ok {
					s.MedianStartSeconds = &q
				}
			}
		}
	}
	for name, into := range map[string]map[string]float64{MetricFound: s.LeftoversFound, MetricRemoved: s.LeftoversRemoved} {
		for _, m := range mfs[name].GetMetric() {
			into[label(m, "kind")] += m.GetCounter().GetValue()
		}
	}
	s.CleanupFailures = sum(mfs[MetricCleanupFailed])
	s.InFlight = sum(mfs[MetricInFlight])
	s.Queued = sum(mfs[MetricQueueDepth])
	if mf, ok := mfs[MetricContainerdUp]; ok && len(mf.GetMetric()) > 0 {
		up := mf.GetMetric()[0].GetGauge().GetValue() == 1
		s.ContainerdUp = &up
	}
	if mf, ok := mfs[MetricBuildInfo]; ok && len(mf.GetMetric()) > 0 {
		s.Version = label(mf.GetMetric()[0], "version")
	}
	s.Missed = s.missed()
	return s, nil
}

// missed judges the figures against the checklist's targets.
func (s *Status) missed() []string {
	out := []string{}
	if s.ContainerdUp != nil && !*s.ContainerdUp {
		out = append(out, "containerd does not answer")
	}
	if s.SuccessRate != nil && *s.SuccessRate <= TargetSuccessRate {
		out = append(out, fmt.Sprintf("success rate %s is not above %s", percent(*s.SuccessRate), percent(TargetSuccessRate)))
	}
	if s.TimeoutRate != nil && *s.TimeoutRate >= TargetTimeoutRate {
		out = append(out, fmt.Sprintf("timeout rate %s is not under %s", percent(*s.TimeoutRate), percent(TargetTimeoutRate)))
	}
	if s.MedianStartSeconds != nil && *s.MedianStartSeconds >= TargetStartTime {
		out = append(out, fmt.Sprintf("median start time %s is not under %gs", seconds(*s.MedianStartSeconds), TargetStartTime))
	}
	if left := s.LeftoversLeft(); left > 0 {
		out = append(out, fmt.Sprintf("%g leftovers of dead runners could not be removed: run `sandbox-runner gc`", left))
	}
	return out
}

// WriteText writes the status for a person: one figure a line, with its
// target.
func (s *Status) WriteText(w io.Writer) error {
	var err error
	line := func(name, value, target string) {
		if err == nil {
			_, err = fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-18s %-34s %s", name, value, target), " "))
		}
	}
	if s.Version != "" {
		line("version", s.Version, "")
	}
	switch {
	case s.ContainerdUp == nil:
		line("containerd", "not probed", "")
	case *s.ContainerdUp:
		line("containerd", "reachable", "")
	default:
		line("containerd", "NOT REACHABLE", "target: reachable")
	}
	line("tasks", fmt.Sprintf("%g (%g running, %g queued)", s.Tasks, s.InFlight, s.Queued), outcomeList(s.Outcomes))
	line("success rate", optional(s.SuccessRate, percent), "target: > "+percent(TargetSuccessRate))
	line("timeout rate", optional(s.TimeoutRate, percent), "target: < "+percent(TargetTimeoutRate))
	line("median start time", optional(s.MedianStartSeconds, seconds), fmt.Sprintf("target: < %gs", TargetStartTime))
	var found, removed float64
	for _, k := range runner.SweepKinds {
		found += s.LeftoversFound[k]
		removed += s.LeftoversRemoved[k]
	}
	line("leftovers", fmt.Sprintf("%g found, %g removed", found, removed), "target: 0 left"+kindList(s.LeftoversFound))
	line("cleanup failures", fmt.Sprintf("%g", s.CleanupFailures), "")
	if err != nil {
		return err
	}
	if len(s.Missed) == 0 {
		_, err = fmt.Fprintln(w, "every target met (figures since it started)")
		return err
	}
	for _, m := range s.Missed {
		if _, err = fmt.Fprintf(w, "MISSED: %s\n", m); err != nil {
			return err
		}
	}
	return nil
}

// histogramQuantile estimates the q-quantile of h as Prometheus's
// histogram_quantile does: linear within the bucket the rank falls in.
func histogramQuantile(q float64, h *dto.Histogram) (float64, bool) {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0, false
	}
	buckets := slices.Clone(h.GetBucket())
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].GetUpperBound() < buckets[j].GetUpperBound() })
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		count := float64(b.GetCumulativeCount())
		if math.IsInf(b.GetUpperBound(), 1) {
			break
		}
		if count >= rank {
			if count == below {
				return b.GetUpperBound(), true
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(count-below), true
		}
		lower, below = b.GetUpperBound(), count
	}
	// In the +Inf bucket: the highest finite bound, as Prometheus says.
	return lower, len(buckets) > 0
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func sum(mf *dto.MetricFamily) float64 {
	var n float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			n += m.GetCounter().GetValue()
		case m.Gauge != nil:
			n += m.GetGauge().GetValue()
		case m.Untyped != nil:
			n += m.GetUntyped().GetValue()
		}
	}
	return n
}

func percent(f float64) string { return fmt.Sprintf("%.4g%%", f*100) }

func seconds(f float64) string {
	if f < 1 {
		return fmt.Sprintf("%.3g ms", f*1000)
	}
	return fmt.Sprintf("%.3g s", f)
}

func optional(v *float64, format func(float64) string) string {
	if v == nil {
		return "n/a (no tasks yet)"
	}
	return format(*v)
}

// outcomeList names the outcomes that happened, most frequent first.
func outcomeList(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var list []kv
	for k, v := range m {
		if v > 0 {
			list = append(list, kv{k, v})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v > list[j].v || list[i].v == list[j].v && list[i].k < list[j].k })
	s := ""
	for i, e := range list {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %g", e.k, e.v)
	}
	return s
}

// kindList names the kinds of leftovers found, in SweepKinds order.
func kindList(m map[string]float64) string {
	s := ""
	for _, k := range runner.SweepKinds {
		if m[k] > 0 {
			s += fmt.Sprintf(", %s %g", k, m[k])
		}
	}
	if s == "" {
		return ""
	}
	return " (found:" + s[1:] + ")"
}
