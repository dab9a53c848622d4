package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Exit statuses with a fixed meaning, as timeout(1) and Docker use them.
const (
	// ExitTimedOut is the status of a task the wall-clock timeout killed.
	ExitTimedOut = 124
	// ExitCancelled is the status of a task whose caller gave up (Ctrl-C):
	// 128 + SIGINT, as a shell reports it.
	ExitCancelled = 130
	// ExitCPUTimeExceeded is the status of a task killed for going over
	// its CPU-time limit: 128 + SIGXCPU (24), as a shell reports a
	// process the kernel's RLIMIT_CPU ends.
	ExitCPUTimeExceeded = 152
)

// Outcome says in one word how a task ended.
type Outcome string

// The outcomes, exactly one per result.
const (
	// OutcomeExited: the task's main process exited by itself; ExitCode is
	// its status.
	OutcomeExited Outcome = "exited"
	// OutcomeSignaled: a signal the runner did not send ended the task.
	OutcomeSignaled Outcome = "signaled"
	// OutcomeTimedOut: the runner killed the task at its timeout.
	OutcomeTimedOut Outcome = "timed_out"
	// OutcomeCPUTimeExceeded: the runner killed the task when its CPU
	// time (user and system, all its threads and processes) passed its
	// limit, or the task ended past it.
	OutcomeCPUTimeExceeded Outcome = "cpu_time_exceeded"
	// OutcomeOOMKilled: the kernel killed a process of the task for going
	// over its memory limit, as the cgroup's OOM counter shows.
	OutcomeOOMKilled Outcome = "oom_killed"
	// OutcomeCancelled: the caller cancelled the task, which was killed.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeCompileFailed: the compile stage did not succeed, so the code
	// never ran; Result.Compile says how the compiler ended.
	OutcomeCompileFailed Outcome = "compile_failed"
	// OutcomeNotRun is the outcome of a run of a batch whose compile
	// stage failed: the program never started for that input. The
	// batch's Compile says how the compiler ended; the run's exit code is
	// the compile stage's.
	OutcomeNotRun Outcome = "not_run"
)

// Result is what happened to one task. It is the one result document:
// `exec --json` prints it and the service returns it. Its Stage fields
// describe the run stage; when a compile stage failed they hold the
// outcome compile_failed with the compiler's exit status, and Compile
// holds the details.
type Result struct {
	ID      string `json:"id"`
	Runtime string `json:"runtime,omitempty"`
	Image   string `json:"image"`
	// OCIRuntime is the OCI runtime the task ran under.
	OCIRuntime string `json:"oci_runtime,omitempty"`
	Stage
	// Compile is the compile stage of a compiled runtime, nil otherwise.
	Compile *Stage `json:"compile,omitempty"`
	// Files are the files under /tmp that matched the task's Outputs
	// when its run stage ended, in name order; nil when it gave none.
	Files []OutputFile `json:"files,omitzero"`
	// FilesTruncated is true when a file was cut or left out to fit the
	// caps on the returned files.
	FilesTruncated bool `json:"files_truncated,omitempty"`
}

// Stage is what happened in one stage (compile or run) of a task. Each
// stage runs in a fresh container of its own, so its verdicts and usage
// are its alone.
type Stage struct {
	Outcome Outcome `json:"outcome"`
	// ExitCode is the status a shell would see: the process's own, 124
	// when timed out, 152 when over its CPU-time limit, 130 when
	// cancelled, 128+N when signal N ended it.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that ended the stage, if one did. containerd
	// reports a death by signal N as status 128+N, so a process that
	// itself exits with 128+N is reported as signaled too, as Docker does.
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out"`
	// CPUTimeExceeded is true when the stage used more CPU time than its
	// limit.
	CPUTimeExceeded bool `json:"cpu_time_exceeded"`
	OOMKilled       bool `json:"oom_killed"`
	Cancelled       bool `json:"cancelled"`
	// PidsLimitHit is true when the stage tried to create a process or
	// thread past its pids limit (a fork bomb, or a runtime that needs a
	// higher limit).
	PidsLimitHit bool `json:"pids_limit_hit"`
	// OutputTruncated is true when either stream went over its limit.
	OutputTruncated bool   `json:"output_truncated"`
	Stdout          Stream `json:"stdout"`
	Stderr          Stream `json:"stderr"`
	// Duration is the wall time from start to exit.
	Duration time.Duration `json:"-"`
	// Usage is read from the stage's cgroup before it is deleted.
	Usage Usage `json:"usage"`
}

