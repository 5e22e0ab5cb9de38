package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// saMountPath is where in-cluster clients (client-go, pylon --in-cluster) look for the
// service-account token, CA and namespace.
const saMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// tokenFile is one service-account token the agent keeps fresh on disk: the automounted one, or a
// serviceAccountToken source of a projected volume.
type tokenFile struct {
	path      string // on the host
	sa        string
	audiences []string
	expSecs   int64
	mode      os.FileMode
}

// defaultTokenSecs is what the ServiceAccount admission plugin asks for; the apiserver extends
// such tokens (--service-account-extend-token-expiration) and the kubelet refreshes them anyway.
const defaultTokenSecs = 3607

func saName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// automountDir does what the ServiceAccount admission plugin (disabled in this cluster, see
// docs/conformance.md) and the kubelet do together: unless automountServiceAccountToken is false
// (pod, else ServiceAccount), it writes token, ca.crt and namespace into dir, to be bind-mounted
// read-only at saMountPath, and returns the token to keep fresh. ("", nil, nil) = no automount.
// A missing ServiceAccount is an error, as the admission plugin would reject the pod.
func (a *agent) automountDir(ctx context.Context, pod *corev1.Pod, dir string) (string, *tokenFile, error) {
	auto := pod.Spec.AutomountServiceAccountToken
	sa, err := a.cs.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, saName(pod), metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil, fmt.Errorf("service account %s/%s not found", pod.Namespace, saName(pod))
		}
		return "", nil, fmt.Errorf("service account %s/%s: %w", pod.Namespace, saName(pod), err)
	}
	if auto == nil {
		auto = sa.AutomountServiceAccountToken
	}
	if auto != nil && !*auto {
		return "", nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, "ca.crt"), a.caPEM, 0o644); err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, "namespace"), []byte(pod.Namespace), 0o644); err != nil {
		return "", nil, err
	}
	tf := &tokenFile{path: filepath.Join(dir, "token"), sa: saName(pod), expSecs: defaultTokenSecs, mode: 0o644}
	return dir, tf, nil
}

// projectedToken is a serviceAccountToken source of a projected volume written into dir.
func projectedToken(pod *corev1.Pod, dir string, s *corev1.ServiceAccountTokenProjection, mode *int32) (*tokenFile, error) {
	if !filepath.IsLocal(s.Path) {
		return nil, fmt.Errorf("serviceAccountToken path %q leaves the volume", s.Path)
	}
	exp := int64(defaultTokenSecs)
	if s.ExpirationSeconds != nil {
		exp = *s.ExpirationSeconds
	}
	var aud []string
	if s.Audience != "" {
		aud = []string{s.Audience}
	}
	return &tokenFile{path: filepath.Join(dir, s.Path), sa: saName(pod), audiences: aud, expSecs: exp,
		mode: fileMode(nil, mode)}, nil
}

// requestToken asks the apiserver for a token of the pod's service account bound to the pod (it
// stops working when the pod is deleted), writes it, and returns when to refresh it: at 80% of
// its lifetime, as the kubelet does.
func (a *agent) requestToken(ctx context.Context, pod *corev1.Pod, tf *tokenFile) (time.Duration, error) {
	exp := tf.expSecs
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         tf.audiences,
		ExpirationSeconds: &exp,
	}}
	// The apiserver binds a token to a pod only if the pod names that service account; with the
	// admission plugin off, a pod that names none (the default account) gets an unbound token,
	// which stays valid after the pod is gone until it expires.
	if pod.Spec.ServiceAccountName == tf.sa {
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		}
	}
	out, err := a.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, tf.sa, tr, metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("token for service account %s/%s: %w", pod.Namespace, tf.sa, err)
	}
	if out.Status.Token == "" {
		return 0, fmt.Errorf("token for service account %s/%s: empty token", pod.Namespace, tf.sa)
	}
	if err := os.MkdirAll(filepath.Dir(tf.path), 0o755); err != nil {
		return 0, err
	}
	// Atomic: pylon and client-go re-read the file when it changes and must never see half a token.
	if err := writeFileAtomic(tf.path, []byte(out.Status.Token), tf.mode); err != nil {
		return 0, err
	}
	ttl := time.Until(out.Status.ExpirationTimestamp.Time)
	if ttl <= 0 {
		ttl = time.Duration(exp) * time.Second
	}
	return max(ttl*8/10, 10*time.Second), nil
}

// refreshTokens keeps a pod's tokens fresh until the pod stops; a failed refresh is retried
// every 10 s (the token on disk stays valid until it expires).
func (a *agent) refreshTokens(rt *podRuntime, pod *corev1.Pod, toks []*tokenFile, first []time.Duration) {
	defer rt.wg.Done()
	due := make([]time.Time, len(toks))
	for i := range toks {
		due[i] = time.Now().Add(first[i])
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-rt.stopCh
		cancel()
	}()
	for {
		next := due[0]
		for _, d := range due[1:] {
			if d.Before(next) {
				next = d
			}
		}
		select {
		case <-rt.stopCh:
			return
		case <-time.After(time.Until(next)):
		}
		for i, tf := range toks {
			if time.Now().Before(due[i]) {
				continue
			}
			d, err := a.requestToken(ctx, pod, tf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				klog.Warningf("pod %s: refreshing %s: %v", rt.key, tf.path, err)
				d = 10 * time.Second
			}
			due[i] = time.Now().Add(d)
		}
	}
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile's mode is subject to the umask
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
