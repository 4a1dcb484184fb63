// Command logkeys is a go vet-like check that keeps the attribute keys of
// every log/slog call in one vocabulary (docs/logging.md). It reports a key
// that is a known drift from the vocabulary ("error" for "err", ...), and
// one that is not a lowerCamelCase word. Run by make lint:
//
//	go run .ci/logkeys.go ./...
//	go run .ci/logkeys.go -goos windows ./...
//
// With -list it prints every key it sees, with how often, instead.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/constant"
	"go/types"
	"os"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/tools/go/packages"
)

// drift maps a key that has crept in beside the vocabulary to the
// vocabulary's word for the same thing.
var drift = map[string]string{
	"error": "err", "errors": "err",
	"iface": "interface", "ifname": "interface", "nic": "interface",
	"id": "instance", "instanceId": "instance", "instanceID": "instance",
	"gen":  "generation",
	"file": "path", "filename": "path", "dir": "path",
	"username": "user",
	"hwaddr":   "mac", "hardwareAddr": "mac",
}

var keyShape = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// argsFrom gives, for a function or method of log/slog, the index of its
// first key-value argument, or -1 if it takes none.
func argsFrom(fn *types.Func) int {
	switch fn.Name() {
	case "Debug", "Info", "Warn", "Error":
		return 1 // msg, args...
	case "DebugContext", "InfoContext", "WarnContext", "ErrorContext":
		return 2 // ctx, msg, args...
	case "Log":
		return 3 // ctx, level, msg, args...
	case "With":
		return 0
	case "Group":
		return 1 // name, args...
	}
	return -1
}

// attrCtors are the functions of log/slog whose first argument is a key.
var attrCtors = map[string]bool{
	"String": true, "Int": true, "Int64": true, "Uint64": true, "Float64": true,
	"Bool": true, "Time": true, "Duration": true, "Any": true, "Group": true,
}

type finding struct {
	pos, key, msg string
}

func main() {
	list := flag.Bool("list", false, "print every key and its count instead of checking")
	goos := flag.String("goos", "", "read the packages as built for this GOOS (the check itself runs here)")
	flag.Parse()
	cfg := &packages.Config{Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo}
	if *goos != "" {
		cfg.Env = append(os.Environ(), "GOOS="+*goos)
	}
	pkgs, err := packages.Load(cfg, flag.Args()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "logkeys:", err)
		os.Exit(2)
	}
	// A package that does not build is go vet's to report; its files
	// that type-checked are still read.
	packages.PrintErrors(pkgs)
	counts := map[string]int{}
	var bad []finding
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, f := range p.Syntax {
			name := p.Fset.Position(f.Pos()).Filename
			if strings.HasSuffix(name, "_test.go") || seen[name] {
				continue
			}
			seen[name] = true
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				fn := callee(p.TypesInfo, call)
				if fn == nil || fn.Pkg() == nil || fn.Pkg().Path() != "log/slog" {
					return true
				}
				check := func(e ast.Expr) {
					tv, ok := p.TypesInfo.Types[e]
					if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
						return
					}
					key := constant.StringVal(tv.Value)
					counts[key]++
					pos := p.Fset.Position(e.Pos()).String()
					if w, ok := drift[key]; ok {
						bad = append(bad, finding{pos, key, fmt.Sprintf("log key %q: the vocabulary's word is %q (docs/logging.md)", key, w)})
					} else if !keyShape.MatchString(key) {
						bad = append(bad, finding{pos, key, fmt.Sprintf("log key %q is not a lowerCamelCase word (docs/logging.md)", key)})
					}
				}
				sig, _ := fn.Type().(*types.Signature)
				isFunc := sig != nil && sig.Recv() == nil
				if isFunc && attrCtors[fn.Name()] && len(call.Args) > 0 {
					check(call.Args[0])
					if fn.Name() != "Group" {
						return true
					}
				}
				i := argsFrom(fn)
				if i < 0 || call.Ellipsis.IsValid() {
					return true
				}
				for i < len(call.Args) {
					a := call.Args[i]
					if t := p.TypesInfo.TypeOf(a); t != nil && types.TypeString(t, nil) == "log/slog.Attr" {
						i++
						continue
					}
					check(a)
					i += 2
				}
				return true
			})
		}
	}
	if *list {
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return counts[keys[i]] > counts[keys[j]] || counts[keys[i]] == counts[keys[j]] && keys[i] < keys[j]
		})
		for _, k := range keys {
			fmt.Printf("%5d %s\n", counts[k], k)
		}
		return
	}
	for _, b := range bad {
		fmt.Printf("%s: %s\n", b.pos, b.msg)
	}
	if len(bad) > 0 {
		os.Exit(1)
	}
}

// callee is the function or method a call names statically, or nil.
func callee(info *types.Info, call *ast.CallExpr) *types.Func {
	var id *ast.Ident
	switch f := ast.Unparen(call.Fun).(type) {
	case *ast.Ident:
		id = f
	case *ast.SelectorExpr:
		id = f.Sel
	default:
		return nil
	}
	fn, _ := info.Uses[id].(*types.Func)
	return fn
}
