package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// The operator's files in contrib/ are built on the metrics this package
// exports; these tests keep them true to each other.
const (
	rulesDir      = "../../contrib/prometheus"
	rulesFile     = rulesDir + "/sandbox-runner.rules.yml"
	dashboardFile = "../../contrib/grafana/sandbox-runner.json"
)

// promtool returns the path of Debian's promtool (package prometheus).
// Without it the test is skipped on a developer's machine; in CI, where
// `make deps` installs it, it fails.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is not installed (Debian package prometheus, in the Makefile's DEB_PACKAGES): %v", err)
		}
		t.Skip("promtool is not installed: apt-get install prometheus (make deps)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = rulesDir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPrometheusRulesCheck(t *testing.T) {
	files, err := filepath.Glob(rulesDir + "/*.yml")
	require.NoError(t, err)
	var rules []string
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.yml") {
			rules = append(rules, filepath.Base(f))
		}
	}
	require.NotEmpty(t, rules)
	runPromtool(t, append([]string{"check", "rules"}, rules...)...)
}

// TestPrometheusRulesUnitTests runs the promtool unit tests, which feed
// series to the rules and assert where each alert fires and where not.
func TestPrometheusRulesUnitTests(t *testing.T) {
	tests, err := filepath.Glob(rulesDir + "/*_test.yml")
	require.NoError(t, err)
	require.NotEmpty(t, tests)
	var names []string
	for _, f := range tests {
		names = append(names, filepath.Base(f))
	}
	runPromtool(t, append([]string{"test", "rules"}, names...)...)
}

// TestEveryAlertHasAUnitTest: an alert nobody saw fire is a guess.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	rules := readRules(t)
	b, err := os.ReadFile(rulesDir + "/sandbox-runner_test.yml")
	require.NoError(t, err)
	var doc struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range doc.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		assert.True(t, fires[r.Alert], "no test makes %s fire", r.Alert)
		assert.True(t, quiet[r.Alert], "no test shows %s quiet", r.Alert)
		assert.Contains(t, r.Labels, "severity", r.Alert)
		assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
		assert.Regexp(t, "sandbox-runner (check|gc)|journalctl|alerts say", r.Annotations["description"],
			"%s must say what to do", r.Alert)
	}
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	require.NotEmpty(t, out)
	return out
}

// exportedNames returns the names of every series a fully configured
// service exports (pool, probe, every collector), histograms with their
// _bucket, _sum and _count.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	svc, err := New(&fakeExec{},
		WithPoolStats(func() []runner.PoolStats { return []runner.PoolStats{{Runtime: "python", Size: 1}} }),
		WithContainerdProbe(func(context.Context) error { return nil }, 0),
		WithCleanupFailures(func() uint64 { return 0 }))
	require.NoError(t, err)
	mfs, err := svc.metrics.registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+suffix] = true
			}
		}
	}
	require.True(t, names[MetricContainerdUp] && names["sandbox_runner_pool_idle"] && names["process_start_time_seconds"])
	return names
}

var (
	strLit      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers    = regexp.MustCompile(`\{[^}]*\}`)
	ranges      = regexp.MustCompile(`\[[^\]]*\]`)
	grouping    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifiers = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords    = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// seriesNames returns the series names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges, grouping
// clauses, function calls and keywords are taken out.
func seriesNames(expr string) []string {
	expr = strLit.ReplaceAllString(expr, `""`)
	expr = matchers.ReplaceAllString(expr, " ")
	expr = ranges.ReplaceAllString(expr, " ")
	expr = grouping.ReplaceAllString(expr, " ")
	var out []string
	for _, m := range identifiers.FindAllStringSubmatch(expr, -1) {
		if m[1] != "" || slices.Contains(keywords, strings.ToLower(m[0])) {
			continue // a function or aggregation, or a keyword
		}
		out = append(out, m[0])
	}
	return out
}

func TestSeriesNames(t *testing.T) {
	got := seriesNames(`sum by (job, le) (rate(a_bucket{x="}{", y=~"b"}[5m])) / on (job) group_left () b:c:rate5m or vector(0) > bool 1`)
	assert.Equal(t, []string{"a_bucket", "b:c:rate5m"}, got)
}

// dashboard is the part of Grafana's JSON model the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.UID)
	return d
}

// grafanaVars turns the dashboard's variables into PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${job}", ".+", "$job", ".+")

