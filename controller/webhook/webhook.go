// Package webhook is the controller's admission side, run by every controller replica
// (the webhook Service sends the apiserver's calls to the elected one). It owns:
//   - validation of IPPool, Subnet and ReservedIP writes: overlaps, removal of allocated
//     addresses, Subnets that would orphan pools, ReservedIP entries that do not parse
//     (validate.go, reserved.go, served by admission.go), and of UnderlayNetwork writes:
//     a spec that does not render, two networks rendering one NAD, a pool of the other
//     family (network.go); each refusal counted
//     (underpool_webhook_rejections_total, metrics.go);
//   - its PKI: one CA for every replica, kept in a Secret, and serving certificates
//     issued and renewed in memory, a replaced CA rolled in so that the apiserver trusts
//     every certificate it is shown (certs.go);
//   - the ValidatingWebhookConfiguration, registered by the elected replica once the
//     server answers and kept in step with the CA bundle (register.go).
//
// The controller builds one Webhook with New before its manager (the manager's webhook
// server serves Server's certificate) and wires it with SetupWithManager.
package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "github.com/underpool/underpool/api/v1"
)

// Options configure the webhook.
type Options struct {
	// Host and Port are where the webhook server listens.
	Host string
	Port int
	// Endpoint is how the apiserver reaches the webhook; its hosts go into the certificate.
	Endpoint Endpoint
	// CertLifetime is how long a serving certificate is valid; it is renewed when 2/3 of
	// that has passed.
	CertLifetime time.Duration
	// CANamespace holds the CA Secret every replica shares, so the registered CA never
	// goes stale; empty: a CA of this process's own (one replica, no leader election).
	CANamespace string
}

// Webhook is one replica's admission webhook: its serving certificate, the validators and
// the registration.
type Webhook struct {
	opts  Options
	certs *servingCerts
	// reloadCA reads the shared CA (nil: the CA is this process's own and never changes)
	reloadCA func(context.Context) (*authority, error)
	server   ctrlwebhook.Server
	metrics  *Metrics
	log      *zap.Logger
}

// New reads the shared CA from its Secret (making it when absent) or makes one of its
// own, and issues the first serving certificate.
func New(ctx context.Context, cfg *rest.Config, opts Options, metrics *Metrics, log *zap.Logger) (*Webhook, error) {
	w := &Webhook{opts: opts, metrics: metrics, log: log}
	var ca *authority
	var err error
	if opts.CANamespace != "" {
		// client-go's scheme: the CA is a Secret
		direct, derr := client.New(cfg, client.Options{})
		if derr != nil {
			return nil, derr
		}
		w.reloadCA = func(ctx context.Context) (*authority, error) {
			return sharedAuthority(ctx, direct, opts.CANamespace)
		}
		if ca, err = w.reloadCA(ctx); err != nil {
			return nil, err
		}
	} else if ca, err = newAuthority(); err != nil {
		return nil, err
	}
	if opts.CertLifetime <= 0 {
		return nil, fmt.Errorf("--webhook-cert-lifetime %s: want a positive duration", opts.CertLifetime)
	}
	if w.certs, err = newServingCerts(ca, opts.certHosts(), opts.CertLifetime, time.Now()); err != nil {
		return nil, fmt.Errorf("making the webhook certificate: %w", err)
	}
	w.server = ctrlwebhook.NewServer(ctrlwebhook.Options{Host: opts.Host, Port: opts.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = w.certs.GetCertificate }}})
	return w, nil
}

// Server is the webhook server for the manager's options: it serves the certificate
// renewed in memory.
func (w *Webhook) Server() ctrlwebhook.Server { return w.server }

// SetupWithManager serves the validators on the manager's webhook server, renews the
// serving certificate on every replica, and registers the webhook configuration on the
// elected one.
func (w *Webhook) SetupWithManager(mgr manager.Manager) error {
	api := mgr.GetAPIReader()
	if err := builder.WebhookManagedBy(mgr, &v1.IPPool{}).WithValidator(&poolValidator{api: api, metrics: w.metrics}).Complete(); err != nil {
		return err
	}
	if err := builder.WebhookManagedBy(mgr, &v1.Subnet{}).WithValidator(&subnetValidator{api: api, metrics: w.metrics}).Complete(); err != nil {
		return err
	}
	if err := builder.WebhookManagedBy(mgr, &v1.ReservedIP{}).WithValidator(reservedValidator{metrics: w.metrics}).Complete(); err != nil {
		return err
	}
	if err := builder.WebhookManagedBy(mgr, &v1.UnderlayNetwork{}).WithValidator(&networkValidator{api: api, metrics: w.metrics}).Complete(); err != nil {
		return err
	}
	every := checkEvery(w.opts.CertLifetime)
	if err := mgr.Add(&certRotator{certs: w.certs, reloadCA: w.reloadCA, every: every, log: w.log}); err != nil {
		return err
	}
	return mgr.Add(&registration{mgr: mgr, ep: w.opts.Endpoint, certs: w.certs, every: every, log: w.log})
}

// registration registers the webhook configuration, on the elected replica only (the one
// the webhook Service sends to: only the leader is ready), once the webhook server
// answers, so the apiserver never calls a closed port.
type registration struct {
	mgr   manager.Manager
	ep    Endpoint
	certs *servingCerts
	every time.Duration
	log   *zap.Logger
}

func (r *registration) NeedLeaderElection() bool { return true }

func (r *registration) Start(ctx context.Context) error {
	check := r.mgr.GetWebhookServer().StartedChecker()
	for check(nil) != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	return keepRegistered(ctx, r.mgr.GetClient(), r.mgr.GetAPIReader(), r.ep, r.certs, r.every, r.log)
}

// certHosts are the names the certificate is for: the host the apiserver dials, the
// URL's, else the Service's, else the listen host.
func (o Options) certHosts() []string {
	if o.Endpoint.URL != "" {
		if h, _, err := net.SplitHostPort(trimScheme(o.Endpoint.URL)); err == nil {
			return []string{h}
		}
	} else if o.Endpoint.Service != "" {
		svc := o.Endpoint.Service + "." + o.Endpoint.ServiceNamespace
		return []string{svc + ".svc", svc, svc + ".svc.cluster.local"}
	}
	return []string{o.Host}
}

// trimScheme keeps of a URL its host and port.
func trimScheme(url string) string {
	for _, p := range []string{"https://", "http://"} {
		if len(url) > len(p) && url[:len(p)] == p {
			url = url[len(p):]
		}
	}
	for i, c := range url {
		if c == '/' {
			return url[:i]
		}
	}
	return url
}
