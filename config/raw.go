package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Integer and boolean keys may be written quoted, so that they can come from
// the environment (workers = "${WORKERS}"), yet Config keeps plain int and
// bool fields. The file is therefore decoded into a raw mirror of Config,
// built by reflection, in which every int and bool field is a rawScalar that
// keeps what the file wrote; resolve then copies the mirror into a Config,
// expanding and parsing the quoted scalars. Everything else (strings,
// Durations, slices, maps, table structure, unknown keys, error positions)
// decodes exactly as it would into Config.

// rawScalar is an integer or boolean key as the file wrote it: a bare TOML
// value in v, or a quoted string in text that resolve expands and parses.
type rawScalar[T int64 | bool | float64] struct {
	v      T
	text   string
	quoted bool
}

// UnmarshalTOML takes the decoded TOML value. The decoder calls it for bare
// and quoted values alike and reports its error with the line and key.
func (r *rawScalar[T]) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case T:
		*r = rawScalar[T]{v: d}
	case string:
		*r = rawScalar[T]{text: d, quoted: true}
	case int64:
		// A float key written as an integer (sample_ratio = 1).
		if f, ok := any(&r.v).(*float64); ok {
			*r = rawScalar[T]{}
			*f = float64(d)
			return nil
		}
		return fmt.Errorf("incompatible types: TOML value has type int64; destination has type %s", scalarName[T]())
	default:
		return fmt.Errorf("incompatible types: TOML value has type %s; destination has type %s",
			strings.ReplaceAll(fmt.Sprintf("%T", data), "interface {}", "any"), scalarName[T]())
	}
	return nil
}

func scalarName[T int64 | bool | float64]() string {
	var zero T
	switch any(zero).(type) {
	case bool:
		return "boolean"
	case float64:
		return "float"
	}
	return "integer"
}

var (
	rawIntType  = reflect.TypeFor[rawScalar[int64]]()
	rawBoolType = reflect.TypeFor[rawScalar[bool]]()
	// rawFloatType: sample_ratio of [tracing].
	rawFloatType = reflect.TypeFor[rawScalar[float64]]()
)

// rawSchema is the mirror of Config and, for decode errors, the names of the
// types it stands in for.
type rawSchema struct {
	typ   reflect.Type
	names []string // mirror type string, Config type string, ...; longest first
}

var rawConfig = sync.OnceValue(func() rawSchema {
	names := make(map[string]string)
	typ := rawType(reflect.TypeFor[Config](), names)
	var s rawSchema
	s.typ = typ
	// Longest first: a mirror's string contains those of the structs in it.
	for _, raw := range slices.SortedFunc(maps.Keys(names), func(a, b string) int { return len(b) - len(a) }) {
		s.names = append(s.names, raw, names[raw])
	}
	return s
})

// rawType is t with every int and bool replaced by a rawScalar; a type that
// holds none comes back unchanged. names maps each new struct type's string
// to t's.
func rawType(t reflect.Type, names map[string]string) reflect.Type {
	if t == durationType {
		return t
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rawIntType
	case reflect.Bool:
		return rawBoolType
	case reflect.Float64:
		return rawFloatType
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Pointer, reflect.Interface:
		// No such field exists; adding one means deciding how it is quoted.
		panic(fmt.Sprintf("config: no raw form for %s", t))
	case reflect.Struct:
		fields := make([]reflect.StructField, t.NumField())
		changed := false
		for i := range fields {
			f := t.Field(i)
			fields[i] = reflect.StructField{Name: f.Name, Type: rawType(f.Type, names), Tag: f.Tag}
			changed = changed || fields[i].Type != f.Type
		}
		if !changed {
			return t
		}
		r := reflect.StructOf(fields)
		names[r.String()] = t.String()
		return r
	case reflect.Slice:
		if e := rawType(t.Elem(), names); e != t.Elem() {
			return reflect.SliceOf(e)
		}
	case reflect.Map:
		if rawType(t.Elem(), names) != t.Elem() {
			panic(fmt.Sprintf("config: no raw form for %s", t))
		}
	}
	return t
}

// newRaw returns a pointer to a mirror of c.
func newRaw(c Config) reflect.Value {
	p := reflect.New(rawConfig().typ)
	toRaw(p.Elem(), reflect.ValueOf(c))
	return p
}