// dashboardQueries returns every PromQL query of the dashboard: each
// panel's targets and the variables' queries.
func dashboardQueries(t *testing.T, d dashboard) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			require.NotNil(t, p.Datasource, "panel %q has no data source", p.Title)
			assert.Equal(t, "${datasource}", p.Datasource.UID, "panel %q must use the dashboard's data source variable", p.Title)
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q has an empty query", p.Title)
				assert.False(t, refs[tg.RefID], "panel %q repeats refId %s", p.Title, tg.RefID)
				refs[tg.RefID] = true
				out[p.Title] = append(out[p.Title], grafanaVars.Replace(tg.Expr))
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		require.NotNil(t, m, "variable %s: query %q", v.Name, s)
		out["variable "+v.Name] = append(out["variable "+v.Name], m[1])
	}
	return out
}

// TestDashboardQueriesReferToKnownSeries: every query of the dashboard
// and every rule reads only series the service exports or the rules
// record, so no panel is empty for a misspelt name.
func TestDashboardQueriesReferToKnownSeries(t *testing.T) {
	known := exportedNames(t)
	rules := readRules(t)
	recorded := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			recorded[r.Record] = true
			known[r.Record] = true
		}
	}
	for _, r := range rules {
		for _, name := range seriesNames(r.Expr) {
			assert.True(t, known[name], "rule %s%s reads %s, which nothing exports or records", r.Record, r.Alert, name)
		}
	}
	used := map[string]bool{}
	for _, r := range rules {
		for _, name := range seriesNames(r.Expr) {
			used[name] = true
		}
	}
	queries := dashboardQueries(t, readDashboard(t))
	for title, exprs := range queries {
		for _, e := range exprs {
			names := seriesNames(e)
			assert.NotEmpty(t, names, "panel %q: %s reads no series", title, e)
			for _, name := range names {
				used[name] = true
				assert.True(t, known[name], "panel %q reads %s, which nothing exports or records", title, name)
			}
		}
	}
	for name := range recorded {
		assert.True(t, used[name], "recording rule %s is used by no panel and no rule", name)
	}
}

// TestDashboardHasTheChecklistPanels: the deployment checklist's
// dashboards and success metrics each have a panel.
func TestDashboardHasTheChecklistPanels(t *testing.T) {
	d := readDashboard(t)
	queries := dashboardQueries(t, d)
	for _, want := range []struct{ title, reads string }{
		{"Execution rate by outcome", "job_runtime_outcome:sandbox_runner_tasks:rate5m"},
		{"Execution time", "job:sandbox_runner_task_duration_seconds:mean5m"},
		{"Time per stage (p50, p95)", "job_stage:sandbox_runner_stage_duration_seconds:p95_5m"},
		{"CPU the tasks use", "job_runtime:sandbox_runner_task_cpu_seconds:rate5m"},
		{"Task peak memory (p95)", "job:sandbox_runner_task_memory_peak_bytes:p95_5m"},
		{"Success, error and timeout rates", "job:sandbox_runner_task_errors:ratio_rate5m"},
		{"Task success rate", "job:sandbox_runner_task_success:ratio_rate5m"},
		{"Timeout rate", "job:sandbox_runner_task_timeouts:ratio_rate5m"},
		{"Median start time", "job_stage:sandbox_runner_stage_duration_seconds:p50_5m"},
		{"Leftovers found (1h)", "job_kind:sandbox_runner_leftovers_found:increase1h"},
		{"containerd", "job:sandbox_runner_containerd_up:min"},
		{"Limit hits", "job_limit:sandbox_runner_limit_hits:ratio_rate5m"},
	} {
		exprs, ok := queries[want.title]
		if !assert.True(t, ok, "no panel %q", want.title) {
			continue
		}
		assert.Contains(t, strings.Join(exprs, "\n"), want.reads, "panel %q", want.title)
	}
}

// TestDashboardQueriesParse has promtool parse every dashboard query, as
// the rules of a scratch file.
func TestDashboardQueriesParse(t *testing.T) {
	queries := dashboardQueries(t, readDashboard(t))
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, exprs := range queries {
		for _, e := range exprs {
			n++
			q, err := json.Marshal(e) // a JSON string is a YAML string
			require.NoError(t, err)
			fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", n, q)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	require.NoError(t, os.WriteFile(f, []byte(b.String()), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), "check", "rules", f).CombinedOutput()
	require.NoError(t, err, "promtool check rules on the dashboard's queries:\n%s\n%s", out, b.String())
}
