// Command dashboard-png draws what the Grafana dashboard of
// manifests/dashboards shows, from real data, into a PNG for the README
// (make dashboard-png): it starts the Kong simulator, the sidecar and
// Prometheus 3 (as the tests do), sends a scripted traffic through the
// simulator (the tutorial's command Service slow, then fast, so that the
// 60 s average crosses the HPA's target), runs every panel's query through
// Prometheus' HTTP API with the dashboard's variables expanded, and draws
// each panel where the dashboard puts it, with gonum.org/v1/plot. Grafana
// itself is not involved.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/manifests/test/dashboard"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("dashboard-png", flag.ContinueOnError)
	root := harness.RepoRoot()
	file := fs.String("dashboard", filepath.Join(root, "manifests", "dashboards", "kong-metrics-sidecar.json"), "the dashboard's JSON")
	out := fs.String("out", filepath.Join(root, "docs", "images", "dashboard.png"), "the PNG to write")
	stage := fs.Duration("stage", 80*time.Second, "length of each of the three traffic stages")
	step := fs.Duration("step", 5*time.Second, "the range queries' step")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := drawDashboard(ctx, logger, *file, *out, *stage, *step); err != nil {
		logger.Error("Drawing the dashboard failed", "err", err)
		return 1
	}
	return 0
}

// scrape is the stack's scrape interval.
const scrape = time.Second

func drawDashboard(ctx context.Context, logger *slog.Logger, file, out string, stage, step time.Duration) error {
	d, err := dashboard.Load(file)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dashboard-png-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logger.Info("Starting the simulator, the sidecar and Prometheus")
	stack, err := dashboard.StartStack(ctx, dir, scrape)
	if err != nil {
		return err
	}
	defer stack.Stop()

	start := time.Now()
	if err := traffic(ctx, logger, stack, stage); err != nil {
		return fmt.Errorf("traffic: %w\n%s", err, stack.Output())
	}
	end := time.Now()

	values := map[string]dashboard.Value{
		"namespace": dashboard.One("kong"),
		"service":   dashboard.One("command"),
		"target_ms": dashboard.One("40"),
		"job":       {All: true},
	}
	builtins := dashboard.RangeBuiltins(step, scrape, end.Sub(start))
	img := vgimg.NewWith(vgimg.UseWH(16*vg.Inch, 12*vg.Inch), vgimg.UseDPI(100))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Path())
	rows := rowsOf(d)
	for _, p := range d.Panels {
		c := cell(dc, p, rows)
		if p.Type == "row" {
			drawRow(c, p.Title)
			continue
		}
		pl, err := panelPlot(ctx, d, stack.Prometheus, p, values, builtins, start, end, step)
		if err != nil {
			return fmt.Errorf("panel %q: %w", p.Title, err)
		}
		pl.Draw(c)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	logger.Info("Wrote the picture", "path", out, "from", start.UTC().Format(time.RFC3339), "to", end.UTC().Format(time.RFC3339))
	return nil
}

// traffic runs three stages: the command Service at 20 ms, at 100 ms (the
// tutorial's sleep 0.1, above the HPA's 40 ms target), at 30 ms again;
// billing at 30 ms throughout. One request in twenty to each asks for an
// invalid command, answered 400.
func traffic(ctx context.Context, logger *slog.Logger, stack *dashboard.Stack, stage time.Duration) error {
	bgCtx, stopBg := context.WithCancel(ctx)
	bg := make(chan error, 1)
	go func() {
		_, err := stack.Traffic(bgCtx, dashboard.Phase{Service: "billing", Sleep: 30 * time.Millisecond, Clients: 2, BadEvery: 20})
		bg <- err
	}()
	var errs []error
	for _, sleep := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 30 * time.Millisecond} {
		logger.Info("Traffic stage", "service", "command", "sleep", sleep, "for", stage)
		stageCtx, cancel := context.WithTimeout(ctx, stage)
		_, err := stack.Traffic(stageCtx, dashboard.Phase{Service: "command", Sleep: sleep, Clients: 4, BadEvery: 20})
		cancel()
		if err != nil {
			errs = append(errs, err)
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	stopBg()
	errs = append(errs, <-bg, ctx.Err())
	return errors.Join(errs...)
}

// rowsOf is the height of the dashboard in grid rows.
func rowsOf(d *dashboard.Dashboard) uint32 {
	var rows uint32
	for _, p := range d.Panels {
		rows = max(rows, p.Y+p.H)
	}
	return rows
}

// cell is the part of the canvas where Grafana puts the panel: 24 columns,
// rows of equal height, y growing downwards.
func cell(dc draw.Canvas, p dashboard.Panel, rows uint32) draw.Canvas {
	w, h := dc.Max.X-dc.Min.X, dc.Max.Y-dc.Min.Y
	colW, rowH := w/24, h/vg.Length(rows)
	pad := vg.Points(4)
	left := dc.Min.X + vg.Length(p.X)*colW
	right := dc.Max.X - (w - vg.Length(p.X+p.W)*colW)
	top := dc.Max.Y - vg.Length(p.Y)*rowH
	bottom := top - vg.Length(p.H)*rowH
	return draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: left + pad, Y: bottom + pad},
		Max: vg.Point{X: right - pad, Y: top - pad},
	}}
}

