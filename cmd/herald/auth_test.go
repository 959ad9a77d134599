package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/internal/heraldtest"
	"github.com/herald-events/herald/internal/server"
	"github.com/herald-events/herald/platform/auth"
)

// grpcurlBin finds grpcurl on PATH or in ~/go/bin, or skips the test.
func grpcurlBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "grpcurl"); fileExists(p) {
			return p
		}
	}
	t.Skip("grpcurl is not installed (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// grpcurl runs the real grpcurl client and returns what it printed
// (stdout and stderr) and whether it exited 0.
type grpcurl struct {
	bin, addr string
	conn      []string // -plaintext, or -cacert/-cert/-key
}

func (g grpcurl) call(t *testing.T, header, method, body string) (string, bool) {
	t.Helper()
	args := append([]string{}, g.conn...)
	if header != "" {
		args = append(args, "-H", header)
	}
	if body != "" {
		args = append(args, "-d", body)
	}
	args = append(args, g.addr, method)
	cmd := exec.Command(g.bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err == nil
}

// must calls and fails the test unless the call succeeds.
func (g grpcurl) must(t *testing.T, header, method, body string) string {
	t.Helper()
	out, ok := g.call(t, header, method, body)
	if !ok {
		t.Fatalf("grpcurl %s %s: %s", method, body, out)
	}
	return out
}

// refused calls and fails the test unless grpcurl reports code.
func (g grpcurl) refused(t *testing.T, header, method, body, code string) string {
	t.Helper()
	out, ok := g.call(t, header, method, body)
	if ok || !strings.Contains(out, "Code: "+code) {
		t.Fatalf("grpcurl %s %s: ok=%v\n%s\nwant Code: %s", method, body, ok, out, code)
	}
	return out
}

func bearer(tok string) string { return "authorization: Bearer " + tok }

// heraldToken runs `herald token` and returns the token it prints.
func heraldToken(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"token"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("herald token %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

var orderIDRE = regexp.MustCompile(`"orderId": "([0-9a-f-]{36})"`)

func orderID(t *testing.T, out string) string {
	t.Helper()
	m := orderIDRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no order id in %s", out)
	}
	return m[1]
}

// adminAddr reads the admin listener's address from the process's log.
func adminAddr(t *testing.T, p *heraldtest.Proc) string {
	t.Helper()
	m := regexp.MustCompile(`admin listening"? url=http://(\S+)/metrics`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no admin listening line in:\n%s", p.Output())
	}
	return m[1]
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBearerTokensWithGrpcurl runs `herald dev --grpc-jwks` with the JWKS
// that `herald token` writes, and calls it with grpcurl -H authorization:
// customers are kept to their own orders, balances and request ids,
// operators are not, and bad tokens get UNAUTHENTICATED. The admin
// listener serves /metrics but no pprof.
func TestBearerTokensWithGrpcurl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	g := grpcurl{bin: grpcurlBin(t), conn: []string{"-plaintext"}}
	bin := heraldtest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	op := heraldToken(t, bin, "--data-dir", data, "--role", "operator")
	c1 := heraldToken(t, bin, "--data-dir", data, "--role", "customer", "--subject", "c-1")
	c2 := heraldToken(t, bin, "--data-dir", data, "--role", "customer", "--subject", "c-2", "--ttl", "10m")
	jwks := filepath.Join(data, "auth", auth.DevJWKSFile)
	p := heraldtest.Start(t, bin, []string{"dev", "--data-dir", data, "--grpc-jwks", jwks,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})
	g.addr = p.GRPCAddr

	t.Run("health needs no token, the API does", func(t *testing.T) {
		if out := g.must(t, "", "grpc.health.v1.Health/Check", ""); !strings.Contains(out, "SERVING") {
			t.Fatalf("health: %s", out)
		}
		g.refused(t, "", "herald.orders.v1.OrderService/ListOrders", "{}", "Unauthenticated")
		g.refused(t, "authorization: Basic b3A6b3A=", "herald.orders.v1.OrderService/ListOrders", "{}", "Unauthenticated")
	})

	t.Run("bad tokens", func(t *testing.T) {
		key, err := auth.LoadOrCreateDevKey(filepath.Join(data, "auth"))
		if err != nil {
			t.Fatal(err)
		}
		expired, err := key.Mint(auth.Claims{Subject: "ops", Roles: []auth.Role{auth.RoleOperator}, TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]string{
			"expired":        expired,
			"wrongly signed": heraldToken(t, bin, "--data-dir", filepath.Join(dir, "other"), "--role", "operator"),
			"wrong audience": heraldToken(t, bin, "--data-dir", data, "--role", "operator", "--audience", "billing"),
			"wrong issuer":   heraldToken(t, bin, "--data-dir", data, "--role", "operator", "--issuer", "https://idp.example"),
			"tampered":       op[:len(op)-4] + "AAAA",
		}
		for name, tok := range cases {
			t.Run(name, func(t *testing.T) {
				out := g.refused(t, bearer(tok), "herald.inventory.v1.InventoryService/SetStock", `{"sku":"APPLE","quantity":1}`, "Unauthenticated")
				if !strings.Contains(out, "invalid bearer token") {
					t.Fatalf("no reason given: %s", out)
				}
			})
		}
	})

	t.Run("a customer cannot set stock, an operator can", func(t *testing.T) {
		g.refused(t, bearer(c1), "herald.inventory.v1.InventoryService/SetStock", `{"sku":"APPLE","quantity":100}`, "PermissionDenied")
		g.must(t, bearer(op), "herald.inventory.v1.InventoryService/SetStock", `{"sku":"APPLE","quantity":10}`)
		if out := g.must(t, bearer(c1), "herald.inventory.v1.InventoryService/GetStock", `{"sku":"APPLE"}`); !strings.Contains(out, `"quantity": "10"`) {
			t.Fatalf("GetStock: %s", out)
		}
		g.refused(t, bearer(c1), "herald.logistics.v1.LogisticsService/GetShipment", `{"order_id":"x"}`, "PermissionDenied")
	})

	order := func(customer, requestID string, qty int) string {
		return `{"request_id":"` + requestID + `","customer_id":"` + customer + `","items":[{"sku":"APPLE","quantity":` +
			strconv.Itoa(qty) + `,"unit_price":{"currency_code":"EUR","units":1}}]}`
	}
	var o1, o2 string
	t.Run("customers own their orders and request ids", func(t *testing.T) {
		o1 = orderID(t, g.must(t, bearer(c1), "herald.orders.v1.OrderService/CreateOrder", order("c-1", "r-1", 1)))
		g.refused(t, bearer(c1), "herald.orders.v1.OrderService/CreateOrder", order("c-2", "r-9", 1), "PermissionDenied")
		// c-2 reuses c-1's request id with another body: a new order of
		// its own, and nothing about c-1's.
		out := g.must(t, bearer(c2), "herald.orders.v1.OrderService/CreateOrder", order("c-2", "r-1", 2))
		if o2 = orderID(t, out); o2 == o1 || strings.Contains(out, o1) {
			t.Fatalf("c-2 reusing c-1's request id got %s", out)
		}
		// The same for the body c-1 sent: still c-2's own order.
		if out := g.must(t, bearer(c2), "herald.orders.v1.OrderService/CreateOrder", order("c-2", "r-1", 2)); orderID(t, out) != o2 {
			t.Fatalf("c-2's replay returned another order: %s", out)
		}
		out = g.refused(t, bearer(c2), "herald.orders.v1.OrderService/CreateOrder", order("c-2", "r-1", 3), "AlreadyExists")
		if strings.Contains(out, o1) {
			t.Fatalf("the conflict tells c-2 about c-1's order: %s", out)
		}

		list := g.must(t, bearer(c2), "herald.orders.v1.OrderService/ListOrders", "{}")
		if !strings.Contains(list, o2) || strings.Contains(list, o1) || strings.Contains(list, `"c-1"`) {
			t.Fatalf("c-2's ListOrders: %s", list)
		}
		g.refused(t, bearer(c2), "herald.orders.v1.OrderService/ListOrders", `{"customer_id":"c-1"}`, "PermissionDenied")
		g.refused(t, bearer(c2), "herald.orders.v1.OrderService/GetOrder", `{"order_id":"`+o1+`"}`, "NotFound")
		g.refused(t, bearer(c2), "herald.orders.v1.OrderService/CancelOrder", `{"order_id":"`+o1+`"}`, "NotFound")
		g.refused(t, bearer(c2), "herald.points.v1.PointsService/GetBalance", `{"customer_id":"c-1"}`, "PermissionDenied")
		if out := g.must(t, bearer(c2), "herald.points.v1.PointsService/GetBalance", "{}"); !strings.Contains(out, `"customerId": "c-2"`) {
			t.Fatalf("c-2's own balance: %s", out)
		}
		g.refused(t, bearer(c2), "herald.notification.v1.NotificationService/ListNotifications", `{"customer_id":"c-1"}`, "PermissionDenied")
	})

	t.Run("an operator sees and cancels every order", func(t *testing.T) {
		got := g.must(t, bearer(op), "herald.orders.v1.OrderService/GetOrder", `{"order_id":"`+o1+`"}`)
		if strings.Contains(got, "CANCELLED") {
			t.Fatalf("c-2's cancel reached c-1's order: %s", got)
		}
		list := g.must(t, bearer(op), "herald.orders.v1.OrderService/ListOrders", "{}")
		if !strings.Contains(list, o1) || !strings.Contains(list, o2) {
			t.Fatalf("the operator's ListOrders: %s", list)
		}
		if out := g.must(t, bearer(op), "herald.orders.v1.OrderService/CancelOrder", `{"order_id":"`+o1+`"}`); !strings.Contains(out, "ORDER_STATUS_CANCELLED") {
			t.Fatalf("operator cancel: %s", out)
		}
		g.must(t, bearer(op), "herald.points.v1.PointsService/GetBalance", `{"customer_id":"c-1"}`)
	})

	t.Run("admin listener: metrics, no pprof", func(t *testing.T) {
		admin := adminAddr(t, p)
		if code := httpStatus(t, "http://"+admin+"/metrics"); code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/goroutine?debug=2"} {
			if code := httpStatus(t, "http://"+admin+path); code != http.StatusNotFound {
				t.Fatalf("%s: %d, want 404 without --pprof", path, code)
			}
		}
	})
}

// testPKI is a CA and certificates it signed, as PEM files in dir.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	writePEMFile(t, p.path("ca"), "CERTIFICATE", der)
	return p
}

func (p *testPKI) path(name string) string { return filepath.Join(p.dir, name+".pem") }

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes <name>.pem and <name>-key.pem, signed by the CA: a server
// certificate for 127.0.0.1, or a client certificate with cn and ou.
func (p *testPKI) issue(t *testing.T, name, cn string, ou []string, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ou},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, p.path(name), "CERTIFICATE", der)
	writePEMFile(t, p.path(name+"-key"), "PRIVATE KEY", kder)
}

