package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The CA Secret, by name, in the controller's namespace only; no other Secret.
// +kubebuilder:rbac:groups="",namespace=underpool-system,resources=secrets,resourceNames=underpool-webhook-ca,verbs=get
// +kubebuilder:rbac:groups="",namespace=underpool-system,resources=secrets,verbs=create

// CASecretName holds the webhook CA that every controller replica signs its serving
// certificate with, so the registered CA is valid whichever replica the apiserver reaches
// and stays valid across leader changes.
const CASecretName = "underpool-webhook-ca"

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newAuthority() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "underpool-webhook-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func authorityFromPEM(certPEM, keyPEM []byte) (*authority, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: certPEM}, nil
}

func (a *authority) keyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(a.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// sharedAuthority reads the CA from its Secret in namespace, creating it when absent. Two
// replicas starting together race on the create; the loser reads the winner's.
func sharedAuthority(ctx context.Context, c client.Client, namespace string) (*authority, error) {
	key := client.ObjectKey{Namespace: namespace, Name: CASecretName}
	for attempt := 0; attempt < 3; attempt++ {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if err == nil {
			a, err := authorityFromPEM(s.Data["ca.crt"], s.Data["ca.key"])
			if err != nil {
				return nil, fmt.Errorf("the Secret %s/%s does not hold a usable CA (ca.crt, ca.key): %v; delete it to have a new one made", namespace, CASecretName, err)
			}
			return a, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, CASecretName, err)
		}
		a, err := newAuthority()
		if err != nil {
			return nil, err
		}
		kp, err := a.keyPEM()
		if err != nil {
			return nil, err
		}
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: CASecretName},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"ca.crt": a.pem, "ca.key": kp}}
		if err := c.Create(ctx, s); err == nil {
			return a, nil
		} else if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating Secret %s/%s: %w", namespace, CASecretName, err)
		}
	}
	return nil, fmt.Errorf("could not settle Secret %s/%s", namespace, CASecretName)
}

// servingCerts is the webhook's serving certificate, renewed in memory before it expires:
// the TLS server asks GetCertificate on every handshake, so a renewed certificate is used
// at once, without a restart. A certificate is renewed when 2/3 of its life has passed.
// A new CA (its Secret replaced by an operator) is not used at once: it is pending until
// the leader has registered a bundle trusting both CAs (bundle, adoptPending), so the
// apiserver never meets a certificate it does not trust yet.
type servingCerts struct {
	hosts    []string
	lifetime time.Duration

	mu      sync.Mutex
	ca      *authority
	pending *authority
	cert    *tls.Certificate
	renewAt time.Time
}

func newServingCerts(ca *authority, hosts []string, lifetime time.Duration, now time.Time) (*servingCerts, error) {
	s := &servingCerts{hosts: hosts, lifetime: lifetime, ca: ca}
	if err := s.issueLocked(now); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (s *servingCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// bundle is what the apiserver must trust: the CA that signs the certificate served now,
// and the pending one that will sign the next.
func (s *servingCerts) bundle() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return s.ca.pem
	}
	return append(append([]byte(nil), s.ca.pem...), s.pending.pem...)
}

// renew issues a new certificate when the current one is due, and records ca (nil: none
// read) as pending when it differs from the one in use; it reports whether it issued.
func (s *servingCerts) renew(now time.Time, ca *authority) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ca == nil || bytes.Equal(ca.pem, s.ca.pem):
		s.pending = nil // a change undone before it was adopted
	case s.pending == nil || !bytes.Equal(ca.pem, s.pending.pem):
		s.pending = ca
	}
	if now.Before(s.renewAt) {
		return false, nil
	}
	return true, s.issueLocked(now)
}

// adoptPending switches to the pending CA, issuing a certificate signed by it. Call it
// only once a bundle trusting both CAs is registered.
func (s *servingCerts) adoptPending(now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return false, nil
	}
	prev := s.ca
	s.ca = s.pending
	if err := s.issueLocked(now); err != nil {
		s.ca = prev
		return false, err
	}
	s.pending = nil
	return true, nil
}

// issueLocked signs a serving certificate for the hosts, valid for lifetime from now
// (backdated a little for clocks behind ours), renewed after 2/3 of that.
func (s *servingCerts) issueLocked(now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: s.hosts[0]},
		// X.509 times are whole seconds: round the end up, so the whole lifetime is served
		NotBefore: now.Add(-min(time.Hour, s.lifetime/10)), NotAfter: now.Add(s.lifetime).Truncate(time.Second).Add(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range s.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, &key.PublicKey, s.ca.key)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	s.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	s.renewAt = now.Add(s.lifetime * 2 / 3)
	return nil
}

// certRotator renews the serving certificate on every replica, leader or not (all serve
// the webhook port), and follows the shared CA when it changes.
type certRotator struct {
	certs *servingCerts
	// reloadCA reads the shared CA (nil: the CA is this process's own and never changes)
	reloadCA func(context.Context) (*authority, error)
	every    time.Duration
	log      *zap.Logger
}

func (r *certRotator) NeedLeaderElection() bool { return false }

// Start checks the certificate every interval, the first time one interval after the
// start (the one New issued is fresh), until ctx ends.
func (r *certRotator) Start(ctx context.Context) error {
	ticker := time.NewTicker(r.every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			r.check(ctx)
		}
	}
}

func (r *certRotator) check(ctx context.Context) {
	var ca *authority
	if r.reloadCA != nil {
		var err error
		if ca, err = r.reloadCA(ctx); err != nil {
			r.log.Warn("cannot read the webhook CA; keeping the current one", zap.Error(err))
		}
	}
	renewed, err := r.certs.renew(time.Now(), ca)
	if err != nil {
		r.log.Error("renewing the webhook serving certificate failed; retrying", zap.Error(err))
		return
	}
	if renewed {
		leaf, _ := r.certs.GetCertificate(nil)
		r.log.Info("webhook serving certificate renewed", zap.Time("notAfter", leaf.Leaf.NotAfter))
	}
}

// checkEvery is how often a certificate of this lifetime is looked at: a twentieth of its
// life, so it is renewed close to the 2/3 mark, and at least once a minute (a changed CA).
func checkEvery(lifetime time.Duration) time.Duration {
	return min(max(lifetime/20, 100*time.Millisecond), time.Minute)
}
