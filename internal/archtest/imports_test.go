package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/wamm-relay/wamm-relay/"

// allowed lists, per package directory, the project packages its non-test
// files may import (shared/style.md §3). A directory missing here fails the
// test, so a new package has to take a place in the table.
var allowed = map[string][]string{
	"event":             {},
	"config":            {},
	"wamm":              {"event"},
	"wamm/wammfake":     {},
	"store":             {"event"},
	"store/sqlite":      {"store", "event"},
	"store/postgres":    {"store", "event"},
	"store/storetest":   {"store", "event"},
	"dedup":             {"event"},
	"relay":             {"event", "wamm", "store", "internal/logx", "tracing", "relay/ui"},
	"relay/ui":          {},
	"targets":           {"event", "store", "internal/logx", "tracing"},
	"reconcile":         {"event", "wamm", "store", "tracing"},
	"app":               {"config", "dedup", "event", "reconcile", "relay", "store", "store/postgres", "store/sqlite", "targets", "wamm", "wamm/wammfake", "tracing"},
	"cmd/wamm-relay":    {"app", "config"},
	"internal/testutil": {"event", "wamm"},
	"internal/archtest": {},
	"internal/logx":     {},
	// pgcluster runs a private PostgreSQL server for fault tests and the
	// chaos soak, which stop and crash it.
	"internal/pgcluster": {},
	// tracing: the OpenTelemetry provider and the event trace identity
	// that relay, targets and reconcile share without importing each other.
	"tracing": {"event"},
	// bench runs the relay binary as a black box; its stack system
	// (stack.go) also composes the relay's HTTP server and dedup without
	// a store, to measure what a store costs.
	"bench":      {"event", "dedup", "relay"},
	"bench/soak": {"internal/pgcluster"},
	// blackout drives the real reconciler against the fake account on a
	// simulated clock.
	"bench/blackout": {"event", "reconcile", "store", "store/sqlite", "wamm", "wamm/wammfake"},
	// deploytest has only tests (and doc.go) for the deployment kit.
	"deploy/deploytest": {},
}

// testOnly packages may be imported only from _test.go files.
var testOnly = []string{"internal/testutil", "store/storetest"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type goFile struct {
	dir     string // package directory relative to the root
	path    string
	test    bool
	imports []string // project packages, relative to the module
}

func projectFiles(t *testing.T, root string) []goFile {
	t.Helper()
	var files []goFile
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		gf := goFile{dir: filepath.ToSlash(rel), path: path, test: strings.HasSuffix(path, "_test.go")}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, module) {
				gf.imports = append(gf.imports, strings.TrimPrefix(p, module))
			}
		}
		files = append(files, gf)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestImportsFollowTheLayering(t *testing.T) {
	files := projectFiles(t, repoRoot(t))
	if len(files) < 50 {
		t.Fatalf("found only %d Go files: is the test looking at the repository root?", len(files))
	}
	for _, f := range files {
		ok, known := allowed[f.dir]
		if !known {
			t.Errorf("%s: package directory %q has no row in the layering table; add one", f.path, f.dir)
			continue
		}
		for _, imp := range f.imports {
			if slices.Contains(testOnly, imp) && !f.test {
				t.Errorf("%s imports %s, which only _test.go files may import", f.path, imp)
			}
			if f.test || imp == f.dir {
				continue // tests may use any package (external test packages, fixtures)
			}
			if !slices.Contains(ok, imp) {
				t.Errorf("%s (package %s) imports %s: not allowed by the layering table in shared/style.md §3", f.path, f.dir, imp)
			}
		}
	}
}
