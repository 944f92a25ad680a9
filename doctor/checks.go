package doctor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/config"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// The links of the chain, in the order Diagnose walks them.
const (
	LinkExtension     = "extension"
	LinkOptIn         = "opt-in"
	LinkInjection     = "injection"
	LinkSidecar       = "sidecar"
	LinkKongPlugin    = "kong-plugin"
	LinkResolution    = "resolution"
	LinkMonitor       = "monitor"
	LinkPrometheus    = "prometheus"
	LinkSeries        = "series"
	LinkCustomMetrics = "custom-metrics"
	LinkHPA           = "hpa"
	LinkScaledObject  = "scaledobject"
)

// InjectLabel is the opt-in label the webhook and the sidecar's Service select.
const InjectLabel = "kong-metrics-sidecar.io/inject"

// kongFlags names Kong's prometheus plugin flag for each extension flag.
var kongFlags = map[relabel.Metrics]string{
	relabel.Latency:        "latency_metrics",
	relabel.StatusCode:     "status_code_metrics",
	relabel.Bandwidth:      "bandwidth_metrics",
	relabel.UpstreamHealth: "upstream_health_metrics",
}

// chain carries what one link found to the links after it.
type chain struct {
	a        *Answers
	svc      relabel.Service
	sel      relabel.Selection
	families relabel.Metrics
	// idle: Kong has proxied nothing to the Service yet; later links
	// that find no data say so instead of calling it broken.
	idle bool
	// pools are the scrape pools of the monitors that select the sidecars.
	pools []string
	// served are the custom metrics the API serves for Services.
	served []string
}

// sidecarPods are the pods with the sidecar.
func (c *chain) sidecarPods() []PodAnswer {
	var pods []PodAnswer
	for _, p := range c.a.Pods {
		if p.Sidecar {
			pods = append(pods, p)
		}
	}
	return pods
}

func ok(name, detail string) Link   { return Link{Name: name, Status: OK, Detail: detail} }
func idle(name, detail string) Link { return Link{Name: name, Status: Idle, Detail: detail} }
func broken(name, detail, fix string) Link {
	return Link{Name: name, Status: Broken, Detail: detail, Fix: fix}
}

func checkExtension(c *chain) Link {
	e := c.a.Extension
	where := "ConfigMap " + c.a.Namespace + "/" + e.ConfigMap
	switch {
	case e.Error != "":
		return broken(LinkExtension, "cannot read "+where+": "+e.Error, "check that your user may get ConfigMaps in "+c.a.Namespace)
	case !e.Found:
		return broken(LinkExtension, where+" does not exist: the sidecars run with no extension file and keep nothing",
			"create it with the DataPlaneMetricsExtension as config.yaml (manifests/examples), or name yours with the pod annotation kong-metrics-sidecar.io/config")
	case !e.HasKey:
		return broken(LinkExtension, where+" has no config.yaml", "put the DataPlaneMetricsExtension under the key config.yaml")
	}
	ext, err := config.ParseExtension([]byte(e.Data))
	if err != nil {
		return broken(LinkExtension, where+": config.yaml is invalid (the sidecars keep their last good one): "+err.Error(), "fix the fields named; kubectl kong-metrics doctor checks again")
	}
	c.sel = ext.Selection
	fams, selected := ext.Selection.Services[c.svc]
	if !selected {
		var names []string
		for s := range ext.Selection.Services {
			names = append(names, s.String())
		}
		slices.Sort(names)
		sel := "no Service"
		if len(names) > 0 {
			sel = strings.Join(names, ", ")
		}
		return broken(LinkExtension, fmt.Sprintf("%s selects %s, not %s: its series are dropped as unselected", where, sel, c.svc),
			fmt.Sprintf("add `- name: %s` under spec.serviceSelector.matchNames of a DataPlaneMetricsExtension in namespace %s", c.svc.Name, c.svc.Namespace))
	}
	if fams == 0 {
		return broken(LinkExtension, where+" selects "+c.svc.String()+" with every flag off", "set spec.config.latency: true (the tutorial's metric)")
	}
	c.families = fams
	return ok(LinkExtension, fmt.Sprintf("%s selects %s: %s", where, c.svc, fams))
}

