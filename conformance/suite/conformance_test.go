// Package suite runs the upstream Gateway API conformance suite against pylon in the local
// cluster. It is driven by `make conformance` (conformance/scripts/conformance.sh), which brings
// the cluster up, creates the GatewayClass and starts pylon; run alone it skips unless
// PYLON_CONFORMANCE=1.
//
// Environment:
//
//	KUBECONFIG             the cluster's admin kubeconfig (required)
//	PYLON_CONF_REPORT      report path (default ../reports/pylon-<date>.yaml)
//	PYLON_CONF_CLASS       GatewayClass name (default pylon)
//	PYLON_CONF_PROFILES    comma-separated profiles (default GATEWAY-HTTP,GATEWAY-TLS,GATEWAY-GRPC)
//	PYLON_CONF_FEATURES    comma-separated supported features; empty: inferred from the
//	                       GatewayClass status.supportedFeatures (what pylon declares)
//	PYLON_CONF_SKIP        comma-separated test names to skip
//	PYLON_CONF_RUN         run only this test (short name)
//	PYLON_CONF_WAIT        seconds each pre-flight step waits (default 60)
//	PYLON_CONF_SETUP_TIMEOUT seconds the upstream setup waits for base Gateways and pods (default 300)
//	PYLON_CONF_ADDRESSES   comma-separated usable Gateway addresses (GatewayStaticAddresses)
//	PYLON_CONF_UNUSABLE_ADDRESSES comma-separated IP addresses pylon cannot bind (GatewayStaticAddresses)
//	PYLON_VERSION          implementation version for the report
package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func list(name, def string) []string {
	var out []string
	for _, s := range strings.Split(env(name, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// stopf ends the run at a pre-flight step, leaving a one-line reason for the summary script.
func stopf(t *testing.T, step string, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("setup step %q waited in vain: %s", step, fmt.Sprintf(format, args...))
	if p := os.Getenv("PYLON_CONF_STOPFILE"); p != "" {
		_ = os.WriteFile(p, []byte(msg+"\n"), 0o644)
	}
	t.Fatal(msg)
}

func waitFor(ctx context.Context, d time.Duration, cond func(context.Context) (bool, string)) (bool, string) {
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, why := cond(ctx)
		if ok {
			return true, ""
		}
		last = why
		if time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(time.Second)
	}
}

func TestConformance(t *testing.T) {
	if os.Getenv("PYLON_CONFORMANCE") != "1" {
		t.Skip("set PYLON_CONFORMANCE=1 (make conformance does) to run the upstream suite")
	}
	log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(false)))
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		t.Fatal("KUBECONFIG is not set (make cluster-up writes /tmp/pylon-cluster/admin.kubeconfig)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	for _, add := range []func() error{
		func() error { return v1alpha3.Install(c.Scheme()) },
		func() error { return v1alpha2.Install(c.Scheme()) },
		func() error { return xv1alpha1.Install(c.Scheme()) },
		func() error { return gatewayv1.Install(c.Scheme()) },
		func() error { return apiextensionsv1.AddToScheme(c.Scheme()) },
	} {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wait := 60 * time.Second
	if v, err := strconv.Atoi(os.Getenv("PYLON_CONF_WAIT")); err == nil && v > 0 {
		wait = time.Duration(v) * time.Second
	}
	className := env("PYLON_CONF_CLASS", "pylon")
	ctx := context.Background()

	// Pre-flight: each step the upstream setup would otherwise wait on for minutes, with a
	// message that says what is missing.
	if ok, why := waitFor(ctx, wait, func(ctx context.Context) (bool, string) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, types.NamespacedName{Name: "gateways.gateway.networking.k8s.io"}, &crd); err != nil {
			return false, err.Error()
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, ""
			}
		}
		return false, "CRD gateways.gateway.networking.k8s.io is not Established"
	}); !ok {
		stopf(t, "Gateway API CRDs installed", "%s", why)
	}
	if ok, why := waitFor(ctx, wait, func(ctx context.Context) (bool, string) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("%d nodes, none Ready (is the node agent running? see /tmp/pylon-cluster/logs/nodeagent.log)", len(nodes.Items))
	}); !ok {
		stopf(t, "a Ready node", "%s", why)
	}
	var features_ []string
	if ok, why := waitFor(ctx, wait, func(ctx context.Context) (bool, string) {
		var gc gatewayv1.GatewayClass
		if err := c.Get(ctx, types.NamespacedName{Name: className}, &gc); err != nil {
			return false, err.Error()
		}
		acc := meta.FindStatusCondition(gc.Status.Conditions, string(gatewayv1.GatewayClassConditionStatusAccepted))
		if acc == nil || acc.Status != metav1.ConditionTrue || acc.ObservedGeneration != gc.Generation {
			state := "no Accepted condition"
			if acc != nil {
				state = fmt.Sprintf("Accepted=%s reason=%s observedGeneration=%d/%d", acc.Status, acc.Reason, acc.ObservedGeneration, gc.Generation)
			}
			return false, fmt.Sprintf("GatewayClass %s (controllerName %s): %s; pylon must watch the cluster and accept it (the Kubernetes controller, issue 4)",
				className, gc.Spec.ControllerName, state)
		}
		features_ = features_[:0]
		for _, f := range gc.Status.SupportedFeatures {
			features_ = append(features_, string(f.Name))
		}
		if len(features_) == 0 && os.Getenv("PYLON_CONF_FEATURES") == "" {
			return false, fmt.Sprintf("GatewayClass %s is Accepted but status.supportedFeatures is empty; the suite infers the features to test from it", className)
		}
		return true, ""
	}); !ok {
		stopf(t, "GatewayClass "+className+" Accepted by pylon", "%s", why)
	}

	profiles := list("PYLON_CONF_PROFILES", "GATEWAY-HTTP,GATEWAY-TLS,GATEWAY-GRPC")
	report := os.Getenv("PYLON_CONF_REPORT")
	if report == "" {
		report = filepath.Join("..", "reports", "pylon-"+time.Now().UTC().Format("20060102-150405")+".yaml")
	}
	timeouts := config.DefaultTimeoutConfig()
	if v, err := strconv.Atoi(os.Getenv("PYLON_CONF_SETUP_TIMEOUT")); err == nil && v > 0 {
		timeouts.NamespacesMustBeReady = time.Duration(v) * time.Second
	}
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     className,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			Mode:                 "default",
			TimeoutConfig:        timeouts,
			SkipTests:            list("PYLON_CONF_SKIP", ""),
			RunTest:              os.Getenv("PYLON_CONF_RUN"),
			ReportOutputPath:     report,
			AllowCRDsMismatch:    true,
			Implementation: confv1.Implementation{
				Organization: "pylon",
				Project:      "pylon",
				URL:          env("PYLON_CONF_URL", "https://pylon.dev"),
				Version:      env("PYLON_VERSION", "dev"),
				Contact:      []string{env("PYLON_CONF_CONTACT", "@pylon/maintainers")},
			},
		},
		Client:     c,
		Clientset:  cs,
		RestConfig: cfg,
	}
	for _, p := range profiles {
		opts.ConformanceProfiles = append(opts.ConformanceProfiles, suite.ConformanceProfileName(p))
	}
	if fs := list("PYLON_CONF_FEATURES", ""); len(fs) > 0 {
		for _, f := range fs {
			opts.SupportedFeatures = append(opts.SupportedFeatures, features.FeatureName(f))
		}
	} else if opts.RunTest != "" {
		// RunTest disables inference upstream; pass what the GatewayClass declares instead.
		for _, f := range features_ {
			opts.SupportedFeatures = append(opts.SupportedFeatures, features.FeatureName(f))
		}
	}
	for _, a := range list("PYLON_CONF_ADDRESSES", "") {
		opts.UsableNetworkAddresses = append(opts.UsableNetworkAddresses, gatewayv1.GatewaySpecAddress{
			Type: ptr(gatewayv1.IPAddressType), Value: a})
	}
	for _, a := range list("PYLON_CONF_UNUSABLE_ADDRESSES", "") {
		opts.UnusableNetworkAddresses = append(opts.UnusableNetworkAddresses, gatewayv1.GatewaySpecAddress{
			Type: ptr(gatewayv1.IPAddressType), Value: a})
	}
	if err := os.MkdirAll(filepath.Dir(report), 0o755); err != nil {
		t.Fatal(err)
	}
	conformance.RunConformanceWithOptions(t, opts)
	if _, err := os.Stat(report); err == nil {
		t.Logf("report written to %s", report)
		if b, err := os.ReadFile(report); err == nil {
			var r confv1.ConformanceReport
			if yaml.Unmarshal(b, &r) == nil {
				t.Logf("%d profiles in report", len(r.ProfileReports))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
