// Command kube-apiserver-healthcheck is the emulator's stand-in for kOps'
// kube-apiserver-healthcheck image (registry.k8s.io/kops/kube-apiserver-healthcheck),
// whose source is not served by the Go module proxy this project builds
// from. It behaves as that sidecar does, with the same flags: it serves
// plain HTTP for the load balancer's legacy HTTP health check and answers
// GET /healthz, /livez and /readyz by asking the local kube-apiserver over
// HTTPS with its own client certificate, passing on its status. Nothing
// else is proxied. /.kube-apiserver-healthcheck/healthz is its own
// liveness.
//
// --listen-address and --api-server-address exist for the emulator, whose
// machines share one host: each binds and asks its own loopback IP where a
// VM uses every interface and 127.0.0.1.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver-healthcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kube-apiserver-healthcheck", flag.ContinueOnError)
	caCert := fs.String("ca-cert", "", "the CA that signed the API server's certificate")
	clientCert := fs.String("client-cert", "", "the client certificate to authenticate with")
	clientKey := fs.String("client-key", "", "its key")
	listenAddress := fs.String("listen-address", "", "the address to serve on (every interface when empty)")
	listenPort := fs.Int("listen-port", 3990, "the port to serve on")
	apiAddress := fs.String("api-server-address", "127.0.0.1", "the local API server's address")
	apiPort := fs.Int("api-server-port", 443, "the local API server's port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caCert != "" {
		pem, err := os.ReadFile(*caCert)
		if err != nil {
			return fmt.Errorf("read the CA certificate: %w", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", *caCert)
		}
	}
	if *clientCert != "" {
		pair, err := tls.LoadX509KeyPair(*clientCert, *clientKey)
		if err != nil {
			return fmt.Errorf("read the client key pair: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{pair}
	}
	h := &handler{
		api:    net.JoinHostPort(*apiAddress, strconv.Itoa(*apiPort)),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 10 * time.Second},
	}
	addr := net.JoinHostPort(*listenAddress, strconv.Itoa(*listenPort))
	log.Printf("listening on %s, asking https://%s", addr, h.api)
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

type handler struct {
	api    string
	client *http.Client
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	switch r.URL.Path {
	case "/.kube-apiserver-healthcheck/healthz":
		io.WriteString(w, "ok")
	case "/healthz", "/livez", "/readyz":
		h.proxy(w, r)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// proxy asks the API server the same path, with no header and no query
// parameter but exclude (which checks to leave out).
func (h *handler) proxy(w http.ResponseWriter, r *http.Request) {
	q := url.Values{}
	for _, v := range r.URL.Query()["exclude"] {
		q.Add("exclude", v)
	}
	u := url.URL{Scheme: "https", Host: h.api, Path: r.URL.Path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	resp, err := h.client.Do(req)
	if err != nil {
		log.Printf("GET %s: %v", u.String(), err)
		http.Error(w, "internal error", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	if resp.StatusCode != http.StatusOK {
		log.Printf("GET %s: %s", u.String(), resp.Status)
	}
}
