package sim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
)

// maxBatchParts is the largest batch GCE accepts.
const maxBatchParts = 1000

// batchHandler serves /batch/compute/v1, the batch endpoint gcloud uses to
// send several calls at once: a multipart/mixed body whose parts are HTTP
// requests, answered by a multipart/mixed body whose parts are the HTTP
// responses, each with Content-ID "response-" plus the request part's ID.
func batchHandler(api http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !strings.HasPrefix(mediaType, "multipart/") {
			errInvalid("A batch request must be multipart/mixed.").write(w)
			return
		}
		reader := multipart.NewReader(r.Body, params["boundary"])
		var out bytes.Buffer
		mw := multipart.NewWriter(&out)
		for n := 0; ; n++ {
			part, err := reader.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil || n >= maxBatchParts {
				errInvalid("Malformed batch request (part %d).", n).write(w)
				return
			}
			inner, err := http.ReadRequest(bufio.NewReader(part))
			if err != nil {
				errInvalid("Malformed batch request part %d: %v", n, err).write(w)
				return
			}
			inner = inner.WithContext(r.Context())
			inner.RequestURI = ""
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, inner)
			id := strings.Trim(part.Header.Get("Content-ID"), "<>")
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", "application/http")
			h.Set("Content-ID", "<response-"+id+">")
			pw, err := mw.CreatePart(h)
			if err != nil {
				errInvalid("batch response: %v", err).write(w)
				return
			}
			res := rec.Result()
			fmt.Fprintf(pw, "HTTP/1.1 %s\r\nContent-Type: %s\r\n\r\n", res.Status, res.Header.Get("Content-Type"))
			_, _ = io.Copy(pw, res.Body)
		}
		if err := mw.Close(); err != nil {
			errInvalid("batch response: %v", err).write(w)
			return
		}
		w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
		_, _ = w.Write(out.Bytes())
	}
}
