package kongsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAdminServicesPages: pages as Kong writes them, with next and offset
// until the last page, whose next is null, and KIC's tags.
func TestAdminServicesPages(t *testing.T) {
	svcs, err := ParseServices("httproute/kong/command/0,default/billing:80,httproute/kong/echo/1")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := New(Config{Services: svcs})
	if err != nil {
		t.Fatal(err)
	}
	admin := sim.AdminHandler(AdminOptions{Token: "tok"})
	admin.AddService(Service{Name: "httproute.kong.multi.0", Namespace: "kong", ServiceName: "multi", Kind: "HTTPRoute"})
	get := func(target, token string) (int, map[string]json.RawMessage) {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Kong-Admin-Token", token)
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		var page map[string]json.RawMessage
		_ = json.Unmarshal(rec.Body.Bytes(), &page)
		return rec.Code, page
	}
	if code, _ := get("/services", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	var names []string
	var kinds []string
	target := "/services?size=3"
	for pages := 0; target != ""; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		code, page := get(target, "tok")
		if code != http.StatusOK {
			t.Fatalf("%s: %d", target, code)
		}
		var data []struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		var next *string
		if err := json.Unmarshal(page["data"], &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(page["next"], &next); err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			names = append(names, d.Name)
			for _, tag := range d.Tags {
				if len(tag) > 9 && tag[:9] == "k8s-kind:" {
					kinds = append(kinds, tag[9:])
				}
			}
		}
		target = ""
		if next != nil {
			target = *next + "&size=3"
		}
	}
	want := []string{"httproute.kong.command.0", "default.billing.80", "httproute.kong.echo.1", "httproute.kong.multi.0"}
	if len(names) != len(want) {
		t.Fatalf("got %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("got %q, want %q", names, want)
		}
	}
	if len(kinds) != 4 || kinds[3] != "HTTPRoute" || kinds[0] != "Service" {
		t.Errorf("kinds %q", kinds)
	}
}
