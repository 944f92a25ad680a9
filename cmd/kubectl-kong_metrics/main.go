// Command kubectl-kong_metrics is the kubectl plugin `kubectl kong-metrics`.
// Its doctor walks the autoscaling chain of a Service (extension file,
// opt-in, injection, sidecar, Kong's plugin, name resolution, monitor,
// Prometheus, series, custom metrics API, HPA or KEDA ScaledObject)
// through the API server with the user's kubeconfig, prints one line per
// link and names the broken one with its fix.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/common/version"
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/doctor"
)

const program = "kubectl-kong_metrics"

// Exit statuses: the chain is whole, a link is broken, the command was
// used wrongly (or could not start).
const (
	exitWhole  = 0
	exitBroken = 1
	exitUsage  = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "doctor":
		return runDoctor(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.Print(program))
		return exitWhole
	case "help", "-h", "--help":
		usage(stdout)
		return exitWhole
	}
	fmt.Fprintf(stderr, "unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `Usage: kubectl kong-metrics doctor [-n NAMESPACE] service/NAME|hpa/NAME|scaledobject/NAME [-o text|json] [--prometheus NS/SERVICE:PORT|URL]

doctor walks the autoscaling chain of a Service through the API server and
names the first broken link with its fix (docs/troubleshooting.md).
Exit status: 0 the chain is whole (idle links included), 1 a link is
broken, 2 usage. Run "kubectl kong-metrics doctor --help" for its flags.
`)
}

func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("doctor", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.StringP("output", "o", "text", "output format: text or json")
	prom := fs.String("prometheus", "", "Prometheus to ask: namespace/service:port (through the API server's Service proxy) or an http(s) URL; default: the Service of the Prometheus resource")
	record := fs.String("record", "", "also write every answer the checks decided on to this file (JSON), for a bug report")
	timeout := fs.Duration("timeout", time.Minute, "the longest the whole check may take (--request-timeout bounds each request)")
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	fs.StringVar(&loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	overrides := &clientcmd.ConfigOverrides{}
	clientcmd.BindOverrideFlags(overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
	fs.Usage = func() {
		usage(stderr)
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitWhole
		}
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "doctor takes one target: service/NAME, hpa/NAME or scaledobject/NAME")
		return exitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "-o %q: want text or json\n", *output)
		return exitUsage
	}
	if _, _, err := doctor.ParseTarget(fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, overrides)
	cfg, err := kc.ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "kubeconfig: %v\n", err)
		return exitUsage
	}
	ns, _, err := kc.Namespace()
	if err != nil {
		fmt.Fprintf(stderr, "namespace: %v\n", err)
		return exitUsage
	}
	cfg.UserAgent = program + "/" + version.Version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	a, err := doctor.Fetch(ctx, doctor.FetchOptions{Config: cfg, Namespace: ns, Target: fs.Arg(0), Prometheus: *prom})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *record != "" {
		b, err := json.MarshalIndent(a, "", "  ")
		if err == nil {
			err = os.WriteFile(*record, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "--record: %v\n", err)
			return exitUsage
		}
	}
	r := doctor.Diagnose(a)
	if *output == "json" {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	if r.ExitCode() != 0 {
		return exitBroken
	}
	return exitWhole
}