func checkOptIn(c *chain) Link {
	var opted, notOpted []string
	for _, p := range c.a.Pods {
		switch {
		case p.OptedIn:
			opted = append(opted, p.Name)
		case p.Kong:
			notOpted = append(notOpted, p.Name)
		}
	}
	if len(notOpted) > 0 {
		return broken(LinkOptIn, fmt.Sprintf("Kong pod(s) %s lack the label %s=\"true\": not injected, and the sidecar Service does not select them", strings.Join(notOpted, ", "), InjectLabel),
			"put the label on the pod template (the DataPlane's or the Deployment's), not on a pod; new pods get the sidecar")
	}
	if len(opted) == 0 {
		return broken(LinkOptIn, "no pod in namespace "+c.a.Namespace+" runs Kong with the label "+InjectLabel+"=\"true\"",
			"run the doctor in the namespace of the Kong data plane (-n), and label its pod template")
	}
	return ok(LinkOptIn, fmt.Sprintf("%d pod(s) opted in: %s", len(opted), strings.Join(opted, ", ")))
}

func checkInjection(c *chain) Link {
	var missing []string
	for _, p := range c.a.Pods {
		if p.OptedIn && !p.Sidecar {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) == 0 {
		return ok(LinkInjection, fmt.Sprintf("every opted-in pod has the sidecar (%d)", len(c.sidecarPods())))
	}
	in := c.a.Injector
	what := fmt.Sprintf("pod(s) %s opted in but have no sidecar", strings.Join(missing, ", "))
	fix := "once the injector is ready, delete the pod(s): their controller recreates them and the webhook injects them"
	ns := strings.SplitN(in.Service, "/", 2)[0]
	if p := in.Probe; in.Webhook && p != nil && p.Error == "" {
		switch {
		case p.Injected:
			return broken(LinkInjection, what+": a dry run of "+p.Pod+" is injected now, so the injector was down or skipped them when they were created", "delete the pod(s): their controller recreates them and the webhook injects them")
		case len(p.Warnings) > 0:
			return broken(LinkInjection, what+": the injector skips them; a dry run of "+p.Pod+" warns: "+strings.Join(p.Warnings, " | ")+
				" (for pods a ReplicaSet creates this warning reaches no one; the injector's log has it too: opted-in pod left without the sidecar)",
				"fix what the warning names on the pod template, then "+fix)
		default:
			return broken(LinkInjection, fmt.Sprintf("%s: a dry run of %s comes back without the sidecar and without a warning: the API server could not call the injector (Service %s) and, failurePolicy %s, let the pod in without it. The injector is down or unreachable", what, p.Pod, in.Service, in.FailurePolicy),
				"get the injector ready (kubectl -n "+ns+" get pods; its Service's endpoints), then "+fix)
		}
	}
	switch {
	case !in.Webhook:
		return broken(LinkInjection, what+": no MutatingWebhookConfiguration calls inject.kong-metrics-sidecar.io", "install the injector (manifests/injector or the chart), then "+fix)
	case in.ReadyEndpoints == 0:
		return broken(LinkInjection, fmt.Sprintf("%s: the injector's Service %s has no ready endpoint, so the API server could not call it and (failurePolicy %s) created the pods without it", what, in.Service, in.FailurePolicy),
			"get the injector ready (kubectl -n "+ns+" get pods), then "+fix)
	}
	detail := what + ": the webhook is configured and the injector is reachable, so it skipped them; it says why in its log (for pods a ReplicaSet creates, the admission warning reaches no one)"
	if len(in.Log) > 0 {
		detail += "; it logged: " + strings.Join(in.Log, " | ")
	}
	return broken(LinkInjection, detail, "fix what the log names (kubectl logs -n "+ns+" deploy/kong-metrics-injector | grep 'left without the sidecar'), then "+fix)
}

// sample is one line of the text format: its name, labels and value.
type sample struct {
	name   string
	labels string
	value  float64
}

// samples reads the lines of page whose metric name starts with prefix.
func samples(page, prefix string) []sample {
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		labels := ""
		if strings.HasPrefix(rest, "{") {
			if j := strings.LastIndex(rest, "}"); j >= 0 {
				labels, rest = rest[1:j], rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, sample{name: name, labels: labels, value: v})
	}
	return out
}

// gauge is the value of the one series named name on page; ok is false
// when it is absent.
func gauge(page, name string) (float64, bool) {
	for _, s := range samples(page, name) {
		if s.name == name {
			return s.value, true
		}
	}
	return 0, false
}

func checkSidecar(c *chain) Link {
	var problems []string
	fix := ""
	pods := c.sidecarPods()
	for _, p := range pods {
		m := p.Metrics
		switch {
		case m == nil || m.Error != "":
			e := "not fetched"
			if m != nil {
				e = m.Error
			}
			problems = append(problems, fmt.Sprintf("the sidecar of %s does not answer on port %d: %s", p.Name, p.SidecarPort, e))
			fix = "kubectl logs -n " + c.a.Namespace + " " + p.Name + " -c kong-metrics-sidecar; is the pod running?"
			continue
		}
		if up, found := gauge(m.Body, "kong_metrics_sidecar_upstream_up"); !found || up != 1 {
			reasons := []string{}
			for _, s := range samples(m.Body, "kong_metrics_sidecar_upstream_errors_total") {
				if s.value > 0 {
					reasons = append(reasons, s.labels)
				}
			}
			problems = append(problems, fmt.Sprintf("the sidecar of %s cannot read Kong's /metrics (kong_metrics_sidecar_upstream_up 0; errors %s)", p.Name, strings.Join(reasons, " ")))
			fix = "is Kong's status listener up (KONG_STATUS_LISTEN) on the port the sidecar reads (SIDECAR_UPSTREAM_URL)? kubectl logs " + p.Name + " -c kong-metrics-sidecar"
		}
		if okr, found := gauge(m.Body, "kong_metrics_sidecar_config_last_reload_successful"); !found || okr != 1 {
			problems = append(problems, fmt.Sprintf("the sidecar of %s rejected the extension file (kong_metrics_sidecar_config_last_reload_successful 0) and runs on its last good one", p.Name))
			fix = "kubectl logs " + p.Name + " -c kong-metrics-sidecar names the bad field; the extension link shows the file as the API server has it"
		}
	}
	if len(problems) > 0 {
		return broken(LinkSidecar, strings.Join(problems, "; "), fix)
	}
	return ok(LinkSidecar, fmt.Sprintf("%d sidecar(s) answer, read Kong (upstream_up 1) and use a valid extension", len(pods)))
}

// keyedFamilies counts the series of page by the Kong families an
// extension can keep.
func keyedFamilies(page string) map[string]int {
	n := map[string]int{}
	for line := range strings.SplitSeq(page, "\n") {
		if _, _, ok := relabel.SeriesKey([]byte(line)); ok {
			name := line[:strings.IndexByte(line, '{')]
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				name = strings.TrimSuffix(name, suf)
			}
			n[name]++
		}
	}
	return n
}

