package webhook

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Its own webhook configuration only, by name; nothing lists or watches them.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=underpool-validating,verbs=get;update;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=create

// ConfigName is the ValidatingWebhookConfiguration the controller owns.
const ConfigName = "underpool-validating"

// Paths controller-runtime serves the validators on.
const (
	poolPath   = "/validate-underpool-io-v1-ippool"
	subnetPath = "/validate-underpool-io-v1-subnet"
	// reservedPath: a ReservedIP entry that does not parse reserves less than it says
	reservedPath = "/validate-underpool-io-v1-reservedip"
	// networkPath: a network that does not render would write no NAD
	networkPath = "/validate-underpool-io-v1-underlaynetwork"
)

// Endpoint says how the apiserver reaches the webhook: a URL base (outside the cluster,
// e.g. https://127.0.0.1:9443) or a Service.
type Endpoint struct {
	URL                       string
	ServiceNamespace, Service string
	ServicePort               int32
}

func (e Endpoint) clientConfig(path string, ca []byte) admissionregistrationv1.WebhookClientConfig {
	if e.URL != "" {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(e.URL + path), CABundle: ca}
	}
	return admissionregistrationv1.WebhookClientConfig{CABundle: ca, Service: &admissionregistrationv1.ServiceReference{
		Namespace: e.ServiceNamespace, Name: e.Service, Path: ptr.To(path), Port: ptr.To(e.ServicePort)}}
}

// register creates or updates the webhook configuration with the current CA. Failure
// policy Fail: a pool change nobody checked could overlap a live pool. It reads the
// configuration by name through api (uncached): a cache would watch every webhook
// configuration in the cluster, which the controller has no business reading.
func register(ctx context.Context, c client.Client, api client.Reader, ep Endpoint, ca []byte) error {
	hook := func(name, path, resource string, ops ...admissionregistrationv1.OperationType) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name: name, ClientConfig: ep.clientConfig(path, ca),
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: ops, Rule: admissionregistrationv1.Rule{
				APIGroups: []string{"underpool.io"}, APIVersions: []string{"v1"}, Resources: []string{resource},
				Scope: ptr.To(admissionregistrationv1.ClusterScope)}}},
			FailurePolicy: ptr.To(admissionregistrationv1.Fail), SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: ptr.To[int32](10),
		}
	}
	webhooks := []admissionregistrationv1.ValidatingWebhook{
		hook("ippools.underpool.io", poolPath, "ippools", admissionregistrationv1.Create, admissionregistrationv1.Update),
		hook("subnets.underpool.io", subnetPath, "subnets", admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete),
		hook("reservedips.underpool.io", reservedPath, "reservedips", admissionregistrationv1.Create, admissionregistrationv1.Update),
		hook("underlaynetworks.underpool.io", networkPath, "underlaynetworks", admissionregistrationv1.Create, admissionregistrationv1.Update),
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		err := api.Get(ctx, client.ObjectKey{Name: ConfigName}, cfg)
		if apierrors.IsNotFound(err) {
			cfg = &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: ConfigName}, Webhooks: webhooks}
			return c.Create(ctx, cfg)
		}
		if err != nil {
			return err
		}
		if equality.Semantic.DeepEqual(cfg.Webhooks, webhooks) {
			return nil
		}
		cfg.Webhooks = webhooks
		return c.Update(ctx, cfg)
	})
	if err != nil {
		return fmt.Errorf("registering %s: %w", ConfigName, err)
	}
	return nil
}

// keepRegistered registers the webhook configuration and keeps its CA bundle in step with
// the certificates served. A new CA is rolled in three steps, a check interval apart, so
// that the apiserver trusts every certificate it is shown: register old and new CA
// together, then sign with the new one, then register the new one alone.
func keepRegistered(ctx context.Context, c client.Client, api client.Reader, ep Endpoint, certs *servingCerts, every time.Duration, log *zap.Logger) error {
	var registered []byte
	for {
		if bundle := certs.bundle(); !bytes.Equal(bundle, registered) {
			if err := register(ctx, c, api, ep, bundle); err != nil {
				if registered == nil {
					return err
				}
				log.Warn("updating the webhook CA bundle failed; retrying", zap.Error(err))
			} else {
				if registered != nil {
					log.Info("webhook CA bundle updated", zap.String("config", ConfigName))
				} else {
					log.Info("webhook registered", zap.String("config", ConfigName))
				}
				registered = bundle
			}
		} else if adopted, err := certs.adoptPending(time.Now()); err != nil {
			log.Error("signing with the new webhook CA failed; retrying", zap.Error(err))
		} else if adopted {
			log.Info("webhook serving certificate now signed by the new CA")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
