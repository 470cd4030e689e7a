package actions

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// NewPlan builds a Plan with its parameters encoded as JSON and its hash.
func NewPlan(action, text, target string, params any) (Plan, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: encode plan: %w", action, err)
	}
	p := Plan{Action: action, Text: text, Target: target, Params: raw}
	p.Hash = PlanHash(p)
	return p, nil
}

// PlanHash is the hash approvals bind to: sha256 of the action, the
// target and the resolved parameters, each length-prefixed so no two
// plans share an encoding. Text is left out: it is what people read.
func PlanHash(p Plan) string {
	h := sha256.New()
	for _, s := range [][]byte{[]byte(p.Action), []byte(p.Target), p.Params} {
		fmt.Fprintf(h, "%d:", len(s))
		h.Write(s)
	}
	return hex.EncodeToString(h.Sum(nil))
}