// TestClientCertificatesWithGrpcurl runs `herald dev --grpc-client-ca`
// and calls it with grpcurl -cert/-key: the certificate's OU is the role
// and its CN the customer; a client without a certificate cannot connect.
func TestClientCertificatesWithGrpcurl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gbin := grpcurlBin(t)
	pki := newTestPKI(t)
	pki.issue(t, "server", "herald", nil, true)
	pki.issue(t, "ops", "ops", []string{"operator"}, false)
	pki.issue(t, "c-1", "c-1", []string{"customer"}, false)
	other := newTestPKI(t) // a CA herald does not trust
	other.issue(t, "rogue", "rogue", []string{"operator"}, false)

	bin := heraldtest.Build(t)
	p := heraldtest.Start(t, bin, []string{"dev", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--grpc-tls-cert", pki.path("server"), "--grpc-tls-key", pki.path("server-key"), "--grpc-client-ca", pki.path("ca"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})
	as := func(p2 *testPKI, name string) []string {
		conn := []string{"-cacert", pki.path("ca")}
		if name != "" {
			conn = append(conn, "-cert", p2.path(name), "-key", p2.path(name+"-key"))
		}
		return conn
	}
	ops := grpcurl{bin: gbin, addr: p.GRPCAddr, conn: as(pki, "ops")}
	cust := grpcurl{bin: gbin, addr: p.GRPCAddr, conn: as(pki, "c-1")}

	ops.must(t, "", "herald.inventory.v1.InventoryService/SetStock", `{"sku":"PEAR","quantity":5}`)
	cust.refused(t, "", "herald.inventory.v1.InventoryService/SetStock", `{"sku":"PEAR","quantity":500}`, "PermissionDenied")
	body := `{"request_id":"m-1","customer_id":"%s","items":[{"sku":"PEAR","quantity":1,"unit_price":{"currency_code":"EUR","units":2}}]}`
	cust.refused(t, "", "herald.orders.v1.OrderService/CreateOrder", strings.Replace(body, "%s", "c-2", 1), "PermissionDenied")
	out := cust.must(t, "", "herald.orders.v1.OrderService/CreateOrder", strings.Replace(body, "%s", "c-1", 1))
	var resp struct {
		Order struct {
			CustomerID string `json:"customerId"`
		} `json:"order"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Order.CustomerID != "c-1" {
		t.Fatalf("CreateOrder as c-1: %v %s", err, out)
	}

	for name, g := range map[string]grpcurl{
		"no client certificate":          {bin: gbin, addr: p.GRPCAddr, conn: as(pki, "")},
		"a certificate of an unknown CA": {bin: gbin, addr: p.GRPCAddr, conn: as(other, "rogue")},
		"plaintext to the TLS port":      {bin: gbin, addr: p.GRPCAddr, conn: []string{"-plaintext"}},
	} {
		t.Run(name, func(t *testing.T) {
			if out, ok := g.call(t, "", "herald.inventory.v1.InventoryService/SetStock", `{"sku":"PEAR","quantity":9}`); ok {
				t.Fatalf("the call succeeded: %s", out)
			}
		})
	}
	if out := ops.must(t, "", "herald.inventory.v1.InventoryService/GetStock", `{"sku":"PEAR"}`); strings.Contains(out, `"quantity": "9"`) {
		t.Fatalf("stock changed by a refused caller: %s", out)
	}
}

// TestServeReadmeWalkthrough runs the README's authenticated walkthrough
// for `herald serve` (the sh block between the serve-walkthrough markers)
// against orders and inventory served on the real stack, each started as
// the README starts them (--grpc-jwks with the key `herald token` made),
// and checks what it prints. It needs the real stack's addresses in the
// environment, grpcurl and jq.
func TestServeReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	brokers, registry, db := os.Getenv("HERALD_KAFKA_BROKERS"), os.Getenv("HERALD_SCHEMA_REGISTRY_URL"), os.Getenv("HERALD_DATABASE_URL")
	if brokers == "" || registry == "" || db == "" {
		t.Skip("needs HERALD_KAFKA_BROKERS, HERALD_SCHEMA_REGISTRY_URL and HERALD_DATABASE_URL (scripts/infra/up.sh)")
	}
	gbin := grpcurlBin(t)
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- serve-walkthrough:start -->\n```sh\n(.*?)```\n<!-- serve-walkthrough:end -->").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no serve-walkthrough block")
	}

	// The README's working directory: bin/herald, proto/ and .herald/.
	work := t.TempDir()
	bin := heraldtest.Build(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"bin/herald": bin, "proto": filepath.Join(root, "proto")} {
		if err := os.Symlink(target, filepath.Join(work, link)); err != nil {
			t.Fatal(err)
		}
	}
	// make protodeps, in the README's directory.
	deps := exec.Command("go", "run", "./tools/protodeps", "-out", filepath.Join(work, ".herald", "protodeps"))
	deps.Dir = root
	if out, err := deps.CombinedOutput(); err != nil {
		t.Fatalf("protodeps: %v\n%s", err, out)
	}
	ns := "readme" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	if _, err := server.RegisterSchemas(server.RegistryConfig{URL: registry}, "", ns); err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	heraldToken(t, bin, "--data-dir", filepath.Join(work, ".herald"), "--role", "operator")
	env := []string{"HERALD_KAFKA_BROKERS=" + brokers, "HERALD_SCHEMA_REGISTRY_URL=" + registry, "HERALD_DATABASE_URL=" + db,
		"HERALD_NAMESPACE=" + ns}
	addrs := map[string]string{}
	for _, svc := range []string{"orders", "inventory"} {
		p := heraldtest.Start(t, bin, []string{"serve", "--services=" + svc, "--grpc-jwks=" + filepath.Join(work, ".herald", "auth", auth.DevJWKSFile),
			"--grpc-jwt-issuer=herald-dev", "--grpc-jwt-audience=herald", "--grpc-addr=127.0.0.1:0", "--http-addr=",
			"--instance-id=" + ns + "-" + svc}, env...)
		addrs[svc] = p.GRPCAddr
	}

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(block[1]))
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + filepath.Dir(gbin) + ":" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"ORDERS=" + addrs["orders"], "INVENTORY=" + addrs["inventory"]}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{`"sku": "APPLE"`, "Code: PermissionDenied", "alice ORDER_STATUS_PENDING", "Code: PermissionDenied", "Code: Unauthenticated"}
	i := 0
	for _, line := range got {
		if i < len(want) && strings.Contains(line, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("walkthrough printed:\n%s\nwant, in order: %q (missing from %q)", out, want, want[i])
	}
}
