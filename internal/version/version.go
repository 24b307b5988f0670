// Package version is tokenkeeper's release, stamped at build time, and the User-Agent every
// outbound request carries. It imports nothing, so the manager and the kubectl plugin both use it.
package version

// Version is the release, set with
// -ldflags "-X github.com/tokenkeeper/tokenkeeper/internal/version.Version=v0.2.0"; "dev" otherwise.
var Version = "dev"

// UserAgent is sent with every request to an issuer, key set or probe: tokenkeeper/VERSION.
func UserAgent() string { return "tokenkeeper/" + Version }