// toRaw copies src (a Config value) into dst (its mirror).
func toRaw(dst, src reflect.Value) {
	switch r := dst.Addr().Interface().(type) {
	case *rawScalar[int64]:
		*r = rawScalar[int64]{v: src.Int()}
		return
	case *rawScalar[bool]:
		*r = rawScalar[bool]{v: src.Bool()}
		return
	case *rawScalar[float64]:
		*r = rawScalar[float64]{v: src.Float()}
		return
	}
	if dst.Type() == src.Type() {
		dst.Set(src)
		return
	}
	switch src.Kind() {
	case reflect.Struct:
		for i := range src.NumField() {
			toRaw(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			toRaw(dst.Index(i), src.Index(i))
		}
	default:
		panic(fmt.Sprintf("config: cannot copy %s into %s", src.Type(), dst.Type()))
	}
}

// resolve copies src (a mirror value) into dst (the Config value it mirrors),
// expanding ${NAME} everywhere (see expandValue) and parsing quoted scalars.
// key is dst's TOML key, for errors.
func resolve(p *problems, dst, src reflect.Value, key string, lookupEnv func(string) (string, bool)) {
	switch r := src.Interface().(type) {
	case rawScalar[int64]:
		resolveInt(p, dst, r, key, lookupEnv)
		return
	case rawScalar[bool]:
		resolveBool(p, dst, r, key, lookupEnv)
		return
	case rawScalar[float64]:
		resolveFloat(p, dst, r, key, lookupEnv)
		return
	}
	if dst.Type() == src.Type() {
		dst.Set(src)
		expandValue(p, dst, key, lookupEnv)
		return
	}
	switch src.Kind() {
	case reflect.Struct:
		t := dst.Type()
		for i := range t.NumField() {
			resolve(p, dst.Field(i), src.Field(i), fieldKey(key, t.Field(i)), lookupEnv)
		}
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			resolve(p, dst.Index(i), src.Index(i), fmt.Sprintf("%s[%d]", key, i), lookupEnv)
		}
	default:
		panic(fmt.Sprintf("config: cannot copy %s into %s", src.Type(), dst.Type()))
	}
}

func resolveInt(p *problems, dst reflect.Value, r rawScalar[int64], key string, lookupEnv func(string) (string, bool)) {
	if !r.quoted {
		if dst.OverflowInt(r.v) {
			p.add(key, strconv.FormatInt(r.v, 10), ErrOutOfRange, "does not fit in a %d-bit integer", dst.Type().Bits())
			return
		}
		dst.SetInt(r.v)
		return
	}
	s := strings.TrimSpace(expandString(r.text, lookupEnv))
	n, err := strconv.ParseInt(s, 10, dst.Type().Bits())
	switch {
	case errors.Is(err, strconv.ErrRange):
		p.add(key, s, ErrOutOfRange, "does not fit in a %d-bit integer%s", dst.Type().Bits(), expandedFrom(r.text))
	case err != nil:
		p.add(key, s, ErrInvalid, "must be an integer%s", expandedFrom(r.text))
	default:
		dst.SetInt(n)
	}
}

func resolveBool(p *problems, dst reflect.Value, r rawScalar[bool], key string, lookupEnv func(string) (string, bool)) {
	if !r.quoted {
		dst.SetBool(r.v)
		return
	}
	s := strings.TrimSpace(expandString(r.text, lookupEnv))
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.add(key, s, ErrInvalid, "must be true or false%s", expandedFrom(r.text))
		return
	}
	dst.SetBool(b)
}

func resolveFloat(p *problems, dst reflect.Value, r rawScalar[float64], key string, lookupEnv func(string) (string, bool)) {
	if !r.quoted {
		dst.SetFloat(r.v)
		return
	}
	s := strings.TrimSpace(expandString(r.text, lookupEnv))
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.add(key, s, ErrInvalid, "must be a number%s", expandedFrom(r.text))
		return
	}
	dst.SetFloat(f)
}

// expandedFrom names the references a bad quoted scalar was expanded from;
// no scalar key is a secret, so showing the result is safe.
func expandedFrom(text string) string {
	if !hasRef(text) {
		return ""
	}
	return fmt.Sprintf(" (expanded from %q)", text)
}

// rawTypeNames rewrites the mirror's struct types in a decode error ("type
// mismatch for struct { Listen string ... }") as the Config types they stand
// in for ("config.Server").
func rawTypeNames(err error) error {
	msg := err.Error()
	names := rawConfig().names
	for i := 0; i < len(names); i += 2 {
		msg = strings.ReplaceAll(msg, names[i], names[i+1])
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}
