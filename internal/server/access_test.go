package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/internal/server"
)

// TestAccessPolicyCoversEveryMethod checks the policy against the gRPC
// services herald declares: every method is listed (one left out would be
// denied to everyone), and every herald entry names a method that exists.
func TestAccessPolicyCoversEveryMethod(t *testing.T) {
	policy := server.AccessPolicy()
	declared := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "herald.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				name := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				declared[name] = true
				if _, ok := policy[name]; !ok {
					t.Errorf("%s is not in AccessPolicy", name)
				}
			}
		}
		return true
	})
	if len(declared) < 9 {
		t.Fatalf("found %d herald methods; are the generated packages linked?", len(declared))
	}
	for name := range policy {
		if strings.HasPrefix(name, "/herald.") && !declared[name] {
			t.Errorf("AccessPolicy names %s, which no service declares", name)
		}
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAdminDefaults starts a process with the Config defaults: no pprof on
// the admin listener and no gRPC reflection; each is served when asked.
// The first runs with InsecureNoAuth, which it logs as a warning.
func TestAdminDefaults(t *testing.T) {
	reflect := func(t *testing.T, addr string) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		if err != nil {
			return err
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}

	var logs lockedBuffer
	off := startProcessWith(t, t.TempDir(), func(c *server.Config) {
		c.Auth.InsecureNoAuth = true
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if !strings.Contains(logs.String(), "gRPC authentication is OFF (--insecure-no-auth)") {
		t.Errorf("no warning about --insecure-no-auth in the log:\n%s", logs.String())
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/goroutine?debug=2", "/debug/pprof/trace"} {
		if code, _, err := off.get(path); err != nil || code != http.StatusNotFound {
			t.Errorf("GET %s = %d, %v; want 404 without PProf", path, code, err)
		}
	}
	if code, _, err := off.get("/metrics"); err != nil || code != http.StatusOK {
		t.Errorf("GET /metrics = %d, %v", code, err)
	}
	if err := reflect(t, off.proc.GRPCAddr()); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection without GRPCReflection: %v; want Unimplemented", err)
	}

	on := startProcessWith(t, t.TempDir(), func(c *server.Config) { c.PProf, c.GRPCReflection = true, true })
	if code, body, err := on.get("/debug/pprof/"); err != nil || code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ with PProf = %d, %v", code, err)
	}
	if err := reflect(t, on.proc.GRPCAddr()); err != nil {
		t.Errorf("reflection with GRPCReflection: %v", err)
	}
}
