package harness

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
)

// QEMUHostAddress is this machine's loopback as a QEMU guest on user networking sees it.
var QEMUHostAddress = net.IPv4(10, 0, 2, 2)

// apiserverCredentials are the files kube-apiserver needs to start and the
// secrets our clients use to reach it. Everything is generated per control
// plane, so two concurrent control planes never trust each other's clients.
type apiserverCredentials struct {
	servingCert, servingKey string // TLS files for --tls-cert-file/--tls-private-key-file
	caPEM                   []byte // trust anchor for clients (serving cert + its CA)
	saPub, saKey            string // service account token verification/signing keys
	tokenFile               string // --token-auth-file
	token                   string // bearer token of the system:masters admin user
}

func writeAPIServerCredentials(dir string) (*apiserverCredentials, error) {
	c := &apiserverCredentials{
		servingCert: filepath.Join(dir, "serving.crt"),
		servingKey:  filepath.Join(dir, "serving.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
		saKey:       filepath.Join(dir, "sa.key"),
		tokenFile:   filepath.Join(dir, "token.csv"),
	}
	// Generating the serving cert ourselves (instead of letting the apiserver
	// self-sign into --cert-dir) gives us the CA without reading files the
	// apiserver writes at an undocumented moment. Clients dial 127.0.0.1, or 10.0.2.2
	// from inside a QEMU guest (tests/kernel), whose user networking maps that address
	// to this machine's loopback.
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{QEMUHostAddress}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	c.caPEM = certPEM
	saPubPEM, saKeyPEM, err := newServiceAccountKeys()
	if err != nil {
		return nil, err
	}
	c.token, err = randomHex(16)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		c.servingCert: certPEM,
		c.servingKey:  keyPEM,
		c.saPub:       saPubPEM,
		c.saKey:       saKeyPEM,
		c.tokenFile:   []byte(c.token + ",admin,admin,system:masters\n"),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// newServiceAccountKeys returns the PEM key pair the apiserver requires to
// sign and verify service account tokens (mandatory flags since 1.20).
func newServiceAccountKeys() (pubPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("service account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return pubPEM, keyPEM, nil
}

func randomHex(nBytes int) (string, error) {
	b := make([]byte, nBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
