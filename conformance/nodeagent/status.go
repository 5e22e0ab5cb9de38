package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// setCondition sets a condition, keeping its transition time when the status does not change.
func setCondition(st *corev1.PodStatus, old []corev1.PodCondition, t corev1.PodConditionType,
	s corev1.ConditionStatus, reason, msg string) {
	now := mt(time.Now())
	c := corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: now}
	for _, o := range old {
		if o.Type == t && o.Status == s {
			c.LastTransitionTime = o.LastTransitionTime
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// desiredStatus derives the pod status from the runtime state. Conditions other than the five
// the kubelet owns (readiness gates, DisruptionTarget...) are carried over untouched.
func (a *agent) desiredStatus(pod *corev1.Pod, rt *podRuntime) corev1.PodStatus {
	old := pod.Status
	// Start from the old status so that fields we do not own survive.
	st := *old.DeepCopy()
	st.HostIP = rt.hostIP
	st.HostIPs = []corev1.HostIP{{IP: rt.hostIP}}
	st.Phase = corev1.PodPending
	st.Conditions = nil
	st.ContainerStatuses = nil
	st.InitContainerStatuses = nil
	st.Reason, st.Message = "", ""
	st.PodIP, st.PodIPs = "", nil
	if st.StartTime == nil {
		t := mt(rt.created)
		st.StartTime = &t
	}
	owned := map[corev1.PodConditionType]bool{
		corev1.PodScheduled: true, corev1.PodInitialized: true, corev1.ContainersReady: true,
		corev1.PodReady: true, corev1.PodReadyToStartContainers: true,
	}
	if rt.unsupported != "" {
		setCondition(&st, old.Conditions, corev1.PodScheduled, corev1.ConditionTrue, "", "")
		setCondition(&st, old.Conditions, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "UnsupportedImage", rt.unsupported)
		setCondition(&st, old.Conditions, corev1.PodInitialized, corev1.ConditionTrue, "", "")
		setCondition(&st, old.Conditions, corev1.ContainersReady, corev1.ConditionFalse, "UnsupportedImage", rt.unsupported)
		setCondition(&st, old.Conditions, corev1.PodReady, corev1.ConditionFalse, "UnsupportedImage", rt.unsupported)
		st.Reason = "UnsupportedImage"
		st.Message = rt.unsupported
		for _, c := range rt.containers {
			st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
				Name: c.name, Image: c.image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason: "UnsupportedImage", Message: fmt.Sprintf("image %s: %s", c.image, rt.unsupported)}},
			})
		}
		keepForeign(&st, old.Conditions, owned)
		return st
	}
	st.PodIP = rt.ip.String()
	st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}

	rt.mu.Lock()
	allReady, allDone, anyFailed := true, true, false
	for _, c := range rt.containers {
		cs := corev1.ContainerStatus{
			Name:         c.name,
			Image:        c.image,
			ImageID:      "pylon-process://" + c.kind.String(),
			ContainerID:  "pylon-process://" + string(rt.uid) + "/" + c.name,
			RestartCount: c.restarts,
			Ready:        c.ready,
		}
		started := false
		switch {
		case c.kind == kindStub:
			t := mt(rt.created)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: t}
			started = true
		case c.running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: mt(c.startedAt)}
			started = true
		case c.done && c.last != nil:
			cs.State.Terminated = terminated(c.last)
			if c.last.code != 0 {
				anyFailed = true
			}
		case c.waiting != "":
			msg := ""
			if c.last != nil {
				msg = fmt.Sprintf("back-off restarting failed container %s (exit code %d)", c.name, c.last.code)
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: msg}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if c.last != nil && !(c.done && cs.State.Terminated != nil) {
			cs.LastTerminationState.Terminated = terminated(c.last)
		}
		cs.Started = &started
		if !c.ready {
			allReady = false
		}
		if !c.done {
			allDone = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	rt.mu.Unlock()

	switch {
	case allDone && len(rt.containers) > 0 && anyFailed:
		st.Phase = corev1.PodFailed
	case allDone && len(rt.containers) > 0:
		st.Phase = corev1.PodSucceeded
	default:
		st.Phase = corev1.PodRunning
	}
	for _, ic := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: ic.Name, Image: ic.Image, ImageID: "pylon-process://stub", Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "Completed", StartedAt: mt(rt.created), FinishedAt: mt(rt.created)}},
		})
	}
	ready := corev1.ConditionFalse
	reason := "ContainersNotReady"
	if allReady && st.Phase == corev1.PodRunning {
		ready, reason = corev1.ConditionTrue, ""
	}
	setCondition(&st, old.Conditions, corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", "")
	setCondition(&st, old.Conditions, corev1.PodInitialized, corev1.ConditionTrue, "", "")
	setCondition(&st, old.Conditions, corev1.ContainersReady, ready, reason, "")
	setCondition(&st, old.Conditions, corev1.PodReady, ready, reason, "")
	setCondition(&st, old.Conditions, corev1.PodScheduled, corev1.ConditionTrue, "", "")
	keepForeign(&st, old.Conditions, owned)
	return st
}

// mt is a timestamp as the apiserver stores it (seconds, UTC), so that comparing a desired status
// with the stored one does not see a difference in every sub-second timestamp.
func mt(t time.Time) metav1.Time {
	return metav1.NewTime(t.UTC().Truncate(time.Second))
}

func keepForeign(st *corev1.PodStatus, old []corev1.PodCondition, owned map[corev1.PodConditionType]bool) {
	for _, c := range old {
		if !owned[c.Type] {
			st.Conditions = append(st.Conditions, c)
		}
	}
}

func terminated(e *exitInfo) *corev1.ContainerStateTerminated {
	reason := "Completed"
	if e.code != 0 {
		reason = "Error"
	}
	return &corev1.ContainerStateTerminated{
		ExitCode: int32(e.code), Reason: reason, Message: e.signal,
		StartedAt: mt(e.startedAt), FinishedAt: mt(e.finishedAt),
	}
}

// writeStatus updates the pod's status when the runtime state implies a different one. A conflict
// is returned as an error: the queue retries with the fresh object.
func (a *agent) writeStatus(ctx context.Context, pod *corev1.Pod, rt *podRuntime) error {
	st := a.desiredStatus(pod, rt)
	if equality.Semantic.DeepEqual(st, pod.Status) {
		return nil
	}
	p := pod.DeepCopy()
	p.Status = st
	_, err := a.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err == nil {
		klog.V(3).Infof("status %s: %s ready=%v ip=%s", rt.key, st.Phase, podReady(&st), st.PodIP)
	}
	return err
}

// writeWaiting reports a pod that cannot start yet (missing Secret...) with the reason, as the
// kubelet does, so `kubectl get pods` says why.
func (a *agent) writeWaiting(ctx context.Context, pod *corev1.Pod, reason, msg string) {
	p := pod.DeepCopy()
	p.Status.Phase = corev1.PodPending
	p.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		})
	}
	if equality.Semantic.DeepEqual(p.Status, pod.Status) {
		return
	}
	if _, err := a.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		klog.V(2).Infof("status %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

func podReady(st *corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
