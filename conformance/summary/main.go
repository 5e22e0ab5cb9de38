// Command summary prints a one-screen digest of an upstream ConformanceReport YAML: per profile,
// the core result with passed/failed/skipped counts and failed test names, and the extended
// features that passed.
//
// Usage: summary REPORT.yaml
package main

import (
	"fmt"
	"os"
	"strings"

	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: summary REPORT.yaml")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var r confv1.ConformanceReport
	if err := yaml.Unmarshal(b, &r); err != nil {
		fmt.Fprintf(os.Stderr, "%s: not a ConformanceReport: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("Gateway API %s (%s channel), %s %s, %s\n", r.GatewayAPIVersion, r.GatewayAPIChannel,
		r.Implementation.Project, r.Implementation.Version, r.Date)
	for _, p := range r.ProfileReports {
		c := p.Core
		fmt.Printf("\n%-14s core %-8s passed %3d  failed %3d  skipped %3d\n", p.Name, c.Result,
			c.Statistics.Passed, c.Statistics.Failed, c.Statistics.Skipped)
		if len(c.FailedTests) > 0 {
			fmt.Printf("  core failed: %s\n", wrap(c.FailedTests))
		}
		if e := p.Extended; e != nil {
			fmt.Printf("  extended %-8s passed %3d  failed %3d  skipped %3d\n", e.Result,
				e.Statistics.Passed, e.Statistics.Failed, e.Statistics.Skipped)
			if e.Result == confv1.Success || len(e.FailedTests) == 0 {
				if len(e.SupportedFeatures) > 0 {
					fmt.Printf("  extended features passed: %s\n", wrap(e.SupportedFeatures))
				}
			} else if len(e.FailedTests) > 0 {
				fmt.Printf("  extended failed: %s\n", wrap(e.FailedTests))
			}
		}
	}
	if len(r.SucceededProvisionalTests) > 0 {
		fmt.Printf("\nprovisional tests passed: %s\n", wrap(r.SucceededProvisionalTests))
	}
}

func wrap(items []string) string {
	const width = 96
	var b strings.Builder
	line := 0
	for i, s := range items {
		if i > 0 {
			b.WriteByte(',')
			if line+2+len(s) > width {
				b.WriteString("\n    ")
				line = 4
			} else {
				b.WriteByte(' ')
				line += 2
			}
		}
		b.WriteString(s)
		line += len(s)
	}
	return b.String()
}