func checkKongPlugin(c *chain) Link {
	var problems, idlePods []string
	samePods := podGroups{}
	for _, p := range c.sidecarPods() {
		if p.KongPage == nil || p.KongPage.Error != "" {
			e := "not fetched"
			if p.KongPage != nil {
				e = p.KongPage.Error
			}
			problems = append(problems, fmt.Sprintf("Kong's page of %s (/metrics/kong) could not be read: %s", p.Name, e))
			continue
		}
		have := keyedFamilies(p.KongPage.Body)
		if len(have) == 0 {
			idlePods = append(idlePods, p.Name)
			continue
		}
		for _, f := range relabel.Flags {
			if c.families&f == 0 {
				continue
			}
			found := false
			for _, name := range relabel.FamilyNames(f) {
				found = found || have[name] > 0
			}
			if !found {
				var others []string
				for name := range have {
					others = append(others, name)
				}
				slices.Sort(others)
				problems = append(problems, fmt.Sprintf("Kong in %s writes per-service series (%s) but none of %s: the prometheus plugin's %s is off",
					p.Name, strings.Join(others, ", "), strings.Join(relabel.FamilyNames(f), ", "), kongFlags[f]))
				samePods.add(problems[len(problems)-1], p.Name)
			}
		}
	}
	if len(problems) > 0 {
		return broken(LinkKongPlugin, samePods.join(problems),
			"turn the flag on in Kong's prometheus plugin (the KongPlugin's config, manifests/examples/kongplugin.yaml; with Kong Operator, the DataPlaneMetricsExtension's spec.config)")
	}
	if n := len(c.sidecarPods()); n > 0 && len(idlePods) == n {
		c.idle = true
		return idle(LinkKongPlugin, "Kong has proxied no request to any service yet (no per-service series on /metrics/kong), so its plugin flags cannot be seen: idle, not a fault; send one request and run the doctor again")
	}
	return ok(LinkKongPlugin, fmt.Sprintf("Kong writes the families the extension enables (%s)", strings.Join(relabel.FamilyNames(c.families), ", ")))
}

