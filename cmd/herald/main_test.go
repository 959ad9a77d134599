package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/internal/server"
)

func TestRunUsageErrors(t *testing.T) {
	env := map[string]string{}
	// Settings that pass validation, for cases about one other setting.
	reachable := map[string]string{"HERALD_SCHEMA_REGISTRY_URL": "http://r:8081", "HERALD_DATABASE_URL": "sqlite:x"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "no command"},
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"unknown flag", []string{"dev", "--nope"}, nil, "flag provided but not defined"},
		{"bad service", []string{"dev", "--services=orders,billing"}, nil, `unknown service "billing"`},
		{"bad address", []string{"dev", "--grpc-addr=8080"}, nil, "--grpc-addr"},
		{"bad service to require CloudEvents of", []string{"dev"}, map[string]string{"HERALD_REQUIRE_CLOUDEVENTS": "inventory,billing"},
			`--require-cloudevents (HERALD_REQUIRE_CLOUDEVENTS): unknown service "billing"`},
		{"bad env", []string{"dev"}, map[string]string{"HERALD_PARTITIONS": "many"}, "HERALD_PARTITIONS"},
		{"bad strategy from env", []string{"dev"}, map[string]string{"HERALD_SUBJECT_STRATEGY": "x"}, "--subject-strategy"},
		{"gc percent of zero", []string{"dev", "--gc-percent=0"}, nil, "--gc-percent (HERALD_GC_PERCENT): 0"},
		{"negative inbox retention", []string{"dev", "--inbox-retention=-1h"}, nil, "--inbox-retention (HERALD_INBOX_RETENTION): -1h0m0s"},
		{"bad log level", []string{"dev", "--log-level=loud"}, nil, "--log-level"},
		{"serve without infrastructure", []string{"serve"}, nil, "--kafka-brokers (HERALD_KAFKA_BROKERS): required"},
		{"serve without registry", []string{"serve", "--kafka-brokers=127.0.0.1:1"}, nil, "--schema-registry-url (HERALD_SCHEMA_REGISTRY_URL): required"},
		{"serve without database", []string{"serve"}, map[string]string{"HERALD_KAFKA_BROKERS": "k:9092", "HERALD_SCHEMA_REGISTRY_URL": "http://r:8081"},
			"--database-url (HERALD_DATABASE_URL): required"},
		{"serve with bad database url", []string{"serve", "--database-url=mysql://x"}, map[string]string{"HERALD_KAFKA_BROKERS": "k:9092", "HERALD_SCHEMA_REGISTRY_URL": "http://r:8081"},
			`unsupported scheme "mysql"`},
		{"serve risk alone needs no database but a registry", []string{"serve", "--services=risk", "--kafka-brokers=k:9092"}, nil,
			"--schema-registry-url (HERALD_SCHEMA_REGISTRY_URL): required"},
		{"serve with a broker port that is no number", []string{"serve", "--kafka-brokers", "127.0.0.1:abc"}, reachable, `--kafka-brokers (HERALD_KAFKA_BROKERS): "127.0.0.1:abc"`},
		{"serve with broker port 0", []string{"serve", "--kafka-brokers=k1:9092,127.0.0.1:0"}, reachable, `--kafka-brokers (HERALD_KAFKA_BROKERS): "127.0.0.1:0"`},
		{"serve with a broker port above 65535", []string{"serve"}, map[string]string{"HERALD_KAFKA_BROKERS": "k:70000",
			"HERALD_SCHEMA_REGISTRY_URL": "http://r:8081", "HERALD_DATABASE_URL": "sqlite:x"}, `--kafka-brokers (HERALD_KAFKA_BROKERS): "k:70000"`},
		{"serve with a broker without host", []string{"serve", "--kafka-brokers=:9092"}, reachable, "--kafka-brokers"},
		{"serve with a bad grpc port", []string{"serve", "--kafka-brokers=k:9092", "--grpc-addr=127.0.0.1:http"}, reachable, "--grpc-addr"},
		{"serve with a bad http port", []string{"serve", "--kafka-brokers=k:9092", "--http-addr=127.0.0.1:99999"}, reachable, "--http-addr"},
		{"serve with a negative startup timeout", []string{"serve", "--kafka-brokers=k:9092", "--startup-timeout=-1s"}, reachable, "--startup-timeout"},
		{"serve with half a sasl config", []string{"serve", "--kafka-sasl-mechanism=SCRAM-SHA-256"}, nil, "needs --kafka-sasl-user"},
		{"serve with a bad instance id", []string{"serve", "--instance-id=inventory/2"}, nil, `--instance-id (HERALD_INSTANCE_ID): "inventory/2"`},
		{"serve with a bad instance id from env", []string{"serve"}, map[string]string{"HERALD_INSTANCE_ID": "a b"}, "--instance-id"},
		{"serve with unknown sasl", []string{"serve", "--kafka-sasl-mechanism=GSSAPI"}, nil, "--kafka-sasl-mechanism"},
		{"dev registry user without password", []string{"dev", "--registry-user=ops"}, nil, "--registry-user"},
		{"dev registry reader without a read-write user", []string{"dev", "--registry-reader-user=app", "--registry-reader-password=x"}, nil, "--registry-password"},
		{"registry user without password", []string{"registry", "--registry-user=ops"}, nil, "--registry-password"},
		{"schema without subcommand", []string{"schema"}, nil, "no subcommand"},
		{"schema register without registry", []string{"schema", "register"}, nil, "--schema-registry-url"},
		{"serve without authentication", []string{"serve", "--kafka-brokers=k:9092"}, reachable, "--insecure-no-auth"},
		{"serve with a JWKS but no issuer", []string{"serve", "--kafka-brokers=k:9092", "--grpc-jwks=jwks.json", "--grpc-jwt-audience=a"}, reachable,
			"--grpc-jwt-issuer (HERALD_GRPC_JWT_ISSUER): required"},
		{"serve with client CA but no TLS", []string{"serve", "--kafka-brokers=k:9092", "--grpc-client-ca=ca.pem"}, reachable, "client certificates need TLS"},
		{"serve with auth and insecure", []string{"serve", "--kafka-brokers=k:9092", "--grpc-jwks=j.json", "--grpc-jwt-issuer=i",
			"--grpc-jwt-audience=a", "--insecure-no-auth"}, reachable, "--insecure-no-auth (HERALD_INSECURE_NO_AUTH): contradicts"},
		{"token for a customer without subject", []string{"token", "--data-dir", "unused"}, nil, "--subject"},
		{"token with an unknown role", []string{"token", "--role=admin"}, nil, `--role "admin"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env = tc.env
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, getenv, &out, &errOut)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("run = %v, want a usage error (exit code 2)", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "herald dev") {
		t.Fatalf("help does not mention herald dev:\n%s", out.String())
	}
}

func TestSetGCPercent(t *testing.T) {
	current := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	before := current()
	restore := setGCPercent(before+77, func(string) string { return "" })
	if got := current(); got != before+77 {
		t.Errorf("without GOGC: percent %d, want %d", got, before+77)
	}
	restore()
	if got := current(); got != before {
		t.Errorf("restored: percent %d, want %d", got, before)
	}
	restore = setGCPercent(before+77, func(k string) string { return map[string]string{"GOGC": "50"}[k] })
	if got := current(); got != before {
		t.Errorf("with GOGC set: percent %d, want it left at %d", got, before)
	}
	restore()
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true,
		"0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.7:8080": false, ":8080": false, "nonsense": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestInboxRetentionFlag: the flag's default is the server's, its zero
// keeps claims forever (a negative retention in the config) and the
// variable sets it too.
func TestInboxRetentionFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, server.DefaultInboxRetention},
		{[]string{"--inbox-retention=36h"}, nil, 36 * time.Hour},
		{nil, map[string]string{"HERALD_INBOX_RETENTION": "90m"}, 90 * time.Minute},
		{[]string{"--inbox-retention=0"}, nil, -1},
	} {
		f := newFlags("dev", io.Discard)
		f.process(true)
		if err := f.parse(c.args, func(k string) string { return c.env[k] }); err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if f.cfg.InboxRetention != c.want {
			t.Errorf("%v %v: InboxRetention %s, want %s", c.args, c.env, f.cfg.InboxRetention, c.want)
		}
	}
}
