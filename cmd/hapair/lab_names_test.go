package main

import "github.com/hapair/hapair/cmd/internal/demo"

// The lab hosts' configurations live with the demo (cmd/internal/demo), which renders them too;
// this package's end-to-end tests and benchmarks use them under these names.
type (
	labNode     = demo.Node
	anycastNode = demo.AnycastNode
)

var childHAProxy = demo.ChildHAProxy
