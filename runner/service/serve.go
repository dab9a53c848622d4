package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/sdnotify"
)

// killTimeout bounds the wait, after the grace period, for cancelled
// tasks to be killed and cleaned: the runner needs seconds at most.
const killTimeout = time.Minute

// notify tells systemd about the service's state when it runs under
// Type=notify (NOTIFY_SOCKET is set), and does nothing otherwise. A
// variable, so that tests can watch it.
var notify = sdnotify.Notify

// Serve answers on ls until ctx is done, then shuts down: it stops
// accepting, refuses queued tasks, lets running ones finish for the grace
// period, then cancels them (the runner kills and removes them), and
// returns nil once every request has been answered. It tells systemd
// READY=1 once it serves and STOPPING=1 when it begins to stop. Every
// listener but a unix socket or a loopback PistonListener needs a token
// (WithToken); a PistonListener answers Piston's API only. Serve closes
// ls.
func (s *Service) Serve(ctx context.Context, ls []net.Listener) error {
	closeAll := func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}
	if len(ls) == 0 {
		return errors.New("no listener to serve on")
	}
	var addrs []string
	for _, l := range ls {
		// Piston's clients send no credentials: its listener is open
		// on a loopback address only.
		pl, isPiston := l.(*PistonListener)
		if l.Addr().Network() != "unix" && !(isPiston && pl.loopback) && s.opts.tokenSum == nil {
			closeAll()
			return fmt.Errorf("listening on %s %s needs a bearer token (token_file): refusing to serve it without authentication", l.Addr().Network(), l.Addr())
		}
		addrs = append(addrs, l.Addr().Network()+":"+l.Addr().String())
	}
	log := s.opts.log
	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Requests' contexts come from base, not ctx: the end of ctx
		// starts the grace period, it does not cancel tasks.
		BaseContext: func(net.Listener) context.Context { return base },
		ConnContext: s.connContext,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if s.prober != nil {
		defer s.prober.start()()
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("serving", "listeners", strings.Join(addrs, " "), "max_concurrent", s.opts.maxConcurrent,
		"queue", s.opts.queue, "grace", s.opts.grace.String())
	if err := notify("READY=1\nSTATUS=serving on " + strings.Join(addrs, " ")); err != nil {
		log.Warn("telling systemd the service is ready", "error", err)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// A listener failed: stop the others the same orderly way.
		log.Error("listener failed", "error", serveErr)
	}
	s.draining.Store(true)
	s.lim.close()
	_ = notify("STOPPING=1")
	running, _ := s.lim.counts()
	log.Info("shutting down: accepting no more tasks", "running", running, "grace", s.opts.grace.String())

	gctx, cancel := context.WithTimeout(context.Background(), s.opts.grace)
	err := srv.Shutdown(gctx)
	if err == nil {
		err = s.waitSessions(gctx)
	}
	cancel()
	if err != nil {
		running, _ := s.lim.counts()
		log.Warn("grace period over: cancelling the running tasks", "running", running)
		cancelBase(errShutdownCancel)
		kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		err = srv.Shutdown(kctx)
		if err == nil {
			err = s.waitSessions(kctx)
		}
		cancel()
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("tasks still running %s after they were cancelled: %w", killTimeout, err)
		}
	}
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
