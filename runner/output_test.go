package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeAll writes p to w in chunks of n bytes, checking that every Write
// reports the whole chunk written and no error.
func writeAll(t *testing.T, w io.Writer, p []byte, n int) {
	t.Helper()
	for len(p) > 0 {
		chunk := p[:min(n, len(p))]
		got, err := w.Write(chunk)
		require.NoError(t, err)
		require.Equal(t, len(chunk), got)
		p = p[len(chunk):]
	}
}

func TestCappedBufferKeepsHead(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 100))
	for _, tc := range []struct {
		name  string
		limit int64
		chunk int
	}{
		{"one byte writes", 95, 1},
		{"chunks straddle the limit", 95, 7},
		{"one big write", 95, len(data)},
		{"limit on a chunk boundary", 100, 10},
		{"limit above the data", 5000, 3},
		{"limit 0 keeps nothing", 0, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCappedBuffer(tc.limit, nil)
			writeAll(t, c, data, tc.chunk)
			got, dropped := c.result()
			kept := min(tc.limit, int64(len(data)))
			assert.Equal(t, string(data[:kept]), string(got))
			assert.Equal(t, int64(len(data))-kept, dropped)
		})
	}
}

func TestCappedBufferEmptyWrite(t *testing.T) {
	c := newCappedBuffer(0, nil)
	n, err := c.Write(nil)
	require.NoError(t, err)
	assert.Zero(t, n)
	got, dropped := c.result()
	assert.Empty(t, got)
	assert.Zero(t, dropped)
}

func TestCappedBufferTeesKeptBytes(t *testing.T) {
	var tee bytes.Buffer
	c := newCappedBuffer(10, &tee)
	writeAll(t, c, []byte("hello, world, and more"), 4)
	assert.Equal(t, "hello, wor", tee.String())
	got, dropped := c.result()
	assert.Equal(t, "hello, wor", string(got))
	assert.Equal(t, int64(12), dropped)
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n     int
	got   bytes.Buffer
	calls int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.got.Len()+len(p) > w.n {
		return 0, errors.New("broken pipe")
	}
	return w.got.Write(p)
}

func TestCappedBufferSurvivesFailingTee(t *testing.T) {
	tee := &failingWriter{n: 4}
	c := newCappedBuffer(100, tee)
	writeAll(t, c, []byte("abcdefghij"), 2)

	got, dropped := c.result()
	assert.Equal(t, "abcdefghij", string(got), "buffering stopped with the tee")
	assert.Zero(t, dropped)
	assert.Equal(t, "abcd", tee.got.String())
	assert.Equal(t, 3, tee.calls, "teeing went on after the first error")
}

func TestCappedBufferResultIsACopy(t *testing.T) {
	c := newCappedBuffer(10, nil)
	writeAll(t, c, []byte("abc"), 3)
	got, _ := c.result()
	got[0] = 'X'
	again, _ := c.result()
	assert.Equal(t, "abc", string(again))
}

func TestEOFReaderClosesOnceAtEOF(t *testing.T) {
	e := &eofReader{r: strings.NewReader("input"), eof: make(chan struct{})}
	buf := make([]byte, 2)
	for range 3 {
		_, err := e.Read(buf)
		require.NoError(t, err)
		assertOpen(t, e.eof)
	}
	for range 3 { // reading past the end must not close twice (a panic)
		_, err := e.Read(buf)
		require.ErrorIs(t, err, io.EOF)
		assertClosed(t, e.eof)
	}
}

func TestEOFReaderClosesOnError(t *testing.T) {
	boom := errors.New("boom")
	e := &eofReader{r: iotest.ErrReader(boom), eof: make(chan struct{})}
	for range 2 {
		_, err := e.Read(make([]byte, 1))
		require.ErrorIs(t, err, boom)
		assertClosed(t, e.eof)
	}
}

func TestEOFReaderNilIsNilReader(t *testing.T) {
	var e *eofReader
	r := e.reader()
	assert.True(t, r == nil, "reader() of a nil *eofReader is a typed nil %#v", r)

	e = &eofReader{r: strings.NewReader(""), eof: make(chan struct{})}
	assert.Same(t, e, e.reader())
}

func assertOpen(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
		t.Fatal("eof closed before the end")
	default:
	}
}

func assertClosed(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	default:
		t.Fatal("eof not closed at the end")
	}
}

func TestCappedBufferCutsAtACharacter(t *testing.T) {
	text := "naïve café, 5 €, 𝄞"
	for limit := 0; limit <= len(text); limit++ {
		c := newCappedBuffer(int64(limit), nil)
		_, _ = c.Write([]byte(text))
		got, dropped := c.result()
		require.True(t, utf8.Valid(got), "limit %d: %q", limit, got)
		assert.True(t, strings.HasPrefix(text, string(got)), "limit %d: %q", limit, got)
		assert.LessOrEqual(t, len(got), limit)
		assert.Greater(t, len(got), limit-utf8.UTFMax, "limit %d: only the cut character goes", limit)
		assert.Equal(t, int64(len(text)), int64(len(got))+dropped, "limit %d: every byte is kept or counted", limit)

		b, err := json.Marshal(Stream{Data: got, Dropped: dropped})
		require.NoError(t, err)
		assert.Contains(t, string(b), `"encoding":"utf-8"`, "limit %d", limit)
	}
}

func TestCappedBufferKeepsBinaryAsIs(t *testing.T) {
	// Not UTF-8 before the cut: nothing is trimmed, and it is base64.
	data := []byte{0xff, 0xfe, 'a', 0xe2, 0x82, 0xac, 0xe2, 0x82}
	c := newCappedBuffer(7, nil)
	_, _ = c.Write(data)
	got, dropped := c.result()
	assert.Equal(t, data[:7], got)
	assert.Equal(t, int64(1), dropped)
	b, err := json.Marshal(Stream{Data: got, Dropped: dropped})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"encoding":"base64"`)

	// Not cut: an incomplete character at the very end is the task's own.
	c = newCappedBuffer(100, nil)
	_, _ = c.Write([]byte("ok \xe2\x82"))
	got, dropped = c.result()
	assert.Equal(t, []byte("ok \xe2\x82"), got)
	assert.Zero(t, dropped)
}
