// Package release holds no code: its test runs make release into a
// registry on 127.0.0.1 and checks what it pulls back (release_test.go).
// The release itself is package publish, run by cmd/release.
package release