// Usage is what the task consumed.
type Usage struct {
	// CPU is user plus system time.
	CPU time.Duration
	// MemoryPeak is the highest memory use in bytes, where the kernel
	// records it (cgroup v1, and v2 from Linux 5.19).
	MemoryPeak uint64
}

// Stream is one captured output stream.
type Stream struct {
	// Data is the head of the stream, at most the output limit.
	Data []byte
	// Dropped counts the bytes past the limit that were read and thrown away.
	Dropped int64
}

// Truncated tells whether bytes were dropped.
func (s Stream) Truncated() bool { return s.Dropped > 0 }

// streamJSON is how a Stream is encoded: text when it is valid UTF-8,
// base64 otherwise, with the encoding named so a reader never guesses.
type streamJSON struct {
	Data         string `json:"data"`
	Encoding     string `json:"encoding"`
	Truncated    bool   `json:"truncated"`
	DroppedBytes int64  `json:"dropped_bytes"`
}

// MarshalJSON encodes the stream as text or base64.
func (s Stream) MarshalJSON() ([]byte, error) {
	j := streamJSON{Encoding: "utf-8", Truncated: s.Truncated(), DroppedBytes: s.Dropped}
	if utf8.Valid(s.Data) {
		j.Data = string(s.Data)
	} else {
		j.Encoding = "base64"
		j.Data = base64.StdEncoding.EncodeToString(s.Data)
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (s *Stream) UnmarshalJSON(b []byte) error {
	var j streamJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	switch j.Encoding {
	case "utf-8", "":
		s.Data = []byte(j.Data)
	case "base64":
		d, err := base64.StdEncoding.DecodeString(j.Data)
		if err != nil {
			return fmt.Errorf("decoding base64 stream: %w", err)
		}
		s.Data = d
	default:
		return fmt.Errorf("unknown stream encoding %q", j.Encoding)
	}
	s.Dropped = j.DroppedBytes
	return nil
}

// stageAlias has Stage's fields and none of its methods, so it can be
// embedded (and flattened) without Stage's MarshalJSON taking over.
type stageAlias Stage

// stageJSON adds the duration in milliseconds, which every JSON reader
// understands.
type stageJSON struct {
	stageAlias
	DurationMS float64 `json:"duration_ms"`
}

// MarshalJSON encodes the duration as milliseconds.
func (s Stage) MarshalJSON() ([]byte, error) {
	return json.Marshal(stageJSON{stageAlias: stageAlias(s), DurationMS: ms(s.Duration)})
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (s *Stage) UnmarshalJSON(b []byte) error {
	var j stageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Stage(j.stageAlias)
	s.Duration = fromMS(j.DurationMS)
	return nil
}

type resultJSON struct {
	ID      string `json:"id"`
	Runtime string `json:"runtime,omitempty"`
	Image   string `json:"image"`
	// OCIRuntime is the OCI runtime the task ran under.
	OCIRuntime string `json:"oci_runtime,omitempty"`
	stageJSON
	Compile        *Stage       `json:"compile,omitempty"`
	Files          []OutputFile `json:"files,omitzero"`
	FilesTruncated bool         `json:"files_truncated,omitempty"`
}

// MarshalJSON flattens the run stage into the result.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{
		ID: r.ID, Runtime: r.Runtime, Image: r.Image, OCIRuntime: r.OCIRuntime, Compile: r.Compile,
		Files: r.Files, FilesTruncated: r.FilesTruncated,
		stageJSON: stageJSON{stageAlias: stageAlias(r.Stage), DurationMS: ms(r.Duration)},
	})
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{ID: j.ID, Runtime: j.Runtime, Image: j.Image, OCIRuntime: j.OCIRuntime, Compile: j.Compile, Stage: Stage(j.stageAlias),
		Files: j.Files, FilesTruncated: j.FilesTruncated}
	r.Duration = fromMS(j.DurationMS)
	return nil
}

