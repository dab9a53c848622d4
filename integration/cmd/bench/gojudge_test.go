package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGoJudgeResult(t *testing.T) {
	ok := `[{"status":"Accepted","exitStatus":0,"time":3480952,"memory":262144,"runTime":11241958,"files":{"stderr":"","stdout":""}}]`
	if err := goJudgeResult(200, []byte(ok)); err != nil {
		t.Errorf("an accepted run: %v", err)
	}
	for name, tc := range map[string]struct {
		status int
		body   string
	}{
		"http error":   {400, `{"error":"bad"}`},
		"not json":     {200, `oops`},
		"nonzero exit": {200, `[{"status":"Nonzero Exit Status","exitStatus":1}]`},
		"failed start": {200, `[{"status":"File Error","exitStatus":0,"error":"no such file"}]`},
		"no result":    {200, `[]`},
	} {
		if err := goJudgeResult(tc.status, []byte(tc.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The request runs what every other row runs, with the runner's limits.
func TestGoJudgeRequest(t *testing.T) {
	var req struct {
		Cmd []struct {
			Args        []string `json:"args"`
			MemoryLimit int64    `json:"memoryLimit"`
			ProcLimit   int64    `json:"procLimit"`
		} `json:"cmd"`
	}
	if err := json.Unmarshal(goJudgeRequest, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.Cmd) != 1 || strings.Join(req.Cmd[0].Args, " ") != "/bin/sh -c true" {
		t.Fatalf("request %s", goJudgeRequest)
	}
	if req.Cmd[0].MemoryLimit != 512<<20 || req.Cmd[0].ProcLimit != 128 {
		t.Errorf("limits %+v", req.Cmd[0])
	}
}

func TestGoJudgeMountsBindTheRootfsReadOnly(t *testing.T) {
	y := goJudgeMounts("/x/rootfs", 64<<20)
	for _, want := range []string{"source: /x/rootfs/bin\n    target: /bin\n    readonly: true",
		"source: /x/rootfs/etc\n    target: /etc\n    readonly: true", "target: /tmp\n    data: size=67108864,"} {
		if !strings.Contains(y, want) {
			t.Errorf("mount.yaml lacks %q:\n%s", want, y)
		}
	}
}

// Without the binary the row says how to build it, and nothing starts.
func TestStartGoJudgeWithoutTheBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := startGoJudge(t.Context(), dir+"/go-judge", dir, 1)
	if err == nil || !strings.Contains(err.Error(), "make gojudge") {
		t.Fatalf("error %v, want one naming make gojudge", err)
	}
	if g := (&goJudge{cgroup: "srbench-gojudge-test-none"}); len(g.removeCgroups()) != 0 {
		t.Error("removing cgroups that do not exist left something")
	}
}
