package controller

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// WebhookConfigName is the ValidatingWebhookConfiguration the controller owns.
const WebhookConfigName = "underpool-validating"

// Paths controller-runtime serves the validators on.
const (
	poolPath   = "/validate-underpool-io-v1-ippool"
	subnetPath = "/validate-underpool-io-v1-subnet"
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
// policy Fail: a pool change nobody checked could overlap a live pool.
func register(ctx context.Context, c client.Client, ep Endpoint, ca []byte) error {
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigName}}
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
	_, err := controllerutil.CreateOrUpdate(ctx, c, cfg, func() error {
		cfg.Webhooks = []admissionregistrationv1.ValidatingWebhook{
			hook("ippools.underpool.io", poolPath, "ippools", admissionregistrationv1.Create, admissionregistrationv1.Update),
			hook("subnets.underpool.io", subnetPath, "subnets", admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete),
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registering %s: %w", WebhookConfigName, err)
	}
	return nil
}
