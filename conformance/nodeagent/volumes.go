package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// materializeVolumes writes the pod's volumes under root (one directory per volume) and returns
// volume name -> host path, to be bind-mounted at each mountPath, and the service-account tokens
// of projected volumes, which the caller requests and keeps fresh (serviceaccount.go). Supported:
// secret, configMap, emptyDir, downwardAPI, projected (secret, configMap, downwardAPI,
// serviceAccountToken sources), hostPath. Other contents are written once at pod start, not kept
// in sync.
func (a *agent) materializeVolumes(ctx context.Context, pod *corev1.Pod, root string) (map[string]string, []*tokenFile, error) {
	out := map[string]string{}
	var toks []*tokenFile
	for _, v := range pod.Spec.Volumes {
		if !filepath.IsLocal(v.Name) {
			return nil, nil, fmt.Errorf("volume name %q", v.Name)
		}
		dir := filepath.Join(root, v.Name)
		var err error
		switch {
		case v.HostPath != nil:
			out[v.Name] = v.HostPath.Path
			continue
		case v.EmptyDir != nil:
			err = os.MkdirAll(dir, 0o777)
		case v.Secret != nil:
			err = a.writeSecret(ctx, pod.Namespace, dir, v.Secret.SecretName, v.Secret.Items,
				v.Secret.DefaultMode, v.Secret.Optional)
		case v.ConfigMap != nil:
			err = a.writeConfigMap(ctx, pod.Namespace, dir, v.ConfigMap.Name, v.ConfigMap.Items,
				v.ConfigMap.DefaultMode, v.ConfigMap.Optional)
		case v.DownwardAPI != nil:
			err = writeDownward(pod, dir, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		case v.Projected != nil:
			err = os.MkdirAll(dir, 0o755)
			for _, s := range v.Projected.Sources {
				if err != nil {
					break
				}
				mode := v.Projected.DefaultMode
				switch {
				case s.Secret != nil:
					err = a.writeSecret(ctx, pod.Namespace, dir, s.Secret.Name, s.Secret.Items, mode, s.Secret.Optional)
				case s.ConfigMap != nil:
					err = a.writeConfigMap(ctx, pod.Namespace, dir, s.ConfigMap.Name, s.ConfigMap.Items, mode, s.ConfigMap.Optional)
				case s.DownwardAPI != nil:
					err = writeDownward(pod, dir, s.DownwardAPI.Items, mode)
				case s.ServiceAccountToken != nil:
					var tf *tokenFile
					if tf, err = projectedToken(pod, dir, s.ServiceAccountToken, mode); err == nil {
						toks = append(toks, tf)
					}
				}
			}
		default:
			// Not materialised: a container mounting it fails with a clear message in startPod.
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		out[v.Name] = dir
	}
	return out, toks, nil
}

func fileMode(item, def *int32) os.FileMode {
	m := int32(0o644)
	if def != nil {
		m = *def
	}
	if item != nil {
		m = *item
	}
	return os.FileMode(m & 0o777)
}

// writeKeys writes data (key -> bytes) into dir: every key, or only items (key -> relative path).
func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, def *int32, what string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(rel string, b []byte, mode os.FileMode) error {
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("%s: path %q leaves the volume", what, rel)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, mode)
	}
	if len(items) == 0 {
		for k, b := range data {
			if err := write(k, b, fileMode(nil, def)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("%s has no key %q", what, it.Key)
		}
		if err := write(it.Path, b, fileMode(it.Mode, def)); err != nil {
			return err
		}
	}
	return nil
}

func (a *agent) writeSecret(ctx context.Context, ns, dir, name string, items []corev1.KeyToPath, def *int32, optional *bool) error {
	s, err := a.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return os.MkdirAll(dir, 0o755)
		}
		return fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return writeKeys(dir, s.Data, items, def, "secret "+ns+"/"+name)
}

func (a *agent) writeConfigMap(ctx context.Context, ns, dir, name string, items []corev1.KeyToPath, def *int32, optional *bool) error {
	cm, err := a.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return os.MkdirAll(dir, 0o755)
		}
		return fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeKeys(dir, data, items, def, "configmap "+ns+"/"+name)
}

func writeDownward(pod *corev1.Pod, dir string, items []corev1.DownwardAPIVolumeFile, def *int32) error {
	data := map[string][]byte{}
	var kp []corev1.KeyToPath
	for _, it := range items {
		if it.FieldRef == nil {
			continue // resourceFieldRef: not supported, skipped
		}
		v, err := fieldValue(pod, it.FieldRef.FieldPath, "")
		if err != nil {
			return err
		}
		data[it.Path] = []byte(v)
		kp = append(kp, corev1.KeyToPath{Key: it.Path, Path: it.Path, Mode: it.Mode})
	}
	if len(kp) == 0 {
		return os.MkdirAll(dir, 0o755)
	}
	return writeKeys(dir, data, kp, def, "downwardAPI")
}

var subscriptRe = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']*)'\]$`)

// fieldValue resolves a downward-API fieldPath. podIP is the address being assigned (the status
// does not carry it yet when the environment is built).
func fieldValue(pod *corev1.Pod, path, podIP string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		if podIP == "" {
			podIP = pod.Status.PodIP
		}
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return pod.Status.HostIP, nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	if m := subscriptRe.FindStringSubmatch(path); m != nil {
		if m[1] == "labels" {
			return pod.Labels[m[2]], nil
		}
		return pod.Annotations[m[2]], nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s=%q\n", k, v)
	}
	return b.String()
}
