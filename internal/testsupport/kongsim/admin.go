package kongsim

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
)

// AdminOptions configure the simulated Admin API.
type AdminOptions struct {
	// Token, when not empty, must come in the Kong-Admin-Token header (401 otherwise).
	Token string
	// MaxPageSize caps the size parameter (Kong: 1000); the default page is 100 as Kong's.
	MaxPageSize int
}

// Admin is the simulated Admin API. Its services are the Simulator's, with
// the tags the Kong Ingress Controller writes; AddService adds more.
type Admin struct {
	opts  AdminOptions
	mu    sync.Mutex // Protects extra.
	sim   *Simulator
	extra []Service
}

// AdminHandler returns the simulated Admin API: GET /services, paginated
// as Kong does with size and offset, answering
// {"data":[…],"next":"/services?offset=…","offset":"…"} (next null on the last page).
func (s *Simulator) AdminHandler(o AdminOptions) *Admin {
	if o.MaxPageSize <= 0 {
		o.MaxPageSize = 1000
	}
	return &Admin{opts: o, sim: s}
}

// AddService makes the Admin API list one more service (only its Name,
// Namespace, ServiceName and Kind are used).
func (a *Admin) AddService(svc Service) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.extra = append(a.extra, svc)
}

type adminService struct {
	ID   string   `json:"id"`
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/services" {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not found"})
		return
	}
	if !allowGet(w, r) {
		return
	}
	if a.opts.Token != "" && r.Header.Get("Kong-Admin-Token") != a.opts.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Invalid credentials. Token or User credentials required"})
		return
	}
	size := 100
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > a.opts.MaxPageSize {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "schema violation (size: invalid)"})
			return
		}
		size = n
	}
	start := 0
	if v := r.URL.Query().Get("offset"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": "invalid offset"})
			return
		}
		start = n
	}
	a.mu.Lock()
	all := append(append([]Service(nil), a.sim.cfg.Services...), a.extra...)
	a.mu.Unlock()
	page := map[string]any{"data": []adminService{}, "next": nil}
	var data []adminService
	for i := start; i < len(all) && i < start+size; i++ {
		data = append(data, adminServiceOf(all[i]))
	}
	if data != nil {
		page["data"] = data
	}
	if end := start + size; end < len(all) {
		off := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
		page["offset"] = off
		page["next"] = "/services?offset=" + off
	}
	writeJSON(w, http.StatusOK, page)
}

func adminServiceOf(s Service) adminService {
	sum := sha1.Sum([]byte(s.Name))
	id := hex.EncodeToString(sum[:16])
	kind, version := s.Kind, "v1" // core/v1 Service and gateway.networking.k8s.io/v1 HTTPRoute alike
	if kind == "" {
		kind = "Service"
	}
	tags := []string{}
	if s.ServiceName != "" {
		tags = append(tags, "k8s-name:"+s.ServiceName, "k8s-namespace:"+s.Namespace, "k8s-kind:"+kind,
			"k8s-uid:"+id[:8]+"-"+id[8:12]+"-"+id[12:16]+"-"+id[16:20]+"-"+id[20:32], "k8s-version:"+version)
	}
	return adminService{ID: id, Name: s.Name, Tags: tags}
}

// AdminTLSConfig serves cert and, when clientCAs is not nil, requires a
// client certificate it signs, as Kong Gateway Operator data planes do.
// The client certificate's extended key usage is not checked, so test
// serving certificates do as client ones.
func AdminTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no client certificate")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: clientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		}
	}
	return cfg
}