type usageJSON struct {
	CPUMS      float64 `json:"cpu_ms"`
	MemoryPeak uint64  `json:"memory_peak_bytes"`
}

// MarshalJSON encodes the CPU time as milliseconds.
func (u Usage) MarshalJSON() ([]byte, error) {
	return json.Marshal(usageJSON{CPUMS: ms(u.CPU), MemoryPeak: u.MemoryPeak})
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (u *Usage) UnmarshalJSON(b []byte) error {
	var j usageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = Usage{CPU: fromMS(j.CPUMS), MemoryPeak: j.MemoryPeak}
	return nil
}

func fromMS(v float64) time.Duration {
	return time.Duration(v * float64(time.Millisecond))
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// OutputFile is a file a task left under /tmp that matched one of its
// output patterns.
type OutputFile struct {
	// Name is the file's path relative to /tmp, such as "out/a.png".
	Name string
	// Content is the file's head, all of it unless Truncated.
	Content []byte
	// Truncated is true when the file was cut to fit the cap on the
	// returned files' bytes.
	Truncated bool
	// Size is the file's whole size in bytes.
	Size int64
}

// outputFileJSON is how an OutputFile is encoded: text when its content
// is valid UTF-8, base64 otherwise, as the output streams are.
type outputFileJSON struct {
	Name      string `json:"name"`
	Content   string `json:"content"`
	Encoding  string `json:"encoding"`
	Truncated bool   `json:"truncated"`
	Size      int64  `json:"size"`
}

// MarshalJSON encodes the content as text or base64.
func (f OutputFile) MarshalJSON() ([]byte, error) {
	j := outputFileJSON{Name: f.Name, Encoding: "utf-8", Truncated: f.Truncated, Size: f.Size}
	if utf8.Valid(f.Content) {
		j.Content = string(f.Content)
	} else {
		j.Encoding = "base64"
		j.Content = base64.StdEncoding.EncodeToString(f.Content)
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (f *OutputFile) UnmarshalJSON(b []byte) error {
	var j outputFileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = OutputFile{Name: j.Name, Truncated: j.Truncated, Size: j.Size}
	switch j.Encoding {
	case "utf-8", "":
		f.Content = []byte(j.Content)
	case "base64":
		d, err := base64.StdEncoding.DecodeString(j.Content)
		if err != nil {
			return fmt.Errorf("decoding base64 file %q: %w", j.Name, err)
		}
		f.Content = d
	default:
		return fmt.Errorf("file %q: unknown encoding %q", j.Name, j.Encoding)
	}
	return nil
}

// BatchResult is what happened to a batch: the compile stage, once, and
// one result per run, in the order of the runs.
type BatchResult struct {
	ID      string `json:"id"`
	Runtime string `json:"runtime,omitempty"`
	Image   string `json:"image"`
	// OCIRuntime is the OCI runtime the sandboxes ran under.
	OCIRuntime string `json:"oci_runtime,omitempty"`
	// CompileFailed is set when the compile stage did not succeed (or
	// was cancelled): every run is then OutcomeNotRun (OutcomeCancelled
	// when cancelled).
	CompileFailed bool `json:"compile_failed"`
	// Compile is the compile stage of a compiled runtime, nil otherwise.
	Compile *Stage `json:"compile,omitempty"`
	// Runs holds one result per run, in order.
	Runs []*Result `json:"runs"`
}
