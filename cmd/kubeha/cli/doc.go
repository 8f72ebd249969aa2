// Package cli is the kubeha command line: cobra commands, flag parsing,
// output rendering and exit codes. It holds no business logic: every command
// is a thin RunE over spec, state, planner, executor or sim.
//
// Only Main calls os.Exit; Run takes its streams and arguments so that
// commands are tested with buffers.
package cli
