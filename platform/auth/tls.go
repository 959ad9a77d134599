package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ServerTLS returns the TLS configuration of a gRPC server that serves
// certFile/keyFile and, when clientCAFile is set, requires every client to
// present a certificate signed by one of its CAs (mTLS): a client without
// one fails the handshake.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("read client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s holds no PEM certificate", clientCAFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// CertPrincipal is the principal of a verified client certificate: the
// subject's common name (CN) is the subject, and each organizational unit
// (OU) that names a role ("customer", "operator") is a role. A certificate
// with CN "c-1" and OU "customer" acts as customer c-1; one with OU
// "operator" is an operator.
func CertPrincipal(cert *x509.Certificate) Principal {
	p := Principal{Subject: cert.Subject.CommonName, Via: "mtls"}
	for _, ou := range cert.Subject.OrganizationalUnit {
		if r, ok := knownRole(ou); ok {
			p.Roles = append(p.Roles, r)
		}
	}
	return p
}
