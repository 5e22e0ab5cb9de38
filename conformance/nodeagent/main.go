// Command nodeagent is the kubelet stand-in of pylon's container-less test cluster.
//
// It registers one Ready Node, binds every pending pod to it (there is no scheduler), and runs each
// pod's containers as local processes: one network namespace per pod with its own address on a
// host bridge, Secret/ConfigMap volumes materialised on disk and bind-mounted at their mountPath,
// env resolved (values, fieldRefs, key refs), logs captured to files and served to the apiserver on
// the kubelet log endpoint. It reports Running/Ready with the pod IP so the endpointslice controller
// publishes the pod, and on deletion kills the processes, removes the namespace and finalises the pod.
//
// Images are not pulled: an image whose last path element is "echo-basic" runs the upstream echo
// server binary (--echo-basic); one whose last path element is "pylon" runs the pylon binary
// (--pylon-bin) with the container's args, as the image's entrypoint would; a few images the
// conformance base manifests need only to be Ready run as stubs (no process); any other image gets
// an UnsupportedImage condition.
//
// Pods get what in-cluster clients need: the service-account token (TokenRequest, bound to the
// pod, refreshed), ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount, and
// KUBERNETES_SERVICE_HOST/PORT naming a forwarder to the apiserver on the bridge (apiproxy.go,
// serviceaccount.go). securityContext is honoured as far as processes allow (security.go).
//
// Subcommand "podinit" is internal: it runs inside the pod's namespaces, bind-mounts the volumes
// and execs the container program (see podinit.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

type config struct {
	kubeconfig string
	nodeName   string
	stateDir   string
	bridge     string
	cidr       string
	echoBasic  string
	pylonBin   string
	logAddr    string
	stubImages string
	readyFile  string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "dnsstub" {
		dnsStubMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "podinit" {
		os.Exit(podinitMain(os.Args[2:]))
	}
	var cfg config
	fs := flag.NewFlagSet("nodeagent", flag.ExitOnError)
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig of the cluster")
	fs.StringVar(&cfg.nodeName, "node-name", "pylon-node", "name of the Node to register")
	fs.StringVar(&cfg.stateDir, "state-dir", "/tmp/pylon-cluster/node", "pod volumes, logs and pid files")
	fs.StringVar(&cfg.bridge, "bridge", "pylon0", "host bridge the pod namespaces attach to")
	fs.StringVar(&cfg.cidr, "pod-cidr", "10.244.0.0/16", "pod network; the first address is the bridge's")
	fs.StringVar(&cfg.echoBasic, "echo-basic", "", "path of the echo-basic binary (required)")
	fs.StringVar(&cfg.pylonBin, "pylon-bin", os.Getenv("PYLON_BIN"),
		"pylon binary run for images named pylon (looked up at each container start; may be a symlink)")
	fs.StringVar(&cfg.logAddr, "log-listen", "", "kubelet log endpoint address (default: bridge address, free port)")
	fs.StringVar(&cfg.stubImages, "stub-images", "coredns,pause", "comma-separated image names that run as Ready stubs")
	fs.StringVar(&cfg.readyFile, "ready-file", "", "file written once the node is registered")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if cfg.echoBasic == "" {
		fmt.Fprintln(os.Stderr, "nodeagent: --echo-basic is required")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "nodeagent: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restCfg.QPS = 50
	restCfg.Burst = 100
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	_, podNet, err := net.ParseCIDR(cfg.cidr)
	if err != nil {
		return fmt.Errorf("--pod-cidr: %w", err)
	}
	if cfg.echoBasic, err = filepath.Abs(cfg.echoBasic); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.echoBasic); err != nil {
		return fmt.Errorf("--echo-basic: %w", err)
	}
	if cfg.pylonBin != "" {
		if cfg.pylonBin, err = filepath.Abs(cfg.pylonBin); err != nil {
			return err
		}
	}
	caPEM := restCfg.TLSClientConfig.CAData
	if len(caPEM) == 0 && restCfg.TLSClientConfig.CAFile != "" {
		if caPEM, err = os.ReadFile(restCfg.TLSClientConfig.CAFile); err != nil {
			return fmt.Errorf("kubeconfig CA: %w", err)
		}
	}
	if len(caPEM) == 0 {
		return fmt.Errorf("kubeconfig %s names no CA: pods could not verify the apiserver", cfg.kubeconfig)
	}
	if err := os.MkdirAll(filepath.Join(cfg.stateDir, "pods"), 0o755); err != nil {
		return err
	}
	netw, err := newNetwork(cfg.bridge, podNet)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	a := newAgent(cfg, cs, netw)
	a.caPEM = caPEM
	// Leftovers of a previous agent (crash, kill -9): their processes and namespaces are ours.
	a.cleanupStale()

	logAddr := cfg.logAddr
	if logAddr == "" {
		logAddr = net.JoinHostPort(netw.gateway.String(), "0")
	}
	logPort, err := a.startLogServer(ctx, logAddr)
	if err != nil {
		return fmt.Errorf("log endpoint: %w", err)
	}
	if a.apiPort, err = startAPIForward(ctx, netw.gateway, restCfg.Host); err != nil {
		return fmt.Errorf("apiserver forward: %w", err)
	}
	if err := a.registerNode(ctx, logPort); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	if cfg.readyFile != "" {
		_ = os.WriteFile(cfg.readyFile, []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644)
	}
	klog.Infof("node %s registered, pod network %s on %s, logs on port %d, apiserver for pods at %s:%d",
		cfg.nodeName, podNet, cfg.bridge, logPort, netw.gateway, a.apiPort)
	err = a.run(ctx)
	a.shutdown()
	return err
}
