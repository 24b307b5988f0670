// Command demo-app is the application of `make demo`: every few seconds it calls each issuer's
// protected API with the Authorization header value read from the token Secret its pod mounts,
// and logs the answer and the token's fingerprint (never the token).
//
// TARGETS is a space-separated list of name=url=dir; dir holds the mounted Secret (authorization,
// and api-key where the issuer wants one). CA_FILE trusts the demo issuers.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	ca, err := os.ReadFile(os.Getenv("CA_FILE"))
	if err != nil {
		log.Fatalf("reading CA_FILE: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	ok, unauthorized := map[string]int{}, map[string]int{}
	for {
		for _, target := range strings.Fields(os.Getenv("TARGETS")) {
			parts := strings.SplitN(target, "=", 3)
			if len(parts) != 3 {
				log.Fatalf("bad target %q", target)
			}
			name, url, dir := parts[0], parts[1], parts[2]
			auth, err := os.ReadFile(filepath.Join(dir, "authorization"))
			if err != nil {
				log.Printf("%-8s no token yet: %v", name, err)
				continue
			}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", strings.TrimSpace(string(auth)))
			if key, err := os.ReadFile(filepath.Join(dir, "api-key")); err == nil {
				req.Header.Set("Api-Key", string(key))
			}
			expires, _ := os.ReadFile(filepath.Join(dir, "expires-at"))
			sum := sha256.Sum256(auth)
			resp, err := client.Do(req)
			if err != nil {
				log.Printf("%-8s error: %v", name, err)
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok[name]++
			} else {
				unauthorized[name]++
			}
			fmt.Printf("%s %-8s %d token=%s expires=%s ok=%d unauthorized=%d\n", time.Now().UTC().Format("15:04:05"), name,
				resp.StatusCode, hex.EncodeToString(sum[:6]), strings.TrimSpace(string(expires)), ok[name], unauthorized[name])
		}
		time.Sleep(5 * time.Second)
	}
}
