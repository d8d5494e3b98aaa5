package main

import (
	"io"

	"github.com/frameloop/frameloop/internal/loadgen"
)

// runBench is "frameloop bench": the load generator lives in
// internal/loadgen, where it can be tested without this package's main.
func runBench(args []string, stdout, stderr io.Writer) int {
	return loadgen.Main(args, stdout, stderr)
}
