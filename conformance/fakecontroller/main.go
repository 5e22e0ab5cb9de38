// Command fakecontroller is a harness self-test aid, not a Gateway API implementation: it writes
// "Accepted/Programmed" statuses for pylon's GatewayClass, its Gateways and the HTTPRoutes attached
// to them, without serving any traffic. With it, `make conformance-selftest` drives the upstream
// suite through its setup (base manifests, pods Ready) to a written report, which proves the
// harness end to end before pylon has its Kubernetes controller. A report produced this way says
// nothing about pylon and is written under a name that says so.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	gvrClass = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	gvrGW    = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	gvrRoute = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	controller := flag.String("controller-name", "pylon.dev/gateway-controller", "controllerName to act for")
	address := flag.String("address", "127.0.0.1", "address reported for every Gateway")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	for ctx.Err() == nil {
		if err := pass(ctx, dc, *controller, *address); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "fakecontroller: %v\n", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func cond(typ, reason string, gen int64) map[string]interface{} {
	return map[string]interface{}{
		"type": typ, "status": "True", "reason": reason, "message": "fakecontroller (harness self-test)",
		"observedGeneration": gen, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}
}

func pass(ctx context.Context, dc dynamic.Interface, controller, address string) error {
	classes, err := dc.Resource(gvrClass).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for i := range classes.Items {
		gc := &classes.Items[i]
		if cn, _, _ := unstructured.NestedString(gc.Object, "spec", "controllerName"); cn != controller {
			continue
		}
		ours[gc.GetName()] = true
		gen := gc.GetGeneration()
		if upToDate(gc, gen, "status", "conditions") {
			continue
		}
		feats := []interface{}{}
		for _, f := range []string{"Gateway", "HTTPRoute", "ReferenceGrant"} {
			feats = append(feats, map[string]interface{}{"name": f})
		}
		_ = unstructured.SetNestedSlice(gc.Object, []interface{}{cond("Accepted", "Accepted", gen)}, "status", "conditions")
		_ = unstructured.SetNestedSlice(gc.Object, feats, "status", "supportedFeatures")
		if _, err := dc.Resource(gvrClass).UpdateStatus(ctx, gc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	gws, err := dc.Resource(gvrGW).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ourGW := map[string]bool{}
	for i := range gws.Items {
		gw := &gws.Items[i]
		if cls, _, _ := unstructured.NestedString(gw.Object, "spec", "gatewayClassName"); !ours[cls] {
			continue
		}
		ourGW[gw.GetNamespace()+"/"+gw.GetName()] = true
		gen := gw.GetGeneration()
		if upToDate(gw, gen, "status", "conditions") {
			continue
		}
		listeners, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
		var ls []interface{}
		for _, l := range listeners {
			lm, _ := l.(map[string]interface{})
			ls = append(ls, map[string]interface{}{
				"name": lm["name"], "attachedRoutes": int64(0),
				"supportedKinds": []interface{}{map[string]interface{}{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}},
				"conditions": []interface{}{cond("Accepted", "Accepted", gen), cond("Programmed", "Programmed", gen),
					cond("ResolvedRefs", "ResolvedRefs", gen)},
			})
		}
		_ = unstructured.SetNestedSlice(gw.Object, []interface{}{cond("Accepted", "Accepted", gen), cond("Programmed", "Programmed", gen)}, "status", "conditions")
		_ = unstructured.SetNestedSlice(gw.Object, []interface{}{map[string]interface{}{"type": "IPAddress", "value": address}}, "status", "addresses")
		_ = unstructured.SetNestedSlice(gw.Object, ls, "status", "listeners")
		if _, err := dc.Resource(gvrGW).Namespace(gw.GetNamespace()).UpdateStatus(ctx, gw, metav1.UpdateOptions{}); err != nil {
			fmt.Fprintf(os.Stderr, "gateway %s/%s: %v\n", gw.GetNamespace(), gw.GetName(), err)
		}
	}
	routes, err := dc.Resource(gvrRoute).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range routes.Items {
		rt := &routes.Items[i]
		gen := rt.GetGeneration()
		refs, _, _ := unstructured.NestedSlice(rt.Object, "spec", "parentRefs")
		var parents []interface{}
		for _, r := range refs {
			rm, _ := r.(map[string]interface{})
			ns := rt.GetNamespace()
			if v, ok := rm["namespace"].(string); ok && v != "" {
				ns = v
			}
			if !ourGW[ns+"/"+fmt.Sprint(rm["name"])] {
				continue
			}
			parents = append(parents, map[string]interface{}{
				"parentRef": rm, "controllerName": controller,
				"conditions": []interface{}{cond("Accepted", "Accepted", gen), cond("ResolvedRefs", "ResolvedRefs", gen)},
			})
		}
		if len(parents) == 0 {
			continue
		}
		if cur, _, _ := unstructured.NestedSlice(rt.Object, "status", "parents"); len(cur) == len(parents) {
			if pm, ok := cur[0].(map[string]interface{}); ok {
				if cs, ok := pm["conditions"].([]interface{}); ok && len(cs) > 0 {
					if m, ok := cs[0].(map[string]interface{}); ok && fmt.Sprint(m["observedGeneration"]) == fmt.Sprint(gen) {
						continue
					}
				}
			}
		}
		_ = unstructured.SetNestedSlice(rt.Object, parents, "status", "parents")
		if _, err := dc.Resource(gvrRoute).Namespace(rt.GetNamespace()).UpdateStatus(ctx, rt, metav1.UpdateOptions{}); err != nil {
			fmt.Fprintf(os.Stderr, "httproute %s/%s: %v\n", rt.GetNamespace(), rt.GetName(), err)
		}
	}
	return nil
}

// upToDate reports whether the first condition at path already carries generation gen.
func upToDate(u *unstructured.Unstructured, gen int64, path ...string) bool {
	cur, _, _ := unstructured.NestedSlice(u.Object, path...)
	if len(cur) == 0 {
		return false
	}
	m, ok := cur[0].(map[string]interface{})
	return ok && fmt.Sprint(m["observedGeneration"]) == fmt.Sprint(gen)
}