// drawRow writes a row's title.
func drawRow(c draw.Canvas, title string) {
	sty := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(13)), Handler: plot.DefaultTextHandler}
	c.FillText(sty, vg.Point{X: c.Min.X, Y: c.Min.Y + (c.Max.Y-c.Min.Y)/4}, title)
}

// unitLabels name Grafana's units on the y axis.
var unitLabels = map[string]string{"ms": "ms", "s": "s", "reqps": "req/s", "Bps": "bytes/s", "short": ""}

// panelPlot runs the panel's queries over [start, end] and draws their
// series with their legends.
func panelPlot(ctx context.Context, d *dashboard.Dashboard, prom dashboard.Prometheus, p dashboard.Panel,
	values map[string]dashboard.Value, builtins map[string]string, start, end time.Time, step time.Duration) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Title.TextStyle.Font.Size = vg.Points(11)
	pl.X.Tick.Marker = plot.TimeTicks{Format: "15:04:05"}
	pl.X.Tick.Label.Font.Size = vg.Points(8)
	pl.Y.Tick.Label.Font.Size = vg.Points(8)
	pl.Y.Label.Text = unitLabels[p.Unit]
	pl.Y.Label.TextStyle.Font.Size = vg.Points(8)
	pl.Y.Min = 0
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Legend.TextStyle.Font.Size = vg.Points(7)
	pl.Legend.ThumbnailWidth = vg.Points(12)
	pl.Add(plotter.NewGrid())
	n := 0
	for _, tg := range p.Targets {
		expr, err := d.Expand(tg.Expr, values, builtins)
		if err != nil {
			return nil, err
		}
		series, err := prom.QueryRange(ctx, expr, start, end, step)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(series, func(a, b dashboard.Series) int {
			return strings.Compare(tg.LegendFor(a.Metric), tg.LegendFor(b.Metric))
		})
		for _, s := range series {
			var xys plotter.XYs
			for _, pt := range s.Points {
				if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
					continue
				}
				xys = append(xys, plotter.XY{X: float64(pt.T.Unix()), Y: pt.V})
			}
			if len(xys) == 0 {
				continue
			}
			line, err := plotter.NewLine(xys)
			if err != nil {
				return nil, err
			}
			name := tg.LegendFor(s.Metric)
			line.Color = plotutil.Color(n)
			line.Width = vg.Points(1.2)
			if name == "HPA target" {
				line.Color = color.RGBA{R: 0xd4, G: 0x2a, B: 0x2a, A: 0xff}
				line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
				line.Width = vg.Points(1.6)
			}
			n++
			pl.Add(line)
			pl.Legend.Add(name, line)
		}
	}
	if n == 0 {
		return nil, errors.New("no series to draw")
	}
	pl.X.Min, pl.X.Max = float64(start.Unix()), float64(end.Unix())
	if pl.Y.Max <= pl.Y.Min {
		pl.Y.Max = pl.Y.Min + 1 // a flat zero: give the axis some height
	}
	return pl, nil
}