// kept counts the series of page labelled with svc by the sidecar.
func kept(page string, svc relabel.Service) int {
	n := 0
	want := fmt.Sprintf(`exported_namespace=%q`, svc.Namespace)
	wantSvc := fmt.Sprintf(`exported_service=%q`, svc.Name)
	for _, s := range samples(page, "kong_") {
		if strings.Contains(s.labels, want) && strings.Contains(s.labels, wantSvc) {
			n++
		}
	}
	return n
}

func checkResolution(c *chain) Link {
	rw := relabel.New(c.sel)
	var problems, okPods, otherPods []string
	samePods := podGroups{}
	for _, p := range c.sidecarPods() {
		if p.Metrics == nil || p.KongPage == nil {
			continue
		}
		if n := kept(p.Metrics.Body, c.svc); n > 0 {
			okPods = append(okPods, fmt.Sprintf("%s (%d series)", p.Name, n))
			continue
		}
		unresolvedCount, _ := gauge(p.Metrics.Body, "kong_metrics_sidecar_unresolved_kong_services")
		var unresolved, elsewhere []string
		seen := map[string]bool{}
		for line := range strings.SplitSeq(p.KongPage.Body, "\n") {
			name, upstream, found := relabel.SeriesKey([]byte(line))
			if !found || seen[name] {
				continue
			}
			seen[name] = true
			svc, _, drop, resolved := rw.Resolve(name, upstream)
			switch {
			case resolved:
				elsewhere = append(elsewhere, fmt.Sprintf("%q → %s", name, svc))
			case drop == relabel.DropMultiBackend:
				unresolved = append(unresolved, fmt.Sprintf("%q (a rule with several backends: its series are dropped, the share of each Service is unknown)", name))
			case unresolvedCount > 0:
				why := relabel.ExplainUnresolved(name)
				unresolved = append(unresolved, fmt.Sprintf("%q (%s: %s)", name, why.Reason, why.Fix))
			default:
				// The sidecar's route mapping or the Admin API resolves
				// it; the doctor cannot see to what.
				elsewhere = append(elsewhere, fmt.Sprintf("%q → (route mapping or Admin API)", name))
			}
		}
		slices.Sort(unresolved)
		slices.Sort(elsewhere)
		switch {
		case len(unresolved) > 0:
			problems = append(problems, fmt.Sprintf("the sidecar of %s resolves %g Kong service name(s) to no Service: %s", p.Name, unresolvedCount, strings.Join(unresolved, "; ")))
			samePods.add(problems[len(problems)-1], p.Name)
		case len(seen) == 0:
			// Kong has proxied nothing through this pod yet.
		default:
			otherPods = append(otherPods, fmt.Sprintf("%s (Kong's names: %s)", p.Name, strings.Join(elsewhere, ", ")))
		}
	}
	switch {
	case len(problems) > 0:
		return broken(LinkResolution, samePods.join(problems), "the fix named for each name; a route's rule name needs the injector's route mapping for its namespace")
	case len(okPods) > 0:
		return ok(LinkResolution, fmt.Sprintf("Kong's names resolve to %s; the sidecars keep its series: %s", c.svc, strings.Join(okPods, ", ")))
	case len(otherPods) > 0:
		c.idle = true
		return idle(LinkResolution, fmt.Sprintf("no request to %s through these pods yet; Kong's names resolve to other Services: %s. Idle, not a fault, unless traffic to %s goes through another Kong", c.svc, strings.Join(otherPods, "; "), c.svc.Name))
	}
	c.idle = true
	return idle(LinkResolution, "Kong has proxied no request yet: idle, not a fault")
}

