package solana

// EventTypes are the event types the watchers publish, firing and
// recovered: what runbooks match with `match.types` and what
// `incidentbot replay --type` accepts.
var EventTypes = []string{
	"solana.rpc.unhealthy",
	"solana.rpc.recovered",
	"solana.tx.failure_rate",
	"solana.tx.failure_rate_recovered",
	"solana.program.upgraded",
	"solana.program.authority_changed",
	"solana.balance.low",
	"solana.balance.recovered",
}
