package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/frameloop/frameloop/internal/loadgen"
)

// runBench is "frameloop bench": the load generator lives in
// internal/loadgen, where it can be tested without this package's main.
// The first SIGINT or SIGTERM ends the run early, with the figures so far
// and exit status 130; a second one exits at once.
func runBench(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	interrupt := make(chan os.Signal, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case sig := <-sigs:
			interrupt <- sig
		case <-done:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "frameloop bench: second signal: exiting now")
			os.Exit(130)
		case <-done:
		}
	})
	defer func() {
		close(done)
		wg.Wait()
	}()
	return loadgen.Main(args, stdout, stderr, interrupt)
}