// matches reports whether sel selects labels; nil selects nothing.
func (sel *LabelSelector) matches(labels map[string]string) bool {
	if sel == nil {
		return false
	}
	for k, v := range sel.MatchLabels {
		if have, ok := labels[k]; !ok || have != v {
			return false
		}
	}
	for _, r := range sel.MatchExpressions {
		v, has := labels[r.Key]
		switch r.Operator {
		case "In":
			if !has || !slices.Contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if has && slices.Contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (sel *LabelSelector) String() string {
	if sel == nil {
		return "nothing"
	}
	var parts []string
	for k, v := range sel.MatchLabels {
		parts = append(parts, k+"="+v)
	}
	for _, r := range sel.MatchExpressions {
		parts = append(parts, fmt.Sprintf("%s %s %v", r.Key, r.Operator, r.Values))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "everything"
	}
	return strings.Join(parts, ",")
}

// coversNamespace reports whether a monitor's namespaceSelector covers ns.
func (m *MonitorAnswer) coversNamespace(ns string) bool {
	if m.AnyNamespace {
		return true
	}
	if len(m.MatchNames) == 0 {
		return m.Namespace == ns
	}
	return slices.Contains(m.MatchNames, ns)
}

// selectedBy names the Prometheus resources that select m.
func (c *chain) selectedBy(m *MonitorAnswer) []string {
	var names []string
	for _, p := range c.a.Prometheuses {
		sel, nsSel := p.ServiceMonitorSelector, p.ServiceMonitorNamespaceSelector
		if m.Kind == "PodMonitor" {
			sel, nsSel = p.PodMonitorSelector, p.PodMonitorNamespaceSelector
		}
		inNS := m.Namespace == p.Namespace
		if nsSel != nil {
			inNS = nsSel.matches(c.a.NamespaceLabels[m.Namespace])
		}
		if inNS && sel.matches(m.Labels) {
			names = append(names, p.Namespace+"/"+p.Name)
		}
	}
	return names
}

// subset reports whether every pair of sel is in labels (a Service's selector).
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkMonitor(c *chain) Link {
	pods := c.sidecarPods()
	if len(pods) == 0 {
		return broken(LinkMonitor, "no sidecar to scrape", "see the links above")
	}
	var why []string
	var found []string
	for i := range c.a.Monitors {
		m := &c.a.Monitors[i]
		id := m.Kind + " " + m.Namespace + "/" + m.Name
		if !m.coversNamespace(c.a.Namespace) {
			continue
		}
		var reached []PodAnswer
		var via string
		portIndex := -1
		switch m.Kind {
		case "ServiceMonitor":
			var svcs []string
			for _, s := range c.a.Services {
				if !(&m.Selector).matches(s.Labels) {
					continue
				}
				svcs = append(svcs, s.Name)
				var sel []PodAnswer
				for _, p := range pods {
					if subset(s.Selector, p.Labels) {
						sel = append(sel, p)
					}
				}
				if len(sel) == 0 {
					why = append(why, fmt.Sprintf("%s selects Service %s, which selects no sidecar pod (its selector %v)", id, s.Name, s.Selector))
					continue
				}
				for pi, port := range m.Ports {
					for _, sp := range s.Ports {
						if sp.Name == port && (sp.TargetPort == strconv.Itoa(sel[0].SidecarPort) || sp.TargetPort == sel[0].SidecarPortName) {
							portIndex = pi
						}
					}
				}
				if portIndex < 0 {
					why = append(why, fmt.Sprintf("%s selects Service %s, but none of its endpoints' ports %v is a port of it with the sidecar's targetPort %d", id, s.Name, m.Ports, sel[0].SidecarPort))
					continue
				}
				reached, via = sel, "Service "+s.Name
				break
			}
			if len(svcs) == 0 {
				why = append(why, fmt.Sprintf("%s selects Services with %s; no Service in %s has those labels", id, m.Selector.String(), c.a.Namespace))
			}
		case "PodMonitor":
			for _, p := range pods {
				if (&m.Selector).matches(p.Labels) {
					reached = append(reached, p)
				}
			}
			if len(reached) == 0 {
				why = append(why, fmt.Sprintf("%s selects pods with %s; no sidecar pod has those labels", id, m.Selector.String()))
				continue
			}
			for pi, port := range m.Ports {
				if port == reached[0].SidecarPortName || port == strconv.Itoa(reached[0].SidecarPort) {
					portIndex = pi
				}
			}
			if portIndex < 0 {
				why = append(why, fmt.Sprintf("%s selects the pods, but its endpoints' ports %v are not the sidecar's port %s", id, m.Ports, reached[0].SidecarPortName))
				reached = nil
			}
			via = "the pods"
		}
		if len(reached) == 0 {
			continue
		}
		proms := c.selectedBy(m)
		if len(proms) == 0 {
			why = append(why, fmt.Sprintf("%s (labels %v) reaches the sidecars, but no Prometheus resource selects it", id, m.Labels))
			continue
		}
		kind := "serviceMonitor"
		if m.Kind == "PodMonitor" {
			kind = "podMonitor"
		}
		c.pools = append(c.pools, fmt.Sprintf("%s/%s/%s/%d", kind, m.Namespace, m.Name, portIndex))
		found = append(found, fmt.Sprintf("%s (through %s, port %s) for Prometheus %s", id, via, m.Ports[portIndex], strings.Join(proms, ", ")))
		if len(reached) < len(pods) {
			why = append(why, fmt.Sprintf("%s reaches %d of the %d sidecar pods", id, len(reached), len(pods)))
		}
	}
	if len(found) == 0 {
		if len(why) == 0 {
			return broken(LinkMonitor, "no ServiceMonitor or PodMonitor covers namespace "+c.a.Namespace,
				"kubectl apply -k manifests/monitoring/servicemonitor (its Service and ServiceMonitor), in the namespace of the data plane")
		}
		return broken(LinkMonitor, strings.Join(why, "; "), "make the monitor's selector match the sidecar Service's labels (manifests/monitoring/servicemonitor), its port the Service's port name sidecar-metrics, and its labels the Prometheus resource's serviceMonitorSelector (release: prometheus for kube-prometheus-stack)")
	}
	return ok(LinkMonitor, strings.Join(found, "; "))
}

// promTargets is the part of /api/v1/targets the doctor reads.
type promTargets struct {
	Status string `json:"status"`
	Data   struct {
		ActiveTargets []struct {
			ScrapePool string            `json:"scrapePool"`
			Labels     map[string]string `json:"labels"`
			Health     string            `json:"health"`
			LastError  string            `json:"lastError"`
			ScrapeURL  string            `json:"scrapeUrl"`
		} `json:"activeTargets"`
	} `json:"data"`
}

func checkPrometheus(c *chain) Link {
	p := c.a.Prometheus
	if p.Via == "" {
		return broken(LinkPrometheus, "no Prometheus found: no Prometheus resource selects the monitor, or no Service of it answers", "name it: --prometheus namespace/service:port")
	}
	if p.Targets.Error != "" {
		return broken(LinkPrometheus, fmt.Sprintf("Prometheus (%s) does not answer: %s", p.Via, p.Targets.Error), "is Prometheus running and ready? kubectl get pods of its StatefulSet; or name another with --prometheus")
	}
	var t promTargets
	if err := json.Unmarshal([]byte(p.Targets.Body), &t); err != nil || t.Status != "success" {
		return broken(LinkPrometheus, fmt.Sprintf("Prometheus (%s) answered /api/v1/targets with something else: %.200s", p.Via, p.Targets.Body), "is --prometheus a Prometheus?")
	}
	var problems, up []string
	for _, pod := range c.sidecarPods() {
		found := false
		for _, at := range t.Data.ActiveTargets {
			if at.Labels["pod"] != pod.Name || at.Labels["namespace"] != c.a.Namespace || !slices.Contains(c.pools, at.ScrapePool) {
				continue
			}
			found = true
			if at.Health != "up" {
				problems = append(problems, fmt.Sprintf("the target of %s (%s) is %s: %s", pod.Name, at.ScrapeURL, at.Health, at.LastError))
			} else {
				up = append(up, pod.Name)
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("Prometheus (%s) has no target of %s in %s", p.Via, pod.Name, strings.Join(c.pools, ", ")))
		}
	}
	if len(problems) > 0 {
		return broken(LinkPrometheus, strings.Join(problems, "; "), "a missing target: the operator has not written the monitor into Prometheus' configuration yet, or the pod is not Ready (Endpoints list ready pods); a down target: its error names why")
	}
	return ok(LinkPrometheus, fmt.Sprintf("Prometheus (%s) scrapes every sidecar: %s up", p.Via, strings.Join(up, ", ")))
}

// promVector is the part of a /api/v1/query answer the doctor reads.
type promVector struct {
	Status string `json:"status"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func vector(f Fetched) (*promVector, error) {
	if f.Error != "" {
		return nil, fmt.Errorf("%s", f.Error)
	}
	var v promVector
	if err := json.Unmarshal([]byte(f.Body), &v); err != nil {
		return nil, fmt.Errorf("decoding %.200s: %w", f.Body, err)
	}
	return &v, nil
}

func checkSeries(c *chain) Link {
	p := c.a.Prometheus
	v, err := vector(p.Series)
	if err != nil {
		return broken(LinkSeries, "querying Prometheus: "+err.Error(), "see the prometheus link")
	}
	var names []string
	for _, r := range v.Data.Result {
		names = append(names, r.Metric["__name__"])
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > 0 {
		return ok(LinkSeries, fmt.Sprintf("Prometheus has %s's series with exported_namespace and exported_service: %s", c.svc, strings.Join(names, ", ")))
	}
	if u, err := vector(p.Unlabelled); err == nil && len(u.Data.Result) > 0 {
		var jobs []string
		for _, r := range u.Data.Result {
			jobs = append(jobs, r.Metric["job"])
		}
		slices.Sort(jobs)
		return broken(LinkSeries, fmt.Sprintf("Prometheus has Kong series of %s without exported_service, from job(s) %s: it scrapes Kong (or /metrics/kong) itself, not the sidecar's /metrics", c.svc, strings.Join(slices.Compact(jobs), ", ")),
			"scrape the sidecar's port (sidecar-metrics, /metrics) instead; the adapter's rule needs exported_namespace and exported_service")
	}
	if c.idle {
		return idle(LinkSeries, "no series of "+c.svc.String()+" in Prometheus yet: no traffic (see above), not a fault")
	}
	return broken(LinkSeries, fmt.Sprintf("the sidecars keep %s's series but Prometheus has none with exported_namespace=%q, exported_service=%q", c.svc, c.svc.Namespace, c.svc.Name),
		"a metricRelabelings or honorLabels setting of the monitor drops or renames them; or the next scrape has not happened yet (run again in 30 s)")
}

func checkCustomMetrics(c *chain) Link {
	cm := c.a.CustomMetrics
	switch {
	case !cm.Found:
		return broken(LinkCustomMetrics, "APIService "+cm.APIService+" does not exist: no custom metrics API", "install prometheus-adapter with manifests/monitoring/prometheus-adapter/values.yaml")
	case !cm.Available:
		return broken(LinkCustomMetrics, fmt.Sprintf("APIService %s is not Available (%s: %s): the HPA gets no metric", cm.APIService, cm.Reason, cm.Message),
			"is the adapter running and its Service's port right? kubectl get apiservice "+cm.APIService+" -o yaml")
	case cm.DiscoveryError != "":
		return broken(LinkCustomMetrics, "the custom metrics API does not list its metrics: "+cm.DiscoveryError, "see the adapter's log")
	}
	for _, r := range cm.Resources {
		if name, found := strings.CutPrefix(r, "services/"); found {
			c.served = append(c.served, name)
		}
	}
	slices.Sort(c.served)
	if len(c.served) == 0 {
		return broken(LinkCustomMetrics, "the custom metrics API serves no metric of Services: the adapter has no rule for these series, or its seriesQuery finds none",
			"add the tutorial's rule (manifests/monitoring/prometheus-adapter/values.yaml: seriesQuery on kong_upstream_latency_ms_(sum|count), overrides exported_namespace → namespace, exported_service → service)")
	}
	var good, missing []string
	names := make([]string, 0, len(cm.Values))
	for n := range cm.Values {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := cm.Values[n]
		if v.Error == "" {
			good = append(good, fmt.Sprintf("%s = %s", n, v.Value))
		} else {
			missing = append(missing, fmt.Sprintf("%s: HTTP %d %s", n, v.Code, v.Error))
		}
	}
	switch {
	case len(good) > 0:
		return ok(LinkCustomMetrics, fmt.Sprintf("APIService %s Available; for Service %s: %s", cm.APIService, c.svc, strings.Join(good, ", ")))
	case c.idle:
		return idle(LinkCustomMetrics, "no value for "+c.svc.String()+" yet: no traffic, not a fault")
	case len(missing) == 0:
		return ok(LinkCustomMetrics, fmt.Sprintf("APIService %s Available, serving %s", cm.APIService, strings.Join(c.served, ", ")))
	}
	return broken(LinkCustomMetrics, fmt.Sprintf("the adapter serves %s but no value for Service %s: %s", strings.Join(c.served, ", "), c.svc, strings.Join(missing, "; ")),
		"the rule's resources.overrides must map exported_namespace to namespace and exported_service to service; its metricsQuery must group by exported_service")
}

func condition(conds []Condition, typ string) (Condition, bool) {
	for _, c := range conds {
		if c.Type == typ {
			return c, true
		}
	}
	return Condition{}, false
}

func warnings(events []Event) string {
	var w []string
	for _, e := range events {
		if e.Type == "Warning" {
			w = append(w, e.Reason+": "+e.Message)
		}
	}
	if len(w) > 3 {
		w = w[len(w)-3:]
	}
	if len(w) == 0 {
		return ""
	}
	return "; last warnings: " + strings.Join(w, " | ")
}

func checkHPA(c *chain) Link {
	var hpas []HPAAnswer
	for _, h := range c.a.HPAs {
		if h.ManagedBy == "" {
			hpas = append(hpas, h)
		}
	}
	if len(hpas) == 0 {
		return broken(LinkHPA, "no HorizontalPodAutoscaler in "+c.a.Namespace+" uses an Object metric of Service "+c.svc.Name,
			"apply one (manifests/examples/hpa.yaml: describedObject Service "+c.svc.Name+", metric kong_upstream_latency_ms_60s_average)")
	}
	var problems, good []string
	for _, h := range hpas {
		for _, m := range h.Metrics {
			if !slices.Contains(c.served, m) {
				problems = append(problems, fmt.Sprintf("HPA %s asks for metric %q, which the custom metrics API does not serve for Services (it serves %s)", h.Name, m, strings.Join(c.served, ", ")))
			}
		}
		if len(problems) > 0 {
			continue
		}
		if cond, found := condition(h.Conditions, "AbleToScale"); found && cond.Status == "False" {
			problems = append(problems, fmt.Sprintf("HPA %s cannot scale (AbleToScale False, %s: %s)", h.Name, cond.Reason, cond.Message))
		}
		if cond, found := condition(h.Conditions, "ScalingActive"); found && cond.Status == "False" {
			problems = append(problems, fmt.Sprintf("HPA %s is not scaling (ScalingActive False, %s: %s)%s", h.Name, cond.Reason, cond.Message, warnings(h.Events)))
			continue
		}
		state := fmt.Sprintf("HPA %s: %d replicas (desired %d, %d..%d), ScalingActive True", h.Name, h.CurrentReplicas, h.DesiredReplicas, h.Min, h.Max)
		if c.idle && h.CurrentReplicas <= h.Min {
			state += "; at its minimum because there is no traffic: idle, not a fault"
		}
		good = append(good, state)
	}
	if len(problems) > 0 {
		return broken(LinkHPA, strings.Join(problems, "; "), "make the HPA's metric.name one the API serves (kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1), or the adapter's name.as the HPA's")
	}
	return ok(LinkHPA, strings.Join(good, "; "))
}

func checkScaledObject(c *chain) Link {
	if len(c.a.ScaledObjects) == 0 {
		return broken(LinkScaledObject, "no KEDA ScaledObject in "+c.a.Namespace+" found", "apply manifests/examples/keda")
	}
	var problems, good []string
	for _, so := range c.a.ScaledObjects {
		if cond, found := condition(so.Conditions, "Ready"); !found || cond.Status != "True" {
			problems = append(problems, fmt.Sprintf("ScaledObject %s is not Ready (%s: %s)%s", so.Name, cond.Reason, cond.Message, warnings(so.Events)))
			continue
		}
		for _, h := range c.a.HPAs {
			if h.ManagedBy != so.Name {
				continue
			}
			if cond, found := condition(h.Conditions, "ScalingActive"); found && cond.Status == "False" {
				problems = append(problems, fmt.Sprintf("KEDA's HPA %s is not scaling (ScalingActive False, %s: %s)%s", h.Name, cond.Reason, cond.Message, warnings(h.Events)))
			}
		}
		if cond, _ := condition(so.Conditions, "Active"); cond.Status != "True" {
			good = append(good, fmt.Sprintf("ScaledObject %s Ready; not Active: the query is below the activation threshold, so it holds its minimum. Idle, not a fault", so.Name))
		} else {
			good = append(good, fmt.Sprintf("ScaledObject %s Ready and Active", so.Name))
		}
	}
	if len(problems) > 0 {
		return broken(LinkScaledObject, strings.Join(problems, "; "), "the trigger's query must return one sample for the Service (run it in Prometheus); the message names KEDA's error")
	}
	return ok(LinkScaledObject, strings.Join(good, "; "))
}

// podGroups collects problems that differ only by the pod they name, so
// that three replicas with the same fault make one sentence.
type podGroups map[string][]string

// add records that problem (which names pod) holds for pod.
func (g podGroups) add(problem, pod string) {
	key := strings.Replace(problem, pod, "%s", 1)
	g[key] = append(g[key], pod)
}

// join writes each distinct problem once, naming all of its pods;
// problems not added are kept as they are.
func (g podGroups) join(problems []string) string {
	var out []string
	done := map[string]bool{}
	for _, p := range problems {
		key := p
		for k, pods := range g {
			for _, pod := range pods {
				if strings.Replace(p, pod, "%s", 1) == k {
					key = k
				}
			}
		}
		if done[key] {
			continue
		}
		done[key] = true
		if pods, found := g[key]; found {
			out = append(out, strings.Replace(key, "%s", strings.Join(pods, ", "), 1))
		} else {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}
