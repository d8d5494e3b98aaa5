package loadgen

import "time"

// epoch anchors the generator's clock. Times are int64 nanoseconds since
// epoch on Go's monotonic clock: one vDSO read per call, no allocation, and
// never going back.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }
