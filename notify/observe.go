package notify

import "time"

// Observer is told the outcome of every sink call once it is over (after
// its retries), so the caller can count notifications and time them, e.g.
// incidentbot_notifications_total{sink,op,result} and a latency histogram.
// sink is "slack", "pagerduty" or "console"; op is "post_card",
// "update_card", "reply", "find_card" or
// "page_trigger"/"page_acknowledge"/"page_resolve";
// result is one of the Result constants. It must be safe for concurrent use.
type Observer func(sink, op, result string, d time.Duration)

// Results passed to an Observer.
const (
	ResultSuccess        = "success"
	ResultRetryableError = "retryable_error"
	ResultPermanentError = "permanent_error"
)

// ResultOf maps a sink call's error to an Observer result.
func ResultOf(err error) string {
	switch {
	case err == nil:
		return ResultSuccess
	case IsRetryable(err):
		return ResultRetryableError
	default:
		return ResultPermanentError
	}
}

// Observe reports a call that began at start to o, if o is set.
func (o Observer) Observe(sink, op string, start time.Time, err error) {
	if o != nil {
		o(sink, op, ResultOf(err), time.Since(start))
	}
}
