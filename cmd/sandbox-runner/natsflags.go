package main

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
)

// natsFlags are the flags of the commands that talk to NATS: worker,
// workers and submit. Each falls back to its environment variable (the
// nats CLI's), then to the config file's [fleet] section.
type natsFlags struct {
	url, creds, ca, cert, key string
}

func (n *natsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&n.url, "nats", "", "NATS server URLs, comma-separated: tls://HOST:PORT (TLS, the default) or nats://HOST:PORT (clear) (env NATS_URL; config [fleet] nats)")
	fs.StringVar(&n.creds, "creds", "", "NATS credentials file (env NATS_CREDS; config [fleet] creds)")
	fs.StringVar(&n.ca, "tls-ca", "", "PEM file of the CAs of the NATS servers' certificates; implies TLS (config [fleet] tls_ca)")
	fs.StringVar(&n.cert, "tls-cert", "", "client certificate for NATS, with --tls-key; implies TLS (config [fleet] tls_cert)")
	fs.StringVar(&n.key, "tls-key", "", "the client certificate's key (config [fleet] tls_key)")
}

// options settles how to reach NATS from the flags, the environment and
// cfg; no server at all is a usage error.
func (n *natsFlags) options(cfg config.Fleet, name string) (fleet.ConnectOptions, error) {
	o := fleet.ConnectOptions{
		URLs:  first(n.url, os.Getenv("NATS_URL"), cfg.NATS),
		Creds: first(n.creds, os.Getenv("NATS_CREDS"), cfg.Creds),
		CA:    first(n.ca, cfg.TLSCA),
		Cert:  first(n.cert, cfg.TLSCert),
		Key:   first(n.key, cfg.TLSKey),
		Name:  name,
	}
	if o.URLs == "" {
		return o, usageError("no NATS server given: pass --nats URL, set NATS_URL, or set [fleet] nats in the config")
	}
	return o, nil
}

// connect connects to NATS with the flags, the environment and cfg.
func (n *natsFlags) connect(cfg config.Fleet, name string) (*nats.Conn, error) {
	o, err := n.options(cfg, name)
	if err != nil {
		return nil, err
	}
	return fleet.Connect(o)
}

// streamOptions are the stream settings of the config's [fleet] section,
// used when this command is the first to create the streams.
func streamOptions(cfg config.Fleet) ([]fleet.Option, error) {
	var opts []fleet.Option
	if cfg.Replicas > 0 {
		opts = append(opts, fleet.WithReplicas(cfg.Replicas))
	}
	for _, d := range []struct {
		key, value string
		opt        func(time.Duration) fleet.Option
	}{
		{"ack_wait", cfg.AckWait, fleet.WithAckWait},
		{"presence_ttl", cfg.PresenceTTL, fleet.WithPresenceTTL},
		{"task_ttl", cfg.TaskTTL, fleet.WithTaskTTL},
		{"result_ttl", cfg.ResultTTL, fleet.WithResultTTL},
	} {
		if d.value == "" {
			continue
		}
		v, err := runner.ParseDuration(d.value)
		if err != nil {
			return nil, fmt.Errorf("[fleet] %s: %w", d.key, err)
		}
		opts = append(opts, d.opt(v))
	}
	return opts, nil
}
