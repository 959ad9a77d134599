package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/registry"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool, cert
}

// TestServeSecured runs `herald serve` against a broker that requires TLS
// and SASL/SCRAM and a registry that requires basic auth, with gRPC over
// TLS, and checks what happens when a setting is wrong.
func TestServeSecured(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool, cert := selfSigned(t, dir)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "herald", "kafka-secret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	reg, err := registry.New(registry.Config{User: "ops", Password: "reg-secret"})
	if err != nil {
		t.Fatal(err)
	}
	regSrv := httptest.NewServer(reg.Handler())
	t.Cleanup(regSrv.Close)

	base := server.Config{
		GRPCAddr: "127.0.0.1:0", GRPCTLSCert: certFile, GRPCTLSKey: keyFile,
		Kafka: server.KafkaConfig{Brokers: cluster.ListenAddrs(), SASLMechanism: "SCRAM-SHA-256",
			SASLUser: "herald", SASLPassword: "kafka-secret", TLSCAFile: certFile},
		Registry:    server.RegistryConfig{URL: regSrv.URL, User: "ops", Password: "reg-secret"},
		DatabaseURL: "sqlite:" + filepath.Join(dir, "db"),
		Logger:      testLogger(t),
	}
	start := func(cfg server.Config) (*server.Process, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return server.Start(ctx, cfg)
	}

	t.Run("missing schemas stop the start", func(t *testing.T) {
		_, err := start(base)
		if err == nil || !strings.Contains(err.Error(), "herald schema register") {
			t.Fatalf("start without registered schemas: %v; want an error pointing at herald schema register", err)
		}
	})
	t.Run("registry rejects a wrong password", func(t *testing.T) {
		_, err := server.RegisterSchemas(server.RegistryConfig{URL: regSrv.URL, User: "ops", Password: "nope"}, "", "")
		if err == nil || !strings.Contains(err.Error(), "40101") {
			t.Fatalf("register with a wrong password: %v; want 40101 Unauthorized", err)
		}
	})
	if _, err := server.RegisterSchemas(base.Registry, "", ""); err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	t.Run("kafka rejects a wrong SASL password", func(t *testing.T) {
		cfg := base
		cfg.Kafka.SASLPassword = "wrong"
		p, err := start(cfg)
		if err == nil {
			p.Close()
			t.Fatal("started with a wrong SASL password")
		}
		t.Logf("error: %v", err)
	})

	p, err := start(base)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })

	plain, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := inventoryv1.NewInventoryServiceClient(plain).GetStock(callCtx(t), &inventoryv1.GetStockRequest{Sku: "A"}); err == nil {
		t.Fatal("a plaintext gRPC call succeeded against a TLS server")
	}
	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &stack{proc: p, orders: ordersv1.NewOrderServiceClient(conn), inventory: inventoryv1.NewInventoryServiceClient(conn)}
	s.setStock(t, "APPLE", 5)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 2)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	if got := s.stock(t, "APPLE"); got != 3 {
		t.Fatalf("stock = %d, want 3", got)
	}
}

// TestServeRealSASL runs the saga over the real broker's SASL/SCRAM listener
// when HERALD_KAFKA_SASL_BROKERS names it.
func TestServeRealSASL(t *testing.T) {
	brokers := os.Getenv("HERALD_KAFKA_SASL_BROKERS")
	real, ok := realStack()
	if brokers == "" || !ok {
		t.Skip("HERALD_KAFKA_SASL_BROKERS and the real stack are not configured")
	}
	ns := namespaceFor(t.TempDir())
	cfg := server.Config{
		GRPCAddr: "127.0.0.1:0", Namespace: ns, Logger: testLogger(t),
		Kafka: server.KafkaConfig{Brokers: strings.Split(brokers, ","), SASLMechanism: "SCRAM-SHA-256",
			SASLUser: os.Getenv("HERALD_KAFKA_SASL_USER"), SASLPassword: os.Getenv("HERALD_KAFKA_SASL_PASSWORD")},
		Registry: real.Registry, DatabaseURL: real.DatabaseURL,
	}
	if _, err := server.RegisterSchemas(cfg.Registry, "", ns); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := server.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start over SASL/SCRAM: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	conn, err := grpc.NewClient(p.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &stack{proc: p, ns: ns, orders: ordersv1.NewOrderServiceClient(conn), inventory: inventoryv1.NewInventoryServiceClient(conn)}
	s.setStock(t, "APPLE", 5)
	o := s.create(t, &ordersv1.CreateOrderRequest{CustomerId: "alice", Items: []*ordersv1.LineItem{item("APPLE", 2)}})
	s.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED)

	bad := cfg
	bad.Kafka.SASLPassword = "wrong"
	bctx, bcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer bcancel()
	if p2, err := server.Start(bctx, bad); err == nil {
		p2.Close()
		t.Fatal("started with a wrong SASL password")
	}
}
