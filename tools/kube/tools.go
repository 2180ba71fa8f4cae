//go:build tools

// Package kube pins the Kubernetes commands the test rig builds:
//
//	go build -o ../../bin/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
//	go build -o ../../bin/kubectl k8s.io/kubernetes/cmd/kubectl
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
