package firewall

import (
	"slices"
	"strings"
)

// savedTable is one table of an iptables-save dump.
type savedTable struct {
	chains map[string]bool     // chains declared with ":NAME POLICY [p:b]"
	rules  map[string][]string // "-A CHAIN ..." lines by chain, in order
}

func (t *savedTable) declared(chain string) bool { return t != nil && t.chains[chain] }

func (t *savedTable) chainRules(chain string) []string {
	if t == nil {
		return nil
	}
	return t.rules[chain]
}

// parseSave splits iptables-save output into tables. It accepts any text:
// lines it does not understand are ignored, since a dump we misread only
// makes us rewrite our own chains once more.
func parseSave(out []byte) map[string]*savedTable {
	tables := map[string]*savedTable{}
	var cur *savedTable
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "*"):
			name := strings.TrimSpace(line[1:])
			cur = tables[name]
			if cur == nil {
				cur = &savedTable{chains: map[string]bool{}, rules: map[string][]string{}}
				tables[name] = cur
			}
		case cur == nil:
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); name != "" {
				cur.chains[name] = true
			}
		case strings.HasPrefix(line, "-A "):
			if chain, _, _ := strings.Cut(line[3:], " "); chain != "" {
				cur.rules[chain] = append(cur.rules[chain], line)
			}
		}
	}
	return tables
}

// targets reports whether rule (a "-A ..." line) jumps or goes to chain.
// Our chains are targets without options, so the rule ends with the name.
func targets(rule, chain string) bool {
	return strings.HasSuffix(rule, " -j "+chain) || strings.HasSuffix(rule, " -g "+chain)
}

// deleteLine turns "-A CHAIN spec" into "-D CHAIN spec". iptables deletes the
// first rule matching spec; we never delete by rule number, because numbers
// taken from a dump go stale when another program (kube-proxy, docker)
// changes the chain before our restore runs, and we would delete its rule.
func deleteLine(rule string) string { return "-D " + strings.TrimPrefix(rule, "-A ") }

// planChain returns the iptables-restore lines (for `--noflush`, without the
// "*table" and "COMMIT" lines) that turn table t into the desired state of our
// chain def: want, or absent when want is nil. It returns nil when t already
// matches.
//
// For a wanted chain the plan declares it (which creates or flushes it inside
// the transaction), re-adds every rule in order, deletes jump rules that
// differ from the wanted text and duplicates of it, and appends the jump only
// when none exists, so a jump keeps its place among other programs' rules.
// Identical duplicates are deleted by spec, which removes the first copies:
// the last copy is the one kept.
func planChain(def chainDef, t *savedTable, want *IPTablesChain) []string {
	var jumps []string // rules in the parent jumping to our chain
	for _, r := range t.chainRules(def.parent) {
		if targets(r, def.name) {
			jumps = append(jumps, r)
		}
	}
	if want == nil {
		return planRemoval(def.name, t)
	}
	same := 0
	for _, j := range jumps {
		if j == want.Jump {
			same++
		}
	}
	if t.declared(def.name) && slices.Equal(t.chainRules(def.name), want.Rules) &&
		same == 1 && len(jumps) == 1 {
		return nil
	}
	lines := []string{":" + def.name + " - [0:0]"}
	for _, j := range jumps {
		if j != want.Jump {
			lines = append(lines, deleteLine(j))
		}
	}
	for range max(same-1, 0) {
		lines = append(lines, deleteLine(want.Jump))
	}
	if same == 0 {
		lines = append(lines, want.Jump)
	}
	return append(lines, want.Rules...)
}

// planRemoval deletes every rule of t that targets chain, then flushes and
// deletes the chain. Nil when neither exists. Deleting all references first
// avoids upstream's CleanUp bug: a chain that is still jumped to cannot be
// deleted.
func planRemoval(chain string, t *savedTable) []string {
	if t == nil {
		return nil
	}
	var lines []string
	for _, from := range sortedKeys(t.rules) {
		for _, r := range t.rules[from] {
			if from != chain && targets(r, chain) {
				lines = append(lines, deleteLine(r))
			}
		}
	}
	if t.declared(chain) {
		lines = append(lines, "-F "+chain, "-X "+chain)
	}
	return lines
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// tableEdit is the body of one "*table ... COMMIT" section.
type tableEdit struct {
	table string
	lines []string
}

// restorePayload renders edits as iptables-restore input; each table section
// is committed atomically.
func restorePayload(edits []tableEdit) []byte {
	var b strings.Builder
	for _, e := range edits {
		b.WriteString("*" + e.table + "\n")
		for _, l := range e.lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return []byte(b.String())
}

// planRemoveAll removes our chains, and every jump to them, from all tables
// of a full dump. It is how nftables mode clears what iptables mode left.
func planRemoveAll(tables map[string]*savedTable) []tableEdit {
	var edits []tableEdit
	for _, name := range sortedKeys(tables) {
		var lines []string
		for _, def := range ourChains {
			lines = append(lines, planRemoval(def.name, tables[name])...)
		}
		if len(lines) > 0 {
			edits = append(edits, tableEdit{table: name, lines: lines})
		}
	}
	return edits
}
