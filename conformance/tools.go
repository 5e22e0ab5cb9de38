//go:build tools

// Package tools pins the programs the harness builds from other modules, so that `go mod tidy`
// keeps them in go.mod: the upstream echo server that the node agent runs for echo-basic images.
package tools

import _ "sigs.k8s.io/gateway-api/conformance/echo-basic"
