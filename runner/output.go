package runner

import (
	"bytes"
	"io"
	"sync"
	"unicode/utf8"
)

// cappedBuffer keeps the first limit bytes written to it, counts the rest
// and never blocks or fails the writer: the task's pipe is drained to the
// end, so a chatty task can neither stall on a full pipe nor grow the
// runner's memory past the cap. The kept head is also copied to tee, when
// there is one, as it arrives.
type cappedBuffer struct {
	mu      sync.Mutex
	limit   int64
	buf     bytes.Buffer
	dropped int64
	tee     io.Writer
	teeErr  error
}

func newCappedBuffer(limit int64, tee io.Writer) *cappedBuffer {
	return &cappedBuffer{limit: limit, tee: tee}
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := p
	if room := c.limit - int64(c.buf.Len()); int64(len(keep)) > room {
		keep = keep[:max(room, 0)]
	}
	c.buf.Write(keep)
	c.dropped += int64(len(p) - len(keep))
	// A caller that stops reading (a closed terminal, a full pipe) must not
	// stop the task's output from being drained and kept: remember the
	// first error and stop teeing.
	if c.tee != nil && c.teeErr == nil && len(keep) > 0 {
		_, c.teeErr = c.tee.Write(keep)
	}
	return len(p), nil
}

// result returns the kept bytes and how many were dropped. Text cut at
// the limit in the middle of a character keeps its whole characters
// only, so it still reads (and is encoded) as text: the bytes of the
// character cut short count as dropped.
func (c *cappedBuffer) result() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept, dropped := c.buf.Bytes(), c.dropped
	if dropped > 0 {
		if n := partialRune(kept); n > 0 && utf8.Valid(kept[:len(kept)-n]) {
			kept, dropped = kept[:len(kept)-n], dropped+int64(n)
		}
	}
	return bytes.Clone(kept), dropped
}

// partialRune returns the length of the incomplete UTF-8 sequence b ends
// with: the start of a multi-byte character and fewer continuation bytes
// than it needs; 0 when b ends on a character boundary (or in bytes that
// are no UTF-8 at all).
func partialRune(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if utf8.RuneStart(c) {
			if c < utf8.RuneSelf || utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

// eofReader tells, by closing eof, that its reader is used up.
type eofReader struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// reader returns e as an io.Reader, or nil for a nil e, so that no stdin
// FIFO is made for a task without input.
func (e *eofReader) reader() io.Reader {
	if e == nil {
		return nil
	}
	return e
}

// streams are a stage's standard streams as the runner sees them.
type streams struct {
	stdout, stderr *cappedBuffer
	stdin          *eofReader // nil: the task gets no stdin
}

func newStreams(limit int64, stdout, stderr io.Writer, stdin io.Reader) *streams {
	s := &streams{stdout: newCappedBuffer(limit, stdout), stderr: newCappedBuffer(limit, stderr)}
	if stdin != nil {
		s.stdin = &eofReader{r: stdin, eof: make(chan struct{})}
	}
	return s
}

// reset sets the limit and tee of a buffer nothing was written to yet: a
// pooled sandbox's streams exist before the task that will use them.
func (c *cappedBuffer) reset(limit int64, tee io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit, c.tee, c.teeErr = limit, tee, nil
}

// gate is a pooled sandbox's stdin before a task claims the sandbox: reads
// block until open hands over the task's input (nil for none).
type gate struct {
	once  sync.Once
	ready chan struct{}
	r     io.Reader
}

func newGate() *gate { return &gate{ready: make(chan struct{})} }

func (g *gate) Read(p []byte) (int, error) {
	<-g.ready
	return g.r.Read(p)
}

// open lets reads through to r, or to an immediate end-of-file when r is
// nil. Only the first call counts, so a sandbox that is thrown away
// unclaimed can open its gate to release the copier blocked on it.
func (g *gate) open(r io.Reader) {
	g.once.Do(func() {
		if r == nil {
			r = eof{}
		}
		g.r = r
		close(g.ready)
	})
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
