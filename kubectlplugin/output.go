package kubectlplugin

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// checkOutput refuses an unknown -o before anything is read from the API.
func (o *Options) checkOutput() error {
	switch o.Output {
	case "", "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table, -o json or -o yaml", o.Output)
}

// print writes v as JSON or YAML, or as the table that table writes.
func (o *Options) print(v any, table func(w io.Writer)) error {
	switch o.Output {
	case "json":
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(o.Streams.Out, string(data))
		return err
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = o.Streams.Out.Write(data)
		return err
	}
	w := printers.GetNewTabWriter(o.Streams.Out)
	table(w)
	return w.Flush()
}

// row writes tab-separated cells, "-" for empty ones, as kubectl get does.
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// age renders a duration the way kubectl's AGE column does, coarsely.
func age(since time.Time, now time.Time) string {
	if since.IsZero() {
		return ""
	}
	d := now.Sub(since).Round(time.Second)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
