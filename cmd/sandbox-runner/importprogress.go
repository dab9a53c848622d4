package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// readProgress counts what is read through it and, on a terminal, shows
// the count in place every interval until stop.
type readProgress struct {
	r    io.Reader
	n    atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
}

func newReadProgress(r io.Reader, w io.Writer, name string, interval time.Duration) *readProgress {
	p := &readProgress{r: r, done: make(chan struct{})}
	if !isTerminalWriter(w) {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-t.C:
				fmt.Fprintf(w, "\r\033[Kimporting %s: %s read", name, humanBytes(p.n.Load()))
				shown = true
			case <-p.done:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			}
		}
	}()
	return p
}

func (p *readProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	return n, err
}

// stop ends the display, clearing its line, and returns the bytes read.
func (p *readProgress) stop() int64 {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
	return p.n.Load()
}

// importedLine says what one imported image is: its name, digest and
// unpacked content size.
func importedLine(ctx context.Context, c *client.Client, name string) string {
	img, err := c.GetImage(ctx, name)
	if err != nil {
		return "imported " + name
	}
	size, err := img.Size(ctx)
	if err != nil {
		return fmt.Sprintf("imported %s %s", name, img.Target().Digest)
	}
	return fmt.Sprintf("imported %s %s %s", name, img.Target().Digest, humanBytes(size))
}
