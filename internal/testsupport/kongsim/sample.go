package kongsim

import (
	"bytes"
	_ "embed"
)

//go:embed testdata/kong-3.9-metrics.prom
var sample []byte

// Sample returns a copy of the body Kong 3.9's Prometheus plugin returns on
// the status listener for the three services of FixtureServices, with every
// metric toggle on (testdata/kong-3.9-metrics.prom). testdata/README.md says
// how it was made and lists Kong's output rules, which it and the Simulator
// follow; the Simulator reproduces it byte for byte (TestFixture). Other
// packages' tests use it as a page exactly as Kong writes it.
func Sample() []byte { return bytes.Clone(sample) }
