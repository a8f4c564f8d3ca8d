package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Setting describes one environment variable.
type Setting struct {
	Key         string // the environment variable
	Default     string // its default, empty when none
	Description string
	Secret      bool // its value is never printed
}

// Settings lists every environment variable mautic-sync reads, in the order
// of the Config struct.
func Settings() []Setting {
	var out []Setting
	walk(reflect.ValueOf(&Config{}).Elem(), func(f reflect.StructField, _ reflect.Value) {
		out = append(out, Setting{
			Key:         f.Tag.Get("env"),
			Default:     f.Tag.Get("default"),
			Description: f.Tag.Get("desc"),
			Secret:      f.Tag.Get("secret") == "true",
		})
	})
	return out
}

// Load reads the configuration from the environment and validates it. The
// error, when not nil, joins one line per problem, each naming its variable.
func Load() (Config, error) {
	cfg, err := Parse()
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Parse reads the configuration from the environment without validating it,
// so that a caller (the dev command) can fill in settings before Validate.
// It reports every unparseable variable, not only the first.
func Parse() (Config, error) {
	var cfg Config
	var errs []error
	walk(reflect.ValueOf(&cfg).Elem(), func(f reflect.StructField, v reflect.Value) {
		if err := parseField(f, v); err != nil {
			errs = append(errs, err)
		}
	})
	return cfg, errors.Join(errs...)
}

// walk calls fn for every leaf field that carries an env tag.
func walk(v reflect.Value, fn func(reflect.StructField, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("env") != "" {
			fn(f, v.Field(i))
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			walk(v.Field(i), fn)
		}
	}
}

// parseField lets envconfig parse one variable into a struct of one field,
// so that one bad value does not hide the others.
//
// A variable set to the empty string counts as unset for a setting that is
// not a string (a number, a duration, a boolean, a list): manifests often
// render a missing value as "" (a Kubernetes downward-API label that does
// not exist, an unset Helm value), and its default is meant then.
func parseField(f reflect.StructField, dst reflect.Value) error {
	key := f.Tag.Get("env")
	lookup := key
	if v, ok := os.LookupEnv(key); ok && strings.TrimSpace(v) == "" && f.Type.Kind() != reflect.String {
		lookup = unsetPrefix + "_" + key // a name nobody sets: the default applies
	}
	tag := fmt.Sprintf(`envconfig:%q`, lookup)
	if d, ok := f.Tag.Lookup("default"); ok {
		tag += fmt.Sprintf(` default:%q`, d)
	}
	one := reflect.New(reflect.StructOf([]reflect.StructField{{
		Name: "V",
		Type: f.Type,
		Tag:  reflect.StructTag(tag),
	}}))
	if err := envconfig.Process("", one.Interface()); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			value := fmt.Sprintf("%q", pe.Value)
			if f.Tag.Get("secret") == "true" {
				value = "(value hidden)"
			}
			return fmt.Errorf("%s=%s: not a valid %s", key, value, typeWord(f.Type))
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	dst.Set(one.Elem().Field(0))
	return nil
}

// unsetPrefix makes a variable name that is never set.
const unsetPrefix = "MAUTIC_SYNC_UNSET_BY_EMPTY_VALUE"

func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration (e.g. 500ms, 30s, 2m)"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "whole number"
	case t.Kind() == reflect.Slice:
		return "comma-separated list"
	default:
		return strings.ToLower(t.Kind().String())
	}
}
