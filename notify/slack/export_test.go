package slack

// Waiting counts the calls waiting for their turn in channel (an id or a
// name), for tests that must know a queue has formed.
func (c *Chat) Waiting(channel string) int { return c.gate.waiting(c.gateKey(channel)) }
