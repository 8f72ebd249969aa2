package kubeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/kubeha/kubeha/pki"
)

// Client reaches one Kubernetes API server.
type Client struct {
	Server string // https://STATIC_IP[:PORT]
	http   *http.Client
}

// New is a client of server that trusts caPEM alone and authenticates with
// the client certificate certPEM/keyPEM.
func New(server, caPEM, certPEM, keyPEM string) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("the cluster CA is not a PEM certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPEM != "" {
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			return nil, errors.New("the client certificate and key do not make a pair")
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &Client{Server: server, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}}, nil
}

// StatusError is an API error: its HTTP code and the Status message.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Code, e.Reason, e.Message)
}

// IsNotFound says err is the API's 404.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// do sends a request with a JSON body (nil: none) and decodes a JSON
// answer into out (nil: dropped).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Server+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach the API at %s: %w", c.Server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("read the API's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &st)
		return &StatusError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode the API's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// DeleteNode deletes a Node; one already gone is no error.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	err := c.do(ctx, http.MethodDelete, "/api/v1/nodes/"+name, nil, nil)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete Node %s: %w", name, err)
	}
	return nil
}

// NodeNames lists the names of the Nodes that match a label selector.
func (c *Client) NodeNames(ctx context.Context, selector string) ([]string, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes?labelSelector="+url.QueryEscape(selector), nil, &list); err != nil {
		return nil, fmt.Errorf("list Nodes %s: %w", selector, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		names = append(names, n.Metadata.Name)
	}
	sort.Strings(names)
	return names, nil
}

// ForAdmin is a client of the API at https://ADDRESS[:PORT] (port 0 or 443:
// none in the URL) as the PKI's admin, trusting the cluster CA alone.
func ForAdmin(address string, port int, caPEM, certPEM, keyPEM string) (*Client, error) {
	server := "https://" + address
	if port != 0 && port != 443 {
		server += ":" + strconv.Itoa(port)
	}
	return New(server, caPEM, certPEM, keyPEM)
}

// Admin returns what reaches a cluster's API at its static IP as the
// admin of the PKI in pkiDir, on port (443, or where kubeha's emulator
// serves it): the PKI is read only when it is called.
func Admin(pkiDir, cluster string, port int) func(staticIP string) (*Client, error) {
	return func(staticIP string) (*Client, error) {
		p, err := pki.Ensure(pkiDir, cluster)
		if err != nil {
			return nil, err
		}
		cert, key, err := p.Admin()
		if err != nil {
			return nil, err
		}
		return ForAdmin(staticIP, port, p.ClusterCA.CertPEM, cert, key)
	}
}
