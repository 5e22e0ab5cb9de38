package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resolveEnv builds a container's environment as the kubelet would: a base PATH/HOSTNAME, then
// envFrom sources, then env entries in order, each value expanded with $(NAME) references to the
// entries before it ($$ escapes). Of the service-link variables only the `kubernetes` Service's
// are generated (KUBERNETES_SERVICE_HOST/PORT...: the apiserver forwarder, apiproxy.go).
func (a *agent) resolveEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", pod.Name)
	set("HOME", "/root")
	if a.apiPort > 0 {
		for _, kv := range serviceEnv(a.netw.gateway, a.apiPort) {
			set(kv[0], kv[1])
		}
	}

	for _, src := range c.EnvFrom {
		var data map[string]string
		switch {
		case src.ConfigMapRef != nil:
			cm, err := a.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && src.ConfigMapRef.Optional != nil && *src.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %s: %w", src.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case src.SecretRef != nil:
			s, err := a.cs.CoreV1().Secrets(pod.Namespace).Get(ctx, src.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && src.SecretRef.Optional != nil && *src.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %w", src.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			set(src.Prefix+k, v)
		}
	}

	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expandEnv(e.Value, vars))
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			var v string
			var err error
			switch vf.FieldRef.FieldPath {
			case "status.hostIP", "status.hostIPs":
				v = a.netw.gateway.String()
			default:
				v, err = fieldValue(pod, vf.FieldRef.FieldPath, podIP)
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			set(e.Name, v)
		case vf.ConfigMapKeyRef != nil:
			r := vf.ConfigMapKeyRef
			cm, err := a.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			optional := r.Optional != nil && *r.Optional
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, fmt.Errorf("env %s: configmap %s: %w", e.Name, r.Name, err)
			}
			v, ok := cm.Data[r.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("env %s: configmap %s has no key %q", e.Name, r.Name, r.Key)
			}
			set(e.Name, v)
		case vf.SecretKeyRef != nil:
			r := vf.SecretKeyRef
			s, err := a.cs.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			optional := r.Optional != nil && *r.Optional
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %s: %w", e.Name, r.Name, err)
			}
			v, ok := s.Data[r.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %s has no key %q", e.Name, r.Name, r.Key)
			}
			set(e.Name, string(v))
		case vf.ResourceFieldRef != nil:
			set(e.Name, "0") // no resource accounting here
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		if strings.ContainsRune(k, '=') || strings.ContainsRune(k, 0) || strings.ContainsRune(vars[k], 0) {
			return nil, fmt.Errorf("env %q: invalid name or value", k)
		}
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

// expandEnv replaces $(NAME) with the value of an earlier variable; unknown references stay as
// written and $$ is a literal $, as in the kubelet.
func expandEnv(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
