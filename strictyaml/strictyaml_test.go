package strictyaml

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type inner struct {
	N int `yaml:"n"`
}

type doc struct {
	S   string            `yaml:"s" required:"true"`
	B   *bool             `yaml:"b"`
	D   Duration          `yaml:"d"`
	L   []inner           `yaml:"l"`
	M   map[string]string `yaml:"m"`
	Raw yaml.Node         `yaml:"raw"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"s: x\nb: true\nd: 2d\nl: [{n: 1}]\nm: {a: b}\nraw: {anything: [1]}\n", nil},
		{"b: yes\n", []string{"line 1: b: expected true or false, got a string", "line 1: s: required"}},
		{"s: x\nl: [{n: one}, {m: 2}]\n", []string{"line 2: l[0].n: expected an integer, got a string", `line 2: l[1].m: unknown key "m" (did you mean "n"?)`}},
		{"s: x\ns: y\n", []string{"line 2: s: duplicate key"}},
		{"s: x\nd: 5 min\n", []string{`line 2: d: invalid duration "5 min"`}},
		{"s: true\n", []string{"line 1: s: expected a string, got a boolean"}},
		{"s: x\nm: {a: [1]}\n", []string{"line 2: m.a: expected a string, got a list"}},
		{"s: &a x\nm: {a: *a}\n", []string{"line 2: m.a: YAML aliases are not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.in), &n); err != nil {
				t.Fatal(err)
			}
			var d doc
			err := Decode(&n, "", &d)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if d.S != "x" || !*d.B || time.Duration(d.D) != 48*time.Hour || d.L[0].N != 1 || d.M["a"] != "b" || d.Raw.Kind != yaml.MappingNode {
					t.Errorf("decoded %+v", d)
				}
				return
			}
			if got := len(Flatten(err)); got != len(tt.want) {
				t.Errorf("%d errors, want %d: %v", got, len(tt.want), err)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err %v, want %q", err, w)
				}
			}
		})
	}
}

// TestDecodeGoDurationsAndWideIntegers: configuration structs use
// time.Duration, int64 and uint64 fields directly.
func TestDecodeGoDurationsAndWideIntegers(t *testing.T) {
	type wide struct {
		D time.Duration `yaml:"d"`
		I int64         `yaml:"i"`
		U uint64        `yaml:"u"`
	}
	tests := []struct {
		in   string
		want string
	}{
		{"d: 90s\ni: 4294967296\nu: 2000000000\n", ""},
		{"d: 300\n", `line 1: d: invalid duration "300": want a duration like 30s, 15m, 1h30m or 2d`},
		{"d: -5m\n", `line 1: d: invalid duration "-5m": negative; want a duration like 30s`},
		{"d: [1]\n", `line 1: d: expected a duration like 30s, 15m or 1h, got a list`},
		{"u: -1\n", `line 1: u: expected a non-negative integer, got -1`},
		{"u: lots\n", `line 1: u: expected a non-negative integer, got a string`},
	}
	for _, tt := range tests {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(tt.in), &n); err != nil {
			t.Fatal(err)
		}
		var w wide
		err := Decode(&n, "", &w)
		if tt.want == "" {
			if err != nil || w.D != 90*time.Second || w.I != 1<<32 || w.U != 2e9 {
				t.Errorf("%q: %+v, %v", tt.in, w, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: err %v, want %q", tt.in, err, tt.want)
		}
	}
}
