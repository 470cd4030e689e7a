package slack

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Request
		err  string
	}{
		{"", Request{Verb: VerbHelp}, ""},
		{"  HELP  ", Request{Verb: VerbHelp}, ""},
		{"list", Request{Verb: VerbList}, ""},
		{"ls", Request{Verb: VerbList}, ""},
		{"ack INC-2041", Request{Verb: VerbAck, Incident: "INC-2041"}, ""},
		{"Ack\tinc-2041", Request{Verb: VerbAck, Incident: "inc-2041"}, ""},
		{"acknowledge 2041", Request{Verb: VerbAck, Incident: "2041"}, ""},
		{"unack INC-2041", Request{Verb: VerbUnack, Incident: "INC-2041"}, ""},
		{"resolve INC-2041", Request{Verb: VerbResolve, Incident: "INC-2041"}, ""},
		{"resolve INC-2041 rolled back  v1.4\nall green", Request{Verb: VerbResolve, Incident: "INC-2041", Text: "rolled back  v1.4\nall green"}, ""},
		{"note INC-2041 RPC provider says it is fixed", Request{Verb: VerbNote, Incident: "INC-2041", Text: "RPC provider says it is fixed"}, ""},
		{"escalate INC-2041", Request{Verb: VerbEscalate, Incident: "INC-2041"}, ""},
		{"refresh INC-2041", Request{Verb: VerbRefresh, Incident: "INC-2041"}, ""},
		{"refresh INC-2041 now", Request{}, "`refresh` takes only an incident id"},
		{"silence INC-2041 1h", Request{Verb: VerbSilence, Incident: "INC-2041", Duration: time.Hour}, ""},
		{"silence INC-2041 1H30M", Request{Verb: VerbSilence, Incident: "INC-2041", Duration: 90 * time.Minute}, ""},
		{"silence INC-2041 2d", Request{Verb: VerbSilence, Incident: "INC-2041", Duration: 48 * time.Hour}, ""},
		{"unsilence INC-2041", Request{Verb: VerbUnsilence, Incident: "INC-2041"}, ""},
		{"rpc", Request{Verb: VerbRPC}, ""},
		{"flags", Request{Verb: VerbFlags}, ""},
		{"report INC-2041", Request{Verb: VerbReport, Incident: "INC-2041"}, ""},
		{"show INC-2041", Request{Verb: VerbShow, Incident: "INC-2041"}, ""},
		{"run INC-2041 disable-feature", Request{Verb: VerbRun, Incident: "INC-2041", Step: "disable-feature"}, ""},
		{"APPROVE 2041 disable-feature", Request{Verb: VerbApprove, Incident: "2041", Step: "disable-feature"}, ""},
		{"deny INC-2041 switch_rpc", Request{Verb: VerbDeny, Incident: "INC-2041", Step: "switch_rpc"}, ""},
		{"freeze", Request{Verb: VerbFreeze}, ""},
		{"freeze bad deploy, hands off", Request{Verb: VerbFreeze, Text: "bad deploy, hands off"}, ""},
		{"unfreeze", Request{Verb: VerbUnfreeze}, ""},
		{"unfreeze now", Request{}, "`unfreeze` takes no arguments"},
		{"run INC-2041", Request{}, "`run` needs a step id from the runbook"},
		{"approve INC-2041 a b", Request{}, "`approve` takes an incident id and one step id"},
		{"deny INC-2041 Disable", Request{}, "`deny` takes an incident id and one step id"},

		{"reboot everything", Request{}, `unknown command "reboot"`},
		{"ack", Request{}, "`ack` needs an incident id"},
		{"ack INC-2041 now", Request{}, "`ack` takes only an incident id"},
		{"ack <@U123>", Request{}, `"<@U123>" is not an incident id`},
		{"note INC-2041", Request{}, "`note` needs text"},
		{"silence INC-2041", Request{}, "`silence` needs a duration"},
		{"silence INC-2041 soon", Request{}, `"soon" is not a duration`},
		{"silence INC-2041 10s", Request{}, "shorter than a minute"},
		{"silence INC-2041 1h please", Request{}, "nothing more"},
		{"list all", Request{}, "`list` takes no arguments"},
		{"note INC-1 " + strings.Repeat("x", maxText+1), Request{}, "keep it under"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.err != "" {
			var ue *UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) err = %v, want a usage error containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestUsageListsEveryVerb(t *testing.T) {
	u := Usage("/inc")
	for _, v := range []Verb{VerbHelp, VerbList, VerbShow, VerbAck, VerbUnack, VerbResolve, VerbNote, VerbEscalate,
		VerbSilence, VerbUnsilence, VerbRPC, VerbFlags, VerbReport} {
		if !strings.Contains(u, "`/inc "+string(v)) {
			t.Errorf("usage misses %s:\n%s", v, u)
		}
	}
}

// FuzzParse: Parse never panics; what it accepts is a known verb with what
// that verb needs, and reads back the same from its own rendering; what it
// refuses is a usage error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "help", "list", "ack INC-2041", "resolve inc-1 done\nfor now", "note 7F3A2C  two  spaces ",
		"silence INC-1 1h30m", "silence INC-1 3d", "unsilence INC-1", "rpc", "flags", "report INC-9", "show x", "\xff\xfe", "ack \u00a0INC-1"} {
		f.Add(s)
	}
	known := map[Verb]bool{}
	for _, u := range usage {
		known[u.verb] = true
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := Parse(text)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) || ue.Msg == "" {
				t.Fatalf("Parse(%q): %v is not a usage error", text, err)
			}
			return
		}
		if !known[r.Verb] {
			t.Fatalf("Parse(%q): unknown verb %q accepted", text, r.Verb)
		}
		switch r.Verb {
		case VerbHelp, VerbList, VerbRPC, VerbFlags:
			if r.Incident != "" || r.Text != "" || r.Duration != 0 {
				t.Fatalf("Parse(%q) = %+v: arguments on a verb without any", text, r)
			}
		default:
			if !validID(r.Incident) {
				t.Fatalf("Parse(%q) = %+v: invalid id accepted", text, r)
			}
		}
		if r.Verb == VerbNote && strings.TrimSpace(r.Text) == "" {
			t.Fatalf("Parse(%q): a note without text", text)
		}
		if r.Verb == VerbSilence && (r.Duration < time.Minute || r.Duration > maxSilence) {
			t.Fatalf("Parse(%q): silence of %s", text, r.Duration)
		}
		again, err := Parse(r.String())
		if err != nil || again != r {
			t.Fatalf("Parse(%q) = %+v renders as %q, which parses as %+v, %v", text, r, r.String(), again, err)
		}
	})
}
