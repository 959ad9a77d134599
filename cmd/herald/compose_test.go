package main

import (
	"flag"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/herald-events/herald/internal/server"
)

// knownEnv lists every HERALD_* variable the config loader reads, from the
// flags of every command.
func knownEnv() map[string]bool {
	known := map[string]bool{}
	for _, build := range []func(*flags){
		func(f *flags) { f.process(true) },
		func(f *flags) { f.process(false) },
		func(f *flags) { f.registry() },
	} {
		f := newFlags("x", io.Discard)
		build(f)
		f.fs.VisitAll(func(fl *flag.Flag) { known[server.EnvName(fl.Name)] = true })
	}
	return known
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   yaml.Node         `yaml:"depends_on"`
	} `yaml:"services"`
}

// TestComposeFile checks compose/compose.yaml, which cannot be started on
// machines without Docker: every HERALD_* variable it sets is one the config
// loader knows, every dependency names a service in the file, every herald
// service it runs exists, no two published host ports collide, every port
// is published on 127.0.0.1 only, and every `herald serve` container
// authenticates its callers and keeps pprof off.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("parse compose.yaml: %v", err)
	}
	known := knownEnv()
	ports := map[string]string{}
	var heraldServices []string
	for name, svc := range cf.Services {
		for k, v := range svc.Environment {
			if strings.HasPrefix(k, "HERALD_") && !known[k] {
				t.Errorf("service %s sets %s, which herald does not read", name, k)
			}
			if k == "HERALD_SERVICES" {
				for _, s := range strings.Split(v, ",") {
					if !slices.Contains(server.KnownServices(), strings.TrimSpace(s)) {
						t.Errorf("service %s runs unknown herald service %q", name, s)
					}
					heraldServices = append(heraldServices, strings.TrimSpace(s))
				}
			}
		}
		for _, dep := range dependencies(svc.DependsOn) {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not in the file", name, dep)
			}
		}
		if cmd, _ := svc.Command.([]any); len(cmd) > 0 && cmd[0] == "serve" {
			env := svc.Environment
			if env["HERALD_GRPC_JWKS"] == "" && env["HERALD_GRPC_CLIENT_CA"] == "" {
				t.Errorf("service %s serves gRPC without authentication", name)
			}
			if env["HERALD_INSECURE_NO_AUTH"] != "" || env["HERALD_PPROF"] != "" {
				t.Errorf("service %s turns on --insecure-no-auth or --pprof", name)
			}
		}
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q beyond 127.0.0.1", name, p)
			}
			host := hostPort(p)
			if other, dup := ports[host]; dup {
				t.Errorf("host port %s published by both %s and %s", host, other, name)
			}
			ports[host] = name
		}
	}
	for _, want := range server.KnownServices() {
		if !slices.Contains(heraldServices, want) {
			t.Errorf("compose.yaml runs no container for the %s service", want)
		}
	}
}

// dependencies reads depends_on in its list or map form.
func dependencies(n yaml.Node) []string {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = *n.Alias
	}
	var out []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
	}
	return out
}

// hostPort returns the host side of a short port syntax such as
// "127.0.0.1:8080:8080" or "8080:8080" (with the address, so the same port
// on two addresses does not collide).
func hostPort(p string) string {
	parts := strings.Split(strings.Split(p, "/")[0], ":")
	switch len(parts) {
	case 3:
		return parts[0] + ":" + parts[1]
	case 2:
		return "0.0.0.0:" + parts[0]
	}
	return p
}
