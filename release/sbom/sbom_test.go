package sbom

import "testing"

func TestOCIPURL(t *testing.T) {
	for _, tc := range []struct{ image, want string }{
		{"gcr.io/distroless/static:nonroot", "pkg:oci/static@sha256%3Aabc?arch=arm64&repository_url=gcr.io%2Fdistroless%2Fstatic&tag=nonroot"},
		{"127.0.0.1:5000/kms/kong-metrics-sidecar", "pkg:oci/kong-metrics-sidecar@sha256%3Aabc?arch=arm64&repository_url=127.0.0.1%3A5000%2Fkms%2Fkong-metrics-sidecar"},
	} {
		if got := ociPURL(tc.image, "sha256:abc", "arm64"); got != tc.want {
			t.Errorf("ociPURL(%q) = %s, want %s", tc.image, got, tc.want)
		}
	}
}
