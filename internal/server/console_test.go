package server_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/herald-events/herald/internal/server"
)

// TestConsoleService checks that --services=console turns the console on
// beside the named modules, or alone, and what it needs.
func TestConsoleService(t *testing.T) {
	for _, tc := range []struct {
		name         string
		services     []string
		httpAddr     string
		wantServices []string
		wantErr      string
	}{
		{"alone", []string{"console"}, "127.0.0.1:0", nil, ""},
		{"beside orders", []string{"orders", "console"}, "127.0.0.1:0", []string{"orders"}, ""},
		{"no admin listener", []string{"console"}, "", nil, "--http-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.Config{Services: tc.services, HTTPAddr: tc.httpAddr,
				Kafka: server.KafkaConfig{Brokers: []string{"127.0.0.1:9092"}}, Registry: server.RegistryConfig{URL: "http://127.0.0.1:8081"},
				DatabaseURL: "sqlite:" + t.TempDir(), Auth: server.AuthConfig{InsecureNoAuth: true}}
			cfg.SetDefaults()
			cfg.SetDefaults() // Start calls it again
			if !cfg.Console {
				t.Errorf("console off with --services=%s", strings.Join(tc.services, ","))
			}
			if !slices.Equal(cfg.Services, tc.wantServices) {
				t.Errorf("services %v, want %v", cfg.Services, tc.wantServices)
			}
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}
