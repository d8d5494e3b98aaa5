// Command frameloop is the frameloop daemon: `frameloop serve` runs the
// echo server, `frameloop bench` its load generator.
package main

import (
	"fmt"
	"io"
	"os"
)

// A subcommand returns the process's exit status: 0 success, 1 failure at
// run time, 2 bad usage; bench adds 3 (the server answered wrongly) and 130
// (interrupted).
type subcommand func(args []string, stdout, stderr io.Writer) int

var subcommands = map[string]subcommand{
	"serve":   runServe,
	"bench":   runBench,
	"version": runVersion,
}

const usage = "usage: frameloop serve [flags] | frameloop bench [flags] | frameloop version  (add --help for the flags)"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	case "-version", "--version":
		return runVersion(args[1:], stdout, stderr)
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "frameloop: unknown command %q; %s\n", args[0], usage)
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}
