package deploy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/underpool/underpool/api/v1"
	"github.com/underpool/underpool/controller"
	"github.com/underpool/underpool/controller/webhook"
	"github.com/underpool/underpool/tests/harness"
)

// A cluster without multus' NetworkAttachmentDefinition CRD: the controller still starts
// and does its other jobs, and an UnderlayNetwork says what to install instead of the
// controller failing to sync a watch on a kind nobody serves.
func TestTheControllerWithoutMultusStartsAndNetworksSayWhatToInstall(t *testing.T) {
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ext, err := apiextensionsclient.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	const nadCRD = "network-attachment-definitions.k8s.cni.cncf.io"
	if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, nadCRD, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the NAD CRD to go", time.Minute, func() (bool, string) {
		_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, nadCRD, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	c, err := cp.Client(v1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stopped := make(chan struct{}) // closed when Run returns: read as often as needed
	go func() {
		defer close(stopped)
		runErr = controller.Run(ctx, cp.Config, controller.Options{Webhook: webhook.Options{Host: "127.0.0.1", Port: port,
			Endpoint: webhook.Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d", port)}, CertLifetime: time.Hour}}, zap.NewNop())
	}()
	defer func() {
		cancel()
		<-stopped
		if runErr != nil {
			t.Errorf("controller: %v", runErr)
		}
	}()
	net := &v1.UnderlayNetwork{ObjectMeta: metav1.ObjectMeta{Name: "storage"}, Spec: v1.UnderlayNetworkSpec{
		Namespaces: []string{"default"}, Macvlan: &v1.MacvlanNetwork{Master: "eth1"}}}
	if err := c.Create(ctx, net); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the network to say multus is missing", time.Minute, func() (bool, string) {
		select {
		case <-stopped:
			t.Fatalf("the controller stopped: %v", runErr)
		default:
		}
		got := &v1.UnderlayNetwork{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(net), got); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, v1.NetworkReady)
		return cond != nil && cond.Reason == v1.NetworkNADKindMissing, fmt.Sprintf("%+v", cond)
	})
	// its other jobs run: the pool-protection finalizer lands on a new pool
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.IPPoolSpec{Subnet: "10.251.9.0/24"}}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the pool-protection finalizer", time.Minute, func() (bool, string) {
		got := &v1.IPPool{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
			return false, err.Error()
		}
		return len(got.Finalizers) > 0, fmt.Sprint(got.Finalizers)
	})
}
