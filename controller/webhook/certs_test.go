package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// serveTLS serves 200 over TLS with the rotating certificate and returns its address.
func serveTLS(t *testing.T, certs *servingCerts) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: certs.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), ReadHeaderTimeout: time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // handshakes cut short at Close are expected
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// handshake connects as the apiserver would, trusting only caPEM, and returns the
// certificate the webhook served.
func handshake(t *testing.T, addr string, caPEM []byte) (*x509.Certificate, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// The serving certificate is renewed in place once 2/3 of its life has passed and served
// at once, without a restart: with a 3 s lifetime, every handshake for three lifetimes
// succeeds, the certificate changes several times, and none is served in its last part.
func TestWebhookCertificateRotatesBeforeExpiry(t *testing.T) {
	const lifetime = 3 * time.Second
	ca, err := newAuthority()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := newServingCerts(ca, []string{"127.0.0.1"}, lifetime, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = (&certRotator{certs: certs, every: checkEvery(lifetime), log: zap.NewNop()}).Start(ctx) }()

	serials := map[string]bool{}
	for end := time.Now().Add(3 * lifetime); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		cert, err := handshake(t, addr, ca.pem)
		if err != nil {
			t.Fatalf("handshake failed after %d certificates: %v", len(serials), err)
		}
		if left := time.Until(cert.NotAfter); left < lifetime/6 {
			t.Fatalf("served a certificate with %s of its %s life left: it should have been renewed at 2/3", left, lifetime)
		}
		serials[cert.SerialNumber.String()] = true
	}
	if len(serials) < 4 {
		t.Fatalf("saw %d certificates in three lifetimes, want one every 2/3 of a lifetime (4 or more)", len(serials))
	}
}

// When the shared CA changes (its Secret replaced), every replica signs with the new one
// at its next check, and the leader puts the new CA into the webhook configuration.
func TestWebhookFollowsANewCA(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).Build()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := func(ctx context.Context) (*authority, error) { return sharedAuthority(ctx, c, "underpool-system") }
	first, err := reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := newServingCerts(first, []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	every := 50 * time.Millisecond
	go func() { _ = (&certRotator{certs: certs, reloadCA: reload, every: every, log: zap.NewNop()}).Start(ctx) }()
	registered := make(chan error, 1)
	go func() {
		registered <- keepRegistered(ctx, c, c, Endpoint{URL: "https://" + addr}, certs, every, zap.NewNop())
	}()
	bundle := func() []byte {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: ConfigName}, cfg); err != nil || len(cfg.Webhooks) == 0 {
			return nil
		}
		return cfg.Webhooks[0].ClientConfig.CABundle
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	waitFor("the webhook is registered with the first CA", func() bool { return bytes.Equal(bundle(), first.pem) })

	// an operator deletes the CA Secret; a replica makes a new one
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "underpool-system", Name: CASecretName}, s); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	second, err := reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// at every moment of the roll-over the served certificate chains to the registered bundle
	waitFor("the webhook configuration trusts the new CA alone", func() bool {
		if _, err := handshake(t, addr, bundle()); err != nil {
			t.Fatalf("during the CA roll-over the webhook served a certificate the registered bundle does not trust: %v", err)
		}
		return bytes.Equal(bundle(), second.pem)
	})
	if _, err := handshake(t, addr, second.pem); err != nil {
		t.Fatalf("the served certificate does not chain to the new CA: %v", err)
	}
	cancel()
	if err := <-registered; err != nil {
		t.Fatal(err)
	}
}
