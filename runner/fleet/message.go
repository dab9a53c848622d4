package fleet

import (
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// encodeAnswer encodes a, cutting the result's output when the document
// would be larger than limit bytes (the server's max payload less room
// for headers): the kept heads of the streams shrink, the bytes cut are
// counted as dropped, and the answer says it was truncated.
func encodeAnswer(a Answer, limit int) ([]byte, error) {
	if a.Batch != nil {
		return encodeBatchAnswer(a, limit)
	}
	b, err := json.Marshal(a)
	if err != nil || len(b) <= limit || a.Result == nil {
		return b, err
	}
	res := *a.Result
	if res.Compile != nil {
		c := *res.Compile
		res.Compile = &c
	}
	a.Result, a.Truncated = &res, true
	// What can be cut: the streams, and the returned files' contents.
	type part struct {
		data *[]byte
		cut  func(dropped int)
	}
	var parts []part
	for _, st := range []*runner.Stream{&res.Stdout, &res.Stderr} {
		parts = append(parts, part{&st.Data, func(n int) { st.Dropped += int64(n); res.OutputTruncated = true }})
	}
	if res.Compile != nil {
		for _, st := range []*runner.Stream{&res.Compile.Stdout, &res.Compile.Stderr} {
			parts = append(parts, part{&st.Data, func(n int) { st.Dropped += int64(n); res.Compile.OutputTruncated = true }})
		}
	}
	res.Files = slices.Clone(res.Files)
	for i := range res.Files {
		f := &res.Files[i]
		parts = append(parts, part{&f.Content, func(int) { f.Truncated, res.FilesTruncated = true, true }})
	}
	for len(b) > limit {
		// Halve the largest part until the document fits; bytes that
		// are not text cost 4/3 of their size in base64.
		big := parts[0]
		for _, p := range parts[1:] {
			if len(*p.data) > len(*big.data) {
				big = p
			}
		}
		if len(*big.data) == 0 {
			return nil, fmt.Errorf("the answer is %d bytes without any output, over the %d the NATS server takes", len(b), limit)
		}
		keep := cutUTF8(*big.data, len(*big.data)/2)
		big.cut(len(*big.data) - len(keep))
		*big.data = keep
		if b, err = json.Marshal(a); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// cutUTF8 returns the first n bytes of b, fewer when that would split a
// character of valid UTF-8 text, so that text stays text.
func cutUTF8(b []byte, n int) []byte {
	if !utf8.Valid(b) {
		return b[:n]
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}
