package notify

import "net/http"

// MaxIdleConnsPerHost is how many idle connections a sink keeps to its
// API. Deliveries run concurrently (the engine's delivery consumers take
// several jobs at once, and cards, thread replies and pages overlap);
// with net/http's default of 2, every call beyond two closed its
// connection after use and the next dialed (and, to Slack or PagerDuty,
// shook hands over TLS) again.
const MaxIdleConnsPerHost = 32

// PooledTransport returns a transport like http.DefaultTransport (proxy
// from the environment, the same timeouts) that keeps up to
// MaxIdleConnsPerHost idle connections per host, for a sink's client.
func PooledTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	return t
}
